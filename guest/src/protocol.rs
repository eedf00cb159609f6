//! Host <-> guest protocol types. Every enum is internally tagged (no untagged enums) so that the
//! JSON stays self-describing and a newer agent's message fails loudly rather than silently.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a field changes meaning; host and agent refuse a mismatch.
pub const PROTOCOL_VERSION: u32 = 1;
/// Where the host puts the cell spec inside the initramfs.
pub const SPEC_PATH: &str = "/ktstr/cell.json";
/// Where the host puts scheduler binaries and extra files inside the initramfs.
pub const FILES_DIR: &str = "/ktstr/files";
/// The result channel: COM2, never mixed with the kernel console on COM1.
pub const RESULT_DEVICE: &str = "/dev/ttyS1";

/// What the agent must do in this boot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellSpec {
    pub protocol_version: u32,
    pub mode: Mode,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// `ktstr shell`: an interactive busybox shell on the console, or one command (`exec`) whose exit
    /// status is reported.
    Shell { exec: Option<String> },
    /// `ktstr run` / a matrix cell: optional scheduler, then a scenario.
    Scenario(ScenarioRun),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioRun {
    pub scheduler: Option<SchedulerLaunch>,
    /// Scenario name from the catalogue, e.g. `smoke`, `steady`, `wake`.
    pub scenario: String,
    /// Scenario parameters by name (validated on the host before boot, again in the guest).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub duration_ms: u64,
    /// Overrides of the scenario's default assertion thresholds, by metric name.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchedulerLaunch {
    /// Display name, e.g. `scx_rusty` or `kernel:scx_simple`.
    pub name: String,
    /// Path of the binary inside the guest.
    pub path: String,
    pub args: Vec<String>,
    /// Bounded wait for `/sys/kernel/sched_ext/state` to read `enabled`.
    pub attach_timeout_ms: u64,
}

/// Everything the agent sends on the result channel, one frame each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// First thing the agent does after mounting: lets the host time boot-to-agent.
    AgentStarted(AgentStarted),
    /// Exactly one per boot, the last message before power-off.
    Result(Box<GuestReport>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentStarted {
    pub protocol_version: u32,
    /// CLOCK_BOOTTIME of the guest when the agent started, in milliseconds.
    pub uptime_ms: u64,
    pub kernel_release: String,
    pub online_cpus: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestReport {
    pub status: GuestStatus,
    pub kernel: KernelInfo,
    /// `Shell` mode with `exec`: the command's exit status.
    pub exit_code: Option<i32>,
    pub scheduler: Option<SchedulerReport>,
    pub scenario: Option<ScenarioReport>,
    /// Guest uptime (ms) when the result was produced.
    pub uptime_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestStatus {
    /// Ran to the end; every check passed.
    Passed,
    /// Ran to the end; at least one check failed (see the scenario's checks / scheduler ending).
    Failed { reason: String },
    /// The cell could not run as asked (scheduler never attached, bad spec, agent error or panic).
    Error { message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelInfo {
    pub release: String,
    /// `/sys/kernel/sched_ext` exists.
    pub sched_ext: bool,
    pub online_cpus: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchedulerReport {
    pub name: String,
    pub attached: bool,
    /// Time from spawn to `state == enabled`.
    pub attach_ms: Option<u64>,
    /// `/sys/kernel/sched_ext/root/ops` once attached.
    pub ops: Option<String>,
    pub ending: SchedulerEnding,
    /// Tail of the scheduler's stdout+stderr.
    pub output_tail: String,
    /// sched_ext event counters the kernel exposes, where available.
    #[serde(default)]
    pub events: BTreeMap<String, u64>,
    /// The scheduler's BPF programs after the scenario's window (empty when it never ran one).
    #[serde(default)]
    pub bpf_programs: Vec<BpfProgram>,
}

/// One BPF program of the scheduler, from bpf(2)'s program info.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BpfProgram {
    pub id: u32,
    /// As the kernel keeps it: truncated to 15 bytes.
    pub name: String,
    /// `struct_ops` for a sched_ext callback; `tracing`, `syscall`, ... for others.
    pub prog_type: String,
    /// Instructions the verifier processed at load; `None` before Linux 5.16.
    pub verified_insns: Option<u32>,
    /// Runs during the scenario's window; `None` when `kernel.bpf_stats_enabled` could not be set.
    pub runs: Option<u64>,
    /// Time spent in the program during the window (ns).
    pub run_time_ns: Option<u64>,
}

/// How the scheduler's run ended; with evidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SchedulerEnding {
    /// Still attached when the scenario ended (the healthy case).
    StillAttached,
    /// Never reached `enabled` within the attach timeout.
    NeverAttached { reason: String },
    /// The process exited by itself (code or signal) while it should have been running.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        reason: String,
    },
    /// The kernel ejected it (e.g. "runnable task stall"); `reason` from dmesg / sysfs.
    Ejected { reason: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScenarioReport {
    pub name: String,
    pub duration_ms: u64,
    pub workers: Vec<WorkerMetrics>,
    /// Aggregates by metric name (e.g. `min_work_units`, `max_gap_ms`, `fairness_spread`,
    /// `wake_p99_us`, `steal_ticks`).
    pub metrics: BTreeMap<String, f64>,
    pub checks: Vec<Check>,
    /// One entry per test of a scenario that runs a suite (`sched-ext-selftests`); empty (and
    /// absent from the JSON, so results written before it existed still parse) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtests: Vec<SubResult>,
}

/// One test of a suite, as the suite's own runner judged it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubResult {
    pub name: String,
    pub status: SubStatus,
    /// What the test printed (its tail); empty for a pass, to keep results small.
    #[serde(default)]
    pub output: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubStatus {
    Ok,
    Skip,
    Fail,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerMetrics {
    pub id: u32,
    /// Worker class or cgroup, e.g. `batch`, `cg0`.
    pub group: String,
    pub work_units: u64,
    pub cpu_time_ms: f64,
    /// cpu_time / wall time of the scenario.
    pub cpu_share: f64,
    /// Longest interval during which this worker made no progress.
    pub longest_gap_ms: f64,
    pub migrations: u64,
    /// Extra per-worker metrics (wake latency percentiles, steal ...).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

/// One assertion; a failure names the worker, metric, value and threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub metric: String,
    pub worker: Option<u32>,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
    pub message: String,
}
