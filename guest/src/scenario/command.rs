//! `command`: the user's own benchmark. Runs a program brought into the guest with `-i` as N
//! instances (optionally one cgroup each, or pinned to one LLC each), checks each exit status and
//! reads metrics from each stdout or stderr (`command_output.rs`); the direction of every metric comes from
//! the user (`direction.NAME=higher|lower`), so the report and bisection judge it the right way.

use super::cgroup::Subtree;
use super::command_output::{self, Tail, compile_pattern};
use super::{
    CheckInfo, CheckOp, Env, MetricDirection, MetricInfo, Outcome, ParamInfo, ParamKind, Params,
    Scenario, ScenarioError, ScenarioInfo,
};
use crate::protocol::{FILES_DIR, WorkerMetrics};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Command;

pub const NAME: &str = "command";
/// After `--duration` a still-running instance gets SIGINT (benchmarks such as schbench print
/// their figures on it); this long after, SIGKILL. Well inside the agent's own slack.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// Lines of a failing instance's output written to the console as evidence.
const EVIDENCE_LINES: usize = 40;

fn keyed(name: &str, doc: &str, values: &[&str]) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        doc: doc.into(),
        kind: ParamKind::Keyed {
            values: values.iter().map(|v| v.to_string()).collect(),
        },
        default: None,
        default_doc: "none".into(),
    }
}

