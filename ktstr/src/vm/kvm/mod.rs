//! The own KVM VMM backend (x86_64), in three parts:
//! - [`boot`]: the boot steps, run in order by [`build_vm`] (memory [`boot::layout`], kernel
//!   [`boot::loader`], [`boot::boot_params`] (initrd, command line, e820), [`boot::mptable`] and
//!   [`boot::acpi`], [`boot::regs`] (page tables, GDT, long mode), [`boot::cpuid`],
//!   [`boot::msrs`]);
//! - [`devices`]: what the guest's port and MMIO accesses reach (UARTs, consoles, CMOS, ACPI PM);
//! - [`runtime`]: the vCPU threads and the watch over them until the VM ends.
//!
//! [`probe`] decides whether this host's /dev/kvm can run a stock kernel at all.

pub mod boot;
pub mod devices;
pub mod probe;
pub mod runtime;

use super::result_channel::ResultChannel;
use super::{Backend, ConsoleMode, VmConfig, VmError, VmRun};
use boot::cpuid::{ApicLayout, CpuidError};
use boot::{acpi, boot_params, cpuid, layout, loader, mptable, msrs, regs};
use devices::{console_ring, mmio_console, serial};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use runtime::{terminal, vcpu};
use serial::{ConsoleSink, Uarts};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Address KVM needs for its TSS (three pages) on Intel; just below the MMIO window's top.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Extra command line items for this VMM: there is no PCI bus to scan, no i8042 to probe.
const KVM_CMDLINE: [&str; 4] = ["pci=off", "i8042.noaux", "i8042.nomux", "i8042.dumbkbd"];

