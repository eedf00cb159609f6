//! A real single-node Slurm cluster for end-to-end tests, from Debian's packages (`slurm-wlm`,
//! `munge`) and without systemd: `munged` (as user munge), then `slurmctld`, then `slurmd`, all in
//! the foreground as children of the test, with their config, keys, sockets, state and logs in
//! one temp dir. The config is Debian's single-node sample with this machine's host name and CPU
//! count and the temp dir's paths. Dropping the cluster cancels its jobs and stops the daemons,
//! also when the test panics.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's sample config for one node (package `slurm-client`).
pub const SAMPLE_CONF: &str = "/usr/share/doc/slurm-client/examples/slurm.conf.simple.gz";
/// Ports away from the defaults, so a system Slurm on the same machine is left alone.
const CTLD_PORT: u16 = 16817;
const SLURMD_PORT: u16 = 16818;
const NODE: &str = "ktstr-node";

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "{what} is missing: install the Debian packages slurm-wlm and munge (scripts/setup.sh)"
    )]
    Missing { what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}\n{logs}")]
    Failed { what: String, logs: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlurmError {
    let what = what.into();
    move |source| SlurmError::Io { what, source }
}

/// A running cluster; stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<(&'static str, Child)>,
    cpus: u32,
}

/// Whether the packages are installed (tests say why they cannot run otherwise).
pub fn available() -> Result<(), SlurmError> {
    for p in [
        "/usr/sbin/munged",
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/bin/sbatch",
        SAMPLE_CONF,
    ] {
        if !Path::new(p).exists() {
            return Err(SlurmError::Missing { what: p.into() });
        }
    }
    Ok(())
}

