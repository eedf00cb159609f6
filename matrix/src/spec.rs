//! The matrix spec: what to run. It comes from a `matrix.toml`, from command-line flags (which
//! override the file field by field), or from the embedded default matrix.
//!
//! `configs` is a list of *config sets*: each set is one column of the report (per kernel) and one
//! kernel build. On the command line a comma separates sets and `+` joins fragments within a set:
//! `--configs sched_ext,sched_ext+steal-time` is two sets, `[sched_ext]` and `[sched_ext, steal-time]`.
//! In TOML a set is a string with the same `+` syntax or an array of fragment names.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;

/// The repo's default matrix (`ktstr matrix` with no arguments): one 6.12 sched_ext kernel, the
/// eevdf baseline and one real sched_ext scheduler, one short scenario, a 2-CPU topology.
pub const DEFAULT_MATRIX_TOML: &str = include_str!("../default-matrix.toml");

#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    /// A malformed matrix.toml, with the position toml reported.
    #[error("{file}:{line}:{column}: {message}")]
    Toml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A scenario with its parameters (the same for every cell that runs it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScenarioSel {
    pub name: String,
    /// Parameter values as JSON text, by name (kept as text so that the cell identity is stable).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl ScenarioSel {
    /// The name, plus the parameters when there are any (`wake[mechanism="futex"]`): two
    /// variants of one scenario are different rows of a report, never repeats of one.
    pub fn label(&self) -> String {
        if self.params.is_empty() {
            return self.name.clone();
        }
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}[{}]", self.name, params.join(","))
    }
}

/// A fully resolved spec (every field has a value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixSpec {
    pub kernels: Vec<String>,
    pub configs: Vec<Vec<String>>,
    pub scheds: Vec<String>,
    pub scenarios: Vec<ScenarioSel>,
    pub topologies: Vec<String>,
    pub repeats: u32,
    pub duration_ms: u64,
    /// Worker threads; `None` = host cores.
    pub jobs: Option<usize>,
    pub overcommit: bool,
    /// Baseline column: a kernel (`6.1`: same config set on that kernel) or `kernel/configs`.
    pub baseline: Option<String>,
    pub memory_mib: u32,
}

/// What a matrix.toml may hold; every field optional so flags can fill or override it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub kernels: Option<Vec<String>>,
    pub configs: Option<Vec<ConfigSetToml>>,
    pub scheds: Option<Vec<String>>,
    pub scenarios: Option<Vec<ScenarioToml>>,
    pub topologies: Option<Vec<String>>,
    pub repeats: Option<u32>,
    /// `"5s"`, `"500ms"`, `"2m"`.
    pub duration: Option<String>,
    pub jobs: Option<usize>,
    pub overcommit: Option<bool>,
    pub baseline: Option<String>,
    pub memory_mib: Option<u32>,
    /// Parameters by scenario name: `[params.wake] pairs = 4`.
    pub params: Option<BTreeMap<String, toml::Table>>,
    pub out: Option<PathBuf>,
}

/// A config set in TOML: `"sched_ext+steal-time"` or `["sched_ext", "steal-time"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct ConfigSetToml(pub Vec<String>);

impl TryFrom<toml::Value> for ConfigSetToml {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => Ok(ConfigSetToml(parse_config_set(&s))),
            toml::Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    toml::Value::String(s) => Ok(s),
                    other => Err(format!("config fragment must be a string, got {other}")),
                })
                .collect::<Result<_, _>>()
                .map(ConfigSetToml),
            other => Err(format!(
                "a config set is a string like \"sched_ext+steal-time\" or an array of names, got {other}"
            )),
        }
    }
}

/// A scenario in TOML: `"steady"` or `{ name = "wake", params = { pairs = 4 } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct ScenarioToml(pub ScenarioSel);

