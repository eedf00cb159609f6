//! How the report treats the scheduler's BPF metrics (`bpf_*`, added by the guest agent for a
//! sched_ext scheduler): time per run and verified instructions get compared tables, counts do
//! not, whatever the program is called.

use ktstr_matrix::report::{Direction, MetricTreatment, metric_treatment};

#[test]
fn bpf_costs_are_compared_and_counts_are_not() {
    let lower = |unit: &str| MetricTreatment::Table {
        direction: Direction::LowerIsBetter,
        unit: Some(unit.into()),
        headline: false,
    };
    for scenario in ["steady", "wake", "smoke"] {
        for (metric, want) in [
            ("bpf_ns_per_run", lower("ns")),
            ("bpf_simple_enqueue_ns_per_run", lower("ns")),
            ("bpf_rusty_dispatch_ns_per_run", lower("ns")),
            ("bpf_verified_insns_total", lower("insns")),
            ("bpf_verified_insns_max", lower("insns")),
            ("bpf_prog_count", MetricTreatment::Counter),
            ("bpf_runs_total", MetricTreatment::Counter),
            ("bpf_simple_enqueue_runs", MetricTreatment::Counter),
            (
                "bpf_simple_enqueue_verified_insns",
                MetricTreatment::Counter,
            ),
        ] {
            assert_eq!(
                metric_treatment(scenario, metric),
                want,
                "{scenario} {metric}"
            );
        }
    }
}
