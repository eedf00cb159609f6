//! The own KVM VMM backend (x86_64). [`build_vm`] reads top to bottom in boot order, one module
//! per step: memory [`layout`], kernel [`loader`], [`boot_params`] (initrd, command line, e820),
//! [`regs`] (page tables, GDT, long mode), [`cpuid`] (topology + KVM PV leaves), [`msrs`],
//! [`mptable`], [`serial`] (COM1 console, COM2 results) and the [`vcpu`] threads. [`probe`]
//! decides whether this host's /dev/kvm can run a stock kernel at all; [`terminal`] is the
//! user's terminal during `ktstr shell`.

pub mod acpi;
pub mod boot_params;
pub mod cmos;
pub mod console_ring;
pub mod cpuid;
pub mod layout;
pub mod loader;
pub mod mmio_console;
pub mod mptable;
pub mod msrs;
pub mod probe;
pub mod regs;
pub mod serial;
pub mod terminal;
pub mod vcpu;

use super::{Backend, ConsoleMode, VmConfig, VmEnd, VmError, VmRun};
use cpuid::ApicLayout;
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use serial::{ConsoleSink, ResultSink, Uarts};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Address KVM needs for its TSS (three pages) on Intel; just below the MMIO window's top.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Extra command line items for this VMM: there is no PCI bus to scan, no i8042 to probe.
const KVM_CMDLINE: [&str; 4] = ["pci=off", "i8042.noaux", "i8042.nomux", "i8042.dumbkbd"];

/// After the Result frame, how long the guest may take to reboot before the VMM stops it.
const RESULT_GRACE: Duration = Duration::from_secs(10);

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

fn cfg_err(what: &str, e: impl std::fmt::Display) -> VmError {
    VmError::Config(format!("{what}: {e}"))
}

fn kvm_err(what: &str, e: impl std::fmt::Display) -> VmError {
    VmError::Spawn {
        backend: "kvm".into(),
        reason: format!("{what}: {e}"),
    }
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
    mptable::build(&ApicLayout::new(cfg.topology)).map_err(VmError::Config)?;
    Ok(())
}

