//! The result of one cell, as stored in results.jsonl and printed by `ktstr run --json`.

use ktstr_guest::protocol::GuestReport;
use serde::{Deserialize, Serialize};

/// Version of the stored result format; readers refuse newer versions.
pub const RESULT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Skipped,
    Crashed,
    Timeout,
    /// ktstr itself could not run the cell (e.g. a build failed, garbage on the result channel).
    Error,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostTimings {
    /// Spawn of the VM to the guest agent's first frame.
    pub to_agent_ms: Option<f64>,
    /// Spawn of the VM to the result frame.
    pub to_result_ms: Option<f64>,
    pub wall_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub format_version: u32,
    pub outcome: Outcome,
    /// Why it is not a pass, in one line (names worker, metric, value and threshold for fails).
    pub reason: Option<String>,
    /// The guest's report, when one arrived.
    pub report: Option<GuestReport>,
    /// Last lines of the kernel console: the evidence for crashed / timeout / error.
    pub console_tail: String,
    pub timings: HostTimings,
    /// Backend that ran it, e.g. `qemu-tcg/microvm`.
    pub backend: String,
}

impl CellResult {
    /// ktstr could not run the cell (no guest report, no console evidence).
    pub fn error(reason: String, timings: HostTimings, backend: String) -> Self {
        Self::without_report(Outcome::Error, reason, timings, backend)
    }

    /// A cell that was not run (e.g. a scheduler this kernel cannot run); no backend involved.
    pub fn skipped(reason: String) -> Self {
        Self::without_report(
            Outcome::Skipped,
            reason,
            HostTimings::default(),
            String::new(),
        )
    }

    fn without_report(
        outcome: Outcome,
        reason: String,
        timings: HostTimings,
        backend: String,
    ) -> Self {
        Self {
            format_version: RESULT_FORMAT_VERSION,
            outcome,
            reason: Some(reason),
            report: None,
            console_tail: String::new(),
            timings,
            backend,
        }
    }
}