/// Why the kvm backend could not build its VM: one variant per boot step family, each step's
/// own error inside, so the message says which step failed and why.
#[derive(Debug, Error)]
pub enum KvmError {
    /// A VM-level KVM ioctl (`what` names it).
    #[error("backend kvm failed to start: {what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A host resource other than KVM (an eventfd).
    #[error("backend kvm failed to start: {what}: {source}")]
    Host {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Memory(#[from] layout::MemoryError),
    #[error("kernel image {path}: {source}")]
    Kernel {
        path: PathBuf,
        #[source]
        source: loader::LoaderError,
    },
    #[error("{path}: {source}")]
    Initrd {
        path: PathBuf,
        #[source]
        source: boot_params::BootParamsError,
    },
    #[error(transparent)]
    BootParams(#[from] boot_params::BootParamsError),
    #[error(transparent)]
    Mptable(#[from] mptable::MptableError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    BootTables(#[from] regs::RegsError),
    #[error(transparent)]
    Cpuid(#[from] CpuidError),
    #[error("backend kvm failed to start: MSRs: {0}")]
    Msrs(#[from] msrs::MsrsError),
    /// A vCPU's registers, FPU or LAPIC (`step` names which).
    #[error("backend kvm failed to start: {step}: {source}")]
    VcpuState {
        step: &'static str,
        #[source]
        source: regs::RegsError,
    },
    #[error("I/O error on {path}: {source}")]
    ConsoleLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, source }
}

fn vcpu_state(step: &'static str) -> impl FnOnce(regs::RegsError) -> KvmError {
    move |source| KvmError::VcpuState { step, source }
}

/// The kvm backend. Performance mode pins vCPUs and asks for huge pages.
#[derive(Debug, Clone)]
pub struct KvmBackend {
    pub perf_mode: bool,
}

impl Default for KvmBackend {
    fn default() -> Self {
        KvmBackend { perf_mode: true }
    }
}

/// A VM ready to run: memory registered, kernel loaded, vCPUs configured.
pub struct Vm {
    _vm: VmFd,
    vcpus: Vec<VcpuFd>,
    uarts: Arc<Uarts>,
    pub kernel_format: &'static str,
    // These two last, so they are dropped (unmapped) after the VM fd is closed: KVM refers to
    // this memory until then.
    _console_page: Option<mmio_console::RegisterPage>,
    _ram: layout::GuestRam,
}

/// Checks the parts of `cfg` this backend cannot honour, before any work.
pub fn validate(cfg: &VmConfig) -> Result<(), VmError> {
    if cfg.topology.nodes > 1
        && u64::from(cfg.memory_mib)
            < u64::from(cfg.topology.nodes) * u64::from(layout::MIN_MEMORY_MIB)
    {
        return Err(VmError::Config(format!(
            "--memory-mib {} gives each of the {} NUMA nodes of {} less than {} MiB; raise --memory-mib",
            cfg.memory_mib,
            cfg.topology.nodes,
            cfg.topology,
            layout::MIN_MEMORY_MIB
        )));
    }
    if cfg.memory_mib < layout::MIN_MEMORY_MIB {
        return Err(VmError::Config(format!(
            "--memory-mib {} is too small; use at least {}",
            cfg.memory_mib,
            layout::MIN_MEMORY_MIB
        )));
    }
    mptable::build(&ApicLayout::new(cfg.topology)).map_err(|e| VmError::Config(e.to_string()))?;
    Ok(())
}

/// Builds the VM, one boot step after the other. `cfg` must have passed [`validate`]; `start`
/// is the instant the caller's timings count from.
pub fn build_vm(
    kvm: &Kvm,
    cfg: &VmConfig,
    perf_mode: bool,
    start: Instant,
) -> Result<Vm, KvmError> {
    let mut steps = StepTimes::new(start);
    let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
    let ram = create_memory(&vm, cfg.memory_mib, perf_mode)?;
    let mem = &ram.mem;
    steps.mark("vm+memory");

    create_irqchip_and_pit(&vm)?;

    // A bzImage is swapped for its uncompressed ELF (extracted once on the host and cached,
    // shared with the qemu backend), so the guest skips self-decompression; images that
    // cannot be extracted boot as given.
    let image = super::pvh::pvh_kernel(&cfg.kernel);
    steps.mark("elf lookup");
    let kernel = loader::load_kernel(mem, &image).map_err(|source| KvmError::Kernel {
        path: cfg.kernel.clone(),
        source,
    })?;
    steps.mark("kernel load");

    let initrd = boot_params::load_initrd(mem, &cfg.initramfs, cfg.memory_mib, &kernel).map_err(
        |source| KvmError::Initrd {
            path: cfg.initramfs.clone(),
            source,
        },
    )?;

    // The CPUs by APIC ID, the IOAPIC, the IRQ routing, the NUMA nodes: in the MP table for
    // kernels built without ACPI, in the ACPI tables for the others.
    let apic = ApicLayout::new(cfg.topology);
    mptable::write(mem, &apic)?;
    let rsdp = acpi::write(mem, &apic, cfg.memory_mib)?;

    // The kernel console's UART page (read-only to the guest), when KVM can map it so; the
    // command line names the console it gets.
    let console_page = mmio_console_page(kvm, &vm, mem.num_regions() as u32);
    let cmdline = command_line(cfg, console_page.is_some());
    boot_params::write_boot_params(mem, &kernel, initrd, &cmdline, cfg.memory_mib, rsdp)?;

    regs::write_boot_tables(mem)?;
    steps.mark("initrd+tables");

    let uarts = create_uarts(&vm, cfg, start)?;
    let vcpus = create_vcpus(kvm, &vm, &apic, kernel.entry)?;
    if let Some(vcpu0) = vcpus.first() {
        coalesce_console(kvm, &vm, vcpu0, &uarts, console_page.is_some());
    }
    steps.mark("vcpus");
    steps.report();
    Ok(Vm {
        _vm: vm,
        vcpus,
        uarts,
        kernel_format: kernel.format,
        _console_page: console_page,
        _ram: ram,
    })
}

/// Host-side setup time per boot step, printed on stderr when `KTSTR_KVM_TIMINGS` is set (for
/// profiling where a boot's time goes before the guest runs; see docs/benchmarks.md).
struct StepTimes {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl StepTimes {
    fn new(start: Instant) -> Self {
        StepTimes {
            last: start,
            steps: Vec::new(),
        }
    }
    fn mark(&mut self, what: &'static str) {
        let now = Instant::now();
        self.steps.push((what, now - self.last));
        self.last = now;
    }
    fn report(&self) {
        if std::env::var_os("KTSTR_KVM_TIMINGS").is_none() {
            return;
        }
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(w, d)| format!("{w} {:.0} ms", d.as_secs_f64() * 1000.0))
            .collect();
        eprintln!("ktstr kvm setup: {}", parts.join(", "));
    }
}

/// Guest memory, registered with KVM slot by slot.
fn create_memory(
    vm: &VmFd,
    memory_mib: u32,
    perf_mode: bool,
) -> Result<layout::GuestRam, KvmError> {
    let ram = layout::create_memory(memory_mib, perf_mode)?;
    register_memory(vm, &ram.mem)?;
    Ok(ram)
}

fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), KvmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|source| layout::MemoryError::HostAddress {
                start: region.start_addr().0,
                source,
            })?;
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which `Vm` keeps alive for as
        // long as the VM fd exists; slots do not overlap (distinct regions of one GuestMemoryMmap).
        unsafe { vm.set_user_memory_region(r) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// In-kernel LAPIC/IOAPIC/PIC and PIT: interrupts and timers never leave the kernel.
fn create_irqchip_and_pit(vm: &VmFd) -> Result<(), KvmError> {
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))
}

/// The vCPUs: CPUID, MSRs, LAPIC LINT wiring, FPU; the boot vCPU also gets the 64-bit entry
/// state at `entry`.
fn create_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    apic: &ApicLayout,
    entry: u64,
) -> Result<Vec<VcpuFd>, KvmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let mut vcpus = Vec::new();
    for i in 0..apic.topo.cpus() {
        let vcpu = vm
            .create_vcpu(u64::from(apic.apic_id(i)))
            .map_err(ioctl("KVM_CREATE_VCPU"))?;
        let table = cpuid::for_vcpu(&supported, apic, i, tsc_deadline)?;
        vcpu.set_cpuid2(&table).map_err(ioctl("KVM_SET_CPUID2"))?;
        msrs::setup_msrs(&vcpu)?;
        regs::setup_lint(&vcpu).map_err(vcpu_state("LAPIC LINT"))?;
        regs::setup_fpu(&vcpu).map_err(vcpu_state("FPU"))?;
        if i == 0 {
            regs::setup_boot_vcpu(&vcpu, entry).map_err(vcpu_state("boot vCPU"))?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

fn command_line(cfg: &VmConfig, mmio_console: bool) -> String {
    let ours: Vec<String> = KVM_CMDLINE.iter().map(|s| s.to_string()).collect();
    let mut items = super::cmdline::compose(&ours, &cfg.cmdline_extra);
    if mmio_console {
        items.retain(|i| !mmio_console::replaced(i));
        items.splice(0..0, mmio_console::cmdline());
    }
    items.join(" ")
}

/// The register page of [`mmio_console`] in memory slot `slot`, or None (the console then stays
/// on COM1's port UART) when it is turned off or KVM lacks read-only slots or coalesced MMIO.
fn mmio_console_page(kvm: &Kvm, vm: &VmFd, slot: u32) -> Option<mmio_console::RegisterPage> {
    if !mmio_console::wanted()
        || !kvm.check_extension(Cap::ReadonlyMem)
        || !kvm.check_extension(Cap::CoalescedMmio)
    {
        return None;
    }
    let page = mmio_console::RegisterPage::new().ok()?;
    page.register(vm, slot).ok()?;
    Some(page)
}

/// The UARTs, with irqfds into the in-kernel PIC/IOAPIC.
fn create_uarts(vm: &VmFd, cfg: &VmConfig, start: Instant) -> Result<Arc<Uarts>, KvmError> {
    let evt = || {
        EventFd::new(libc::EFD_NONBLOCK).map_err(|source| KvmError::Host {
            what: "eventfd",
            source,
        })
    };
    let (com1, com2) = (evt()?, evt()?);
    vm.register_irqfd(&com1, serial::COM1_IRQ)
        .map_err(ioctl("KVM_IRQFD"))?;
    vm.register_irqfd(&com2, serial::COM2_IRQ)
        .map_err(ioctl("KVM_IRQFD"))?;
    let mut console = match &cfg.console {
        ConsoleMode::Capture { log } => {
            let f = std::fs::File::create(log).map_err(|source| KvmError::ConsoleLog {
                path: log.clone(),
                source,
            })?;
            ConsoleSink::new(Some(f), false)
        }
        ConsoleMode::Interactive => ConsoleSink::new(None, true),
    };
    if std::env::var_os("KTSTR_KVM_TIMINGS").is_some() {
        console.milestones = Some(serial::Milestones::new(start));
    }
    Ok(Uarts::new(com1, com2, console, ResultChannel::new(start)))
}

/// Makes COM1's transmit register a coalesced PIO zone, and the MMIO console's page a
/// coalesced MMIO zone (see [`console_ring`]), when the host supports it; without them every
/// console byte exits, which is slower but the same output. `KTSTR_KVM_CONSOLE_EXITS=1` turns
/// both off (every console byte exits again), for telling a console-ring problem from another.
fn coalesce_console(kvm: &Kvm, vm: &VmFd, vcpu0: &VcpuFd, uarts: &Uarts, mmio_console: bool) {
    let pio = kvm.check_extension(Cap::CoalescedPio);
    if !(pio || mmio_console) || std::env::var_os("KTSTR_KVM_CONSOLE_EXITS").is_some() {
        return;
    }
    let Ok(ring) = console_ring::ConsoleRing::map(vcpu0) else {
        return;
    };
    // The ring is attached first: once a zone exists, bytes may land in it.
    uarts.attach_console_ring(ring);
    if pio {
        let _ = vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(serial::COM1_BASE)), 1);
    }
    if mmio_console {
        let _ = vm.register_coalesced_mmio(IoEventAddress::Mmio(mmio_console::BASE), 8);
    }
}

impl Backend for KvmBackend {
    fn describe(&self) -> String {
        if self.perf_mode {
            "kvm".into()
        } else {
            "kvm (no perf mode)".into()
        }
    }

