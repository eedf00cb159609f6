# For `ktstr bench vmm --backends kvm --l1-script` (docs/benchmarks.md, run 8): kvm boots
# alternating the default command line and `quiet`, each with the VMM's own profile
# (KTSTR_KVM_TIMINGS: set-up steps, and per vCPU the userspace exits and the time inside
# KVM_RUN vs in the VMM).
export KTSTR_KVM_TIMINGS=1
B="$KTSTR bench vmm --guest-side --kernel $L2_KERNEL --initramfs /nested/l2-initrd --runs 1 --backends kvm --topology 1n1l2c1t --memory-mib 256 --timeout-s 240"
for round in 1 2 3 4 5 6; do
  for console in loud quiet; do
    extra=""
    [ $console = quiet ] && extra="--cmdline quiet"
    $B $extra 2>&1 | grep -E "KTSTR-VMM|ktstr kvm" | sed -E "s/KTSTR-VMM/L1-TIMINGS $console run/; s/ktstr kvm/L1-TIMINGS $console/; s/\"result\".*//"
  done
done
