//! What the scheduler's BPF side costs: its programs' verified instructions and, over the
//! scenario's window, their run counts and run time (`kernel.bpf_stats_enabled`).
//!
//! Which programs are the scheduler's: every program the scheduler's process holds a descriptor
//! of (`prog_id:` in `/proc/<pid>/fdinfo/*`, which libbpf keeps open while the scheduler runs),
//! plus every struct_ops program (a sched_ext scheduler's callbacks; nothing else in the guest
//! loads BPF, so one the process no longer holds is still the scheduler's).

use super::bpf_sys::{self, PROG_TYPE_STRUCT_OPS, ProgSample};
use crate::protocol::BpfProgram;
use std::collections::{BTreeMap, BTreeSet};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Started after the scheduler attached, ended after the scenario's window.
#[derive(Debug)]
pub struct Window {
    pid: libc::pid_t,
    /// Run count and run time per program id when the window opened.
    start: BTreeMap<u32, (u64, u64)>,
    /// `kernel.bpf_stats_enabled` before we set it, to restore; `None` when it could not be
    /// set (then run counts stay 0 and are not reported).
    stats_was: Option<String>,
}

/// Turns run statistics on and records where the scheduler's programs stand.
pub fn begin(pid: libc::pid_t) -> Window {
    let stats_was = std::fs::read_to_string(STATS_SYSCTL)
        .ok()
        .filter(|_| std::fs::write(STATS_SYSCTL, "1").is_ok());
    if stats_was.is_none() {
        eprintln!("ktstr-guest: cannot enable {STATS_SYSCTL}: BPF run times are not reported");
    }
    let start = scheduler_programs(pid)
        .map(|ps| {
            ps.iter()
                .map(|p| (p.id, (p.run_cnt, p.run_time_ns)))
                .collect()
        })
        .unwrap_or_default();
    Window {
        pid,
        start,
        stats_was,
    }
}

/// The scheduler's programs with their run figures over the window; the metrics they make.
pub fn end(w: Window) -> (Vec<BpfProgram>, BTreeMap<String, f64>) {
    let progs = match scheduler_programs(w.pid) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ktstr-guest: reading the BPF programs: {e}");
            Vec::new()
        }
    };
    if let Some(was) = &w.stats_was {
        let _ = std::fs::write(STATS_SYSCTL, was.trim());
    }
    let stats = w.stats_was.is_some();
    let programs = in_window(&progs, &w.start, stats);
    let metrics = metrics(&programs);
    (programs, metrics)
}

fn scheduler_programs(pid: libc::pid_t) -> Result<Vec<ProgSample>, std::io::Error> {
    let held = held_program_ids(pid);
    Ok(bpf_sys::loaded_programs()?
        .into_iter()
        .filter(|p| p.prog_type == PROG_TYPE_STRUCT_OPS || held.contains(&p.id))
        .collect())
}

/// Ids of the programs `pid` holds descriptors of (program fds and links both show `prog_id:`).
fn held_program_ids(pid: libc::pid_t) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| fdinfo_prog_id(&text))
        .collect()
}

fn fdinfo_prog_id(fdinfo: &str) -> Option<u32> {
    fdinfo.lines().find_map(|l| {
        let v = l.strip_prefix("prog_id:")?;
        v.trim().parse().ok()
    })
}

/// Each program's figures over the window (a program loaded during it counts from zero).
fn in_window(
    now: &[ProgSample],
    start: &BTreeMap<u32, (u64, u64)>,
    stats: bool,
) -> Vec<BpfProgram> {
    let mut sorted: Vec<&ProgSample> = now.iter().collect();
    sorted.sort_by_key(|p| p.id);
    sorted
        .into_iter()
        .map(|p| {
            let (cnt0, ns0) = start.get(&p.id).copied().unwrap_or((0, 0));
            BpfProgram {
                id: p.id,
                name: p.name.clone(),
                prog_type: bpf_sys::prog_type_name(p.prog_type),
                verified_insns: p.verified_insns,
                runs: stats.then(|| p.run_cnt.saturating_sub(cnt0)),
                run_time_ns: stats.then(|| p.run_time_ns.saturating_sub(ns0)),
            }
        })
        .collect()
}

/// `name` as a metric name part: lowercase, `[a-z0-9_]`.
fn metric_part(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "unnamed".into() } else { s }
}