impl Scenario for Command {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::Counter;
        let mut metrics = vec![
            super::metric("workers", "count", Counter, false, "instances run"),
            super::metric(
                "exit_code",
                "code",
                Counter,
                true,
                "the instance's exit status (128 + N when signal N ended it)",
            ),
            super::metric(
                "metrics_parsed",
                "count",
                Counter,
                true,
                "metrics read from the instance's output",
            ),
        ];
        // What the agent adds to every run: the clock, the scheduler's counters and BPF costs.
        metrics.extend(super::benchmark::agent_metrics());
        ScenarioInfo {
            name: NAME.into(),
            purpose: "the user's own benchmark: a program brought in with `-i`, run as N \
                      instances, its metrics read from its stdout with the direction the user \
                      gives"
                .into(),
            params: vec![
                ParamInfo {
                    name: "binary".into(),
                    doc: "the program, brought in with `-i`: its file name (`-i ./schbench` puts \
                          it at /ktstr/files/schbench) or the guest path of `-i HOST:/PATH`"
                        .into(),
                    kind: ParamKind::Text,
                    default: None,
                    default_doc: "required".into(),
                },
                ParamInfo {
                    name: "args".into(),
                    doc: "its arguments, split like a shell does (quotes group words)".into(),
                    kind: ParamKind::Text,
                    default: Some("".into()),
                    default_doc: "none".into(),
                },
                super::int_param("instances", "copies run at once", 1, 256, Some(1), "1"),
                super::choice_param(
                    "placement",
                    "`none`; `cgroup`: each instance in its own cgroup; `llc`: instance i pinned \
                     to the CPUs of LLC i (round-robin)",
                    &["none", "cgroup", "llc"],
                    "none",
                ),
                super::choice_param(
                    "output",
                    "where the metrics are read: `stdout`, `stderr` (schbench prints its figures \
                     there) or `both` (stdout, then stderr)",
                    &["stdout", "stderr", "both"],
                    "stdout",
                ),
                keyed(
                    "metric",
                    "`metric.NAME=REGEX`: NAME is the number in REGEX's first capture group at \
                     its last match in stdout; when any is given, only these metrics are read",
                    &[],
                ),
                keyed(
                    "direction",
                    "`direction.NAME=higher` or `lower`: which way NAME is better; a metric without \
                     one is shown, never compared",
                    &["higher", "lower"],
                ),
                keyed(
                    "unit",
                    "`unit.NAME=UNIT`: NAME's unit (`us` and `ms` are shown rescaled)",
                    &[],
                ),
            ],
            metrics,
            checks: vec![
                CheckInfo {
                    metric: "exit_code".into(),
                    op: CheckOp::AtMost,
                    default_threshold: Some(0.0),
                    per_worker: true,
                    doc: "every instance exited with status 0".into(),
                },
                CheckInfo {
                    metric: "metrics_parsed".into(),
                    op: CheckOp::AtLeast,
                    default_threshold: Some(1.0),
                    per_worker: true,
                    doc: "every instance printed at least one metric (its output goes to the \
                          console log otherwise)"
                        .into(),
                },
            ],
            needs_cgroup: false,
        }
    }

    fn check(&self, p: &Params) -> Result<(), ScenarioError> {
        binary_path(p)?;
        patterns(p)?;
        split_args(p)?;
        Ok(())
    }

    fn guest_files(&self, p: &Params) -> Vec<String> {
        binary_path(p).into_iter().collect()
    }

    fn common_aggregates(&self) -> bool {
        false
    }

    fn describe_dynamic(&self, p: &Params, metric: &str) -> Option<MetricInfo> {
        let direction = match p.keyed("direction").get(metric).map(String::as_str) {
            Some("higher") => MetricDirection::HigherIsBetter,
            Some("lower") => MetricDirection::LowerIsBetter,
            _ => MetricDirection::Counter,
        };
        Some(MetricInfo {
            name: metric.into(),
            unit: p
                .keyed("unit")
                .get(metric)
                .cloned()
                .unwrap_or_else(|| "value".into()),
            direction,
            headline: direction != MetricDirection::Counter,
            doc: "printed by the command: the median over instances (each instance's own value \
                  in its worker record)"
                .into(),
            per_worker: true,
        })
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let err = |e: String| super::setup_err(NAME, e);
        let binary = binary_path(p)?;
        if !std::path::Path::new(&binary).is_file() {
            return Err(err(format!(
                "{binary} is not in the guest: bring it in with -i"
            )));
        }
        let patterns = patterns(p)?;
        let args = split_args(p)?;
        let n = p.int_or("instances", 1) as usize;
        let (groups, _subtree) = placements(p.str_or("placement", "none"), n, env).map_err(err)?;
        let start = Instant::now();
        let mut running = Vec::new();
        // Every instance is forked before any reader thread exists: `pre_exec` runs between fork
        // and exec, which is only safe in a single-threaded parent.
        for (i, place) in groups.iter().enumerate() {
            let child = spawn(&binary, &args, place)
                .map_err(|e| err(format!("starting instance {i} of {binary}: {e}")))?;
            running.push(child);
        }
        let instances: Vec<Instance> = running.into_iter().map(Instance::new).collect();
        let statuses = wait_all(&instances, start, duration);
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut outcome = Outcome::default();
        for (i, ((inst, (code, cpu_ms)), place)) in
            instances.into_iter().zip(statuses).zip(&groups).enumerate()
        {
            let (stdout, stderr) = inst.output();
            let read = match p.str_or("output", "stdout") {
                "stderr" => stderr.clone(),
                "both" => format!("{stdout}\n{stderr}"),
                _ => stdout.clone(),
            };
            let parsed = command_output::parse(&read, &patterns);
            if code != 0 || parsed.is_empty() {
                eprintln!(
                    "ktstr-guest: command instance {i} ({binary}) exited {code} with {} metric(s); \
                     its last output:\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    parsed.len(),
                    command_output::last_lines(&stdout, EVIDENCE_LINES),
                    command_output::last_lines(&stderr, EVIDENCE_LINES)
                );
            }
            let mut extra = parsed;
            extra.insert("exit_code".into(), f64::from(code));
            extra.insert("metrics_parsed".into(), (extra.len() - 1) as f64);
            outcome.workers.push(WorkerMetrics {
                id: i as u32,
                group: place.label.clone(),
                cpu_time_ms: cpu_ms,
                cpu_share: if wall_ms > 0.0 { cpu_ms / wall_ms } else { 0.0 },
                extra,
                ..Default::default()
            });
        }
        outcome.metrics = medians(&outcome.workers);
        outcome
            .metrics
            .insert("workers".into(), outcome.workers.len() as f64);
        Ok(outcome)
    }
}

