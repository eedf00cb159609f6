//! The nested test harness: an L1 guest (Debian's cloud kernel under QEMU TCG with `-cpu max`,
//! which emulates SVM with nested paging) loads irqbypass/kvm/kvm-amd from the same package and
//! runs a ktstr binary, which boots an L2 kernel with the own `kvm` backend. It is how the VMM is
//! tested end to end (and benchmarked) on machines whose /dev/kvm cannot run real kernels.
//!
//! L1 is an ordinary ktstr VM: the guest agent runs a shell script (`Mode::Shell`) whose output
//! goes to the L1 console; the inner ktstr reports back through marker lines on that console
//! ([`RunRecord`] lines, [`JSON_PREFIX`] lines with a file's JSON), parsed from the console log.
//! L1's kernel also writes its own lines to COM3 ([`kernel_log`]); only those are watched for
//! L1's crashes, since the console also carries the L2 crashes the inner ktstr reports.

pub mod bench;
pub mod record;
pub mod settle;

pub use record::RunRecord;

use crate::debian;
use ktstr::initramfs::{self, InitramfsSpec};
use ktstr::topology::Topology;
use ktstr::vm::qemu::{Accel, QemuBackend};
use ktstr::vm::{Backend, ConsoleMode, VmConfig, VmError, VmRun};
use ktstr_guest::protocol::{CellSpec, Mode, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where things are inside L1.
pub const KTSTR_PATH: &str = "/nested/ktstr";
/// `ktstr-bench` (benchmarks only), next to [`KTSTR_PATH`], where `ktstr bench` looks for it.
pub const BENCH_PATH: &str = "/nested/ktstr-bench";
pub const L2_KERNEL_PATH: &str = "/nested/l2-kernel";
const MODULES_DIR: &str = "/nested/mods";
/// Marker for a JSON document the script emits (see [`emit_json`]).
pub const JSON_PREFIX: &str = "KTSTR-NESTED-JSON ";
/// kvm modules in load order; the vendor module that does not match the (emulated) CPU fails to
/// load, which is expected.
const MODULES: [&str; 4] = ["irqbypass", "kvm", "kvm-amd", "kvm-intel"];
/// L1's CPU: everything TCG emulates (SVM with nested paging included) but XSAVE. QEMU 7.2's TCG
/// does not honour the XSETBV intercept of its emulated SVM, so an L2's XSETBV changes XCR0
/// behind L1's KVM, which keeps reporting the old XCR0's XSAVE size in CPUID.0xD and loads its
/// own XCR0 again at the next VM entry: L2 kernels warn of an "XSAVE consistency problem" and
/// L2s under both VMMs triple-faulted now and then, likely from this (docs/benchmarks.md, "The
/// nested test bed's own failures"). Without XSAVE no guest level touches XCR0.
pub const L1_CPU: &str = "max,-xsave";

/// L1 zeroes memory as it frees it ([`L1Request::zero_freed_memory`]). Under TCG, writing to
/// pages a previous L2 has just used is slow (likely TCG dropping the code it translated from
/// them): without this, the next VM pays for it while it loads its kernel, under both backends.
/// With it, the previous VM pays as it exits, after its result. The cost moves; it does not go
/// away, and L1's own boot gets slower (docs/benchmarks.md, "The nested test bed's own failures").
pub const L1_INIT_ON_FREE: &str = "init_on_free=1";

/// QEMU firmware a `-kernel` boot reads (microvm: qboot; pc/q35: SeaBIOS + option ROMs).
const QEMU_FIRMWARE: [&str; 8] = [
    "/usr/share/qemu/bios-microvm.bin",
    "/usr/share/qemu/qboot.rom",
    "/usr/share/qemu/linuxboot_dma.bin",
    "/usr/share/qemu/linuxboot.bin",
    "/usr/share/qemu/kvmvapic.bin",
    "/usr/share/qemu/pvh.bin",
    "/usr/share/seabios/bios-256k.bin",
    "/usr/share/seabios/bios.bin",
];

#[derive(Debug, Error)]
pub enum NestedError {
    #[error("Debian cloud kernel for L1: {0}")]
    Debian(#[from] debian::DebianError),
    #[error("L1 initramfs: {0}")]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error("L1 VM: {0}")]
    Vm(#[from] VmError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NestedError {
    let what = what.into();
    move |source| NestedError::Io { what, source }
}

/// One L1 boot.
#[derive(Debug, Clone)]
pub struct L1Request {
    /// The ktstr binary to run inside L1 (`target/<profile>/ktstr`, or the current executable).
    pub ktstr_bin: PathBuf,
    /// The L2 kernel, at [`L2_KERNEL_PATH`] in L1; `None` = the L1 (Debian) kernel itself.
    pub l2_kernel: Option<PathBuf>,
    /// Extra (host, L1 path) files.
    pub files: Vec<(PathBuf, String)>,
    /// Pack qemu-system-x86_64 (+ libraries, firmware) into L1 for `qemu -accel kvm` runs.
    pub with_qemu: bool,
    /// Shell commands run in L1 after the kvm modules are loaded; `$KTSTR` and `$L2_KERNEL` are
    /// set. The script's exit status is the L1 result's exit code.
    pub script: String,
    pub timeout: Duration,
    pub console_log: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// [`L1_INIT_ON_FREE`]: for timing L2 boots (`bench vmm`), which then leave out a cost
    /// only TCG has; tests, which time nothing, boot L1 faster without it.
    pub zero_freed_memory: bool,
}

impl L1Request {
    pub fn new(ktstr_bin: PathBuf, script: String, console_log: PathBuf) -> Self {
        L1Request {
            ktstr_bin,
            l2_kernel: None,
            files: Vec::new(),
            with_qemu: false,
            script,
            timeout: Duration::from_secs(600),
            console_log,
            memory_mib: 2048,
            cpus: 2,
            zero_freed_memory: false,
        }
    }
}

/// L1's extra kernel command line. Its own boot messages are noise here and slow under TCG
/// (`quiet`); the inner output is not kernel output, so it still reaches the console.
fn l1_cmdline(req: &L1Request) -> Vec<String> {
    let mut c = ktstr::vm::cmdline::quiet();
    if req.zero_freed_memory {
        c.push(L1_INIT_ON_FREE.into());
    }
    c
}

/// What came back from L1.
#[derive(Debug)]
pub struct L1Outcome {
    pub run: VmRun,
    /// The whole L1 console.
    pub console: String,
    pub records: Vec<RunRecord>,
    /// Documents emitted with [`emit_json`], in order.
    pub json: Vec<serde_json::Value>,
    /// Exit status of the L1 script (from the agent's result), if it got that far.
    pub exit_code: Option<i32>,
}

/// A script line that prints the JSON file `path` as one marker line on the L1 console.
pub fn emit_json(path: &str) -> String {
    format!("echo \"{JSON_PREFIX}$(tr -d '\\n' < {path})\"")
}

/// A script line running one inner ktstr command (which must accept `--json FILE`) and emitting
/// `{"label": .., "exit": <status>, "result": <the JSON file or null>}` on the console.
///
/// The command's own output is printed after that line, not while it runs, so that the
/// output of one case reads as one block after its result.
pub fn case(label: &str, command: &str) -> String {
    format!(
        "rm -f /tmp/{label}.json; {command} --json /tmp/{label}.json > /tmp/{label}.out 2>&1; rc=$?; \
         r=$(tr -d '\\n' < /tmp/{label}.json 2>/dev/null); {}",
        report_case(label, "${r:-null}")
    )
}

/// Like [`case`] for a command that writes no JSON result (an interactive `ktstr shell`): its
/// stdin is `input`, a printf format without single quotes; the line's `result` is null.
pub fn piped_case(label: &str, input: &str, command: &str) -> String {
    assert!(
        !input.contains('\''),
        "piped_case input must not contain single quotes"
    );
    format!(
        "printf '{input}' | {command} > /tmp/{label}.out 2>&1; rc=$?; {}",
        report_case(label, "null")
    )
}

/// Like [`piped_case`], but the command runs on a terminal: util-linux `script` gives it a pty
/// (L1 must carry `/usr/bin/script`, see [`TERMINAL_FILES`]). `steps` are typed as a person
/// would: each input (a printf format without single quotes; CR is Enter on a terminal) once
/// its text has appeared in the output, or after 120 s.
pub fn terminal_case(label: &str, steps: &[(&str, &str)], command: &str) -> String {
    let mut typing = String::new();
    for (wait_for, input) in steps {
        assert!(
            !input.contains('\'') && !wait_for.contains('\''),
            "terminal_case steps must not contain single quotes"
        );
        // Stops waiting when the command has ended (e.g. its VM failed before the prompt).
        typing += &format!(
            "n=0; until grep -qF '{wait_for}' /tmp/{label}.out || [ $n -ge 240 ] || ! kill -0 $pid 2>/dev/null; \
             do sleep 0.5; n=$((n+1)); done; printf '{input}' >&3; "
        );
    }
    // The FIFO is open read-write on fd 3 until the command ends: `script` never sees EOF early,
    // nothing blocks on opening it, and typing after the command ended cannot raise SIGPIPE
    // (which would end the whole L1 script).
    format!(
        "rm -f /tmp/{label}.in /tmp/{label}.out; mkfifo /tmp/{label}.in; exec 3<> /tmp/{label}.in; \
         script --quiet --return --command \"{command}\" /dev/null < /tmp/{label}.in > /tmp/{label}.out 2>&1 3>&- & \
         pid=$!; {typing}wait $pid; rc=$?; exec 3>&-; {}",
        report_case(label, "null")
    )
}

/// Host files a [`terminal_case`] needs in L1 (util-linux `script`; its libraries come along).
pub const TERMINAL_FILES: [(&str, &str); 1] = [("/usr/bin/script", "/usr/bin/script")];

/// The end of a case line: the JSON line with `$rc` and `result` (a shell word), then the
/// command's saved output.
fn report_case(label: &str, result: &str) -> String {
    format!(
        "echo \"{JSON_PREFIX}{{\\\"label\\\":\\\"{label}\\\",\\\"exit\\\":$rc,\\\"result\\\":{result}}}\"; \
         cat /tmp/{label}.out\n"
    )
}

/// Every JSON document a console carries.
pub fn parse_json(console: &str) -> Vec<serde_json::Value> {
    console
        .lines()
        .filter_map(|l| {
            let at = l.find(JSON_PREFIX)?;
            serde_json::from_str(l[at + JSON_PREFIX.len()..].trim_end()).ok()
        })
        .collect()
}

/// Decompressed kvm modules of the Debian package, cached next to it.
fn modules(deb: &debian::DebianKernel) -> Result<Vec<(PathBuf, String)>, NestedError> {
    let dir = ktstr::paths::debian_dir()
        .join("nested-modules")
        .join(&deb.release);
    std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
    let mut out = Vec::new();
    for name in MODULES {
        let sub = if name == "irqbypass" {
            "kernel/virt/lib"
        } else {
            "kernel/arch/x86/kvm"
        };
        let xz = deb.modules_dir.join(sub).join(format!("{name}.ko.xz"));
        let ko = dir.join(format!("{name}.ko"));
        if !ko.exists() {
            let f = std::fs::File::open(&xz).map_err(io(xz.display().to_string()))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(f), &mut bytes)
                .map_err(io(format!("decompressing {}", xz.display())))?;
            let tmp = dir.join(format!(".{name}.ko.tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes).map_err(io(tmp.display().to_string()))?;
            std::fs::rename(&tmp, &ko).map_err(io(ko.display().to_string()))?;
        }
        out.push((ko, format!("{MODULES_DIR}/{name}.ko")));
    }
    Ok(out)
}

/// A debug-info-free copy of `bin` at `out` (a debug build is mostly DWARF, which L1 would have
/// to unpack under TCG); the original when `strip` is unavailable.
fn stripped(bin: &Path, out: &Path) -> PathBuf {
    let ok = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(out)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        out.to_path_buf()
    } else {
        bin.to_path_buf()
    }
}

fn qemu_files() -> Result<Vec<(PathBuf, String)>, NestedError> {
    let qemu = ktstr::vm::qemu::find_binary()?;
    let mut files = vec![(qemu, "/usr/bin/qemu-system-x86_64".to_string())];
    for fw in QEMU_FIRMWARE {
        let p = Path::new(fw);
        if p.exists() {
            // Resolve symlinks: the initramfs gets the bytes under the name QEMU looks for.
            let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            files.push((real, fw.to_string()));
        }
    }
    Ok(files)
}

/// The script L1's agent runs.
fn l1_script(user: &str) -> String {
    let mut s = String::from("export HOME=/tmp KTSTR_CACHE_DIR=/tmp/ktstr-cache\n");
    // devtmpfs has no /dev/fd; QEMU's chardevs open the inherited pipes through it.
    s.push_str("[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd\n");
    // Terminals (`script` in a terminal case) need devpts; the agent mounts only devtmpfs.
    s.push_str(
        "[ -e /dev/pts/ptmx ] || { mkdir -p /dev/pts && mount -t devpts devpts /dev/pts; }\n",
    );
    s.push_str(&format!(
        "export KTSTR={KTSTR_PATH} L2_KERNEL={L2_KERNEL_PATH}\n"
    ));
    for m in MODULES {
        s.push_str(&format!(
            "insmod {MODULES_DIR}/{m}.ko 2>/dev/null || echo \"nested: insmod {m} failed\"\n"
        ));
    }
    s.push_str("[ -e /dev/kvm ] || echo 'nested: no /dev/kvm in L1'\n");
    s.push_str(&ktstr::nested_l1::script_line(KTSTR_PATH));
    s.push_str(user);
    s
}

/// Boots L1 and runs `req.script` in it. An L1 that fails by itself (before its agent starts,
/// or of the TCG int3 fault) is booted once more here, for every caller: [`settle`] handles the
/// work an L1 boot left undone, and direct callers (tests/nested_crash_watch.rs) have no loop.
pub fn run_l1(req: &L1Request) -> Result<L1Outcome, NestedError> {
    let deb = debian::fetch(None)?;
    let tmp = tempfile::tempdir().map_err(io("temp dir"))?;
    let mut files = vec![(
        stripped(&req.ktstr_bin, &tmp.path().join("ktstr")),
        KTSTR_PATH.to_string(),
    )];
    files.push((
        req.l2_kernel.clone().unwrap_or_else(|| deb.vmlinuz.clone()),
        L2_KERNEL_PATH.to_string(),
    ));
    files.extend(modules(&deb)?);
    if req.with_qemu {
        files.extend(qemu_files()?);
    }
    files.extend(req.files.iter().cloned());
    let spec = InitramfsSpec::new(
        CellSpec {
            protocol_version: PROTOCOL_VERSION,
            mode: Mode::Shell {
                exec: Some(l1_script(&req.script)),
            },
        },
        files,
    );
    let initrd = initramfs::build(&spec)?;
    // Multi-threaded TCG: see `ktstr::nested_l1` for how L1's kvm.ko is kept from live-patching
    // its text.
    let backend = QemuBackend {
        cpu: Some(L1_CPU.to_string()),
        // L1's console carries the inner ktstr's output, L2 crash text included (a case's
        // JSON holds its console tail): only L1's own kernel lines, on their own port, may end it.
        kernel_log: Some(kernel_log(&req.console_log)),
        ..QemuBackend::new(ktstr::vm::select::qemu_machine()?, Accel::Tcg)?
    };
    let cfg = VmConfig {
        kernel: deb.vmlinuz.clone(),
        initramfs: initrd,
        topology: Topology {
            nodes: 1,
            llcs_per_node: 1,
            cores_per_llc: req.cpus,
            threads_per_core: 1,
        },
        memory_mib: req.memory_mib,
        cmdline_extra: l1_cmdline(req),
        console: ConsoleMode::Capture {
            log: req.console_log.clone(),
        },
        timeout: req.timeout,
        cpu_budget: None,
    };
    let mut run = backend.run(&cfg)?;
    let mut console = std::fs::read_to_string(&req.console_log).unwrap_or_default();
    let cancelled = ktstr::cancel::requested();
    if l1_failed(&run.end, run.to_agent.is_some(), &console, cancelled) {
        // `ktstr::nested_l1` removes the known cause in kvm.ko, but L1's own boot flips static
        // keys too (docs/benchmarks.md, "The nested test bed's own failures"). Such a run says
        // nothing about the VMM under test, so it is repeated once, visibly.
        eprintln!(
            "nested: L1 itself failed ({}; a QEMU TCG cross-modifying-code fault when it is \
             \"Oops: int3\"), not the system under test; console kept at {}.first, booting L1 \
             once more",
            run.crash_line
                .as_deref()
                .unwrap_or("its agent never started"),
            req.console_log.display()
        );
        for log in [req.console_log.clone(), kernel_log(&req.console_log)] {
            let mut first = log.clone().into_os_string();
            first.push(".first");
            let _ = std::fs::rename(&log, first);
        }
        run = backend.run(&cfg)?;
        console = std::fs::read_to_string(&req.console_log).unwrap_or_default();
    }
    let exit_code = run.messages.iter().find_map(|m| match m {
        ktstr_guest::protocol::GuestMessage::Result(r) => r.exit_code,
        _ => None,
    });
    Ok(L1Outcome {
        records: RunRecord::parse_all(&console),
        json: parse_json(&console),
        console,
        exit_code,
        run,
    })
}

/// Where L1's own kernel lines go (beside its console log): the evidence when L1 dies.
pub fn kernel_log(console_log: &Path) -> PathBuf {
    console_log.with_extension("kernel.log")
}

/// L1 itself failed (not the system under test): its agent never started, or its kernel died of
/// the TCG int3 fault. A cancelled run (Ctrl-C, SIGTERM) is not a failure. It ends as `Cancelled`,
/// or as `Shutdown` when QEMU, in the same process group, got the signal and exited first:
/// `cancelled` (the process-wide request) covers that case.
fn l1_failed(end: &ktstr::vm::VmEnd, agent_started: bool, console: &str, cancelled: bool) -> bool {
    !cancelled
        && *end != ktstr::vm::VmEnd::Cancelled
        && (!agent_started || l1_died_of_tcg_int3(console))
}

/// L1's own kernel (kvm modules loaded; an L2 kernel has none) oopsed on an `int3`.
fn l1_died_of_tcg_int3(console: &str) -> bool {
    console.contains("Oops: int3") && console.contains("Modules linked in: kvm_amd kvm irqbypass")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_l1_int3_oopses_count_as_the_tcg_fault() {
        let l1 = "[ 64.27] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n[ 64.29] Modules linked in: kvm_amd kvm irqbypass\n";
        assert!(l1_died_of_tcg_int3(l1));
        assert!(!l1_died_of_tcg_int3(
            "[ 8.6] Kernel panic - not syncing: sysrq triggered crash\n"
        ));
        assert!(!l1_died_of_tcg_int3(
            "[ 3.1] Oops: int3: 0000 [#1]\nModules linked in:\n"
        ));
    }

    #[test]
    fn only_timed_l1_boots_zero_freed_memory() {
        let mut req = L1Request::new("ktstr".into(), "true".into(), "l1.log".into());
        assert!(!l1_cmdline(&req).iter().any(|c| c == L1_INIT_ON_FREE));
        req.zero_freed_memory = true;
        let c = l1_cmdline(&req);
        assert!(c.iter().any(|c| c == L1_INIT_ON_FREE));
        assert!(c.iter().any(|c| c == "quiet"), "still quiet: {c:?}");
    }

    #[test]
    fn a_cancelled_l1_is_not_booted_again() {
        use ktstr::vm::VmEnd;
        assert!(l1_failed(&VmEnd::Shutdown, false, "", false));
        assert!(l1_failed(&VmEnd::TimedOut, false, "", false));
        assert!(!l1_failed(&VmEnd::Shutdown, true, "all fine", false));
        assert!(!l1_failed(&VmEnd::Cancelled, false, "", false));
        // SIGTERM reached QEMU first: the run ended as a shutdown, but it was still cancelled.
        assert!(!l1_failed(&VmEnd::Shutdown, false, "", true));
    }

    #[test]
    fn script_loads_modules_before_the_user_part() {
        let s = l1_script("echo hi");
        let kvm = s.find("kvm.ko").unwrap();
        let amd = s.find("kvm-amd.ko").unwrap();
        assert!(s.find("irqbypass.ko").unwrap() < kvm && kvm < amd);
        assert!(s.ends_with("echo hi"));
        let line = emit_json("/tmp/r.json");
        assert!(line.contains(JSON_PREFIX) && line.contains("/tmp/r.json"));
        let console = format!("junk\n{JSON_PREFIX}{{\"a\":1}}\r\n");
        assert_eq!(parse_json(&console), vec![serde_json::json!({"a": 1})]);
    }
}

#[cfg(test)]
mod case_tests {
    use super::*;

    /// Runs an L1 script line on the host with its `/tmp/` files in `dir`; returns stdout.
    fn run_in(dir: &Path, script: &str) -> String {
        let script = script.replace("/tmp/", &format!("{}/", dir.display()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn terminal_case_types_after_the_prompt_on_a_pty() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in for `ktstr shell`: it needs a terminal, shows a prompt, reads a line.
        let fake = "[ -t 0 ] || exit 9; printf \\\"p> \\\"; read a; echo got:\\$a; read b; echo then:\\$b; exit 3";
        let steps = [("p> ", "ok\\r"), ("got:ok", "more\\r")];
        let text = run_in(
            dir.path(),
            &terminal_case("t2", &steps, &format!("sh -c '{fake}'")),
        );
        let docs = parse_json(&text);
        assert_eq!(
            docs,
            vec![serde_json::json!({"label": "t2", "exit": 3, "result": null})],
            "{text}"
        );
        assert!(text.lines().any(|l| l.trim() == "got:ok"), "{text}");
        assert!(text.lines().any(|l| l.trim() == "then:more"), "{text}");
    }

    /// A command that ends before its prompt (an L2 that failed to boot) ends the case at once
    /// with its status, and the script goes on.
    #[test]
    fn terminal_case_survives_a_command_that_ends_early() {
        let dir = tempfile::tempdir().unwrap();
        let steps = [("never shown", "typed\\r"), ("nor this", "more\\r")];
        let started = std::time::Instant::now();
        let text = run_in(
            dir.path(),
            &format!(
                "{} echo AFTER",
                terminal_case("t3", &steps, "sh -c 'exit 7'")
            ),
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{text}"
        );
        assert_eq!(
            parse_json(&text),
            vec![serde_json::json!({"label": "t3", "exit": 7, "result": null})],
            "{text}"
        );
        assert!(text.lines().any(|l| l.trim() == "AFTER"), "{text}");
    }

    /// The emitted line is valid JSON once the shell has expanded it (checked with busybox sh).
    #[test]
    fn case_line_expands_to_json() {
        let dir = tempfile::tempdir().unwrap();
        let script = case("t1", "printf '{\\n\"x\": 2}' > \"$1\" #");
        // `--json FILE` lands in "$1"-less position; emulate with a function taking the flag.
        let script = format!(
            "f() {{ printf '{{\\n\"x\": 2}}' > \"$2\"; return 3; }}\n{}",
            script.replace("printf '{\\n\"x\": 2}' > \"$1\" #", "f")
        );
        let text = run_in(dir.path(), &script);
        let docs = parse_json(&text);
        assert_eq!(
            docs,
            vec![serde_json::json!({"label": "t1", "exit": 3, "result": {"x": 2}})],
            "{text}"
        );
    }
}
