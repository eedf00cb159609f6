//! Sharding a plan over the machines of a job engine (Slurm array, Kubernetes Indexed Job,
//! Buildkite parallel jobs, a GitHub Actions matrix): which cells shard `K/N` runs.
//!
//! The assignment is deterministic (the same on every machine, whatever the order of the spec)
//! and kernel-affine: cells are grouped by column (a kernel built with one config set), each
//! column is cut into a few equal slots, and every shard takes the same number of slots, so a
//! shard builds only the few kernels of its slots (see [`Assigner`]). A cell is placed by its
//! own identity within its column's slots, so it keeps its shard when cells are added to the
//! plan's columns (another scheduler, scenario, topology or repeat); adding or removing a column
//! (a kernel or config set) re-deals the slots. Balance is that of the slots (even) and of hashing
//! cells within a column. docs/scale-out.md has the trade-off and the figures.

use crate::plan::{CellKey, Column, Plan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Shard `index` of `count`, 1-based as `--shard K/N` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum ShardError {
    #[error("--shard {0:?}: write K/N with whole numbers, e.g. --shard 2/5 (shard 2 of 5)")]
    Syntax(String),
    #[error("--shard {0:?}: a matrix needs at least one shard: N >= 1, e.g. --shard 1/1")]
    NoShards(String),
    #[error("--shard {0:?}: at most {MAX_SHARDS} shards; split the matrix into fewer")]
    TooMany(String),
    #[error(
        "--shard {given:?}: shards are numbered 1..{count}: use --shard 1/{count} .. {count}/{count}"
    )]
    OutOfRange { given: String, count: u32 },
    /// An engine's variables that do not make a shard.
    #[error("{0}")]
    Engine(String),
    #[error(
        "--shard {flag} disagrees with {engine} (shard {from_engine}): drop --shard to use the engine's, or run outside that job"
    )]
    FlagDisagrees {
        flag: Shard,
        engine: String,
        from_engine: Shard,
    },
    #[error(
        "{a} says shard {a_shard} but {b} says {b_shard}: pass --shard K/N to say which is meant"
    )]
    EnginesDisagree {
        a: String,
        a_shard: Shard,
        b: String,
        b_shard: Shard,
    },
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError::Syntax(s.into()))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| ShardError::Syntax(s.into()))
        };
        let (index, count) = (num(k)?, num(n)?);
        Shard::new(index, count).map_err(|e| match e {
            ShardError::OutOfRange { count, .. } => ShardError::OutOfRange {
                given: s.into(),
                count,
            },
            ShardError::NoShards(_) => ShardError::NoShards(s.into()),
            ShardError::TooMany(_) => ShardError::TooMany(s.into()),
            other => other,
        })
    }
}

/// More shards than this is a typo, not a cluster (and dealing takes time in N squared).
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// A checked shard: `1 <= index <= count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        let given = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::NoShards(given));
        }
        if count > MAX_SHARDS {
            return Err(ShardError::TooMany(given));
        }
        if index == 0 || index > count {
            return Err(ShardError::OutOfRange { given, count });
        }
        Ok(Shard { index, count })
    }
}

/// A shard read from an engine's variables, with the variables that said so.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineShard {
    pub shard: Shard,
    /// e.g. `SLURM_ARRAY_TASK_ID=4 (SLURM_ARRAY_TASK_MIN=3, SLURM_ARRAY_TASK_COUNT=3)`.
    pub source: String,
}

/// The variable that gives the shard count next to Kubernetes' `JOB_COMPLETION_INDEX` (an Indexed
/// Job does not export its `completions`; the job template sets this to the same number).
pub const K8S_COUNT_VAR: &str = "KTSTR_SHARD_COUNT";

/// Reads the shards the engines' variables describe (`var` looks one up; the process environment
/// in ktstr, a map in tests). Several engines may be nested (a Buildkite agent inside a Slurm job):
/// each one set is returned.
pub fn from_engines(var: &dyn Fn(&str) -> Option<String>) -> Result<Vec<EngineShard>, ShardError> {
    let mut out = Vec::new();
    if let Some(s) = slurm(var)? {
        out.push(s);
    }
    if let Some(id) = var("JOB_COMPLETION_INDEX") {
        let index = engine_number("JOB_COMPLETION_INDEX", &id)?;
        let count = var(K8S_COUNT_VAR).ok_or_else(|| {
            ShardError::Engine(format!(
                "JOB_COMPLETION_INDEX={id} is set but {K8S_COUNT_VAR} is not: set it to the Job's \
                 .spec.completions, or pass --shard K/N"
            ))
        })?;
        let count = engine_number(K8S_COUNT_VAR, &count)?;
        out.push(zero_based(
            index,
            count,
            format!("JOB_COMPLETION_INDEX={id} ({K8S_COUNT_VAR}={count})"),
        )?);
    }
    if let Some(job) = var("BUILDKITE_PARALLEL_JOB") {
        let index = engine_number("BUILDKITE_PARALLEL_JOB", &job)?;
        let count = var("BUILDKITE_PARALLEL_JOB_COUNT").ok_or_else(|| {
            ShardError::Engine(format!(
                "BUILDKITE_PARALLEL_JOB={job} is set but BUILDKITE_PARALLEL_JOB_COUNT is not: give \
                 the step `parallelism`, or pass --shard K/N"
            ))
        })?;
        let count = engine_number("BUILDKITE_PARALLEL_JOB_COUNT", &count)?;
        out.push(zero_based(
            index,
            count,
            format!("BUILDKITE_PARALLEL_JOB={job} (BUILDKITE_PARALLEL_JOB_COUNT={count})"),
        )?);
    }
    Ok(out)
}

