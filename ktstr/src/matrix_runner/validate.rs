//! Name checks before anything is built: the matrix spec's kernels, config fragments,
//! schedulers, scenarios (and the host programs they pack) and topologies (with the guest
//! memory), by the modules' own validators.

use super::json_params;
use crate::cell;
use crate::kernel;
use crate::sched;
use crate::topology::Topology;
use ktstr_matrix::plan::Validator;
use std::collections::BTreeMap;

/// Checks names with the kernel, scheduler and scenario modules' own validators.
pub struct KtstrValidator;

impl Validator for KtstrValidator {
    fn kernel(&self, spec: &str) -> Result<(), String> {
        kernel::KernelSpec::parse(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn config_fragment(&self, name: &str) -> Result<(), String> {
        kernel::spec::parse_configs(&[name.to_string()], &kernel::spec::fragments_dir())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn sched(&self, spec: &str) -> Result<(), String> {
        sched::validate_spec(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn scenario(&self, name: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        ktstr_guest::scenario::validate(name, &json_params(params)).map_err(|e| e.to_string())?;
        cell::programs::resolve(name, &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn topology(&self, spec: &str, memory_mib: u32) -> Result<u32, String> {
        let t = spec.parse::<Topology>().map_err(|e| e.to_string())?;
        cell::pipeline::check_memory(memory_mib, &t)
            .map_err(|e| format!("memory_mib with topology {spec}: {e}"))?;
        Ok(t.cpus())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_toml(toml: &str) -> Result<(), Vec<String>> {
        let spec = ktstr_matrix::spec::parse_file(toml, "m.toml")
            .unwrap()
            .resolve()
            .unwrap();
        ktstr_matrix::plan::validate(&spec, &KtstrValidator).map(|_| ())
    }

    /// The `command` scenario's per-metric parameters in matrix.toml: a quoted dotted key or a
    /// nested table; a bad pattern is refused by the same check as on the command line.
    #[test]
    fn command_params_in_a_matrix_toml() {
        let ok = r#"
            kernels = ["6.12"]
            scenarios = ["command"]
            [params.command]
            binary = "schbench"
            "metric.p99_us" = 'p99.*?(\d+)'
            direction = { p99_us = "lower" }
            unit.p99_us = "us"
        "#;
        validate_toml(ok).unwrap();
        let bad = ok.replace(r"(\d+)", r"(\d+");
        let errs = validate_toml(&bad).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("metric.p99_us") && e.contains("not a valid regular")),
            "{errs:?}"
        );
    }

    /// `memory_mib` 0 and absurd sizes are refused by validation, naming the field.
    #[test]
    fn memory_mib_out_of_range_in_a_matrix_toml() {
        for (mib, says) in [(0, "give at least"), (4_000_000, "not a guest size")] {
            let errs =
                validate_toml(&format!("kernels = [\"6.12\"]\nmemory_mib = {mib}\n")).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("memory_mib") && e.contains(says)),
                "{errs:?}"
            );
        }
        validate_toml("kernels = [\"6.12\"]\nmemory_mib = 512\n").unwrap();
    }
}
