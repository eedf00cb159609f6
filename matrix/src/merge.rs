//! `ktstr merge`: the outputs of a sharded run (or of reruns of some of its shards) combined into
//! one output directory whose results.jsonl is what one machine running the whole plan would have
//! stored, so the usual reports render from it.
//!
//! Inputs must come from the same spec. A cell stored by several inputs is taken from the newest
//! record; a cell of the plan that no input holds is stored as an `error` cell whose reason says
//! it is missing and which shard should have run it, so every report lists it (and the merge
//! exits 1) instead of silently having fewer cells. Shards that no input came from are listed in
//! `merge.json` and in the report's notices.

use crate::plan::{CellInputs, CellKey, cell_id, expand};
use crate::result::{CellResult, HostTimings};
use crate::shard::{Assigner, Shard};
use crate::store::{self, CellRecord, Loaded, Record, RunOrigin, RunRecord, STORE_FORMAT_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Written next to the merged results: where each cell came from and what is missing.
pub const MERGE_FILE: &str = "merge.json";
/// The backend field of a missing cell's placeholder record (no backend ran it).
pub const MISSING_BACKEND: &str = "missing";
/// Spec fields that say how a machine ran, not what ran: shards may differ in them.
const PER_MACHINE_FIELDS: [&str; 1] = ["jobs"];

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("give at least one shard output directory to merge")]
    NoInputs,
    #[error(
        "{}: not the output of the same spec as {}: its `{field}` is {theirs} but {}'s is {ours}; merge only the shards of one spec",
        dir.display(), first.display(), first.display()
    )]
    SpecDiffers {
        dir: PathBuf,
        first: PathBuf,
        field: String,
        theirs: String,
        ours: String,
    },
    #[error(
        "{}: shard {theirs} of a run split {}-way, but {} is shard {ours}: merge the shards of one split",
        dir.display(), theirs.count, first.display()
    )]
    ShardCounts {
        dir: PathBuf,
        first: PathBuf,
        theirs: Shard,
        ours: Shard,
    },
    #[error(
        "--out {}: it is one of the directories to merge; give the merge its own directory",
        out.display()
    )]
    OutIsInput { out: PathBuf },
    #[error(
        "--out {}: it holds a run's results (no {MERGE_FILE}); choose an empty directory or an earlier merge's",
        out.display()
    )]
    OutHoldsRun { out: PathBuf },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl MergeError {
    /// Errors that a change of input fixes (exit 2).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, MergeError::Write { .. })
    }
}

/// One shard output, as read from its directory.
#[derive(Debug, Clone)]
pub struct Input {
    pub dir: PathBuf,
    pub loaded: Loaded,
}

/// What merge.json says about one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub dir: String,
    pub shard: Option<Shard>,
    pub host: Option<String>,
    pub cores: Option<u32>,
    /// Cells of this input in the merged results.
    pub cells_taken: usize,
    /// Cells of this input replaced by a newer record of the same cell elsewhere.
    pub cells_superseded: usize,
}

/// A shard no input came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingShard {
    pub shard: Shard,
    /// Its cells that no other input held either.
    pub cells_missing: usize,
}

/// merge.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub format_version: u32,
    pub shard_count: Option<u32>,
    pub inputs: Vec<Source>,
    pub plan_cells: usize,
    pub missing_shards: Vec<MissingShard>,
    /// Labels of the plan's cells that no input held (each stored as an error cell).
    pub missing_cells: Vec<String>,
    /// Cells stored by an input that the spec does not have (a resumed run's earlier spec):
    /// left out of the merge.
    pub outside_plan: usize,
    /// Lines the report shows as notices.
    pub notices: Vec<String>,
}

/// The merged run: its record, its cells in plan order, and what merge.json says.
#[derive(Debug, Clone)]
pub struct Merged {
    pub run: RunRecord,
    pub cells: Vec<CellRecord>,
    /// For each cell, the index of the input it was taken from (`None`: missing).
    pub taken_from: Vec<Option<usize>>,
    pub summary: Summary,
}

