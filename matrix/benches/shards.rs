//! `cargo bench -p ktstr-matrix --bench shards [-- --cells N --runs N]`: what sharding costs. (1) For the 10,800-cell matrix (5 kernels x
//! 3 config sets x 6 schedulers x 8 scenarios x 3 topologies x 5 repeats), how many cells and
//! kernel builds each shard gets against the whole, with ktstr's kernel-affine assignment and
//! with plain per-cell hashing (nextest's `hash:`). (2) The time `ktstr merge` takes for a
//! stored run of `--cells` cells split over 3 shards: read, merge, write, render every report.
//! No VM is involved: the stored cells are synthetic (the catalogue's metrics, varied values).

use ktstr_guest::protocol::{GuestReport, GuestStatus, KernelInfo, ScenarioReport};
use ktstr_guest::scenario::catalogue;
use ktstr_matrix::merge::{self, Input};
use ktstr_matrix::plan::{CellInputs, CellKey, Plan, cell_id, expand};
use ktstr_matrix::report::Thresholds;
use ktstr_matrix::result::{CellResult, HostTimings, Outcome, RESULT_FORMAT_VERSION};
use ktstr_matrix::shard::{Assigner, Shard, loads, select};
use ktstr_matrix::spec::{MatrixSpec, ScenarioSel};
use ktstr_matrix::stats::median;
use ktstr_matrix::store::{self, CellRecord, Record, RunOrigin, RunRecord, STORE_FORMAT_VERSION};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The bench's arguments (cargo passes `--bench` too, which is ignored).
struct Args {
    /// Stored cells to merge (rounded up to a whole matrix: 10 kernels x 10 schedulers x 4
    /// scenarios x 5 topologies x repeats).
    cells: u32,
    /// Timed merges; the median is reported.
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        cells: 10_000,
        runs: 5,
    };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--cells" => a.cells = w[1].parse().expect("--cells N"),
            "--runs" => a.runs = w[1].parse().expect("--runs N"),
            _ => {}
        }
    }
    a
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn scenarios(n: usize) -> Vec<ScenarioSel> {
    catalogue()
        .iter()
        .take(n)
        .map(|s| ScenarioSel {
            name: s.name.clone(),
            params: BTreeMap::new(),
        })
        .collect()
}

fn spec(
    kernels: usize,
    configs: usize,
    scheds: usize,
    scen: usize,
    topos: usize,
    repeats: u32,
) -> MatrixSpec {
    MatrixSpec {
        kernels: names("6.", kernels),
        configs: names("frag", configs)
            .into_iter()
            .map(|c| vec![c])
            .collect(),
        scheds: names("scx_", scheds),
        scenarios: scenarios(scen),
        topologies: names("topo", topos),
        repeats,
        duration_ms: 5000,
        jobs: None,
        overcommit: false,
        baseline: None,
        memory_mib: 256,
    }
}

/// Per-cell hashing without affinity, as nextest's `hash:K/N`: a column of its own per cell.
fn per_cell_loads(plan: &Plan, n: u32) -> (usize, f64) {
    let mut cells = vec![0usize; n as usize];
    let mut cols = vec![BTreeSet::new(); n as usize];
    for c in &plan.cells {
        let digest = Sha256::digest(serde_json::to_vec(&c.key).unwrap_or_default());
        let h = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let i = (h % u64::from(n)) as usize;
        cells[i] += 1;
        cols[i].insert(c.key.column());
    }
    let builds: usize = cols.iter().map(BTreeSet::len).sum();
    (
        cells.into_iter().max().unwrap_or(0),
        builds as f64 / f64::from(n),
    )
}

/// Fraction of `before`'s cells whose shard differs in `after`.
fn moved(before: &Plan, after: &Plan, n: u32) -> f64 {
    let (a, b) = (
        Assigner::new(&before.columns, n),
        Assigner::new(&after.columns, n),
    );
    let moved = before
        .cells
        .iter()
        .filter(|c| a.shard_of(&c.key) != b.shard_of(&c.key))
        .count();
    moved as f64 / before.cells.len() as f64
}

fn stability_figures() {
    let before = expand(&spec(5, 3, 6, 8, 3, 5), &BTreeMap::new());
    let more_scheds = expand(&spec(5, 3, 7, 8, 3, 5), &BTreeMap::new());
    let more_kernels = expand(&spec(6, 3, 6, 8, 3, 5), &BTreeMap::new());
    println!("stability: cells of the 10,800 that change shard when the spec grows");
    for n in [3u32, 10, 30] {
        println!(
            "  N={n:<3} +1 scheduler: {:.1} %   +1 kernel (3 columns): {:.1} %",
            100.0 * moved(&before, &more_scheds, n),
            100.0 * moved(&before, &more_kernels, n)
        );
    }
}

fn assignment_figures() {
    let plan = expand(&spec(5, 3, 6, 8, 3, 5), &BTreeMap::new());
    let total = plan.cells.len();
    println!(
        "assignment: {total} cells, {} kernel builds (columns) in the whole plan",
        plan.columns.len()
    );
    println!(
        "  N   | ideal cells | affine: max cells (x ideal)  builds/shard mean, max | per-cell hash: max cells (x ideal)  builds/shard mean"
    );
    for n in [3u32, 5, 10, 15, 30, 100] {
        let t = Instant::now();
        let l = loads(&plan, n);
        let took = t.elapsed();
        let ideal = total as f64 / f64::from(n);
        let max = l.iter().map(|x| x.cells).max().unwrap_or(0);
        let builds: Vec<usize> = l.iter().map(|x| x.columns.len()).collect();
        let mean_builds = builds.iter().sum::<usize>() as f64 / f64::from(n);
        let (pmax, pbuilds) = per_cell_loads(&plan, n);
        println!(
            "  {n:<3} | {ideal:>11.0} | {max:>6} ({:.2})  {mean_builds:>5.2}, {:<3} | {pmax:>6} ({:.2})  {pbuilds:>5.2}   (assigned in {:.0} ms)",
            max as f64 / ideal,
            builds.iter().max().unwrap_or(&0),
            pmax as f64 / ideal,
            took.as_secs_f64() * 1000.0
        );
    }
}

