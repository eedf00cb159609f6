# For `ktstr bench vmm --backends kvm --l1-script` (docs/benchmarks.md, run 11): kvm boots, each
# with the VMM's profile (KTSTR_KVM_TIMINGS): set-up steps, per-vCPU exits, and when the first
# console byte and a few boot milestones reached the VMM, counted from the VM's start. Compare
# with the record's guest uptime to see how much of a boot passes before the guest's clock.
export KTSTR_KVM_TIMINGS=1
B="$KTSTR bench vmm --guest-side --kernel $L2_KERNEL --initramfs /nested/l2-initrd --runs 1 --backends kvm --topology 1n1l2c1t --memory-mib 256 --timeout-s 240"
for round in 1 2 3 4 5 6; do
  $B 2>&1 | grep -E "KTSTR-VMM|ktstr kvm" | sed -E "s/KTSTR-VMM/L1-TIMINGS run/; s/ktstr kvm/L1-TIMINGS/; s/\"frame_errors\".*//"
done
