//! The result store: `OUT/results.jsonl`, one JSON record per line, each appended and fsync'd as
//! soon as it exists so that Ctrl-C or a kill leaves a valid partial file. A torn last line (the
//! process died mid-write) is ignored on read with a notice; a record from a newer format version
//! is refused with a message saying so.

use crate::plan::{CellInputs, CellKey, Column};
use crate::result::{CellResult, RESULT_FORMAT_VERSION};
use crate::spec::MatrixSpec;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// Version of the results.jsonl line format; readers refuse newer versions.
pub const STORE_FORMAT_VERSION: u32 = 1;
pub const RESULTS_FILE: &str = "results.jsonl";

/// One line of results.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// Written at the start of every invocation (a resumed run appends another; the last wins).
    Run(Box<RunRecord>),
    Cell(Box<CellRecord>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    pub ktstr_version: String,
    pub spec: MatrixSpec,
    /// Report columns in spec order.
    pub columns: Vec<Column>,
    /// Unix seconds.
    pub started_at: u64,
    /// Which shard ran where; absent in records of runs before shards existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RunOrigin>,
}

/// Where a run ran: the shard of the plan (none for the whole plan) on which host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrigin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
    pub host: String,
    /// Host cores the run could use.
    pub cores: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub format_version: u32,
    /// [`crate::plan::cell_id`]: hash of the key and the inputs' hashes.
    pub id: String,
    pub key: CellKey,
    pub inputs: CellInputs,
    pub result: CellResult,
    /// Unix seconds.
    pub finished_at: u64,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: written by a newer ktstr (format_version {found}; this ktstr reads up to {supported}); re-render it with that ktstr or upgrade"
    )]
    NewerFormat {
        path: PathBuf,
        line: usize,
        found: u32,
        supported: u32,
    },
    #[error("{path}:{line}: not a results record ({message}); the file is damaged")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no run record; is this a `ktstr matrix` output directory?")]
    NoRun { path: PathBuf },
}

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub run: RunRecord,
    pub cells: Vec<CellRecord>,
    /// Set when a torn last line was dropped (say so to the user).
    pub notice: Option<String>,
}

/// Reads results.jsonl. Later records for the same cell id replace earlier ones.
pub fn read(path: &Path) -> Result<Loaded, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut run = None;
    let mut cells: Vec<CellRecord> = Vec::new();
    // Index by id: a merged run holds tens of thousands of cells.
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut notice = None;
    for (i, line) in lines.iter().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                if i + 1 == lines.len() && !complete {
                    notice = Some(format!(
                        "{}:{lineno}: ignoring a torn last line (the run was interrupted while writing it)",
                        path.display()
                    ));
                    break;
                }
                return Err(StoreError::Malformed {
                    path: path.to_path_buf(),
                    line: lineno,
                    message: e.to_string(),
                });
            }
        };
        // Check the version before the shape: a newer format may have a different shape.
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found > STORE_FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                line: lineno,
                found,
                supported: STORE_FORMAT_VERSION,
            });
        }
        if let Some(rv) = value
            .pointer("/result/format_version")
            .and_then(|v| v.as_u64())
            && rv as u32 > RESULT_FORMAT_VERSION
        {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                line: lineno,
                found: rv as u32,
                supported: RESULT_FORMAT_VERSION,
            });
        }
        let rec: Record = serde_json::from_value(value).map_err(|e| StoreError::Malformed {
            path: path.to_path_buf(),
            line: lineno,
            message: e.to_string(),
        })?;
        match rec {
            Record::Run(r) => run = Some(*r),
            Record::Cell(c) => match index.get(&c.id) {
                Some(&i) => cells[i] = *c,
                None => {
                    index.insert(c.id.clone(), cells.len());
                    cells.push(*c);
                }
            },
        }
    }
    let run = run.ok_or_else(|| StoreError::NoRun {
        path: path.to_path_buf(),
    })?;
    Ok(Loaded { run, cells, notice })
}

/// Appends records, one fsync'd line each. Shared between worker threads.
pub struct Writer {
    path: PathBuf,
    file: Mutex<File>,
}

impl Writer {
    /// Opens (creating) `dir/results.jsonl` for appending. A torn last line from an earlier kill is
    /// cut off first, so the next record starts on its own line and the file stays readable.
    pub fn open(dir: &Path) -> Result<Writer, StoreError> {
        let path = dir.join(RESULTS_FILE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io)?;
        let text = std::fs::read(&path).map_err(io)?;
        if !text.is_empty() && text.last() != Some(&b'\n') {
            let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(Writer {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, rec: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(rec).expect("records serialize");
        line.push(b'\n');
        // One write of the whole line under the lock, then fsync: a crash leaves at most one torn
        // line at the end, which `read` ignores.
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        (&*file).write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
