//! The kernel command line every backend uses (documented in README.md, "Kernel command line").
//!
//! Every item is here for a reason a test or a measurement showed; backends append their own items
//! (e.g. [`microvm_extra`]) and `VmConfig::cmdline_extra` (e.g. `--dmesg` in `ktstr shell`).

/// Base command line; backends append their own items and `VmConfig::cmdline_extra`.
pub fn base() -> Vec<String> {
    [
        // COM1 is the kernel console; early output too so early crashes leave evidence.
        "console=ttyS0,115200",
        "earlyprintk=serial,ttyS0,115200",
        // The agent is /init in the initramfs.
        "rdinit=/init",
        // Panic -> immediate reboot; backends run with no-reboot so the VM ends at once.
        "panic=-1",
        // Reboot by triple fault: needs no ACPI or keyboard controller, every backend sees it.
        "reboot=t",
        // An oops kills the VM at once (as a panic) instead of leaving a half-dead guest that only
        // the watchdog ends; the oops text is already on the console as evidence.
        "oops=panic",
        // No PS/2 controller probing: it costs boot time under TCG and the VM has no keyboard.
        "i8042.noaux",
        "i8042.nokbd",
        // The guest has no disks or network to wait for and no use for the entropy stall.
        "random.trust_cpu=on",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Items `qemu -M microvm` needs under TCG: it has no HPET or ACPI PM timer to calibrate the TSC
/// against, and calibrating against the PIT fails intermittently on a loaded host (the boot then
/// hangs at "tsc: Marking TSC unstable"), so the TSC frequency is given. The value only scales
/// guest-internal clocks derived from the TSC; scenario timing uses CLOCK_MONOTONIC.
pub fn microvm_extra() -> Vec<String> {
    vec!["tsc_early_khz=2000000".into()]
}

/// The full command line: [`base`] + `backend_extra` + `extra`. When `extra` asks for `quiet`,
/// `earlyprintk` is dropped: early printk runs before `loglevel=` is parsed (and makes the
/// decompressor chatty), so it would put boot noise on a quiet console.
pub fn compose(backend_extra: &[String], extra: &[String]) -> Vec<String> {
    let quiet = extra.iter().any(|s| s == "quiet");
    base()
        .into_iter()
        .filter(|s| !(quiet && s.starts_with("earlyprintk=")))
        .chain(backend_extra.iter().cloned())
        .chain(extra.iter().cloned())
        .collect()
}

/// Shell mode without `--dmesg`: keep kernel messages off the user's terminal (they still reach
/// the log when captured). `loglevel=1` keeps panics (KERN_EMERG) visible.
pub fn quiet() -> Vec<String> {
    vec!["quiet".into(), "loglevel=1".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_routes_console_and_init() {
        let b = base();
        assert!(b.iter().any(|s| s.starts_with("console=ttyS0")));
        assert!(b.contains(&"rdinit=/init".to_string()));
        assert!(b.contains(&"panic=-1".to_string()));
    }

    #[test]
    fn quiet_drops_earlyprintk() {
        let loud = compose(&[], &[]);
        assert!(loud.iter().any(|s| s.starts_with("earlyprintk=")));
        let q = compose(&["a=1".into()], &quiet());
        assert!(!q.iter().any(|s| s.starts_with("earlyprintk=")));
        assert_eq!(&q[q.len() - 3..], ["a=1", "quiet", "loglevel=1"]);
    }
}
