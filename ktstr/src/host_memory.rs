//! The host memory guests may take. The kvm backend maps guest RAM with MAP_NORESERVE and QEMU
//! allocates it lazily, so nothing refuses an overcommitted host up front: the host's OOM killer
//! would pick a victim mid-run. ktstr therefore keeps the sum of guest memory in flight within
//! a budget taken once at start:
//!
//! budget = MemAvailable − headroom, headroom = max(1 GiB, 10 % of MemTotal)
//!
//! The headroom covers each VMM's own memory (QEMU, page tables, the initramfs), ktstr itself
//! and the host's other work. A cell asking more than the whole budget is refused as bad input;
//! cells that fit wait for memory as they wait for CPUs (`ktstr_matrix::budget`).

/// The fixed part of the headroom.
pub const MIN_HEADROOM_MIB: u64 = 1024;
/// The part of `MemTotal` kept free, in percent.
pub const HEADROOM_PERCENT: u64 = 10;

/// What /proc/meminfo says, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    pub total_mib: u64,
    pub available_mib: u64,
}

impl HostMemory {
    /// The host's memory now; `None` where /proc/meminfo cannot be read or lacks the fields
    /// (then no budget applies).
    pub fn read() -> Option<HostMemory> {
        parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    pub fn headroom_mib(&self) -> u64 {
        MIN_HEADROOM_MIB.max(self.total_mib * HEADROOM_PERCENT / 100)
    }

    /// The sum of guest memory that may be in flight.
    pub fn guest_budget_mib(&self) -> u64 {
        self.available_mib.saturating_sub(self.headroom_mib())
    }

    /// A guest of `mib` MiB against the budget: one line saying why not, and the fix.
    pub fn check_cell(&self, mib: u32) -> Result<(), String> {
        let budget = self.guest_budget_mib();
        if u64::from(mib) <= budget {
            return Ok(());
        }
        Err(format!(
            "{mib} MiB per guest is more than this host can give one: {budget} MiB \
             (MemAvailable {} MiB minus {} MiB headroom, the larger of {MIN_HEADROOM_MIB} MiB \
             and {HEADROOM_PERCENT} % of MemTotal); give at most {budget} MiB, or free memory",
            self.available_mib,
            self.headroom_mib()
        ))
    }
}

fn field_mib(meminfo: &str, name: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find(|l| l.split(':').next() == Some(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub fn parse_meminfo(text: &str) -> Option<HostMemory> {
    Some(HostMemory {
        total_mib: field_mib(text, "MemTotal")?,
        available_mib: field_mib(text, "MemAvailable")?,
    })
}

/// The budget the matrix engine applies (`None`: unknown host memory, no limit).
pub fn guest_budget_mib() -> Option<u64> {
    HostMemory::read().map(|m| m.guest_budget_mib())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       25165824 kB\nMemFree:         1000000 kB\n\
                           MemAvailable:   10485760 kB\nBuffers:           12345 kB\n";

    #[test]
    fn budget_is_available_minus_headroom() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total_mib, 24576);
        assert_eq!(m.available_mib, 10240);
        // 10 % of 24 GiB is more than the 1 GiB floor.
        assert_eq!(m.headroom_mib(), 2457);
        assert_eq!(m.guest_budget_mib(), 10240 - 2457);
        let small = HostMemory {
            total_mib: 2048,
            available_mib: 1500,
        };
        assert_eq!(small.headroom_mib(), MIN_HEADROOM_MIB);
        assert_eq!(small.guest_budget_mib(), 476);
        let starved = HostMemory {
            total_mib: 2048,
            available_mib: 500,
        };
        assert_eq!(starved.guest_budget_mib(), 0);
    }

    #[test]
    fn a_cell_larger_than_the_budget_is_refused_with_the_figures() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert!(m.check_cell(512).is_ok());
        assert!(m.check_cell(7783).is_ok());
        let e = m.check_cell(7784).unwrap_err();
        assert!(
            e.contains("7783 MiB") && e.contains("MemAvailable 10240"),
            "{e}"
        );
    }

    #[test]
    fn malformed_meminfo_gives_no_budget() {
        assert_eq!(parse_meminfo("MemTotal: lots\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 1024 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn this_host_has_a_budget() {
        // Linux CI hosts have /proc/meminfo; the budget must not exceed what is available.
        let m = HostMemory::read().expect("/proc/meminfo");
        assert!(m.guest_budget_mib() < m.available_mib);
    }
}