/// The program's path in the guest.
fn binary_path(p: &Params) -> Result<String, ScenarioError> {
    let bad = |reason: &str| ScenarioError::BadParam {
        scenario: NAME.into(),
        param: "binary".into(),
        reason: reason.into(),
    };
    let b = p.text("binary").unwrap_or("").trim();
    if b.is_empty() {
        return Err(bad(
            "required: name the program brought in with -i, e.g. --param binary=schbench",
        ));
    }
    if b.starts_with('/') {
        Ok(b.to_string())
    } else if b.contains('/') {
        Err(bad(
            "give the file name of the -i file, or its absolute guest path",
        ))
    } else {
        Ok(format!("{FILES_DIR}/{b}"))
    }
}

fn patterns(p: &Params) -> Result<BTreeMap<String, regex::Regex>, ScenarioError> {
    p.keyed("metric")
        .into_iter()
        .map(|(name, pat)| {
            let re = compile_pattern(&pat).map_err(|reason| ScenarioError::BadParam {
                scenario: NAME.into(),
                param: format!("metric.{name}"),
                reason,
            })?;
            Ok((name, re))
        })
        .collect()
}

fn split_args(p: &Params) -> Result<Vec<String>, ScenarioError> {
    let a = p.text("args").unwrap_or("");
    shlex::split(a).ok_or_else(|| ScenarioError::BadParam {
        scenario: NAME.into(),
        param: "args".into(),
        reason: format!("'{a}' has an unclosed quote"),
    })
}

/// Where one instance runs.
#[derive(Debug, Clone, Default)]
struct Place {
    label: String,
    /// `cgroup.procs` of its cgroup.
    cgroup_procs: Option<std::ffi::CString>,
    cpus: Option<Vec<u32>>,
}

/// One place per instance, and the cgroup subtree to remove afterwards.
fn placements(
    placement: &str,
    n: usize,
    env: &Env,
) -> Result<(Vec<Place>, Option<Subtree>), String> {
    match placement {
        "cgroup" => {
            let root = env
                .cgroup
                .as_ref()
                .ok_or("placement=cgroup needs a writable cgroup v2 hierarchy".to_string())?;
            let names: Vec<String> = (0..n).map(|i| format!("cmd{i}")).collect();
            let tree = Subtree::create(root, &[], &names)?;
            let places = tree
                .children
                .iter()
                .zip(&names)
                .map(|(dir, name)| Place {
                    label: name.clone(),
                    cgroup_procs: std::ffi::CString::new(
                        dir.join("cgroup.procs")
                            .into_os_string()
                            .into_encoded_bytes(),
                    )
                    .ok(),
                    cpus: None,
                })
                .collect();
            Ok((places, Some(tree)))
        }
        "llc" => {
            let llcs = llc_groups(&env.cpus);
            let places = (0..n)
                .map(|i| Place {
                    label: format!("llc{}", i % llcs.len()),
                    cgroup_procs: None,
                    cpus: Some(llcs[i % llcs.len()].clone()),
                })
                .collect();
            Ok((places, None))
        }
        _ => Ok((
            (0..n)
                .map(|_| Place {
                    label: "command".into(),
                    ..Default::default()
                })
                .collect(),
            None,
        )),
    }
}

/// `cpus` grouped by last-level cache: the L3's `shared_cpu_list` where the kernel exposes
/// cache topology, else the package (ktstr's guests have one LLC per package).
fn llc_groups(cpus: &[u32]) -> Vec<Vec<u32>> {
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for &c in cpus {
        let base = format!("/sys/devices/system/cpu/cpu{c}");
        let key = std::fs::read_to_string(format!("{base}/cache/index3/shared_cpu_list"))
            .or_else(|_| std::fs::read_to_string(format!("{base}/topology/physical_package_id")))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        groups.entry(key).or_default().push(c);
    }
    let mut out: Vec<Vec<u32>> = groups.into_values().collect();
    out.sort();
    if out.is_empty() {
        out.push(cpus.to_vec());
    }
    out
}

