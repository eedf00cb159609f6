//! The valid ranges of the numeric flags that have no domain check of their own, each refused
//! with the flag, the range and an example (exit 2). Durations are bounded by
//! `ktstr_matrix::spec::parse_duration`, guest memory by `cell::pipeline::check_memory` and the
//! host's memory (`host_memory`), matrix.toml's `repeats`/`jobs` by `MatrixSpec` resolution.

use super::bad_input;

/// Parallel make jobs and cells in flight: past this it is a typing error, not a machine.
pub const MAX_JOBS: usize = ktstr_matrix::spec::MAX_JOBS as usize;
/// `--min-effect`: a relative change of more than 1000 % would hide every regression.
pub const MAX_MIN_EFFECT: f64 = 10.0;

/// `-j/--jobs N` of `kernel build` (0 = the cores this process may use).
pub fn build_jobs(flag: &str, jobs: usize) -> anyhow::Result<()> {
    if jobs > MAX_JOBS {
        return Err(bad_input(format!(
            "{flag} {jobs}: give 0 (all cores) to {MAX_JOBS}, e.g. 8"
        )));
    }
    Ok(())
}

/// `--cpu-budget N`: at least one CPU, at most the CPUs this process may use.
pub fn cpu_budget(budget: Option<u32>, host_cpus: u32) -> anyhow::Result<()> {
    match budget {
        Some(n) if n == 0 || n > host_cpus => Err(bad_input(format!(
            "--cpu-budget {n}: give 1 to {host_cpus} (the CPUs ktstr may use here)"
        ))),
        _ => Ok(()),
    }
}

/// `--min-effect X` of matrix, report and merge: a finite relative change in [0, 10].
pub fn min_effect(x: f64) -> anyhow::Result<()> {
    if !x.is_finite() || !(0.0..=MAX_MIN_EFFECT).contains(&x) {
        return Err(bad_input(format!(
            "--min-effect {x}: give a relative change from 0 to {MAX_MIN_EFFECT}, e.g. 0.05 for 5 %"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: anyhow::Result<()>, names: &str) {
        let e = r.expect_err("out of range");
        assert!(e.downcast_ref::<super::super::BadInput>().is_some());
        assert!(e.to_string().contains(names), "{e}");
    }

    #[test]
    fn out_of_range_numbers_are_bad_input_naming_the_flag() {
        for x in [f64::NAN, f64::INFINITY, -0.1, 1e23, 10.5] {
            refused(min_effect(x), "--min-effect");
        }
        for x in [0.0, 0.05, 10.0] {
            min_effect(x).unwrap();
        }
        refused(cpu_budget(Some(0), 2), "--cpu-budget 0");
        refused(cpu_budget(Some(4_000_000), 2), "give 1 to 2");
        cpu_budget(Some(2), 2).unwrap();
        cpu_budget(None, 2).unwrap();
        refused(build_jobs("--jobs", 4_000_000), "--jobs 4000000");
        build_jobs("--jobs", 0).unwrap();
        build_jobs("--jobs", MAX_JOBS).unwrap();
    }
}