impl TryFrom<toml::Value> for ScenarioToml {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(name) => Ok(ScenarioToml(ScenarioSel {
                name,
                params: BTreeMap::new(),
            })),
            toml::Value::Table(mut t) => {
                let name = match t.remove("name") {
                    Some(toml::Value::String(n)) => n,
                    _ => return Err("a scenario table needs `name = \"...\"`".into()),
                };
                let params = match t.remove("params") {
                    None => BTreeMap::new(),
                    Some(toml::Value::Table(p)) => params_from_table(&p),
                    Some(_) => return Err("scenario `params` must be a table".into()),
                };
                if let Some(k) = t.keys().next() {
                    return Err(format!(
                        "unknown scenario field `{k}` (expected name, params)"
                    ));
                }
                Ok(ScenarioToml(ScenarioSel { name, params }))
            }
            other => Err(format!(
                "a scenario is a name or {{ name = ..., params = {{...}} }}, got {other}"
            )),
        }
    }
}

fn params_from_table(t: &toml::Table) -> BTreeMap<String, String> {
    t.iter()
        .map(|(k, v)| {
            let json = serde_json::to_string(v).unwrap_or_else(|_| v.to_string());
            (k.clone(), json)
        })
        .collect()
}

/// `sched_ext+steal-time` -> `["sched_ext", "steal-time"]`; empty items are dropped.
pub fn parse_config_set(s: &str) -> Vec<String> {
    s.split('+')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Display form of a config set (the inverse of [`parse_config_set`]); `-` for the empty set.
pub fn config_set_label(set: &[String]) -> String {
    if set.is_empty() {
        "-".into()
    } else {
        set.join("+")
    }
}

/// Repeats of one cell: beyond this a plan is a typing error (and its expansion would take the
/// host's memory before anything ran).
pub const MAX_REPEATS: u32 = 1000;
/// Cells in flight (and make jobs): beyond this it is a typing error, not a machine.
pub const MAX_JOBS: u32 = 1024;

/// The longest duration anything accepts: a scenario or a watchdog longer than a week is a typo.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// `5s`, `1500ms`, `2m` (or `2min`), `1h`, or a bare number of seconds; positive, at most
/// [`MAX_DURATION`]. The one duration syntax of every command and of matrix.toml.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} is malformed: use e.g. 5s, 1500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "duration {s:?}: unknown unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "duration {s:?} is longer than {} h; give a shorter one",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// [`parse_duration`] in whole milliseconds (at least 1).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    Ok((parse_duration(s)?.as_millis() as u64).max(1))
}