fn spawn(binary: &str, args: &[String], place: &Place) -> std::io::Result<Child> {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cgroup = place.cgroup_procs.clone();
    let cpus = place.cpus.clone();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (open/write/close, sched_setaffinity) on data prepared before the fork; the parent is
    // single-threaded at this point (see `run`).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(path) = &cgroup {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(cpus) = &cpus {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in cpus {
                    libc::CPU_SET(c as usize, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A started instance and the threads collecting its output.
struct Instance {
    pid: libc::pid_t,
    stdout: Collector,
    stderr: Collector,
}

struct Collector {
    tail: Arc<Mutex<Tail>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn new(pipe: Option<impl Read + Send + 'static>) -> Collector {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let thread = pipe.map(|mut r| {
            let t = tail.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    t.lock().expect("reader lock").push(&buf[..n]);
                }
            })
        });
        Collector { tail, thread }
    }

    /// What was read; waits briefly for the pipe's end (a leftover grandchild may hold it open).
    fn text(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let tail = self.tail.lock().expect("reader lock");
        let mut s = tail.text();
        if tail.dropped > 0 {
            s.insert_str(0, &format!("[{} earlier bytes dropped]\n", tail.dropped));
        }
        s
    }
}

impl Instance {
    fn new(mut child: Child) -> Instance {
        Instance {
            pid: child.id() as libc::pid_t,
            stdout: Collector::new(child.stdout.take()),
            stderr: Collector::new(child.stderr.take()),
        }
    }

    fn output(self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }
}

/// Waits for every instance: SIGINT at `duration`, SIGKILL [`KILL_GRACE`] later. Returns each
/// one's exit code (128 + signal) and CPU time in ms.
fn wait_all(instances: &[Instance], start: Instant, duration: Duration) -> Vec<(i32, f64)> {
    let mut done: Vec<Option<(i32, f64)>> = vec![None; instances.len()];
    let mut interrupted = false;
    let mut killed = false;
    while done.iter().any(Option::is_none) {
        for (i, inst) in instances.iter().enumerate() {
            if done[i].is_none() {
                done[i] = try_wait(inst.pid);
            }
        }
        let elapsed = start.elapsed();
        let signal = if !killed && elapsed >= duration + KILL_GRACE {
            killed = true;
            Some(libc::SIGKILL)
        } else if !interrupted && elapsed >= duration {
            interrupted = true;
            Some(libc::SIGINT)
        } else {
            None
        };
        if let Some(sig) = signal {
            for (i, inst) in instances.iter().enumerate() {
                if done[i].is_none() {
                    // SAFETY: signalling our own unreaped child.
                    unsafe { libc::kill(inst.pid, sig) };
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done.into_iter().map(|d| d.unwrap_or((-1, 0.0))).collect()
}

/// The exit code and CPU time of `pid` once it has ended.
fn try_wait(pid: libc::pid_t) -> Option<(i32, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    if r == 0 {
        return None;
    }
    if r != pid {
        // Not our child any more (cannot happen unless someone else reaped it): no status.
        return Some((-1, 0.0));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Some((code, ms(ru.ru_utime) + ms(ru.ru_stime)))
}

/// Each metric the instances printed: the median over the instances that printed it.
fn medians(workers: &[WorkerMetrics]) -> BTreeMap<String, f64> {
    let mut values: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for w in workers {
        for (k, &v) in &w.extra {
            if !command_output::RESERVED.contains(&k.as_str()) {
                values.entry(k).or_default().push(v);
            }
        }
    }
    values
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let mid = v.len() / 2;
            let median = if v.len() % 2 == 0 {
                (v[mid - 1] + v[mid]) / 2.0
            } else {
                v[mid]
            };
            (k.to_string(), median)
        })
        .collect()
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
