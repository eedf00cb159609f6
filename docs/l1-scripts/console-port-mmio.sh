# For `ktstr bench vmm --backends kvm --l1-script` (docs/benchmarks.md, run 13): kvm boots
# alternating the kernel console on COM1's port UART (KTSTR_KVM_CONSOLE=port) and on the MMIO
# UART (the default), each with the VMM's own profile (KTSTR_KVM_TIMINGS: set-up steps,
# milestones, and per vCPU the userspace exits and the time inside KVM_RUN vs in the VMM).
export KTSTR_KVM_TIMINGS=1
B="$KTSTR bench vmm --guest-side --kernel $L2_KERNEL --initramfs /nested/l2-initrd --runs 1 --backends kvm --topology 1n1l2c1t --memory-mib 256 --timeout-s 240"
for round in 1 2 3 4 5 6 7 8; do
  for console in port mmio; do
    KTSTR_KVM_CONSOLE=$console $B 2>&1 | grep -E "KTSTR-VMM|ktstr kvm" | sed -E "s/KTSTR-VMM/L1-TIMINGS $console run/; s/ktstr kvm/L1-TIMINGS $console/; s/\"result\".*//"
  done
done
