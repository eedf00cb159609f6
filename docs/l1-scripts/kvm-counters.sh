# For `ktstr bench vmm --l1-script` (docs/benchmarks.md, run 8): boots L2 with each backend
# and prints L1's KVM counters for each boot: every exit, not only those reaching the VMM, and
# how the guest's memory is mapped in the nested page tables. The counters are sums over the
# VMs alive in L1 (one at a time here); a loop samples them every 0.4 s and the last sample
# before the VM ends is printed, so the last moments of a boot are missing.
# Needs the qemu-kvm backend in L1: run with `--backends kvm,qemu-kvm`.
mount -t debugfs none /sys/kernel/debug 2>/dev/null
D=/sys/kernel/debug/kvm
STATS="exits io_exits halt_exits irq_exits insn_emulation pf_fixed pages_4k pages_2m"
B="$KTSTR bench vmm --guest-side --kernel $L2_KERNEL --initramfs /nested/l2-initrd --runs 1 --topology 1n1l2c1t --memory-mib 256 --timeout-s 240"
for round in 1 2; do
  for backend in kvm qemu-kvm; do
    rm -f /tmp/kvm-last
    ( while :; do
        line=""
        for f in $STATS; do line="$line $f=$(cat $D/$f)"; done
        case "$line" in *" exits=0 "*) ;; *) echo "$line" > /tmp/kvm-last ;; esac
        sleep 0.4
      done ) &
    sampler=$!
    # Record lines are renamed so the outer benchmark does not count these boots.
    $B --backends $backend 2>&1 | grep KTSTR-VMM | sed -E 's/KTSTR-VMM/L1-COUNTERS run/; s/"result".*//'
    kill $sampler; wait $sampler 2>/dev/null
    echo "L1-COUNTERS $backend$(cat /tmp/kvm-last 2>/dev/null)"
  done
done
