//! Is this host's /dev/kvm able to run a stock kernel? Opening it is not enough: software KVMs
//! (e.g. kvm-pvm) fail with "emulation failure" on instructions every distribution kernel
//! executes early. The probe runs a tiny 64-bit guest that executes exactly those —
//! xsetbv/xsave/xrstor, int3 through an IDT gate, lock cmpxchg16b, a VEX-encoded instruction
//! (BMI1 `andn`, when the CPU has BMI1) — reporting each stage on an I/O port, and passes only
//! if the guest reaches the last stage. A real KVM runs it in a blink, so it can run once per
//! process before the backend is chosen.
//!
//! Why `andn` and not an AVX op: what software KVMs fail on is decoding the VEX prefix, which
//! any VEX instruction exercises; AVX additionally needs AVX state in XCR0, which QEMU 7.2 TCG's
//! emulated SVM (the nested test environment) does not keep for an L2 guest: it ignores the XSETBV
//! intercept, so L1's KVM never learns the guest's XCR0 (see `ktstr_testbed::nested::L1_CPU`).

use super::boot::regs::{self, RegsError};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuExit};
use std::sync::mpsc;
use std::time::Duration;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Assembled from (GNU as, intel syntax, .code64; loaded at [`CODE`]):
/// ```text
///     mov dx, 0x510; mov al, 1; out dx, al
///     mov eax, 1; xor ecx, ecx; cpuid; bt ecx, 26; jnc 2f         ; no XSAVE: nothing to try
///     mov eax, 0xd; xor ecx, ecx; cpuid; and eax, 7; mov esi, eax   ; XCR0 = x87|SSE|AVX as supported
///     xor edx, edx; xor ecx, ecx; xsetbv
///     mov dx, 0x510; mov al, 2; out dx, al
///     mov eax, esi; xor edx, edx; xsave [0x3000]; xrstor [0x3000]
/// 2:  mov dx, 0x510; mov al, 3; out dx, al
///     int3                                          ; IDT vector 3 -> handler: iretq
///     mov dx, 0x510; mov al, 4; out dx, al
///     xor eax, eax; xor edx, edx; xor ebx, ebx; xor ecx, ecx; lock cmpxchg16b [0x3400]
///     mov dx, 0x510; mov al, 5; out dx, al
///     mov eax, 7; xor ecx, ecx; cpuid; test ebx, 8; jz 1f   ; BMI1?
///     andn eax, ebx, ecx                                     ; VEX-encoded
/// 1:  mov dx, 0x510; mov al, 0xff; out dx, al; hlt
/// handler: iretq                                    ; at CODE + 0x8c
/// ```
///
/// A CPU without XSAVE skips stages 1-2: a stock kernel then does not use XSAVE either. (The
/// nested test bed's L1 hides XSAVE, see `ktstr_testbed::nested::L1_CPU`.)
const PROBE_CODE: [u8; 142] = [
    0x66, 0xba, 0x10, 0x05, 0xb0, 0x01, 0xee, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xc9, 0x0f, 0xa2,
    0x0f, 0xba, 0xe1, 0x1a, 0x73, 0x30, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x31, 0xc9, 0x0f, 0xa2, 0x83,
    0xe0, 0x07, 0x89, 0xc6, 0x31, 0xd2, 0x31, 0xc9, 0x0f, 0x01, 0xd1, 0x66, 0xba, 0x10, 0x05, 0xb0,
    0x02, 0xee, 0x89, 0xf0, 0x31, 0xd2, 0x0f, 0xae, 0x24, 0x25, 0x00, 0x30, 0x00, 0x00, 0x0f, 0xae,
    0x2c, 0x25, 0x00, 0x30, 0x00, 0x00, 0x66, 0xba, 0x10, 0x05, 0xb0, 0x03, 0xee, 0xcc, 0x66, 0xba,
    0x10, 0x05, 0xb0, 0x04, 0xee, 0x31, 0xc0, 0x31, 0xd2, 0x31, 0xdb, 0x31, 0xc9, 0xf0, 0x48, 0x0f,
    0xc7, 0x0c, 0x25, 0x00, 0x34, 0x00, 0x00, 0x66, 0xba, 0x10, 0x05, 0xb0, 0x05, 0xee, 0xb8, 0x07,
    0x00, 0x00, 0x00, 0x31, 0xc9, 0x0f, 0xa2, 0xf7, 0xc3, 0x08, 0x00, 0x00, 0x00, 0x74, 0x05, 0xc4,
    0xe2, 0x60, 0xf2, 0xc1, 0x66, 0xba, 0x10, 0x05, 0xb0, 0xff, 0xee, 0xf4, 0x48, 0xcf,
];
const CODE: u64 = 0x1000;
const HANDLER: u64 = CODE + 0x8c;
const IDT: u64 = 0x2000;
const STAGE_PORT: u16 = 0x510;
const DONE: u8 = 0xff;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// The whole probe must finish within this (a real KVM needs milliseconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn stage_name(stage: u8) -> &'static str {
    match stage {
        0 => "entering 64-bit code",
        1 => "xsetbv",
        2 => "xsave/xrstor",
        3 => "int3",
        4 => "lock cmpxchg16b",
        5 => "VEX-encoded andn",
        _ => "unknown stage",
    }
}