/// The metrics of the catalogue's `bpf_*` entries (see `metric_catalogue::bpf_metrics`).
/// Programs are ordered by id (load order); a name seen twice (15-byte truncation) gets `_2`, ...
pub fn metrics(programs: &[BpfProgram]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if programs.is_empty() {
        return m;
    }
    m.insert("bpf_prog_count".into(), programs.len() as f64);
    let verified: Vec<u32> = programs.iter().filter_map(|p| p.verified_insns).collect();
    if verified.len() == programs.len() {
        let total: u64 = verified.iter().map(|&n| u64::from(n)).sum();
        m.insert("bpf_verified_insns_total".into(), total as f64);
        let max = verified.iter().copied().max().unwrap_or(0);
        m.insert("bpf_verified_insns_max".into(), f64::from(max));
    }
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let (mut runs_total, mut ns_total, mut timed) = (0u64, 0u64, false);
    for p in programs {
        let base = metric_part(&p.name);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        let part = if *n == 1 { base } else { format!("{base}_{n}") };
        if let Some(v) = p.verified_insns {
            m.insert(format!("bpf_{part}_verified_insns"), f64::from(v));
        }
        let (Some(runs), Some(ns)) = (p.runs, p.run_time_ns) else {
            continue;
        };
        timed = true;
        runs_total += runs;
        ns_total += ns;
        m.insert(format!("bpf_{part}_runs"), runs as f64);
        if runs > 0 {
            m.insert(format!("bpf_{part}_ns_per_run"), ns as f64 / runs as f64);
        }
    }
    if timed {
        m.insert("bpf_runs_total".into(), runs_total as f64);
        if runs_total > 0 {
            m.insert("bpf_ns_per_run".into(), ns_total as f64 / runs_total as f64);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u32, name: &str, ty: u32, insns: u32, cnt: u64, ns: u64) -> ProgSample {
        ProgSample {
            id,
            prog_type: ty,
            name: name.into(),
            verified_insns: Some(insns),
            run_cnt: cnt,
            run_time_ns: ns,
        }
    }

    #[test]
    fn fdinfo_of_a_program_names_its_id() {
        // The lines of bpf_prog_show_fdinfo (kernel/bpf/syscall.c) in the order 6.12 prints them.
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t27\n\
                    prog_jited:\t1\nprog_tag:\t0123456789abcdef\nmemlock:\t4096\nprog_id:\t42\n\
                    run_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t0\nverified_insns:\t19\n";
        assert_eq!(fdinfo_prog_id(prog), Some(42));
        let file = "pos:\t0\nflags:\t0100000\nmnt_id:\t20\nino:\t7\n";
        assert_eq!(fdinfo_prog_id(file), None);
    }

    #[test]
    fn run_figures_are_over_the_window_only() {
        let start = BTreeMap::from([(7, (100, 50_000)), (9, (10, 1_000))]);
        let now = [
            sample(9, "simple_dispatch", 27, 30, 40, 4_000),
            sample(7, "simple_enqueue", 27, 20, 300, 150_000),
            // Loaded during the window: counts from zero.
            sample(12, "late", 26, 5, 3, 300),
        ];
        let p = in_window(&now, &start, true);
        assert_eq!(
            p.iter().map(|p| p.id).collect::<Vec<_>>(),
            [7, 9, 12],
            "load order"
        );
        assert_eq!((p[0].runs, p[0].run_time_ns), (Some(200), Some(100_000)));
        assert_eq!((p[1].runs, p[1].run_time_ns), (Some(30), Some(3_000)));
        assert_eq!((p[2].runs, p[2].run_time_ns), (Some(3), Some(300)));
        assert_eq!(p[0].prog_type, "struct_ops");
        assert_eq!(p[2].prog_type, "tracing");
        // Without run statistics there are no run figures at all (not zeros).
        let p = in_window(&now, &start, false);
        assert!(
            p.iter()
                .all(|p| p.runs.is_none() && p.run_time_ns.is_none())
        );
    }

    #[test]
    fn metrics_aggregate_per_program_and_weighted_by_runs() {
        let now = [
            sample(1, "simple_enqueue", 27, 20, 200, 100_000),
            sample(2, "simple_dispatch", 27, 30, 50, 10_000),
            sample(3, "simple_init", 27, 8, 0, 0),
        ];
        let m = metrics(&in_window(&now, &BTreeMap::new(), true));
        assert_eq!(m["bpf_prog_count"], 3.0);
        assert_eq!(m["bpf_verified_insns_total"], 58.0);
        assert_eq!(m["bpf_verified_insns_max"], 30.0);
        assert_eq!(m["bpf_simple_enqueue_verified_insns"], 20.0);
        assert_eq!(m["bpf_simple_enqueue_runs"], 200.0);
        assert_eq!(m["bpf_simple_enqueue_ns_per_run"], 500.0);
        assert_eq!(m["bpf_simple_dispatch_ns_per_run"], 200.0);
        // Never ran: a run count of 0, no ns per run (it would be 0/0).
        assert_eq!(m["bpf_simple_init_runs"], 0.0);
        assert!(!m.contains_key("bpf_simple_init_ns_per_run"));
        assert_eq!(m["bpf_runs_total"], 250.0);
        // Weighted by runs: 110 us over 250 runs, not the mean of 500 and 200.
        assert_eq!(m["bpf_ns_per_run"], 440.0);
    }

    #[test]
    fn names_become_metric_parts_and_stay_distinct() {
        let now = [
            sample(1, "Weird.Name", 27, 1, 1, 1),
            sample(2, "dup", 27, 1, 1, 1),
            sample(3, "dup", 27, 1, 1, 1),
        ];
        let m = metrics(&in_window(&now, &BTreeMap::new(), true));
        for k in ["bpf_weird_name_runs", "bpf_dup_runs", "bpf_dup_2_runs"] {
            assert!(m.contains_key(k), "{k}: {m:?}");
        }
    }

    #[test]
    fn no_programs_or_no_stats_leave_those_metrics_out() {
        assert!(metrics(&[]).is_empty());
        let mut old = sample(1, "x", 27, 0, 0, 0);
        // A kernel before 5.16: no verified_insns at all.
        old.verified_insns = None;
        let m = metrics(&in_window(&[old], &BTreeMap::new(), false));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["bpf_prog_count"]);
    }
}
