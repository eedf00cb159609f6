//! A matrix session: one output directory from start to report, as a library call that `ktstr
//! matrix` and each step of a bisection use alike.
//!
//! [`Session::open`] claims the output directory (a new run, or `--resume` of an interrupted one,
//! whose finished cells are then skipped); [`Session::run`] prepares through the runner, writes the
//! run record, runs the engine with the store and the caller's subscribers; [`render`] reads the
//! stored results back and writes every report format. Nothing is held only in memory: each
//! finished cell is in `results.jsonl` before the next event, so an interrupted session loses at
//! most the cells that were still running.

use crate::engine::{self, CellRunner, Event, RunOptions, RunSummary, StoreSubscriber, Subscriber};
use crate::plan::Plan;
use crate::report::{self, Report, Thresholds};
use crate::store::{self, Record, RunOrigin, RunRecord, STORE_FORMAT_VERSION, StoreError, Writer};
use crate::{html, render as formats};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// The report files [`render`] writes into the output directory.
pub const REPORT_FILES: [&str; 4] = ["report.md", "report.json", "report.html", "junit.xml"];

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(
        "{} exists: pass --resume to continue that run, or choose another output directory",
        path.display()
    )]
    ResultsExist { path: PathBuf },
    /// The stored results of the directory cannot be read (malformed, newer format, no run).
    #[error(transparent)]
    Stored(StoreError),
    #[error("{0}")]
    Prepare(Box<dyn std::error::Error + Send + Sync>),
    #[error("results were not all stored: {0}")]
    NotStored(StoreError),
    #[error(
        "baseline {baseline:?} names no column of this run: use one of its kernels ({kernels}) or KERNEL/CONFIGS"
    )]
    UnknownBaseline { baseline: String, kernels: String },
    #[error("writing the reports into {}: {source}", dir.display())]
    Reports {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SessionError {
    /// Errors that a change of input fixes (exit 2 at the command line); the others are faults.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SessionError::ResultsExist { .. }
                | SessionError::Stored(_)
                | SessionError::Prepare(_)
                | SessionError::UnknownBaseline { .. }
        )
    }
}

/// An output directory claimed for a run.
#[derive(Debug)]
pub struct Session {
    out: PathBuf,
    done_ids: HashSet<String>,
    notice: Option<String>,
    origin: Option<RunOrigin>,
}

/// How a session's run ended.
#[derive(Debug)]
pub struct SessionRun {
    /// `None` when Ctrl-C came during preparation, before any cell ran.
    pub summary: Option<RunSummary>,
    pub cancelled: bool,
}

impl Session {
    /// Claims `out`: a directory without results for a new run, or, with `resume`, one whose
    /// finished cells are read back so they are not run again.
    pub fn open(out: &Path, resume: bool) -> Result<Session, SessionError> {
        let results = out.join(store::RESULTS_FILE);
        if results.exists() && !resume {
            return Err(SessionError::ResultsExist { path: results });
        }
        let (done_ids, notice) = if resume && results.exists() {
            let loaded = store::read(&results).map_err(SessionError::Stored)?;
            let ids = loaded.cells.iter().map(|c| c.id.clone()).collect();
            (ids, loaded.notice)
        } else {
            (HashSet::new(), None)
        };
        Ok(Session {
            out: out.to_path_buf(),
            done_ids,
            notice,
            origin: None,
        })
    }

    /// Records in the run record which shard runs here, on which host.
    pub fn with_origin(mut self, origin: RunOrigin) -> Session {
        self.origin = Some(origin);
        self
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    pub fn results_path(&self) -> PathBuf {
        self.out.join(store::RESULTS_FILE)
    }

    /// Cells already finished in this directory (by cell id).
    pub fn done_ids(&self) -> &HashSet<String> {
        &self.done_ids
    }

    /// What reading the previous results noticed (e.g. a torn last line that was dropped).
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Prepares every artifact, writes the run record, and runs the plan's unfinished cells.
    /// `subscribers` see every event (preparation lines included); the store is one of them.
    /// `opts.done_ids` is replaced by the directory's own.
    pub fn run<R: CellRunner>(
        &self,
        runner: &R,
        plan: &Plan,
        opts: RunOptions,
        subscribers: &[&dyn Subscriber],
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<SessionRun, SessionError> {
        let emit = |ev: Event| subscribers.iter().for_each(|s| s.on_event(&ev));
        let prepared = runner
            .prepare(plan, &emit)
            .map_err(|e| SessionError::Prepare(Box::new(e)))?;
        if cancelled() {
            return Ok(SessionRun {
                summary: None,
                cancelled: true,
            });
        }
        let writer = Writer::open(&self.out).map_err(SessionError::NotStored)?;
        writer
            .append(&Record::Run(Box::new(RunRecord {
                format_version: STORE_FORMAT_VERSION,
                ktstr_version: opts.ktstr_version.clone(),
                spec: plan.spec.clone(),
                columns: plan.columns.clone(),
                started_at: store::unix_now(),
                origin: self.origin.clone(),
            })))
            .map_err(SessionError::NotStored)?;
        let store_sub = StoreSubscriber {
            writer,
            error: Mutex::new(None),
        };
        let mut all: Vec<&dyn Subscriber> = vec![&store_sub];
        all.extend_from_slice(subscribers);
        let opts = RunOptions {
            done_ids: self.done_ids.clone(),
            ..opts
        };
        let summary = engine::run(runner, &prepared, plan, &opts, &all, cancelled);
        if let Some(e) = store_sub
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(SessionError::NotStored(e));
        }
        Ok(SessionRun {
            cancelled: summary.cancelled,
            summary: Some(summary),
        })
    }
}

/// Reads `dir`'s results, checks the baseline against its columns, and writes every report
/// format into `dir`. Returns the report (the caller prints the terminal form).
pub fn render(
    dir: &Path,
    baseline: Option<&str>,
    thresholds: &Thresholds,
) -> Result<Report, SessionError> {
    let loaded = store::read(&dir.join(store::RESULTS_FILE)).map_err(SessionError::Stored)?;
    if let Some(b) = baseline
        && crate::plan::resolve_baseline_spec(b, &loaded.run.spec).is_none()
    {
        return Err(SessionError::UnknownBaseline {
            baseline: b.to_string(),
            kernels: loaded.run.spec.kernels.join(", "),
        });
    }
    let mut r = report::single(&dir.display().to_string(), &loaded, baseline, thresholds);
    // A merge's missing shards are not in results.jsonl (its missing cells are).
    r.notices.extend(crate::merge::notices_of(dir));
    write_reports(dir, &r).map_err(|source| SessionError::Reports {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(r)
}

/// Writes report.md, report.json, report.html and junit.xml, each atomically (a reader never
/// sees half a report).
pub fn write_reports(dir: &Path, r: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)? + "\n";
    let texts = [formats::markdown(r), json, html::html(r), formats::junit(r)];
    for (name, text) in REPORT_FILES.iter().zip(texts) {
        write_atomically(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Writes `path` through a temporary file in its directory and a rename, so a reader sees the
/// old content or the new, never half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