    fn run(&self, cfg: &VmConfig) -> Result<VmRun, VmError> {
        let start = Instant::now();
        let kvm = Kvm::new().map_err(|e| VmError::MissingTool {
            tool: "/dev/kvm".into(),
            fix: format!(
                "cannot open it ({e}); load kvm-intel/kvm-amd and add yourself to the kvm group, or use --backend qemu"
            ),
        })?;
        let places = runtime::placement(
            cfg.topology.cpus(),
            &vcpu::allowed_cpus(),
            cfg.cpu_budget,
            self.perf_mode,
        )?;
        // A terminal goes raw for the whole run (restored when this returns, also on unwind);
        // a piped script is forwarded as it is.
        let raw_terminal = (cfg.console == ConsoleMode::Interactive)
            .then(terminal::RawTerminal::enter)
            .flatten();
        validate(cfg)?;
        let vm = build_vm(&kvm, cfg, self.perf_mode, start)?;
        if cfg.console == ConsoleMode::Interactive {
            terminal::forward_stdin(&vm.uarts, raw_terminal.is_some());
        }
        Ok(runtime::run(vm, places, cfg, start, self.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(topology: &str, memory_mib: u32) -> VmConfig {
        VmConfig {
            kernel: "/nonexistent/bzImage".into(),
            initramfs: "/nonexistent/initrd".into(),
            topology: topology.parse().unwrap(),
            memory_mib,
            cmdline_extra: Vec::new(),
            console: ConsoleMode::Interactive,
            timeout: Duration::from_secs(1),
            cpu_budget: None,
        }
    }

    /// Bad input is refused before any KVM work, naming the input and the fix.
    #[test]
    fn validate_names_the_bad_input() {
        let e = validate(&cfg("1n1l2c1t", 16)).unwrap_err().to_string();
        assert!(
            e.contains("--memory-mib 16") && e.contains("at least"),
            "{e}"
        );
        let e = validate(&cfg("4n1l1c1t", 128)).unwrap_err().to_string();
        assert!(
            e.contains("NUMA nodes") && e.contains("raise --memory-mib"),
            "{e}"
        );
        let e = validate(&cfg("1n64l3c1t", 4096)).unwrap_err().to_string();
        assert!(e.contains("APIC IDs"), "{e}");
        assert!(validate(&cfg("2n2l2c2t", 1024)).is_ok());
    }

    /// The MMIO console's items come first and take the port console's place; the rest of the
    /// line (the backend's items, the caller's `quiet`) stays as it is.
    #[test]
    fn the_mmio_console_replaces_the_port_console() {
        let mut c = cfg("1n1l2c1t", 256);
        c.cmdline_extra = vec!["quiet".into(), "x=1".into()];
        let port = command_line(&c, false);
        assert!(port.contains("console=ttyS0,115200"), "{port}");
        let mmio = command_line(&c, true);
        assert!(
            mmio.starts_with("console=uart8250,mmio,0xfe000000,115200 keep_bootcon "),
            "{mmio}"
        );
        assert!(
            !mmio.contains("ttyS0") && !mmio.contains("earlyprintk"),
            "{mmio}"
        );
        assert!(
            mmio.contains("pci=off") && mmio.ends_with("quiet x=1"),
            "{mmio}"
        );
    }
}