fn short_hostname() -> Result<String, SlurmError> {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .map_err(io("hostname -s"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Debian's sample with this cluster's names, paths and node; `cpus` is what the node offers.
fn config(dir: &Path, host: &str, cpus: u32) -> Result<String, SlurmError> {
    let gz = std::fs::File::open(SAMPLE_CONF).map_err(io(SAMPLE_CONF))?;
    let mut sample = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut sample)
        .map_err(io(SAMPLE_CONF))?;
    let d = dir.display();
    let set = |key: &str| -> Option<String> {
        Some(match key {
            "ClusterName" => "ClusterName=ktstr".into(),
            // slurmctld runs only where its host name is the configured one.
            "SlurmctldHost" => format!("SlurmctldHost={host}(127.0.0.1)"),
            "SlurmctldPidFile" => format!("SlurmctldPidFile={d}/slurmctld.pid"),
            "SlurmdPidFile" => format!("SlurmdPidFile={d}/slurmd.pid"),
            "SlurmdSpoolDir" => format!("SlurmdSpoolDir={d}/slurmd"),
            "StateSaveLocation" => format!("StateSaveLocation={d}/slurmctld"),
            // The test runs as root and so do its jobs.
            "SlurmUser" => "SlurmUser=root".into(),
            // Cores only: with memory as a resource and no per-job memory, one job takes it all.
            "SelectTypeParameters" => "SelectTypeParameters=CR_Core".into(),
            "SlurmctldLogFile" => format!("SlurmctldLogFile={d}/slurmctld.log"),
            "SlurmdLogFile" => format!("SlurmdLogFile={d}/slurmd.log"),
            "NodeName" => format!(
                "NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN"
            ),
            "PartitionName" => {
                format!("PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP")
            }
            _ => return None,
        })
    };
    let mut out = String::new();
    for line in sample.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        out.push_str(&set(key).unwrap_or_else(|| line.to_string()));
        out.push('\n');
    }
    out.push_str(&format!(
        "SlurmctldPort={CTLD_PORT}\nSlurmdPort={SLURMD_PORT}\nAuthInfo=socket={d}/munge-run/munge.socket\nMpiDefault=none\n"
    ));
    Ok(out)
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd, and waits (up to `deadline`) until the node is idle.
    /// `cpus`: what the node offers (at most this machine's).
    pub fn start(cpus: u32, deadline: Duration) -> Result<Cluster, SlurmError> {
        available()?;
        let dir = tempfile::Builder::new()
            .prefix("ktstr-slurm-")
            .tempdir()
            .map_err(io("temp dir"))?;
        // munged runs as user munge and must reach its key and socket below this dir.
        chmod(dir.path(), 0o755)?;
        let mut cluster = Cluster {
            dir,
            daemons: Vec::new(),
            cpus,
        };
        cluster.start_munge()?;
        let host = short_hostname()?;
        let conf = config(cluster.dir.path(), &host, cpus)?;
        std::fs::write(cluster.conf(), conf).map_err(io("writing slurm.conf"))?;
        for sub in ["slurmd", "slurmctld"] {
            std::fs::create_dir_all(cluster.dir.path().join(sub)).map_err(io(sub.to_string()))?;
        }
        let conf = cluster.conf();
        cluster.spawn(
            "slurmctld",
            Command::new("/usr/sbin/slurmctld")
                .arg("-D")
                .arg("-i")
                .arg("-f")
                .arg(&conf),
        )?;
        cluster.spawn(
            "slurmd",
            Command::new("/usr/sbin/slurmd")
                .args(["-D", "-N", NODE, "-f"])
                .arg(&conf),
        )?;
        cluster.wait_idle(deadline)?;
        Ok(cluster)
    }

    fn start_munge(&mut self) -> Result<(), SlurmError> {
        let m = self.dir.path().join("munge");
        std::fs::create_dir_all(&m).map_err(io("munge dir"))?;
        let key = m.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io("reading /dev/urandom"))?;
        std::fs::write(&key, &bytes).map_err(io("writing the munge key"))?;
        chmod(&key, 0o400)?;
        chmod(&m, 0o700)?;
        // Clients reach the socket, so its dir is open to all; the key's is munge's alone.
        let run = self.dir.path().join("munge-run");
        std::fs::create_dir_all(&run).map_err(io("munge socket dir"))?;
        chmod(&run, 0o755)?;
        let owned = Command::new("chown")
            .args(["-R", "munge:munge"])
            .arg(&m)
            .arg(&run)
            .status()
            .map_err(io("chown munge"))?;
        if !owned.success() {
            return Err(SlurmError::Missing {
                what: "the user munge".into(),
            });
        }
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=munge",
            "--regid=munge",
            "--clear-groups",
            "/usr/sbin/munged",
            "-F",
        ])
        .arg(format!("--key-file={}", key.display()))
        .arg(format!("--socket={}", run.join("munge.socket").display()))
        .arg(format!("--pid-file={}", m.join("munged.pid").display()))
        .arg(format!("--log-file={}", m.join("munged.log").display()))
        .arg(format!("--seed-file={}", m.join("munged.seed").display()));
        self.spawn("munged", &mut cmd)?;
        let socket = run.join("munge.socket");
        let until = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            self.check_alive()?;
            if Instant::now() > until {
                return Err(self.failed("munged did not create its socket in 20 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) -> Result<(), SlurmError> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.stderr")))
            .map_err(io(format!("{name} log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        self.daemons.push((name, child));
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), SlurmError> {
        for i in 0..self.daemons.len() {
            if let Ok(Some(status)) = self.daemons[i].1.try_wait() {
                let name = self.daemons[i].0;
                return Err(self.failed(&format!("{name} exited ({status})")));
            }
        }
        Ok(())
    }

    fn wait_idle(&mut self, deadline: Duration) -> Result<(), SlurmError> {
        let until = Instant::now() + deadline;
        loop {
            self.check_alive()?;
            let out = self.command("sinfo").args(["-h", "-o", "%T"]).output();
            if let Ok(o) = out
                && String::from_utf8_lossy(&o.stdout).trim() == "idle"
            {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(self.failed("the node did not become idle in time"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// A Slurm client command (sbatch, squeue, sacct, scancel...) talking to this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// The daemons' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for name in [
            "munge/munged.log",
            "munged.stderr",
            "slurmctld.log",
            "slurmctld.stderr",
            "slurmd.log",
            "slurmd.stderr",
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            s.push_str(&format!("--- {name} (last lines) ---\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    fn failed(&self, what: &str) -> SlurmError {
        SlurmError::Failed {
            what: what.into(),
            logs: self.logs(),
        }
    }
}

fn chmod(p: &Path, mode: u32) -> Result<(), SlurmError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", p.display())))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first (slurmstepd outlives slurmd), then the daemons in reverse order of start.
        // Without a controller the clients would retry for a minute.
        let ctld_started = self.daemons.iter().any(|(n, _)| *n == "slurmctld");
        if ctld_started {
            let _ = self
                .command("scancel")
                .args(["--full", "--user=root"])
                .status();
        }
        let until = Instant::now() + Duration::from_secs(30);
        while ctld_started && Instant::now() < until {
            let out = self.command("squeue").args(["-h", "-o", "%i"]).output();
            match out {
                Ok(o) if o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace) => {
                    break;
                }
                Ok(o) if o.status.success() => std::thread::sleep(Duration::from_millis(300)),
                _ => break,
            }
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            // SIGTERM lets each daemon save its state and remove its socket; kill(1) avoids an
            // unsafe libc call for that.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
