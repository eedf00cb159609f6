//! The QEMU backend: `qemu-system-x86_64` with `-accel kvm` where KVM can run a kernel, else
//! `-accel tcg -cpu max`.
//!
//! Serial layout (same for every machine type): COM1 (0x3f8) is the kernel console, COM2 (0x2f8)
//! carries the agent's frames. In capture mode each port is a pipe inherited by QEMU (opened as
//! `/dev/fd/N` by a `file` chardev); a thread per pipe consumes it as bytes arrive: the console
//! thread feeds [`Console`] (log, tail, crash lines), the result thread feeds the
//! [`ResultChannel`] (bounded frame decoding, host times of `AgentStarted` and `Result`). A third thread waits for QEMU, so the
//! main loop sleeps on one channel and reacts at once to exit, frames, crashes and the deadline.
//!
//! No QEMU outlives its cell: the child gets PR_SET_PDEATHSIG(SIGKILL) (ktstr dying kills it), a
//! guard kills it when `run` unwinds, and the watchdog / Ctrl-C paths kill and reap it.

use super::console::{Console, CrashKind};
use super::result_channel::{self, ResultChannel};
use super::{Backend, ConsoleMode, VmConfig, VmEnd, VmError, VmRun, cmdline};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";
pub const INSTALL_FIX: &str = "apt-get install qemu-system-x86";
/// After a kernel crash line: time for the stack trace and panic reboot before QEMU is killed.
const CRASH_GRACE: Duration = Duration::from_secs(3);
/// After the Result frame: the agent syncs and reboots; past this QEMU is killed (result kept).
const RESULT_GRACE: Duration = Duration::from_secs(10);
/// How often the main loop looks at the Ctrl-C flag while nothing else happens.
const CANCEL_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    Microvm,
    Q35,
    Pc,
}