/// Parses a matrix.toml; a malformed file names the line and column.
pub fn parse_file(text: &str, file_name: &str) -> Result<SpecFile, SpecError> {
    toml::from_str::<SpecFile>(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|sp| line_col(text, sp.start))
            .unwrap_or((1, 1));
        SpecError::Toml {
            file: file_name.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The embedded default matrix, parsed.
pub fn default_file() -> SpecFile {
    parse_file(DEFAULT_MATRIX_TOML, "default-matrix.toml")
        .expect("the embedded default matrix parses (checked by a unit test)")
}

impl SpecFile {
    /// Field-by-field override: `Some` in `over` wins.
    pub fn overlay(self, over: SpecFile) -> SpecFile {
        let mut params = self.params.unwrap_or_default();
        for (k, v) in over.params.unwrap_or_default() {
            params.entry(k).or_default().extend(v);
        }
        SpecFile {
            kernels: over.kernels.or(self.kernels),
            configs: over.configs.or(self.configs),
            scheds: over.scheds.or(self.scheds),
            scenarios: over.scenarios.or(self.scenarios),
            topologies: over.topologies.or(self.topologies),
            repeats: over.repeats.or(self.repeats),
            duration: over.duration.or(self.duration),
            jobs: over.jobs.or(self.jobs),
            overcommit: over.overcommit.or(self.overcommit),
            baseline: over.baseline.or(self.baseline),
            memory_mib: over.memory_mib.or(self.memory_mib),
            params: (!params.is_empty()).then_some(params),
            out: over.out.or(self.out),
        }
    }

    /// Fills what is missing with defaults and checks shape (not names: see `validate`).
    pub fn resolve(self) -> Result<MatrixSpec, SpecError> {
        let d = default_file();
        let mut errs = Vec::new();
        let list = |v: Option<Vec<String>>,
                    dv: Option<Vec<String>>,
                    what: &str,
                    errs: &mut Vec<String>| {
            let v = v.or(dv).unwrap_or_default();
            if v.is_empty() {
                errs.push(format!("{what}: the list is empty; name at least one"));
            }
            v
        };
        let kernels = list(self.kernels, d.kernels, "kernels", &mut errs);
        let scheds = list(self.scheds, d.scheds, "scheds", &mut errs);
        let topologies = list(self.topologies, d.topologies, "topologies", &mut errs);
        let configs: Vec<Vec<String>> = self
            .configs
            .or(d.configs)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.0)
            .collect();
        let configs = if configs.is_empty() {
            vec![Vec::new()]
        } else {
            configs
        };
        let params = self.params.unwrap_or_default();
        let mut scenarios: Vec<ScenarioSel> = self
            .scenarios
            .or(d.scenarios)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.0)
            .collect();
        if scenarios.is_empty() {
            errs.push("scenarios: the list is empty; name at least one".into());
        }
        for s in &mut scenarios {
            if let Some(p) = params.get(&s.name) {
                s.params.extend(params_from_table(p));
            }
        }
        for name in params.keys() {
            if !scenarios.iter().any(|s| &s.name == name) {
                errs.push(format!(
                    "params: scenario {name:?} has parameters but is not in the matrix's scenarios"
                ));
            }
        }
        let repeats = self.repeats.or(d.repeats).unwrap_or(1);
        if !(1..=MAX_REPEATS).contains(&repeats) {
            errs.push(format!(
                "repeats = {repeats}: give 1 to {MAX_REPEATS} (e.g. 5); more belongs in several runs"
            ));
        }
        let duration = self.duration.or(d.duration).unwrap_or_else(|| "2s".into());
        let duration_ms = parse_duration_ms(&duration).unwrap_or_else(|e| {
            errs.push(format!("duration: {e}"));
            0
        });
        if let Some(jobs) = self.jobs
            && !(1..=MAX_JOBS as usize).contains(&jobs)
        {
            errs.push(format!(
                "jobs = {jobs}: give 1 to {MAX_JOBS} cells in flight (default: the host's cores)"
            ));
        }
        for (what, v) in [
            ("kernels", &kernels),
            ("scheds", &scheds),
            ("topologies", &topologies),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for x in v {
                if !seen.insert(x) {
                    errs.push(format!("{what}: {x:?} is listed twice"));
                }
            }
        }
        if !errs.is_empty() {
            return Err(SpecError::Invalid(errs.join("\n")));
        }
        Ok(MatrixSpec {
            kernels,
            configs,
            scheds,
            scenarios,
            topologies,
            repeats,
            duration_ms,
            jobs: self.jobs,
            overcommit: self.overcommit.unwrap_or(false),
            baseline: self.baseline,
            memory_mib: self.memory_mib.or(d.memory_mib).unwrap_or(256),
        })
    }
}

/// Splits a comma list from the command line (`6.1,6.12`), trimming blanks.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// `--configs sched_ext,sched_ext+steal-time` -> two config sets.
pub fn parse_configs_flag(s: &str) -> Vec<ConfigSetToml> {
    split_list(s)
        .iter()
        .map(|x| ConfigSetToml(parse_config_set(x)))
        .collect()
}

