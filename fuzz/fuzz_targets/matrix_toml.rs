//! matrix.toml: no input panics from the TOML text through the checks to the plan, as
//! `ktstr matrix --file` reads it (parse, overlay on the default, resolve, validate, expand).
//! Names are checked with ktstr's own pure parsers; nothing touches the network or builds.
#![no_main]

use ktstr::cell::pipeline::check_memory;
use ktstr::kernel::KernelSpec;
use ktstr::topology::Topology;
use ktstr_matrix::plan::{Validator, expand, validate};
use ktstr_matrix::spec::{default_file, parse_file};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

struct PureValidator;

impl Validator for PureValidator {
    fn kernel(&self, spec: &str) -> Result<(), String> {
        KernelSpec::parse(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn config_fragment(&self, name: &str) -> Result<(), String> {
        if name.is_empty() {
            Err("empty fragment name".into())
        } else {
            Ok(())
        }
    }
    fn sched(&self, spec: &str) -> Result<(), String> {
        ktstr::sched::spec::parse(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn scenario(&self, name: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        // As the CLI does: parameter values are JSON text, or else a bare string.
        let params = params
            .iter()
            .map(|(k, v)| {
                let v = serde_json::from_str(v)
                    .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                (k.clone(), v)
            })
            .collect();
        ktstr_guest::scenario::validate(name, &params).map_err(|e| e.to_string())
    }
    fn topology(&self, spec: &str, memory_mib: u32) -> Result<u32, String> {
        let t = spec.parse::<Topology>().map_err(|e| e.to_string())?;
        check_memory(memory_mib, &t).map_err(|e| e.to_string())?;
        Ok(t.cpus())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = parse_file(text, "fuzz.toml") else {
        return;
    };
    let Ok(spec) = default_file().overlay(file).resolve() else {
        return;
    };
    assert!(spec.repeats >= 1 && spec.duration_ms >= 1);
    let Ok(vcpus) = validate(&spec, &PureValidator) else {
        return;
    };
    let plan = expand(&spec, &vcpus);
    assert!(!plan.cells.is_empty());
});
