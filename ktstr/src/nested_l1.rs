//! What L1 of the nested test bed (the `ktstr-testbed` crate, `ktstr_testbed::nested`) runs of
//! this binary besides the commands under test: the hidden `ktstr nested-l1-hold` subcommand. It
//! lives here, not in the test bed, because the ktstr binary packed into L1 is the one that runs it.
//!
//! Before any L2 boots it keeps one VM with a never-run vCPU alive so that two static keys never
//! drop to 0 and are never live-patched again: kvm.ko's deferred `apic_sw_disabled`, and the
//! scheduler's `preempt_notifier_key` (`kvm_create_vm` increments it, VM destruction decrements
//! it, and it is patched into `__schedule`, which every L1 CPU runs all the time, so L1 can die of
//! "Oops: int3" there as well). Creating the holder still patches each key once, early; the test
//! bed boots L1 again if that goes wrong.
//!
//! Why: every vCPU is created with its local APIC software-disabled (the key goes 0 -> 1) and
//! the key drops back to 0 once the guest enables its APICs, so each L2 boot rewrites kvm.ko's
//! text with `text_poke_bp` while other L1 vCPUs run it. Under QEMU's multi-threaded TCG a vCPU
//! can still execute the transient `int3` after the patch completed, and L1 dies with
//! "Oops: int3" in `apic_has_pending_timer`. Single-threaded TCG avoids the race but stalls L2's
//! SMP bring-up, so the key is pinned instead (what was seen: docs/benchmarks.md, "The nested
//! test bed's own failures"). The held vCPU never runs, so it costs L1 nothing but a few pages.

use kvm_ioctls::Kvm;
use thiserror::Error;

/// The holder could not create its VM or vCPU (no /dev/kvm, or kvm.ko refused).
#[derive(Debug, Error)]
#[error("holding kvm's APIC static key: {what}: {source}")]
pub struct HoldError {
    what: &'static str,
    #[source]
    source: std::io::Error,
}

/// The L1 script line that starts the holder in the background and waits (bounded) until it
/// holds the key; a failure is reported on the console and the script goes on.
pub fn script_line(ktstr: &str) -> String {
    format!(
        "{ktstr} {HOLD_COMMAND} > /tmp/kvm-hold 2>&1 &\n\
         i=0; until grep -q {READY} /tmp/kvm-hold 2>/dev/null || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         grep -q {READY} /tmp/kvm-hold || {{ echo 'nested: kvm key holder not ready:'; cat /tmp/kvm-hold; }}\n"
    )
}

/// Hidden `ktstr` subcommand that runs [`hold_apic_keys`].
pub const HOLD_COMMAND: &str = "nested-l1-hold";
const READY: &str = "KTSTR-KVM-HOLD-READY";

/// Creates a VM with an in-kernel irqchip and one vCPU (so one software-disabled local APIC),
/// says so on stdout, and sleeps until killed (L1's power-off ends it).
pub fn hold_apic_keys() -> Result<std::convert::Infallible, HoldError> {
    let kvm_err = |what: &'static str| {
        move |e: kvm_ioctls::Error| HoldError {
            what,
            source: std::io::Error::from_raw_os_error(e.errno()),
        }
    };
    let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    // The irqchip must exist first: only then does KVM_CREATE_VCPU create an in-kernel local
    // APIC (and count it in `apic_sw_disabled`) instead of bumping `kvm_has_noapic_vcpu`.
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let _vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    println!("{READY}");
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script line waits for exactly what the holder prints (checked with sh and a fake
    /// holder that prints the marker).
    #[test]
    fn script_waits_for_the_ready_marker() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake");
        std::fs::write(&fake, format!("echo {READY}\nsleep 5\n")).unwrap();
        let line = script_line(&format!("sh {}", fake.display())).replace(
            "/tmp/kvm-hold",
            &dir.path().join("out").display().to_string(),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{line}echo done; kill $!"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), "done", "{text}");
    }
}