/// `--param wake.pairs=4` -> (scenario, key, TOML value).
pub fn parse_param_flag(s: &str) -> Result<(String, String, toml::Value), String> {
    let bad = || format!("--param {s:?}: expected SCENARIO.KEY=VALUE, e.g. wake.pairs=4");
    let (lhs, rhs) = s.split_once('=').ok_or_else(bad)?;
    let (scen, key) = lhs.split_once('.').ok_or_else(bad)?;
    if scen.is_empty() || key.is_empty() {
        return Err(bad());
    }
    // A TOML value if it parses as one (numbers, booleans, quoted strings), else a bare string.
    let value = toml::from_str::<toml::Table>(&format!("v = {rhs}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(rhs.to_string()));
    Ok((scen.to_string(), key.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matrix_is_small_and_real() {
        let spec = default_file().resolve().unwrap();
        assert!(spec.scheds.iter().any(|s| s == "eevdf"));
        assert!(
            spec.scheds.iter().any(|s| s != "eevdf"),
            "needs a real sched_ext scheduler"
        );
        assert_eq!(spec.kernels.len(), 1, "one kernel build on a fresh machine");
        assert!(
            spec.configs
                .iter()
                .all(|c| c.iter().any(|f| f == "sched_ext"))
        );
        assert!(spec.duration_ms <= 5000);
    }

    #[test]
    fn malformed_file_names_the_line() {
        let text = "kernels = [\"6.12\"]\nrepeats = 3\nkernals = [\"6.1\"]\n";
        match parse_file(text, "m.toml") {
            Err(SpecError::Toml { line, message, .. }) => {
                assert_eq!(line, 3);
                assert!(message.contains("kernals"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let text = "kernels = [\"6.12\"]\n\nrepeats = \"three\"\n";
        match parse_file(text, "m.toml") {
            Err(SpecError::Toml { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_sets_and_scenarios_from_toml() {
        let text = r#"
configs = ["sched_ext", "sched_ext+steal-time", ["base", "debug"]]
scenarios = ["steady", { name = "wake", params = { pairs = 4 } }]
[params.steady]
workers = 2
"#;
        let f = parse_file(text, "m.toml").unwrap();
        let spec = f.resolve().unwrap();
        assert_eq!(
            spec.configs,
            vec![
                vec!["sched_ext".to_string()],
                vec!["sched_ext".into(), "steal-time".into()],
                vec!["base".into(), "debug".into()]
            ]
        );
        assert_eq!(spec.scenarios[1].params["pairs"], "4");
        assert_eq!(spec.scenarios[0].params["workers"], "2");
    }

    #[test]
    fn flags_override_file() {
        let file = parse_file("kernels = [\"6.1\"]\nrepeats = 5\n", "m").unwrap();
        let flags = SpecFile {
            kernels: Some(vec!["6.12".into()]),
            ..Default::default()
        };
        let spec = file.overlay(flags).resolve().unwrap();
        assert_eq!(spec.kernels, vec!["6.12"]);
        assert_eq!(spec.repeats, 5);
    }

    #[test]
    fn shape_errors_are_reported_together() {
        let f = SpecFile {
            kernels: Some(vec![]),
            repeats: Some(0),
            duration: Some("fast".into()),
            ..Default::default()
        };
        let SpecError::Invalid(msg) = f.resolve().unwrap_err() else {
            panic!()
        };
        assert_eq!(msg.lines().count(), 3, "{msg}");
    }

    #[test]
    fn numeric_fields_are_range_checked_naming_the_field() {
        let text =
            "kernels = [\"6.12\"]\nrepeats = 4000000\njobs = 4000000\nduration = \"1e23s\"\n";
        let SpecError::Invalid(msg) = parse_file(text, "m.toml").unwrap().resolve().unwrap_err()
        else {
            panic!()
        };
        assert!(msg.contains("repeats = 4000000: give 1 to 1000"), "{msg}");
        assert!(msg.contains("jobs = 4000000: give 1 to 1024"), "{msg}");
        assert!(msg.contains("duration:"), "{msg}");
        let ok = "kernels = [\"6.12\"]\nrepeats = 1000\njobs = 1024\nduration = \"168h\"\n";
        parse_file(ok, "m.toml").unwrap().resolve().unwrap();
        for bad in [
            "1e23s",
            "nan",
            "inf",
            "-1s",
            "0",
            "169h",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // A negative or fractional count is a parse error that names the line, not a panic.
        assert!(parse_file("repeats = -1\n", "m.toml").is_err());
        assert!(parse_file("memory_mib = 1e9\n", "m.toml").is_err());
        assert!(parse_file("memory_mib = 99999999999\n", "m.toml").is_err());
    }

    #[test]
    fn durations_and_params() {
        assert_eq!(parse_duration_ms("5s"), Ok(5000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert!(parse_duration_ms("-1s").is_err());
        let (s, k, v) = parse_param_flag("wake.pairs=4").unwrap();
        assert_eq!(
            (s.as_str(), k.as_str(), v),
            ("wake", "pairs", toml::Value::Integer(4))
        );
        assert!(parse_param_flag("pairs=4").is_err());
    }
}