/// The shard to run: the flag, checked against every engine's variables, else the engines' one.
pub fn resolve(flag: Option<Shard>, engines: &[EngineShard]) -> Result<Option<Shard>, ShardError> {
    for e in engines {
        if let Some(f) = flag
            && f != e.shard
        {
            return Err(ShardError::FlagDisagrees {
                flag: f,
                engine: e.source.clone(),
                from_engine: e.shard,
            });
        }
    }
    if let [a, b, ..] = engines
        && a.shard != b.shard
    {
        return Err(ShardError::EnginesDisagree {
            a: a.source.clone(),
            a_shard: a.shard,
            b: b.source.clone(),
            b_shard: b.shard,
        });
    }
    Ok(flag.or(engines.first().map(|e| e.shard)))
}

fn engine_number(name: &str, value: &str) -> Result<u32, ShardError> {
    value.trim().parse().map_err(|_| {
        ShardError::Engine(format!(
            "{name}={value:?} is not a whole number: unset it or pass --shard K/N"
        ))
    })
}

fn zero_based(index: u32, count: u32, source: String) -> Result<EngineShard, ShardError> {
    let shard = Shard::new(index.saturating_add(1), count)
        .map_err(|_| ShardError::Engine(format!("{source}: the index is not below the count")))?;
    Ok(EngineShard { shard, source })
}

/// A Slurm array task: `--array=0-2` and `--array=1-3` both make shards 1..3, since the task id
/// is read relative to `SLURM_ARRAY_TASK_MIN` (and `_STEP`); an array that is not one evenly
/// stepped range (`--array=1,4,5`) cannot say which shard a task is.
fn slurm(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<EngineShard>, ShardError> {
    let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
        return Ok(None);
    };
    let get = |name: &str| -> Result<u32, ShardError> {
        let v = var(name).ok_or_else(|| {
            ShardError::Engine(format!(
                "SLURM_ARRAY_TASK_ID={id} is set but {name} is not (Slurm sets both in an array \
                 job): pass --shard K/N"
            ))
        })?;
        engine_number(name, &v)
    };
    let task = engine_number("SLURM_ARRAY_TASK_ID", &id)?;
    let (min, count) = (get("SLURM_ARRAY_TASK_MIN")?, get("SLURM_ARRAY_TASK_COUNT")?);
    let step = match var("SLURM_ARRAY_TASK_STEP") {
        Some(s) => engine_number("SLURM_ARRAY_TASK_STEP", &s)?.max(1),
        None => 1,
    };
    let source = format!(
        "SLURM_ARRAY_TASK_ID={task} (SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_COUNT={count})"
    );
    let offset = task.checked_sub(min).filter(|o| o % step == 0);
    let index = offset.map(|o| o / step + 1).filter(|&i| i <= count);
    let Some(index) = index else {
        return Err(ShardError::Engine(format!(
            "{source}: the array is not one evenly stepped range, so the task's shard is unknown: \
             submit --array=1-{count}, or pass --shard K/N"
        )));
    };
    Ok(Some(EngineShard {
        shard: Shard::new(index, count)
            .map_err(|e| ShardError::Engine(format!("{source}: {e}")))?,
        source,
    }))
}

