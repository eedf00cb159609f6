//! What the report says about the machine a matrix ran on: CPU model, cores, memory, host
//! kernel, QEMU version (the cells' timings depend on all of them).

use ktstr_matrix::provenance::HostInfo;

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// `MemTotal` of /proc/meminfo, in MiB.
fn memory_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `QEMU emulator version 7.2.15 (Debian ...)`: the first line of `qemu --version`.
fn qemu_version() -> Option<String> {
    let qemu = crate::vm::qemu::find_binary().ok()?;
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}

/// This host; `uses_qemu` asks for QEMU's version as well.
pub fn current(uses_qemu: bool) -> HostInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    HostInfo {
        cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown CPU".into()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_mib: memory_mib(&read("/proc/meminfo")).unwrap_or(0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        qemu_version: if uses_qemu { qemu_version() } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(
            memory_mib("MemTotal:        8048576 kB\nMemFree: 1 kB\n"),
            Some(7859)
        );
        assert_eq!(memory_mib("nothing"), None);
    }

    #[test]
    fn this_host_has_a_cpu_and_memory() {
        let h = current(false);
        assert!(h.cores >= 1 && h.memory_mib > 0, "{h:?}");
        assert!(!h.kernel.is_empty());
    }
}