/// Combines `inputs` (see the module comment). `origin` is recorded as the merged run's.
pub fn merge(inputs: &[Input], origin: Option<RunOrigin>) -> Result<Merged, MergeError> {
    let first = inputs.first().ok_or(MergeError::NoInputs)?;
    let spec = &first.loaded.run.spec;
    for i in &inputs[1..] {
        check_same_spec(first, i)?;
    }
    let shard_count = shard_count(inputs)?;
    let plan = expand(spec, &BTreeMap::new());
    let (mut best, superseded) = newest_per_key(inputs);
    let given: Vec<Shard> = inputs
        .iter()
        .filter_map(|i| i.loaded.run.origin.as_ref().and_then(|o| o.shard))
        .collect();
    let assigner = shard_count.map(|n| Assigner::new(&plan.columns, n));
    let mut taken = vec![0usize; inputs.len()];
    let mut cells = Vec::with_capacity(plan.cells.len());
    let mut taken_from = Vec::with_capacity(plan.cells.len());
    let mut missing_cells = Vec::new();
    let mut missing_per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    for cell in &plan.cells {
        match best.remove(&cell.key) {
            Some((n, rec)) if rec.result.backend != MISSING_BACKEND => {
                taken[n] += 1;
                cells.push(rec.clone());
                taken_from.push(Some(n));
            }
            _ => {
                let shard = assigner.as_ref().map(|a| Shard {
                    index: a.shard_of(&cell.key),
                    count: shard_count.unwrap_or(1),
                });
                if let Some(s) = shard {
                    *missing_per_shard.entry(s.index).or_default() += 1;
                }
                missing_cells.push(cell.key.label());
                taken_from.push(None);
                cells.push(missing(
                    &cell.key,
                    shard,
                    given.contains(&shard.unwrap_or(ANY)),
                ));
            }
        }
    }
    let outside_plan = best.len();
    let missing_shards: Vec<MissingShard> = shard_count
        .map(|n| {
            (1..=n)
                .map(|index| Shard { index, count: n })
                .filter(|s| !given.contains(s))
                .map(|s| MissingShard {
                    shard: s,
                    cells_missing: missing_per_shard.get(&s.index).copied().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let sources = inputs
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let o = i.loaded.run.origin.as_ref();
            Source {
                dir: i.dir.display().to_string(),
                shard: o.and_then(|o| o.shard),
                host: o.map(|o| o.host.clone()),
                cores: o.map(|o| o.cores),
                cells_taken: taken[n],
                cells_superseded: superseded[n],
            }
        })
        .collect();
    let mut summary = Summary {
        format_version: 1,
        shard_count,
        inputs: sources,
        plan_cells: plan.cells.len(),
        missing_shards,
        missing_cells,
        outside_plan,
        notices: Vec::new(),
    };
    summary.notices = notices(&summary, inputs);
    let run = RunRecord {
        format_version: STORE_FORMAT_VERSION,
        ktstr_version: first.loaded.run.ktstr_version.clone(),
        spec: spec.clone(),
        columns: plan.columns.clone(),
        started_at: inputs
            .iter()
            .map(|i| i.loaded.run.started_at)
            .min()
            .unwrap_or(0),
        origin,
    };
    Ok(Merged {
        run,
        cells,
        taken_from,
        summary,
    })
}

/// A shard that matches nothing (for "was this shard given" when there are no shards).
const ANY: Shard = Shard { index: 0, count: 0 };

/// Newer by finish time; on a tie the later one read wins, as in one results.jsonl. A missing
/// cell's placeholder never wins over a record of a run.
fn newer(rec: &CellRecord, old: &CellRecord) -> bool {
    let placeholder = |r: &CellRecord| r.result.backend == MISSING_BACKEND;
    match (placeholder(rec), placeholder(old)) {
        (true, false) => false,
        (false, true) => true,
        _ => rec.finished_at >= old.finished_at,
    }
}

/// The placeholder of a cell no input held.
fn missing(key: &CellKey, shard: Option<Shard>, shard_given: bool) -> CellRecord {
    let reason = match shard {
        Some(s) if shard_given => format!(
            "missing: shard {s} did not store this cell (interrupted?): rerun it with --resume and merge again"
        ),
        Some(s) => format!(
            "missing: no output of shard {s} was merged: run `ktstr matrix --shard {s}` and merge again"
        ),
        None => "missing: no merged output stored this cell: run it and merge again".into(),
    };
    let inputs = CellInputs::default();
    CellRecord {
        format_version: STORE_FORMAT_VERSION,
        id: cell_id(key, &inputs),
        key: key.clone(),
        inputs,
        result: CellResult::error(reason, HostTimings::default(), MISSING_BACKEND.into()),
        finished_at: 0,
    }
}

/// The newest record of every cell key with the input it came from, and how many records of
/// each input a newer one superseded.
type Newest<'a> = HashMap<&'a CellKey, (usize, &'a CellRecord)>;

fn newest_per_key(inputs: &[Input]) -> (Newest<'_>, Vec<usize>) {
    let mut best: Newest = HashMap::new();
    let mut superseded = vec![0usize; inputs.len()];
    for (n, input) in inputs.iter().enumerate() {
        for rec in &input.loaded.cells {
            let replaces = match best.get(&rec.key) {
                Some(&(m, old)) if newer(rec, old) => {
                    superseded[m] += 1;
                    true
                }
                Some(_) => {
                    superseded[n] += 1;
                    false
                }
                None => true,
            };
            if replaces {
                best.insert(&rec.key, (n, rec));
            }
        }
    }
    (best, superseded)
}

fn notices(s: &Summary, inputs: &[Input]) -> Vec<String> {
    let mut out = Vec::new();
    let mut versions: Vec<&str> = inputs
        .iter()
        .map(|i| i.loaded.run.ktstr_version.as_str())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        // Allowed (a cell's inputs record its own version), but worth knowing when numbers differ.
        out.push(format!(
            "merge: the inputs were written by different ktstr versions ({})",
            versions.join(", ")
        ));
    }
    for m in &s.missing_shards {
        out.push(format!(
            "merge: shard {} is missing (no output of it was merged); {} of its cells are missing",
            m.shard, m.cells_missing
        ));
    }
    if !s.missing_cells.is_empty() {
        out.push(format!(
            "merge: {} of {} cells are missing, listed as errors",
            s.missing_cells.len(),
            s.plan_cells
        ));
    }
    if s.outside_plan > 0 {
        out.push(format!(
            "merge: {} stored cells are not in the spec (from an earlier spec of a resumed run) and were left out",
            s.outside_plan
        ));
    }
    out
}

/// The spec fields, by name, as JSON text (so the differing one can be named).
fn spec_fields(l: &Loaded) -> BTreeMap<String, String> {
    match serde_json::to_value(&l.run.spec) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter(|(k, _)| !PER_MACHINE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn check_same_spec(first: &Input, other: &Input) -> Result<(), MergeError> {
    let (ours, theirs) = (spec_fields(&first.loaded), spec_fields(&other.loaded));
    for (field, value) in &ours {
        let t = theirs
            .get(field)
            .cloned()
            .unwrap_or_else(|| "absent".into());
        if &t != value {
            return Err(MergeError::SpecDiffers {
                dir: other.dir.clone(),
                first: first.dir.clone(),
                field: field.clone(),
                theirs: t,
                ours: value.clone(),
            });
        }
    }
    Ok(())
}

/// The number of shards the inputs were split into (`None`: no input is a shard).
fn shard_count(inputs: &[Input]) -> Result<Option<u32>, MergeError> {
    let shard = |i: &Input| i.loaded.run.origin.as_ref().and_then(|o| o.shard);
    let Some((first, ours)) = inputs.iter().find_map(|i| shard(i).map(|s| (i, s))) else {
        return Ok(None);
    };
    for i in inputs {
        if let Some(theirs) = shard(i)
            && theirs.count != ours.count
        {
            return Err(MergeError::ShardCounts {
                dir: i.dir.clone(),
                first: first.dir.clone(),
                theirs,
                ours,
            });
        }
    }
    Ok(Some(ours.count))
}

/// Checks that `out` may receive the merge: not an input, and not a run's own directory.
pub fn check_out(out: &Path, inputs: &[PathBuf]) -> Result<(), MergeError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if inputs.iter().any(|i| canon(i) == canon(out)) {
        return Err(MergeError::OutIsInput {
            out: out.to_path_buf(),
        });
    }
    if out.join(store::RESULTS_FILE).exists() && !out.join(MERGE_FILE).exists() {
        return Err(MergeError::OutHoldsRun {
            out: out.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes `out/results.jsonl` (the run record, then the cells) and `out/merge.json`, each whole
/// and atomically; the caller then renders the reports with [`crate::session::render`].
pub fn write(out: &Path, m: &Merged) -> Result<(), MergeError> {
    let err = |path: PathBuf| move |source| MergeError::Write { path, source };
    std::fs::create_dir_all(out).map_err(err(out.to_path_buf()))?;
    let mut text = Vec::with_capacity(m.cells.len() * 1024);
    let mut line = |rec: &Record| {
        serde_json::to_writer(&mut text, rec).expect("records serialize");
        text.push(b'\n');
    };
    line(&Record::Run(Box::new(m.run.clone())));
    for c in &m.cells {
        line(&Record::Cell(Box::new(c.clone())));
    }
    let results = out.join(store::RESULTS_FILE);
    crate::session::write_atomically(&results, &text).map_err(err(results.clone()))?;
    let json = serde_json::to_vec_pretty(&m.summary).expect("the summary serializes");
    let path = out.join(MERGE_FILE);
    crate::session::write_atomically(&path, &json).map_err(err(path.clone()))
}

/// The notices of a merge in `dir` (none when `dir` is not a merge's output), for the report.
pub fn notices_of(dir: &Path) -> Vec<String> {
    std::fs::read(dir.join(MERGE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Summary>(&b).ok())
        .map(|s| s.notices)
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