/// A passing result with every metric of the scenario, values varied by the cell.
fn result(key: &CellKey, seed: u64) -> CellResult {
    let info = catalogue()
        .into_iter()
        .find(|s| s.name == key.scenario.name);
    let metrics = info
        .map(|s| {
            s.metrics
                .iter()
                .enumerate()
                .map(|(i, m)| (m.name.clone(), 100.0 + ((seed + i as u64) % 17) as f64))
                .collect()
        })
        .unwrap_or_default();
    CellResult {
        format_version: RESULT_FORMAT_VERSION,
        outcome: Outcome::Pass,
        reason: None,
        report: Some(GuestReport {
            status: GuestStatus::Passed,
            kernel: KernelInfo {
                release: "6.12.117".into(),
                sched_ext: true,
                online_cpus: 2,
            },
            exit_code: None,
            scheduler: None,
            scenario: Some(ScenarioReport {
                name: key.scenario.name.clone(),
                duration_ms: key.duration_ms,
                workers: vec![],
                metrics,
                checks: vec![],
            }),
            uptime_ms: 7000,
        }),
        console_tail: String::new(),
        timings: HostTimings {
            to_agent_ms: Some(1700.0),
            to_result_ms: Some(7000.0),
            wall_ms: 7200.0,
        },
        backend: "qemu-tcg/microvm".into(),
    }
}

/// Writes shard `s` of `plan` as `ktstr matrix --shard` would have stored it.
fn write_shard(plan: &Plan, s: Shard, dir: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let part = select(plan, s);
    std::fs::create_dir_all(dir)?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(store::RESULTS_FILE))?);
    let run = RunRecord {
        format_version: STORE_FORMAT_VERSION,
        ktstr_version: "bench".into(),
        spec: plan.spec.clone(),
        columns: part.columns.clone(),
        started_at: 1,
        origin: Some(RunOrigin {
            shard: Some(s),
            host: format!("node{}", s.index),
            cores: 64,
        }),
    };
    serde_json::to_writer(&mut f, &Record::Run(Box::new(run)))?;
    f.write_all(b"\n")?;
    for (i, c) in part.cells.iter().enumerate() {
        let inputs = CellInputs {
            kernel: format!("key-{}", c.key.kernel),
            config: "cfg".into(),
            sched: format!("sha-{}", c.key.sched),
            initramfs: "initramfs".into(),
            ktstr_version: "bench".into(),
            skip: None,
        };
        let rec = CellRecord {
            format_version: STORE_FORMAT_VERSION,
            id: cell_id(&c.key, &inputs),
            key: c.key.clone(),
            result: result(&c.key, i as u64),
            inputs,
            finished_at: 2,
        };
        serde_json::to_writer(&mut f, &Record::Cell(Box::new(rec)))?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(part.cells.len())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    assignment_figures();
    stability_figures();
    let per_repeat = 10 * 10 * 4 * 5;
    let repeats = a.cells.div_ceil(per_repeat).max(1);
    let plan = expand(&spec(10, 1, 10, 4, 5, repeats), &BTreeMap::new());
    let tmp = tempfile::tempdir()?;
    let mut dirs = Vec::new();
    for k in 1..=3 {
        let d = tmp.path().join(format!("shard-{k}"));
        write_shard(&plan, Shard { index: k, count: 3 }, &d)?;
        dirs.push(d);
    }
    let bytes: u64 = dirs
        .iter()
        .filter_map(|d| std::fs::metadata(d.join(store::RESULTS_FILE)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "merge: {} stored cells in 3 shard outputs ({:.1} MiB of results.jsonl), {} runs",
        plan.cells.len(),
        bytes as f64 / 1048576.0,
        a.runs
    );
    let mut phases: [Vec<f64>; 5] = Default::default();
    for r in 0..a.runs.max(1) {
        let out = tmp.path().join(format!("merged-{r}"));
        let t0 = Instant::now();
        let inputs = dirs
            .iter()
            .map(|d| {
                Ok(Input {
                    dir: d.clone(),
                    loaded: store::read(&d.join(store::RESULTS_FILE))?,
                })
            })
            .collect::<Result<Vec<_>, store::StoreError>>()?;
        let t1 = Instant::now();
        let merged = merge::merge(&inputs, None)?;
        let t2 = Instant::now();
        merge::write(&out, &merged)?;
        let t3 = Instant::now();
        let report = ktstr_matrix::session::render(&out, None, &Thresholds::default())?;
        let t4 = Instant::now();
        if report.summary.cells != plan.cells.len() || !merged.summary.missing_cells.is_empty() {
            return Err("the merge lost cells".into());
        }
        for (p, d) in phases
            .iter_mut()
            .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0])
        {
            p.push(d.as_secs_f64());
        }
    }
    let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    println!(
        "  median: total {:.2} s = read {:.2} s + merge {:.2} s + write {:.2} s + render (md, json, html, junit) {:.2} s",
        m(&phases[4]),
        m(&phases[0]),
        m(&phases[1]),
        m(&phases[2]),
        m(&phases[3])
    );
    Ok(())
}
