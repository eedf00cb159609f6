//! What the `bpf_*` metrics mean: the sched_ext scheduler's BPF programs, which the agent adds
//! to every scenario run with a scheduler (`agent/bpf_stats.rs`). Program names come from the
//! scheduler, so the per-program metrics are described by pattern entries (`bpf_*_runs`).

use super::metric_catalogue::{MetricDirection, MetricInfo, metric};

/// Prefix of every metric about the scheduler's BPF programs.
pub const BPF_METRIC_PREFIX: &str = "bpf_";

/// The `bpf_*` entries of every scenario's catalogue.
///
/// Directions: time per run is lower-better (a kernel or scheduler change that makes a
/// callback slower is what these tables are for). Verified instructions are lower-better too,
/// on the aggregates only: they are deterministic for one scheduler binary on one kernel, so
/// any change across kernels is real, and a rise brings the scheduler nearer the verifier's
/// per-program limit (one million instructions). Counts of programs and runs depend on the
/// workload and describe the run: counters.
pub(crate) fn bpf_metrics() -> Vec<MetricInfo> {
    use MetricDirection::{Counter, LowerIsBetter as Lower};
    const ONLY: &str = "only with a sched_ext scheduler";
    vec![
        metric(
            "bpf_prog_count",
            "count",
            Counter,
            false,
            &format!(
                "BPF programs of the scheduler (struct_ops callbacks, plus any other program its \
                 process holds); {ONLY}"
            ),
        ),
        metric(
            "bpf_verified_insns_total",
            "insns",
            Lower,
            false,
            &format!(
                "instructions the verifier processed to load all of the scheduler's programs \
                 (veristat's figure, summed); needs Linux 5.16+; {ONLY}"
            ),
        ),
        metric(
            "bpf_verified_insns_max",
            "insns",
            Lower,
            false,
            &format!(
                "verified instructions of the scheduler's largest program: the one nearest the \
                 verifier's limit of 1,000,000 per program; needs Linux 5.16+; {ONLY}"
            ),
        ),
        metric(
            "bpf_runs_total",
            "count",
            Counter,
            false,
            &format!("runs of all the scheduler's programs during the scenario; {ONLY}"),
        ),
        metric(
            "bpf_ns_per_run",
            "ns",
            Lower,
            false,
            &format!(
                "time in the scheduler's BPF programs per run, over all programs (weighted by \
                 runs) during the scenario (`kernel.bpf_stats_enabled`); {ONLY}"
            ),
        ),
        metric(
            "bpf_*_ns_per_run",
            "ns",
            Lower,
            false,
            &format!(
                "time per run of one program during the scenario, e.g. \
                 `bpf_simple_enqueue_ns_per_run` (the kernel keeps 15 bytes of a name; a \
                 repeated name gets `_2`, ...); absent for a program that never ran; {ONLY}"
            ),
        ),
        metric(
            "bpf_*_runs",
            "count",
            Counter,
            false,
            &format!("runs of one program during the scenario; {ONLY}"),
        ),
        metric(
            "bpf_*_verified_insns",
            "insns",
            Counter,
            false,
            &format!(
                "verified instructions of one program (compared through the total and the \
                 maximum); {ONLY}"
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{MetricDirection, catalogue, metric_info};

    #[test]
    fn every_bpf_metric_the_agent_emits_is_described_in_every_scenario() {
        let emitted = [
            ("bpf_prog_count", MetricDirection::Counter, "count"),
            (
                "bpf_verified_insns_total",
                MetricDirection::LowerIsBetter,
                "insns",
            ),
            (
                "bpf_verified_insns_max",
                MetricDirection::LowerIsBetter,
                "insns",
            ),
            ("bpf_runs_total", MetricDirection::Counter, "count"),
            ("bpf_ns_per_run", MetricDirection::LowerIsBetter, "ns"),
            (
                "bpf_simple_enqueue_ns_per_run",
                MetricDirection::LowerIsBetter,
                "ns",
            ),
            ("bpf_simple_enqueue_runs", MetricDirection::Counter, "count"),
            (
                "bpf_simple_enqueue_verified_insns",
                MetricDirection::Counter,
                "insns",
            ),
            // A program whose name ends like a suffix still finds its own entry.
            (
                "bpf_x_runs_ns_per_run",
                MetricDirection::LowerIsBetter,
                "ns",
            ),
        ];
        for s in catalogue() {
            for (name, direction, unit) in emitted {
                let m = metric_info(&s.name, name)
                    .unwrap_or_else(|| panic!("{}: {name} is not described", s.name));
                assert_eq!((m.name.as_str(), m.direction), (name, direction));
                assert_eq!(m.unit, unit, "{name}");
            }
        }
    }

    #[test]
    fn a_pattern_needs_something_in_place_of_its_star() {
        // `bpf__runs` has an empty program name: no pattern matches it.
        assert_eq!(metric_info("smoke", "bpf__runs"), None);
        assert_eq!(metric_info("smoke", "bpf_"), None);
        // The scx_* counters are still described by their one entry.
        let m = metric_info("smoke", "scx_nr_rejected").unwrap();
        assert_eq!(m.direction, MetricDirection::Counter);
    }
}