impl Machine {
    pub const ALL: [Machine; 3] = [Machine::Microvm, Machine::Q35, Machine::Pc];

    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }

    pub fn parse(s: &str) -> Option<Machine> {
        Machine::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The `-M` value. microvm under TCG needs the legacy PIT/PIC/RTC (no in-kernel timers) and
    /// ACPI for the MADT (Debian kernels have no MP-table parsing).
    fn arg(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm,pit=on,pic=on,rtc=on,acpi=on",
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

#[derive(Debug, Clone)]
pub struct QemuBackend {
    pub binary: PathBuf,
    pub machine: Machine,
    pub accel: Accel,
    /// Boot a bzImage's kernel as an ELF through its PVH entry, decompressed once on the host
    /// (see `kernel::image::extract_pvh_vmlinux`); `false` boots the bzImage as given.
    pub pvh: bool,
    /// `-cpu` model; `None`: `max` under TCG, `host` under KVM.
    pub cpu: Option<String>,
    /// A second copy of the guest kernel's own messages, on COM3 (an `earlycon` kept for the
    /// whole boot), logged to this file. When set, crash lines are watched there, not on COM1:
    /// for a guest whose console also carries another kernel's text (the nested harness's L1
    /// prints its L2s' consoles), so that only the guest's own crash ends it.
    pub kernel_log: Option<PathBuf>,
}

/// COM3, the port of [`QemuBackend::kernel_log`].
const KERNEL_LOG_PORT: &str = "0x3e8";

/// `KTSTR_QEMU` or `qemu-system-x86_64` on PATH.
pub fn find_binary() -> Result<PathBuf, VmError> {
    if let Some(p) = std::env::var_os("KTSTR_QEMU") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(VmError::MissingTool {
            tool: format!("KTSTR_QEMU={}", p.display()),
            fix: "point KTSTR_QEMU at a qemu-system-x86_64 binary or unset it".into(),
        });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
        .ok_or_else(|| VmError::MissingTool {
            tool: QEMU.into(),
            fix: INSTALL_FIX.into(),
        })
}

impl QemuBackend {
    pub fn new(machine: Machine, accel: Accel) -> Result<Self, VmError> {
        Ok(QemuBackend {
            binary: find_binary()?,
            machine,
            accel,
            pvh: true,
            cpu: None,
            kernel_log: None,
        })
    }

    /// The machine type `cfg` actually runs on: microvm has no SRAT (its ACPI tables describe
    /// CPUs, not NUMA), so a topology with more than one node falls back to q35.
    pub fn machine_for(&self, cfg: &VmConfig) -> Machine {
        if self.machine == Machine::Microvm && cfg.topology.nodes > 1 {
            Machine::Q35
        } else {
            self.machine
        }
    }

    fn describe_for(&self, machine: Machine) -> String {
        let accel = match self.accel {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        };
        let format = if self.pvh { "" } else { ",bzimage" };
        format!("qemu-{accel}/{}{format}", machine.name())
    }

    /// QEMU arguments for `cfg`; `con`/`res` are the chardev paths of COM1/COM2 in capture mode,
    /// `kmsg` that of COM3 when [`Self::kernel_log`] is set.
    pub fn args(&self, cfg: &VmConfig, con: &str, res: &str, kmsg: Option<&str>) -> Vec<String> {
        self.args_with(cfg, con, res, kmsg, None)
    }

    /// As [`Self::args`]; `piped_console` is the socket fd an interactive console uses when
    /// ktstr, not QEMU, feeds the guest's input (stdin is not a terminal).
    fn args_with(
        &self,
        cfg: &VmConfig,
        con: &str,
        res: &str,
        kmsg: Option<&str>,
        piped_console: Option<i32>,
    ) -> Vec<String> {
        let machine = self.machine_for(cfg);
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        push(&["-M", machine.arg()]);
        if machine != Machine::Microvm {
            // SeaBIOS mirrors its screen to the first serial port (banner, clear-screen escapes);
            // that would land in the console log and on `shell --exec`'s stdout.
            push(&["-fw_cfg", "name=etc/sercon-port,string=0"]);
        }
        let (accel, default_cpu) = match self.accel {
            Accel::Tcg => ("tcg", "max"),
            Accel::Kvm => ("kvm", "host"),
        };
        push(&[
            "-accel",
            accel,
            "-cpu",
            self.cpu.as_deref().unwrap_or(default_cpu),
        ]);
        let kernel = if self.pvh {
            super::pvh::pvh_kernel(&cfg.kernel)
        } else {
            cfg.kernel.clone()
        };
        push(&["-kernel", &kernel.to_string_lossy()]);
        push(&["-initrd", &cfg.initramfs.to_string_lossy()]);
        let mut backend_extra = if machine == Machine::Microvm && self.accel == Accel::Tcg {
            cmdline::microvm_extra()
        } else {
            Vec::new()
        };
        if kmsg.is_some() {
            // A boot console of its own driver (earlycon), so it can run beside ttyS0: one 8250
            // console struct serves only one port. It writes by polling; COM3 needs no IRQ.
            backend_extra.push(format!("earlycon=uart8250,io,{KERNEL_LOG_PORT},115200"));
            backend_extra.push("keep_bootcon".into());
        }
        let mut cmd = cmdline::compose(&backend_extra, &cfg.cmdline_extra);
        if kmsg.is_some() {
            // keep_bootcon would keep earlyprintk's COM1 console too: every line twice on COM1.
            cmd.retain(|s| !s.starts_with("earlyprintk="));
        }
        push(&["-append", &cmd.join(" ")]);
        a.extend(topology_args(cfg));
        match (&cfg.console, piped_console) {
            (ConsoleMode::Capture { .. }, _) => {
                a.extend(["-chardev".into(), format!("file,id=con,path={con}")]);
            }
            (ConsoleMode::Interactive, Some(fd)) => {
                a.extend(["-chardev".into(), format!("socket,id=con,fd={fd}")]);
            }
            (ConsoleMode::Interactive, None) => {
                // Ctrl-C goes to the guest; Ctrl-A X quits QEMU (the mux'ed monitor).
                a.extend([
                    "-chardev".into(),
                    "stdio,id=con,mux=on,signal=off".into(),
                    "-mon".into(),
                    "chardev=con,mode=readline".into(),
                ]);
            }
        }
        a.extend(["-chardev".into(), format!("file,id=res,path={res}")]);
        // isa-serial devices at fixed indexes: COM1 0x3f8 irq 4, COM2 0x2f8 irq 3 on every machine
        // type (microvm's built-in UART only provides COM1).
        a.extend(["-device".into(), "isa-serial,chardev=con,index=0".into()]);
        a.extend(["-device".into(), "isa-serial,chardev=res,index=1".into()]);
        if let Some(kmsg) = kmsg {
            a.extend(["-chardev".into(), format!("file,id=kmsg,path={kmsg}")]);
            a.extend(["-device".into(), "isa-serial,chardev=kmsg,index=2".into()]);
        }
        if machine == Machine::Microvm {
            // microvm's own UART would be a second COM1; ours above replaces it.
            let m = a.iter().position(|x| x == "-M").map(|i| i + 1);
            if let Some(i) = m {
                a[i].push_str(",isa-serial=off");
            }
        }
        a
    }
}

/// `-smp` (one socket per LLC) and, for more than one node, `-numa` with a memory backend each.
fn topology_args(cfg: &VmConfig) -> Vec<String> {
    let t = &cfg.topology;
    let mut a = vec![
        "-m".to_string(),
        format!("{}M", cfg.memory_mib),
        "-smp".to_string(),
        format!(
            "cpus={},sockets={},cores={},threads={}",
            t.cpus(),
            t.llcs(),
            t.cores_per_llc,
            t.threads_per_core
        ),
    ];
    if t.nodes > 1 {
        let per = cfg.memory_mib / t.nodes;
        for n in 0..t.nodes {
            // Node 0 takes the remainder so the sizes add up to -m exactly (QEMU insists).
            let size = if n == 0 {
                cfg.memory_mib - per * (t.nodes - 1)
            } else {
                per
            };
            a.push("-object".into());
            a.push(format!("memory-backend-ram,id=mem{n},size={size}M"));
            a.push("-numa".into());
            a.push(format!("node,nodeid={n},memdev=mem{n}"));
        }
        for s in 0..t.llcs() {
            a.push("-numa".into());
            a.push(format!("cpu,node-id={},socket-id={s}", s / t.llcs_per_node));
        }
    }
    a
}

impl Backend for QemuBackend {
    fn describe(&self) -> String {
        self.describe_for(self.machine)
    }

    fn run(&self, cfg: &VmConfig) -> Result<VmRun, VmError> {
        run_qemu(self, cfg)
    }
}

enum Event {
    Exited(std::process::ExitStatus),
    Frame { result: bool },
    Crash(CrashKind),
}

/// Kills the child (by pid) if `run_qemu` unwinds before it was reaped.
struct KillGuard {
    pid: libc::pid_t,
    armed: bool,
}

impl KillGuard {
    fn kill(&self) {
        if self.armed {
            // SAFETY: kill(2) has no memory effects; the pid is our unreaped child (the waiter
            // thread reaps it only after it exits, and `armed` is cleared then), so it cannot
            // name a recycled process.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> VmError + '_ {
    move |source| VmError::Io {
        what: what.to_string(),
        source,
    }
}

fn run_qemu(be: &QemuBackend, cfg: &VmConfig) -> Result<VmRun, VmError> {
    let capture_log = match &cfg.console {
        ConsoleMode::Capture { log } => Some(log.clone()),
        ConsoleMode::Interactive => None,
    };
    let console = Arc::new(Mutex::new(
        Console::new(capture_log.as_deref()).map_err(io_err("console log"))?,
    ));
    let (con_r, con_w) = pipe().map_err(io_err("console pipe"))?;
    let (res_r, res_w) = pipe().map_err(io_err("result pipe"))?;
    let con_fd = con_w.as_raw_fd();
    let res_fd = res_w.as_raw_fd();
    // COM3: the kernel's own lines, when wanted; then the crash watch reads them, not COM1.
    let (kernel_port, kmsg_w) = match &be.kernel_log {
        Some(log) => {
            let (r, w) = pipe().map_err(io_err("kernel log pipe"))?;
            let console = Console::new(Some(log)).map_err(io_err("kernel log"))?;
            (Some((r, Arc::new(Mutex::new(console)))), Some(w))
        }
        None => (None, None),
    };
    let kmsg_fd = kmsg_w.as_ref().map(|w| w.as_raw_fd());
    // Interactive with stdin not a terminal (a script piped into `ktstr shell`): QEMU's stdio
    // chardev would read it at once and the guest lose it to a UART the kernel has not set up
    // yet. The console is a socket instead; ktstr echoes it and sends stdin once the agent runs.
    let piped = cfg.console == ConsoleMode::Interactive && !std::io::stdin().is_terminal();
    let console_sock = if piped {
        Some(std::os::unix::net::UnixStream::pair().map_err(io_err("console socket"))?)
    } else {
        None
    };
    let sock_fd = console_sock.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    let args = be.args_with(
        cfg,
        &format!("/dev/fd/{con_fd}"),
        &format!("/dev/fd/{res_fd}"),
        kmsg_fd.map(|fd| format!("/dev/fd/{fd}")).as_deref(),
        sock_fd,
    );
    let affinity = cfg.cpu_budget.map(budget_cpuset);
    let described = be.describe_for(be.machine_for(cfg));
    let parent = std::process::id() as libc::pid_t;

    let mut cmd = Command::new(&be.binary);
    cmd.args(&args).stderr(Stdio::piped());
    if capture_log.is_some() || piped {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
    }
    let mut inherit: Vec<i32> = if capture_log.is_some() {
        vec![con_fd, res_fd]
    } else {
        std::iter::once(res_fd).chain(sock_fd).collect()
    };
    inherit.extend(kmsg_fd);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls
    // (prctl, getppid, fcntl, sched_setaffinity) on values copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // The signal fires when the forking *thread* exits; every caller runs the VM to its
            // end on the thread that spawned it (run_qemu reaps before returning), so that is
            // only ever ktstr's death.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // ktstr died between fork and prctl: the signal will never come, so go now.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            for fd in &inherit {
                // QEMU reopens the pipe as /dev/fd/N, so N must survive exec.
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(set) = &affinity
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned_at = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            VmError::MissingTool {
                tool: be.binary.display().to_string(),
                fix: INSTALL_FIX.into(),
            }
        } else {
            VmError::Spawn {
                backend: described.clone(),
                reason: e.to_string(),
            }
        }
    })?;
    // Our copies of the write ends must close, or the readers never see EOF.
    drop(con_w);
    drop(res_w);
    drop(kmsg_w);
    let console_sock = console_sock.map(|(ours, _theirs)| ours);
    let mut guard = KillGuard {
        pid: child.id() as libc::pid_t,
        armed: true,
    };

    let (tx, rx) = mpsc::channel::<Event>();
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.by_ref().take(64 * 1024).read_to_end(&mut buf);
        // Drain the rest so QEMU never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    });
    let con_thread = {
        let (r, echo): (Box<dyn Read + Send>, bool) = match &console_sock {
            Some(sock) => (
                Box::new(sock.try_clone().map_err(io_err("console socket"))?),
                true,
            ),
            None => (Box::new(con_r), false),
        };
        let watch = kernel_port.is_none().then(|| tx.clone());
        spawn_console_reader(r, Arc::clone(&console), watch, echo)
    };
    let kernel_port = kernel_port.map(|(r, console)| {
        let thread =
            spawn_console_reader(Box::new(r), Arc::clone(&console), Some(tx.clone()), false);
        (thread, console)
    });
    let results = Arc::new(Mutex::new(ResultChannel::new(spawned_at)));
    let res_thread = {
        let results = Arc::clone(&results);
        let tx = tx.clone();
        std::thread::spawn(move || {
            result_channel::read_into(&results, res_r, |pushed| {
                let _ = tx.send(Event::Frame {
                    result: pushed.result,
                });
            });
        })
    };
    if let Some(sock) = &console_sock {
        let sock = sock.try_clone().map_err(io_err("console socket"))?;
        forward_stdin_once_agent_runs(sock, Arc::downgrade(&results));
    }
    let waiter = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(Event::Exited(status));
            }
        })
    };
    drop(tx);

    let deadline = spawned_at + cfg.timeout;
    let mut kill_at: Option<Instant> = None;
    let mut end = VmEnd::Shutdown;
    let mut status = None;
    loop {
        let now = Instant::now();
        let next = [Some(deadline), kill_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(deadline);
        let wait = next.saturating_duration_since(now).min(CANCEL_POLL);
        match rx.recv_timeout(wait) {
            Ok(Event::Exited(s)) => {
                guard.armed = false;
                status = Some(s);
                break;
            }
            Ok(Event::Frame { result: true }) => {
                kill_at.get_or_insert(Instant::now() + RESULT_GRACE);
            }
            Ok(Event::Frame { result: false }) => {}
            Ok(Event::Crash(CrashKind::Kernel)) => {
                kill_at = Some(kill_at.map_or(Instant::now() + CRASH_GRACE, |k| {
                    k.min(Instant::now() + CRASH_GRACE)
                }));
            }
            Ok(Event::Crash(_)) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if crate::cancel::requested() {
            end = VmEnd::Cancelled;
            guard.kill();
        } else if now >= deadline {
            end = VmEnd::TimedOut;
            guard.kill();
        } else if kill_at.is_some_and(|k| now >= k) {
            guard.kill();
        } else {
            continue;
        }
        // Killed: wait for the reap so nothing outlives this call.
        for ev in rx.iter() {
            if let Event::Exited(s) = ev {
                guard.armed = false;
                status = Some(s);
                break;
            }
        }
        break;
    }
    let _ = waiter.join();
    let _ = con_thread.join();
    let _ = res_thread.join();
    // (The kernel port's crash line, and its byte count.)
    let kernel_port = kernel_port.map(|(thread, console)| {
        let _ = thread.join();
        let c = console.lock().unwrap_or_else(|p| p.into_inner());
        (c.crash().map(|(_, l)| l.clone()), c.bytes())
    });
    let qemu_stderr = stderr_thread.join().unwrap_or_default();
    let wall = spawned_at.elapsed();

    let console = Arc::try_unwrap(console)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .map_err(|_| VmError::Config("console still shared after join".into()))?;
    let received = results.lock().unwrap_or_else(|p| p.into_inner()).received();
    let failed_to_start = end == VmEnd::Shutdown
        && status.is_some_and(|s| !s.success())
        && console.bytes() == 0
        && kernel_port.as_ref().is_none_or(|(_, bytes)| *bytes == 0)
        && received.messages.is_empty();
    if failed_to_start {
        return Err(VmError::Spawn {
            backend: described.clone(),
            reason: format!(
                "{} exited with {}: {}",
                be.binary.display(),
                status.map(|s| s.to_string()).unwrap_or_default(),
                qemu_stderr.trim()
            ),
        });
    }
    let mut console_tail = console.tail();
    // QEMU warns that fw_cfg names should start with "opt/"; etc/sercon-port is SeaBIOS's own.
    let qemu_stderr: String = qemu_stderr
        .lines()
        .filter(|l| !l.contains("etc/sercon-port"))
        .map(|l| format!("{l}\n"))
        .collect();
    if !qemu_stderr.trim().is_empty() {
        console_tail.push_str("--- qemu stderr ---\n");
        console_tail.push_str(qemu_stderr.trim_end());
        console_tail.push('\n');
    }
    let crash_line = match kernel_port {
        Some((crash, _)) => crash,
        None => console.crash().map(|(_, l)| l.clone()),
    }
    .or_else(|| {
        // QEMU is killed only after a crash line, a result, Ctrl-C or the watchdog; so it ended
        // by itself here, and how says what happened (as the kvm backend does).
        let own_end = end == VmEnd::Shutdown && received.to_result.is_none();
        status.filter(|_| own_end).map(ended_without_result)
    });
    Ok(VmRun {
        end,
        messages: received.messages,
        frame_errors: received.frame_errors,
        console_tail,
        console_log: capture_log,
        crash_line,
        to_agent: received.to_agent,
        to_result: received.to_result,
        wall,
        backend: described.clone(),
    })
}

/// How QEMU ended when it ended by itself before the guest's result.
fn ended_without_result(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "qemu: QEMU exited before the guest's result: the guest reset or powered \
                         off (QEMU runs with -no-reboot), or QEMU was told to quit"
            .into(),
        (_, Some(sig)) => format!("qemu: QEMU died of signal {sig} before the guest's result"),
        (code, _) => format!(
            "qemu: QEMU exited with status {} before the guest's result",
            code.unwrap_or(-1)
        ),
    }
}

