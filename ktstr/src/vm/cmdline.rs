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
        // Keep the TSC clocksource when the host is loaded: otherwise the clocksource watchdog
        // swaps it for a 4 ms jiffies clock and every gap and latency figure is quantized.
        "tsc=reliable",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Items `qemu -M microvm` needs under TCG: it has no HPET or ACPI PM timer to calibrate the TSC
/// against, and calibrating against the PIT fails intermittently on a loaded host (the boot then
/// hangs at "tsc: Marking TSC unstable"), so the TSC frequency is given. It must be the host's:
/// TCG's rdtsc reads the host TSC, and a wrong value skews every guest clock (docs/benchmarks.md,
/// "Boot", the microvm TSC rate).
pub fn microvm_extra() -> Vec<String> {
    vec![
        format!("tsc_early_khz={}", host_tsc_khz()),
        "tsc=reliable".into(),
    ]
}

/// The host TSC rate in kHz, calibrated once per process against CLOCK_MONOTONIC.
pub fn host_tsc_khz() -> u64 {
    static KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *KHZ.get_or_init(calibrate_tsc_khz)
}

fn calibrate_tsc_khz() -> u64 {
    // One sample = (monotonic ns, tsc) read back to back; a sample whose bracketing clock reads
    // are far apart was preempted and is retried, so load on the host does not skew the result.
    fn sample() -> (u128, u64) {
        let mut best = None;
        for _ in 0..20 {
            let a = std::time::Instant::now();
            let tsc = rdtsc();
            let b = std::time::Instant::now();
            let width = b - a;
            if best.is_none_or(|(w, _, _)| width < w) {
                best = Some((width, a + width / 2, tsc));
            }
            if width.as_nanos() < 2_000 {
                break;
            }
        }
        let (_, at, tsc) = best.expect("at least one sample");
        (at.duration_since(*EPOCH).as_nanos(), tsc)
    }
    static EPOCH: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    let (t0, c0) = sample();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (t1, c1) = sample();
    let khz = (c1.wrapping_sub(c0) as u128 * 1_000_000 / (t1 - t0).max(1)) as u64;
    // A nonsense reading (e.g. a TSC that does not tick) falls back to a plausible rate rather
    // than a value the guest would reject.
    if (100_000..=10_000_000).contains(&khz) {
        khz
    } else {
        2_000_000
    }
}

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects and is available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
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
    #[test]
    fn host_tsc_rate_is_calibrated_against_the_monotonic_clock() {
        let khz = super::host_tsc_khz();
        // Any real x86_64 TSC runs between 100 MHz and 10 GHz; the fallback is exactly 2 GHz.
        assert!((100_000..=10_000_000).contains(&khz), "{khz}");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some(mhz) = cpuinfo
            .lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            // On a VM host cpu MHz is the TSC rate; allow frequency scaling on bare metal.
            let ratio = khz as f64 / (mhz * 1000.0);
            assert!(
                (0.5..2.0).contains(&ratio),
                "tsc {khz} kHz vs cpu {mhz} MHz"
            );
        }
    }

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
