//! The kernel command line every backend uses (documented in README.md).
//! Owned by the boot-path work; see README "Kernel command line".

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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