/// Why the probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// /dev/kvm is missing or cannot be opened.
    #[error("/dev/kvm cannot be opened: {0}")]
    NoDevice(#[source] kvm_ioctls::Error),
    /// The probe VM could not be set up (an ioctl failed before the guest ran).
    #[error("probe VM setup failed: {0}")]
    Setup(#[source] ProbeSetupError),
    /// The guest ran and died (emulation failure, unexpected exit, hang).
    #[error(transparent)]
    Guest(ProbeGuestError),
}

/// Why the probe VM could not be set up.
#[derive(Debug, Error)]
pub enum ProbeSetupError {
    #[error("cannot start the probe thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("probe memory: {0}")]
    Memory(#[source] vm_memory::mmap::FromRangesError),
    #[error("probe memory: {0}")]
    Write(#[source] vm_memory::GuestMemoryError),
    #[error(transparent)]
    Regs(#[from] RegsError),
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ProbeSetupError {
    move |source| ProbeSetupError::Ioctl { what, source }
}

/// How the probe guest failed, with the stage it was at.
#[derive(Debug, Error)]
pub enum ProbeGuestError {
    #[error("the probe guest failed at {stage} (KVM exit {exit})")]
    FailedAt { stage: &'static str, exit: String },
    #[error("KVM_RUN failed during {stage}: {source}")]
    Run {
        stage: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("guest looped at {stage}")]
    Looped { stage: &'static str },
    #[error("the probe guest did not finish within {0:?}")]
    Timeout(Duration),
}

/// Ok(()) if the probe guest ran to the end.
pub fn probe() -> Result<(), ProbeError> {
    let kvm = Kvm::new().map_err(ProbeError::NoDevice)?;
    let (tx, rx) = mpsc::channel();
    // The guest runs on its own thread so a KVM that hangs cannot hang us; on timeout the
    // thread is abandoned (it owns only the probe VM).
    std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let _ = tx.send(run_probe(&kvm));
        })
        .map_err(|e| ProbeError::Setup(ProbeSetupError::Thread(e)))?;
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Guest(ProbeGuestError::Timeout(PROBE_TIMEOUT))),
    }
}

fn run_probe(kvm: &Kvm) -> Result<(), ProbeError> {
    let vcpu = setup(kvm).map_err(ProbeError::Setup)?;
    run_guest(vcpu).map_err(ProbeError::Guest)
}

/// The probe VM, kept alive with its vCPU.
struct ProbeVm {
    vcpu: kvm_ioctls::VcpuFd,
    _vm: kvm_ioctls::VmFd,
    _mem: GuestMemoryMmap,
}

fn setup(kvm: &Kvm) -> Result<ProbeVm, ProbeSetupError> {
    let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)])
        .map_err(ProbeSetupError::Memory)?;
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(ProbeSetupError::Write)?;
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: 2 << 20,
        userspace_addr: host as u64,
    };
    // SAFETY: `mem` is a live 2 MiB mapping; it moves into `ProbeVm` together with `vm` and the
    // vCPU, so it stays mapped for as long as the guest can run.
    unsafe { vm.set_user_memory_region(region) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    regs::write_boot_tables(&mem)?;
    mem.write_slice(&PROBE_CODE, GuestAddress(CODE))
        .map_err(ProbeSetupError::Write)?;
    // 64-bit interrupt gate for vector 3: offset split 16/16/32, selector 0x08, type 0x8e.
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(HANDLER as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&8u16.to_le_bytes());
    gate[5] = 0x8e;
    gate[6..8].copy_from_slice(&((HANDLER >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((HANDLER >> 32) as u32).to_le_bytes());
    mem.write_slice(&gate, GuestAddress(IDT + 3 * 16))
        .map_err(ProbeSetupError::Write)?;

    let vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("KVM_GET_SUPPORTED_CPUID"))?;
    vcpu.set_cpuid2(&cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
    regs::setup_fpu(&vcpu)?;
    regs::setup_boot_vcpu(&vcpu, CODE)?;
    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    sregs.cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
    // KVM refuses CR4.OSXSAVE for a guest whose CPUID has no XSAVE.
    if has_xsave(cpuid.as_slice()) {
        sregs.cr4 |= CR4_OSXSAVE;
    }
    sregs.idt.base = IDT;
    sregs.idt.limit = 16 * 4 - 1;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    Ok(ProbeVm {
        vcpu,
        _vm: vm,
        _mem: mem,
    })
}

/// CPUID.1:ECX.XSAVE[bit 26] in a KVM CPUID table.
fn has_xsave(entries: &[kvm_bindings::kvm_cpuid_entry2]) -> bool {
    entries
        .iter()
        .any(|e| e.function == 1 && e.ecx & (1 << 26) != 0)
}

fn run_guest(mut p: ProbeVm) -> Result<(), ProbeGuestError> {
    let vcpu = &mut p.vcpu;
    let mut stage = 0u8;
    for _ in 0..64 {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(STAGE_PORT, data)) => {
                stage = data.first().copied().unwrap_or(0);
                if stage == DONE {
                    return Ok(());
                }
            }
            Ok(other) => {
                return Err(ProbeGuestError::FailedAt {
                    stage: stage_name(stage),
                    exit: format!("{other:?}"),
                });
            }
            Err(e) if e.errno() == libc::EINTR => {}
            Err(source) => {
                return Err(ProbeGuestError::Run {
                    stage: stage_name(stage),
                    source,
                });
            }
        }
    }
    Err(ProbeGuestError::Looped {
        stage: stage_name(stage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever it runs, the probe finishes in bounded time, and a failure says which step
    /// failed (on a software KVM such as kvm-pvm: one of the instructions; without KVM: the
    /// device). On hardware KVM it passes.
    #[test]
    fn probe_finishes_with_a_named_verdict() {
        let t = std::time::Instant::now();
        let r = probe();
        assert!(t.elapsed() < PROBE_TIMEOUT + Duration::from_secs(1));
        eprintln!("probe verdict: {r:?}");
        if let Err(ProbeError::Guest(g)) = &r {
            assert!(
                matches!(
                    g,
                    ProbeGuestError::FailedAt { .. } | ProbeGuestError::Timeout(_)
                ),
                "{g}"
            );
            let msg = g.to_string();
            assert!(
                msg.contains("failed at") || msg.contains("did not finish"),
                "{msg}"
            );
        }
    }

    /// The jump over the XSAVE stages lands on stage 3's `mov dx, 0x510`, and the IDT gate
    /// points at the `iretq`: the two offsets the hand-assembled code depends on.
    #[test]
    fn probe_code_offsets_match_the_listing() {
        let skip_to = 0x16 + PROBE_CODE[0x15] as usize;
        assert_eq!(&PROBE_CODE[0x14..0x15], &[0x73], "jnc");
        assert_eq!(
            &PROBE_CODE[skip_to..skip_to + 6],
            &[0x66, 0xba, 0x10, 0x05, 0xb0, 0x03]
        );
        let h = (HANDLER - CODE) as usize;
        assert_eq!(&PROBE_CODE[h..], &[0x48, 0xcf], "iretq at the handler");
    }

    #[test]
    fn xsave_is_read_from_leaf_1_ecx() {
        let leaf = |function, ecx| kvm_bindings::kvm_cpuid_entry2 {
            function,
            ecx,
            ..Default::default()
        };
        assert!(has_xsave(&[leaf(0, 0), leaf(1, 1 << 26)]));
        assert!(!has_xsave(&[leaf(1, !(1 << 26)), leaf(7, 1 << 26)]));
    }
}