/// Feeds what a serial port's pipe brings to `console` (log, tail, crash lines), echoing it to
/// stdout when `echo`; crash lines go to `watch`, whose receiver acts on them.
fn spawn_console_reader(
    mut r: Box<dyn Read + Send>,
    console: Arc<Mutex<Console>>,
    watch: Option<mpsc::Sender<Event>>,
    echo: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if echo {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    let hit = console
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .feed(&buf[..n]);
                    if let (Some((kind, _)), Some(tx)) = (hit, &watch) {
                        let _ = tx.send(Event::Crash(kind));
                    }
                }
            }
        }
    })
}

/// Copies stdin to the guest console from the agent's first frame on (see
/// [`super::wait_for_agent`]). Detached: a blocking stdin read cannot be interrupted.
fn forward_stdin_once_agent_runs(
    mut sock: std::os::unix::net::UnixStream,
    results: std::sync::Weak<Mutex<ResultChannel>>,
) {
    let _ = std::thread::Builder::new()
        .name("qemu-stdin".into())
        .spawn(move || {
            let started = |f: &Mutex<ResultChannel>| {
                f.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .to_agent()
                    .is_some()
            };
            if super::wait_for_agent(&results, started) {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut sock);
            }
        });
}

/// A close-on-exec pipe as (read end, write end); the child un-sets close-on-exec on the write
/// ends it needs (std::io::pipe would do, but it is newer than the workspace MSRV).
fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r.into(), w.into()))
}

/// The first `k` CPUs this process may run on.
fn budget_cpuset(k: u32) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bitmask; all-zero is the empty set.
    let mut mine: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mine` is a valid, writable cpu_set_t of the size passed.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mine) };
    // SAFETY: as above.
    let mut out: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut taken = 0;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        if taken >= k.max(1) {
            break;
        }
        // SAFETY: `cpu` < CPU_SETSIZE, the bound of both sets.
        let allowed = ok != 0 || unsafe { libc::CPU_ISSET(cpu, &mine) };
        if allowed {
            // SAFETY: as above.
            unsafe { libc::CPU_SET(cpu, &mut out) };
            taken += 1;
        }
    }
    out
}

#[cfg(test)]
#[path = "qemu_tests.rs"]
mod fake_qemu_tests;

#[cfg(test)]
#[path = "qemu_args_tests.rs"]
mod args_tests;
