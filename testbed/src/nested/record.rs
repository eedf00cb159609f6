//! What one inner boot reports back to the host: one `KTSTR-VMM {json}` line on the L1
//! console per L2 boot, parsed back on the host.

use ktstr::vm::{VmEnd, VmRun};
use ktstr_guest::protocol::{GuestMessage, GuestReport};
use serde::{Deserialize, Serialize};

pub const LINE_PREFIX: &str = "KTSTR-VMM ";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub backend: String,
    pub run: u32,
    /// `shutdown`, `timed_out`, `cancelled`, or `error`.
    pub end: String,
    pub to_agent_ms: Option<f64>,
    pub to_result_ms: Option<f64>,
    pub wall_ms: f64,
    pub crash_line: Option<String>,
    pub result: Option<GuestReport>,
    pub frame_errors: Vec<String>,
    /// The VMM's own error (the run never started), or empty.
    pub error: Option<String>,
    /// Console tail when there is no result (evidence).
    pub console_tail: Option<String>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl RunRecord {
    pub fn from_run(backend: &str, run: u32, r: &VmRun) -> Self {
        let result = r.messages.iter().rev().find_map(|m| match m {
            GuestMessage::Result(rep) => Some((**rep).clone()),
            _ => None,
        });
        RunRecord {
            backend: backend.to_string(),
            run,
            end: match r.end {
                VmEnd::Shutdown => "shutdown",
                VmEnd::TimedOut => "timed_out",
                VmEnd::Cancelled => "cancelled",
            }
            .into(),
            to_agent_ms: r.to_agent.map(ms),
            to_result_ms: r.to_result.map(ms),
            wall_ms: ms(r.wall),
            crash_line: r.crash_line.clone(),
            console_tail: result.is_none().then(|| r.console_tail.clone()),
            result,
            frame_errors: r.frame_errors.clone(),
            error: None,
        }
    }

    pub fn from_error(backend: &str, run: u32, err: &str) -> Self {
        RunRecord {
            backend: backend.to_string(),
            run,
            end: "error".into(),
            to_agent_ms: None,
            to_result_ms: None,
            wall_ms: 0.0,
            crash_line: None,
            result: None,
            frame_errors: Vec::new(),
            error: Some(err.to_string()),
            console_tail: None,
        }
    }

    /// One line (JSON has no raw newlines).
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// Every record in a console log; lines may carry a `\r` or kernel noise before the prefix.
    pub fn parse_all(console: &str) -> Vec<RunRecord> {
        console
            .lines()
            .filter_map(|l| {
                let at = l.find(LINE_PREFIX)?;
                serde_json::from_str(l[at + LINE_PREFIX.len()..].trim_end()).ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_console_noise() {
        let r = RunRecord::from_error("kvm", 3, "no /dev/kvm");
        let log = format!("[ 1.0] x\r\n{}\r\ngarbage KTSTR-VMM {{bad\n", r.to_line());
        assert_eq!(RunRecord::parse_all(&log), vec![r]);
    }
}
