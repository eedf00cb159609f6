//! `ktstr bench vmm`, host side: one L1 boot (see the module above) in which the same L2 kernel
//! and initramfs are booted `runs` times per backend; medians of host-side time to the agent's
//! first frame and to the result frame, and the kvm / qemu ratio.

use super::settle::{self, Rounds};
use super::{BENCH_PATH, L1Outcome, L1Request, NestedError, RunRecord, run_l1};
use ktstr::initramfs::{self, InitramfsSpec};
use ktstr::topology::Topology;
use ktstr_guest::protocol::{CellSpec, Mode, PROTOCOL_VERSION};
use ktstr_matrix::stats::{bootstrap_ratio_of_medians, median};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Resamples for the ratio's bootstrap interval.
const BOOTSTRAP_RESAMPLES: usize = 4000;

const L2_INITRD: &str = "/nested/l2-initrd";

#[derive(Debug, Clone)]
pub struct BenchRequest {
    /// The ktstr binary L1 runs (`$KTSTR`): the key holder and the `bench` dispatcher.
    pub ktstr_bin: PathBuf,
    /// The `ktstr-bench` binary whose VMM code is measured; `$KTSTR bench vmm` runs it in L1.
    pub bench_bin: PathBuf,
    /// L2 kernel; `None` = the Debian cloud kernel L1 runs.
    pub l2_kernel: Option<PathBuf>,
    pub runs: u32,
    /// `kvm`, `qemu-kvm`.
    pub backends: Vec<String>,
    pub topology: Topology,
    pub console_log: PathBuf,
    /// Extra L2 kernel command line items, the same for every backend.
    pub cmdline: Vec<String>,
    /// What the L2 agent runs (`true`: the figures are boot cost only).
    pub l2_exec: String,
    /// Print each L2 boot's whole console into the L1 console (for profiling the L2 boot).
    pub print_console: bool,
    /// Shell commands appended to the L1 script after the benchmark (profiling variants that
    /// share the same L1 boot; `$KTSTR`, `$L2_KERNEL` and the L2 initramfs are available).
    pub l1_extra: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendFigures {
    pub backend: String,
    pub ok_runs: usize,
    pub failed_runs: usize,
    /// Spawn -> agent and spawn -> result of the runs that produced a result.
    pub to_agent_ms: Vec<f64>,
    pub to_result_ms: Vec<f64>,
}

impl BackendFigures {
    pub fn median_to_agent_ms(&self) -> Option<f64> {
        median(&self.to_agent_ms)
    }
    pub fn median_to_result_ms(&self) -> Option<f64> {
        median(&self.to_result_ms)
    }
}

/// Per-backend medians over the runs that produced a result.
pub fn figures(records: &[RunRecord], backends: &[String]) -> Vec<BackendFigures> {
    backends
        .iter()
        .map(|b| {
            let mine: Vec<&RunRecord> = records.iter().filter(|r| &r.backend == b).collect();
            let ok: Vec<&&RunRecord> = mine.iter().filter(|r| r.to_result_ms.is_some()).collect();
            BackendFigures {
                backend: b.clone(),
                ok_runs: ok.len(),
                failed_runs: mine.len() - ok.len(),
                to_agent_ms: ok.iter().filter_map(|r| r.to_agent_ms).collect(),
                to_result_ms: ok.iter().filter_map(|r| r.to_result_ms).collect(),
            }
        })
        .collect()
}

/// Markdown table + ratio line.
pub fn render(figs: &[BackendFigures], runs: u32, topology: Topology) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut s = format!(
        "vmm boot benchmark (nested: L1 = Debian cloud kernel under QEMU TCG, {runs} runs per backend, L2 topology {topology})\n\n| backend | ok/failed | median spawn->agent (ms) | median spawn->result (ms) |\n|---|---|---|---|\n"
    );
    for f in figs {
        let _ = writeln!(
            s,
            "| {} | {}/{} | {} | {} |",
            f.backend,
            f.ok_runs,
            f.failed_runs,
            ms(f.median_to_agent_ms()),
            ms(f.median_to_result_ms())
        );
    }
    let get = |name: &str| figs.iter().find(|f| f.backend == name);
    if let (Some(k), Some(q)) = (get("kvm"), get("qemu-kvm")) {
        for (what, sa, sb) in [
            ("agent", &k.to_agent_ms, &q.to_agent_ms),
            ("result", &k.to_result_ms, &q.to_result_ms),
        ] {
            if let (Some(a), Some(b)) = (median(sa), median(sb)) {
                let _ = write!(s, "\nratio kvm/qemu-kvm, spawn->{what}: {:.2}", a / b);
                if let Some((lo, hi)) = bootstrap_ratio_of_medians(sa, sb, BOOTSTRAP_RESAMPLES) {
                    let _ = write!(s, " (95% bootstrap interval {lo:.2}-{hi:.2})");
                }
                s.push('\n');
            }
        }
    }
    s
}