/// Builds the VM in boot order. `start` is the instant the caller's timings count from.
pub fn build_vm(kvm: &Kvm, cfg: &VmConfig, perf_mode: bool, start: Instant) -> Result<Vm, VmError> {
    validate(cfg)?;
    let mut steps = StepTimes::new(start);
    let vm = kvm.create_vm().map_err(|e| kvm_err("KVM_CREATE_VM", e))?;

    // 1. Guest memory, registered with KVM slot by slot.
    let ram = layout::create_memory(cfg.memory_mib, perf_mode).map_err(VmError::Config)?;
    let mem = &ram.mem;
    register_memory(&vm, mem)?;
    steps.mark("vm+memory");

    // In-kernel LAPIC/IOAPIC/PIC and PIT: interrupts and timers never leave the kernel.
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(|e| kvm_err("KVM_SET_TSS_ADDR", e))?;
    vm.create_irq_chip()
        .map_err(|e| kvm_err("KVM_CREATE_IRQCHIP", e))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(|e| kvm_err("KVM_CREATE_PIT2", e))?;

    // 2. Kernel image. A bzImage is swapped for its uncompressed ELF (extracted once on the host
    //    and cached, shared with the qemu backend), so the guest skips self-decompression;
    //    images that cannot be extracted boot as given.
    let image = super::pvh::pvh_kernel(&cfg.kernel);
    steps.mark("elf lookup");
    let kernel = loader::load_kernel(mem, &image).map_err(|reason| VmError::BadKernel {
        path: cfg.kernel.clone(),
        reason,
    })?;

    // 3. Initrd, command line, zero page with e820.
    steps.mark("kernel load");
    let initrd = boot_params::load_initrd(mem, &cfg.initramfs, cfg.memory_mib, &kernel)
        .map_err(|e| cfg_err(&cfg.initramfs.display().to_string(), e))?;
    // 7. ACPI (MADT, SRAT/SLIT) and the MP table for kernels built without ACPI: the CPUs by
    //    APIC ID, the IOAPIC, the IRQ routing, the NUMA nodes.
    let apic = ApicLayout::new(cfg.topology);
    mptable::write(mem, &apic).map_err(VmError::Config)?;
    let rsdp = acpi::write(mem, &apic, cfg.memory_mib).map_err(VmError::Config)?;
    // 8a. The kernel console's UART page (read-only to the guest), when KVM can map it so.
    let console_page = mmio_console_page(kvm, &vm, mem.num_regions() as u32);
    let cmdline = command_line(cfg, console_page.is_some());
    boot_params::write_boot_params(mem, &kernel, initrd, &cmdline, cfg.memory_mib, rsdp)
        .map_err(VmError::Config)?;

    // 4. Page tables and GDT for the 64-bit entry.
    regs::write_boot_tables(mem).map_err(VmError::Config)?;

    // 8. UARTs with irqfds into the in-kernel PIC/IOAPIC.
    steps.mark("initrd+tables");
    let uarts = create_uarts(&vm, cfg, start)?;

    // 5, 6, 4. vCPUs: CPUID, MSRs, LAPIC LINT wiring, FPU; the boot vCPU gets the entry state.
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| kvm_err("KVM_GET_SUPPORTED_CPUID", e))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let mut vcpus = Vec::new();
    for i in 0..cfg.topology.cpus() {
        let vcpu = vm
            .create_vcpu(u64::from(apic.apic_id(i)))
            .map_err(|e| kvm_err("KVM_CREATE_VCPU", e))?;
        let table = cpuid::for_vcpu(&supported, &apic, i, tsc_deadline).map_err(VmError::Config)?;
        vcpu.set_cpuid2(&table)
            .map_err(|e| kvm_err("KVM_SET_CPUID2", e))?;
        msrs::setup_msrs(&vcpu).map_err(|e| kvm_err("MSRs", e))?;
        setup_lint(&vcpu)?;
        regs::setup_fpu(&vcpu).map_err(|e| kvm_err("FPU", e))?;
        if i == 0 {
            regs::setup_boot_vcpu(&vcpu, kernel.entry).map_err(|e| kvm_err("boot vCPU", e))?;
        }
        vcpus.push(vcpu);
    }
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

fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| kvm_err("guest memory", e))?;
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which `Vm` keeps alive for as
        // long as the VM fd exists; slots do not overlap (distinct regions of one GuestMemoryMmap).
        unsafe { vm.set_user_memory_region(r) }
            .map_err(|e| kvm_err("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

fn create_uarts(vm: &VmFd, cfg: &VmConfig, start: Instant) -> Result<Arc<Uarts>, VmError> {
    let evt = || EventFd::new(libc::EFD_NONBLOCK).map_err(|e| kvm_err("eventfd", e));
    let (com1, com2) = (evt()?, evt()?);
    vm.register_irqfd(&com1, serial::COM1_IRQ)
        .map_err(|e| kvm_err("KVM_IRQFD", e))?;
    vm.register_irqfd(&com2, serial::COM2_IRQ)
        .map_err(|e| kvm_err("KVM_IRQFD", e))?;
    let mut console = match &cfg.console {
        ConsoleMode::Capture { log } => {
            let f = std::fs::File::create(log).map_err(|source| VmError::Io {
                what: log.display().to_string(),
                source,
            })?;
            ConsoleSink::new(Some(f), false)
        }
        ConsoleMode::Interactive => ConsoleSink::new(None, true),
    };
    if std::env::var_os("KTSTR_KVM_TIMINGS").is_some() {
        console.milestones = Some(serial::Milestones::new(start));
    }
    Ok(Uarts::new(com1, com2, console, ResultSink::new(start)))
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

/// LAPIC LVT0 = ExtINT (the PIC's output) and LVT1 = NMI, as a BIOS leaves them.
fn setup_lint(vcpu: &VcpuFd) -> Result<(), VmError> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const APIC_MODE_NMI: u32 = 0x4;
    const APIC_MODE_EXTINT: u32 = 0x7;
    let mut lapic = vcpu.get_lapic().map_err(|e| kvm_err("KVM_GET_LAPIC", e))?;
    for (off, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[off + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            lapic.regs[off + i] = b as _;
        }
    }
    vcpu.set_lapic(&lapic)
        .map_err(|e| kvm_err("KVM_SET_LAPIC", e))
}

/// Round-robin start offset for pinning, so parallel VMs of one process spread over the host.
static NEXT_PIN: AtomicUsize = AtomicUsize::new(0);

/// Host CPUs for each vCPU: confined to the first `budget` allowed CPUs when a budget is set;
/// in performance mode each vCPU gets its own CPU when there are enough.
pub fn placement(
    vcpus: u32,
    allowed: &[usize],
    budget: Option<u32>,
    perf_mode: bool,
) -> Result<Vec<Vec<usize>>, VmError> {
    let vcpus = vcpus as usize;
    let pool: Vec<usize> = match budget {
        Some(0) => return Err(VmError::Config("--cpu-budget 0: use at least 1".into())),
        Some(k) if k as usize > allowed.len() => {
            return Err(VmError::Config(format!(
                "--cpu-budget {k} exceeds the {} host CPUs this process may use; use at most {}",
                allowed.len(),
                allowed.len()
            )));
        }
        Some(k) => allowed[..k as usize].to_vec(),
        None => allowed.to_vec(),
    };
    if perf_mode && vcpus <= pool.len() && !pool.is_empty() {
        let base = if budget.is_some() {
            0
        } else {
            NEXT_PIN.fetch_add(vcpus, Ordering::Relaxed)
        };
        return Ok((0..vcpus)
            .map(|i| vec![pool[(base + i) % pool.len()]])
            .collect());
    }
    let shared = if budget.is_some() { pool } else { Vec::new() };
    Ok(vec![shared; vcpus])
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
        let places = placement(
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
        let vm = build_vm(&kvm, cfg, self.perf_mode, start)?;
        if cfg.console == ConsoleMode::Interactive {
            forward_stdin(&vm.uarts, raw_terminal.is_some());
        }
        let shared = Arc::new(vcpu::Shared {
            stop: AtomicBool::new(false),
            uarts: vm.uarts.clone(),
            cmos: cmos::Cmos::default(),
            pm: acpi::Pm::default(),
        });
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut end = None;
        let mut fault = None;
        let mut shutdown_why = None;
        for (i, (fd, cpus)) in vm.vcpus.into_iter().zip(places).enumerate() {
            match vcpu::spawn(i as u32, fd, shared.clone(), cpus, tx.clone()) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    fault = Some(e);
                    end = Some(VmEnd::Shutdown);
                    break;
                }
            }
        }
        let deadline = start + cfg.timeout;
        let mut result_seen: Option<Instant> = None;
        while end.is_none() {
            // A guest that stops exiting (idle, hung) still has its last console bytes shown.
            vm.uarts.drain_console_ring();
            // The agent reboots right after its Result; a guest that hangs instead still ends
            // with its result after a grace period, not as a timeout.
            if result_seen.is_none() && serial::lock(&vm.uarts.com2).writer().to_result.is_some() {
                result_seen = Some(Instant::now());
            }
            if result_seen.is_some_and(|t| t.elapsed() > RESULT_GRACE) {
                end = Some(VmEnd::Shutdown);
                break;
            }
            if crate::cancel::requested() {
                end = Some(VmEnd::Cancelled);
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                end = Some(VmEnd::TimedOut);
                break;
            }
            // 20 ms: also the longest a console byte waits in the ring when nothing else exits.
            match rx.recv_timeout(left.min(Duration::from_millis(20))) {
                Ok((_, vcpu::VcpuStop::Requested)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok((_, vcpu::VcpuStop::GuestShutdown(why))) => {
                    shutdown_why = Some(why);
                    end = Some(VmEnd::Shutdown);
                }
                Ok((i, vcpu::VcpuStop::Fault(f))) => {
                    fault = Some(format!("vCPU {i}: {f}"));
                    end = Some(VmEnd::Shutdown);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => end = Some(VmEnd::Shutdown),
            }
        }
        vcpu::stop_all(&shared, threads);
        let wall = start.elapsed();
        vm.uarts.drain_console_ring();

        let (console_tail, mut crash_line) = {
            let mut c = serial::lock(&vm.uarts.com1);
            c.writer_mut().finish();
            if let Some(m) = &c.writer().milestones {
                eprintln!("ktstr kvm console: {}", m.report());
            }
            let evidence = &c.writer().evidence;
            (
                evidence.tail(),
                evidence.crash().map(|(_, line)| line.clone()),
            )
        };
        if let Some(f) = fault {
            crash_line.get_or_insert(format!("kvm: {f}"));
        }
        let r = serial::lock(&vm.uarts.com2);
        let results = r.writer();
        // A guest that resets itself before its result (no panic on the console) says how.
        if let (None, Some(why)) = (results.to_result, shutdown_why) {
            crash_line.get_or_insert(format!(
                "kvm: the guest ended the VM ({why}) before its result"
            ));
        }
        Ok(VmRun {
            end: end.unwrap_or(VmEnd::Shutdown),
            messages: results.messages.clone(),
            frame_errors: results.frame_errors.clone(),
            console_tail,
            console_log: match &cfg.console {
                ConsoleMode::Capture { log } => Some(log.clone()),
                ConsoleMode::Interactive => None,
            },
            crash_line,
            to_agent: results.to_agent,
            to_result: results.to_result,
            wall,
            backend: self.describe(),
        })
    }
}

/// Interactive console: terminal input goes to COM1 once the guest agent has started (its
/// first frame on COM2; see [`super::wait_for_agent`], e.g. for a script piped into `ktstr
/// shell`). From a terminal, Ctrl-A x ends the VM ([`terminal::EscapeFilter`]). The thread ends
/// with the process (a blocking stdin read cannot be interrupted portably); it holds the UARTs
/// only weakly.
fn forward_stdin(uarts: &Arc<Uarts>, from_terminal: bool) {
    let weak = Arc::downgrade(uarts);
    let _ = std::thread::Builder::new()
        .name("kvm-stdin".into())
        .spawn(move || {
            use std::io::Read;
            let started = |u: &Uarts| serial::lock(&u.com2).writer().to_agent.is_some();
            if !super::wait_for_agent(&weak, started) {
                return;
            }
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            let mut escape = terminal::EscapeFilter::default();
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                let input = if from_terminal {
                    let f = escape.feed(&buf[..n]);
                    if f.quit {
                        crate::cancel::request();
                    }
                    f.to_guest
                } else {
                    buf[..n].to_vec()
                };
                let mut sent = 0;
                while sent < input.len() {
                    // Upgraded per attempt: a guest that stops reading must not pin the VM.
                    let Some(uarts) = weak.upgrade() else { return };
                    sent += uarts.console_input(&input[sent..]);
                    drop(uarts);
                    if sent < input.len() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        });
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

    #[test]
    fn placement_honours_budget_and_perf_mode() {
        let allowed = [0, 1, 2, 3];
        let p = placement(8, &allowed, Some(2), true).unwrap();
        assert!(p.iter().all(|c| c == &vec![0, 1]));
        let p = placement(2, &allowed, Some(2), true).unwrap();
        assert_eq!(p, vec![vec![0], vec![1]]);
        let p = placement(2, &allowed, None, false).unwrap();
        assert!(p.iter().all(Vec::is_empty));
        assert!(placement(2, &allowed, Some(5), true).is_err());
        assert!(placement(2, &allowed, Some(0), true).is_err());
    }
}