/// The first 8 bytes of the sha256 of a value's JSON (deterministic for these types: fields in
/// declaration order, maps sorted).
fn identity_hash<T: Serialize>(v: &T) -> u64 {
    let digest = Sha256::digest(serde_json::to_vec(v).expect("plan keys serialize"));
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// splitmix64's finalizer: a well-mixed score for (identity, shard) without hashing again.
fn score(identity: u64, shard: u32) -> u64 {
    let mut z = identity ^ (u64::from(shard)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The most a shard's share of slots may exceed the even share by (see [`slots_per_shard`]).
const MAX_SLOT_IMBALANCE: f64 = 1.15;

/// How many slots (a column's share: a part of its cells) each shard takes: the fewest that
/// split `columns` columns over `count` shards with every column given a whole number of slots
/// within [`MAX_SLOT_IMBALANCE`] of the same size. 15 columns over 3 shards: 5 (a shard runs 5
/// whole columns); over 10 shards: 3 (a shard runs 3 half columns, not 2 whole ones and an idle
/// half); 1 column over 10 shards: 1 (each runs a tenth of it).
pub fn slots_per_shard(columns: usize, count: u32) -> usize {
    let (c, n) = (columns.max(1), count.max(1) as usize);
    let mut m = c.div_ceil(n);
    loop {
        let per_column = (m * n) as f64 / c as f64;
        if per_column / per_column.floor() <= MAX_SLOT_IMBALANCE {
            return m;
        }
        m += 1;
    }
}

/// Assigns cells to shards `1..=count`.
///
/// Every shard takes the same number of slots ([`slots_per_shard`]); each column gets an even
/// share of all slots, and its slots go, in the order of the columns' identity hashes, each to
/// the shard ranking highest for it (rendezvous hashing) among those with room and, where there
/// is one, without a slot of that column yet. A cell goes to the slot of its column ranking
/// highest for the cell's identity. So the slots depend only on the set of columns and `count`,
/// and a cell on its own identity and its column's slots.
pub struct Assigner {
    count: u32,
    /// Each column's slots: the shard of each.
    slots: BTreeMap<Column, Vec<u32>>,
}

impl Assigner {
    /// `columns` are the plan's.
    pub fn new(columns: &[Column], count: u32) -> Assigner {
        let count = count.max(1);
        let mut distinct: Vec<(u64, &Column)> = columns
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|c| (identity_hash(c), c))
            .collect();
        distinct.sort();
        let per_shard = slots_per_shard(distinct.len(), count);
        let total = per_shard * count as usize;
        let c = distinct.len().max(1);
        let mut room = vec![per_shard; count as usize];
        let mut slots = BTreeMap::new();
        for (i, (id, col)) in distinct.into_iter().enumerate() {
            let n_slots = total / c + usize::from(i < total % c);
            let mut shards: Vec<u32> = Vec::with_capacity(n_slots);
            for j in 0..n_slots {
                let slot_id = score(id, j as u32 + 1);
                let pick = |allow_repeat: bool| {
                    (1..=count)
                        .filter(|&s| room[(s - 1) as usize] > 0)
                        .filter(|s| allow_repeat || !shards.contains(s))
                        .max_by_key(|&s| score(slot_id, s))
                };
                let s = pick(false).or_else(|| pick(true)).unwrap_or(1);
                room[(s - 1) as usize] = room[(s - 1) as usize].saturating_sub(1);
                shards.push(s);
            }
            slots.insert(col.clone(), shards);
        }
        Assigner { count, slots }
    }

    /// The shard (1-based) of a cell.
    pub fn shard_of(&self, key: &CellKey) -> u32 {
        let id = identity_hash(key);
        let best = |shards: &[u32]| {
            (0..shards.len())
                .max_by_key(|&j| score(id, j as u32))
                .map_or(1, |j| shards[j])
        };
        match self.slots.get(&key.column()) {
            Some(shards) => best(shards),
            // A cell of a column not in the plan: spread over every shard.
            None => best(&(1..=self.count).collect::<Vec<_>>()),
        }
    }
}

/// The plan of one shard: its cells, and only the columns they use (so it builds only those).
pub fn select(plan: &Plan, shard: Shard) -> Plan {
    let a = Assigner::new(&plan.columns, shard.count);
    let cells: Vec<_> = plan
        .cells
        .iter()
        .filter(|c| a.shard_of(&c.key) == shard.index)
        .cloned()
        .collect();
    let used: BTreeSet<Column> = cells.iter().map(|c| c.key.column()).collect();
    Plan {
        spec: plan.spec.clone(),
        columns: plan
            .columns
            .iter()
            .filter(|c| used.contains(*c))
            .cloned()
            .collect(),
        cells,
    }
}

/// What one shard of a plan runs and builds.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLoad {
    pub shard: Shard,
    pub cells: usize,
    /// The columns (kernel builds) it needs, in plan order.
    pub columns: Vec<Column>,
}

/// Every shard's load, for the plan output.
pub fn loads(plan: &Plan, count: u32) -> Vec<ShardLoad> {
    let a = Assigner::new(&plan.columns, count);
    let mut cells = vec![0usize; count as usize];
    let mut used = vec![BTreeSet::new(); count as usize];
    for c in &plan.cells {
        let i = (a.shard_of(&c.key) - 1) as usize;
        cells[i] += 1;
        used[i].insert(c.key.column());
    }
    (1..=count)
        .map(|k| {
            let i = (k - 1) as usize;
            ShardLoad {
                shard: Shard {
                    index: k,
                    count: count.max(1),
                },
                cells: cells[i],
                columns: plan
                    .columns
                    .iter()
                    .filter(|c| used[i].contains(*c))
                    .cloned()
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