/// The benchmark's runs over L1 boots: a further L1 boot runs, per backend, the runs still
/// missing, and the finished ones are kept (see [`settle`]).
struct BenchRounds<'a> {
    req: &'a BenchRequest,
    /// The L2 initramfs, built once so every backend and every L1 boot boots the same bytes.
    l2_initrd: PathBuf,
    /// `ktstr-bench` without debug info, made once for every L1 boot.
    bench_bin: PathBuf,
    records: Vec<RunRecord>,
    /// Run numbers of the current L1 boot start here.
    offset: u32,
}

impl BenchRounds<'_> {
    fn done(&self, backend: &str) -> u32 {
        self.records.iter().filter(|r| r.backend == backend).count() as u32
    }

    /// The profiling extra script L1 boot `boot` runs: the first boot only, so it is not part
    /// of the figures.
    fn extra(&self, boot: u32) -> &str {
        if boot == 1 { &self.req.l1_extra } else { "" }
    }
}

impl Rounds for BenchRounds<'_> {
    fn next(&mut self, boot: u32) -> Option<L1Request> {
        let req = self.req;
        let left = req
            .backends
            .iter()
            .map(|b| req.runs.saturating_sub(self.done(b)))
            .max()
            .unwrap_or(0);
        if left == 0 {
            return None;
        }
        let console_log = if boot == 1 {
            req.console_log.clone()
        } else {
            let log = req
                .console_log
                .with_extension(format!("l1-{}.log", boot - 1));
            eprintln!(
                "L1 ended before every run reported; booting L1 again for {left} more run(s) per backend, console {}",
                log.display()
            );
            log
        };
        let extra = self.extra(boot);
        let mut l1 = L1Request::new(
            req.ktstr_bin.clone(),
            guest_side_script(req, left, extra),
            console_log,
        );
        l1.l2_kernel = req.l2_kernel.clone();
        l1.files
            .push((self.l2_initrd.clone(), L2_INITRD.to_string()));
        l1.files
            .push((self.bench_bin.clone(), BENCH_PATH.to_string()));
        l1.with_qemu = req.backends.iter().any(|b| b.starts_with("qemu"));
        l1.zero_freed_memory = true;
        // Inner boots get 240 s each, several times what a TCG-nested boot takes on a loaded
        // host (docs/benchmarks.md, "The nested test bed's own failures").
        let extra_s = if extra.is_empty() { 0 } else { 1200 };
        l1.timeout =
            Duration::from_secs(300 + extra_s + 250 * u64::from(left) * req.backends.len() as u64);
        self.offset = req.runs - left;
        Some(l1)
    }

    fn absorb(&mut self, boot: u32, out: &L1Outcome) {
        for r in &out.records {
            // Round-robin order, so a backend that is already complete stops at `runs`.
            if self.done(&r.backend) < self.req.runs {
                let mut r = r.clone();
                r.run += self.offset;
                self.records.push(r);
            }
        }
        let short = self
            .req
            .backends
            .iter()
            .any(|b| self.done(b) < self.req.runs);
        // The profiling extra ended without the script's exit status: L1 died there, after
        // the figures.
        let extra_cut = !self.extra(boot).is_empty() && out.exit_code.is_none();
        if short || extra_cut {
            // How L1 ended (its own crash line, or how QEMU ended) is the evidence of the bed.
            eprintln!(
                "L1 boot {boot} ended after {} record(s), {:?}: {}",
                out.records.len(),
                out.run.end,
                out.run.crash_line.as_deref().unwrap_or("no crash line")
            );
        }
    }
}

pub fn bench(req: &BenchRequest) -> Result<(Vec<BackendFigures>, String), NestedError> {
    // The L2 initramfs is built here, once, so every backend boots the same bytes. Its agent
    // runs `true` and reports at once: the figures are boot cost, not workload.
    let l2_initrd = initramfs::build(&InitramfsSpec::new(
        CellSpec {
            protocol_version: PROTOCOL_VERSION,
            mode: Mode::Shell {
                exec: Some(req.l2_exec.clone()),
            },
        },
        Vec::new(),
    ))?;
    // L1 (QEMU TCG emulating SVM) often dies mid-benchmark, by an oops or silently
    // (docs/benchmarks.md, "The nested test bed's own failures").
    const MAX_L1_BOOTS: u32 = 3;
    let bin_dir = tempfile::tempdir().map_err(super::io("temp dir"))?;
    let mut rounds = BenchRounds {
        req,
        l2_initrd,
        bench_bin: super::stripped(&req.bench_bin, &bin_dir.path().join("ktstr-bench")),
        records: Vec::new(),
        offset: 0,
    };
    let settled = settle::boot_until_settled(&mut rounds, MAX_L1_BOOTS, run_l1)?;
    let records = rounds.records;
    let figs = figures(&records, &req.backends);
    let mut text = render(&figs, req.runs, req.topology);
    let Some(settled) = settled else {
        let _ = writeln!(text, "\nno L1 boot: no runs were asked for");
        return Ok((figs, text));
    };
    let _ = writeln!(text, "\nL1 boots: {}", settled.boots);
    for r in records.iter().filter(|r| r.to_result_ms.is_none()) {
        let _ = writeln!(
            text,
            "\nfailed run {} #{}: end {}, error {:?}, crash {:?}\n{}",
            r.backend,
            r.run,
            r.end,
            r.error,
            r.crash_line,
            r.console_tail.as_deref().unwrap_or("")
        );
    }
    if records.is_empty() {
        let _ = writeln!(
            text,
            "\nno inner runs reported; L1 console tail:\n{}",
            settled.last.run.console_tail
        );
    }
    Ok((figs, text))
}

/// The L1 script: the guest side of the benchmark for `runs` rounds, then `extra`.
fn guest_side_script(req: &BenchRequest, runs: u32, extra: &str) -> String {
    let mut script = format!(
        "$KTSTR bench vmm --guest-side --kernel $L2_KERNEL --initramfs {L2_INITRD} --runs {runs} --backends {} --topology {} --memory-mib 256 --timeout-s 240",
        req.backends.join(","),
        req.topology
    );
    for c in &req.cmdline {
        let _ = write!(script, " --cmdline '{c}'");
    }
    if req.print_console {
        script.push_str(" --print-console");
    }
    script.push('\n');
    script.push_str(extra);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(backend: &str, agent: f64, result: Option<f64>) -> RunRecord {
        let mut r = RunRecord::from_error(backend, 0, "");
        r.to_agent_ms = Some(agent);
        r.to_result_ms = result;
        r
    }

    #[test]
    fn medians_and_ratio() {
        let recs = vec![
            rec("kvm", 100.0, Some(150.0)),
            rec("kvm", 300.0, Some(350.0)),
            rec("kvm", 200.0, Some(250.0)),
            rec("kvm", 999.0, None),
            rec("qemu-kvm", 400.0, Some(500.0)),
        ];
        let f = figures(&recs, &["kvm".into(), "qemu-kvm".into()]);
        assert_eq!(f[0].median_to_agent_ms(), Some(200.0));
        assert_eq!((f[0].ok_runs, f[0].failed_runs), (3, 1));
        let text = render(&f, 3, Topology::default());
        assert!(
            text.contains("spawn->agent: 0.50 (95% bootstrap interval 0.25-0.75)"),
            "{text}"
        );
        assert_eq!(median(&[1.0, 4.0]), Some(2.5));
    }
}
