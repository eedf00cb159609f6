//! Typed, validated scenario parameters.

use super::{ParamKind, ScenarioError, ScenarioInfo, closest};
use std::collections::BTreeMap;

/// Parameters after validation: every given value has the right type and is in range. Values
/// whose default depends on the guest are absent; the scenario fills them in with `int_or`.
#[derive(Debug, Clone, Default)]
pub struct Params {
    ints: BTreeMap<String, i64>,
    floats: BTreeMap<String, f64>,
    strings: BTreeMap<String, String>,
}

impl Params {
    /// Validates `given` against `info` and fills in fixed defaults.
    pub fn resolve(
        info: &ScenarioInfo,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Params, ScenarioError> {
        let known: Vec<String> = info.params.iter().map(|p| p.name.clone()).collect();
        for name in given.keys() {
            if !known.contains(name) {
                return Err(ScenarioError::UnknownParam {
                    scenario: info.name.clone(),
                    param: name.clone(),
                    suggestion: closest(name, &known),
                    known: if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let mut out = Params::default();
        for p in &info.params {
            let Some(v) = given.get(&p.name).or(p.default.as_ref()) else {
                continue;
            };
            let wrong = |expected: &str| ScenarioError::WrongType {
                scenario: info.name.clone(),
                param: p.name.clone(),
                expected: expected.into(),
                value: v.to_string(),
            };
            let range = |value: String, min: String, max: String| ScenarioError::OutOfRange {
                scenario: info.name.clone(),
                param: p.name.clone(),
                value,
                min,
                max,
            };
            match &p.kind {
                &ParamKind::Int { min, max } => {
                    // Accept "4" from a command line as well as 4 from JSON.
                    let n = v
                        .as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                        .ok_or_else(|| wrong("an integer"))?;
                    if n < min || n > max {
                        return Err(range(n.to_string(), min.to_string(), max.to_string()));
                    }
                    out.ints.insert(p.name.clone(), n);
                }
                &ParamKind::Float { min, max } => {
                    let x = v
                        .as_f64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                        .ok_or_else(|| wrong("a number"))?;
                    if !(min..=max).contains(&x) {
                        return Err(range(x.to_string(), min.to_string(), max.to_string()));
                    }
                    out.floats.insert(p.name.clone(), x);
                }
                ParamKind::Choice { values } => {
                    let given = v.as_str().ok_or_else(|| wrong("a string"))?;
                    if !values.iter().any(|c| c == given) {
                        return Err(ScenarioError::BadChoice {
                            scenario: info.name.clone(),
                            param: p.name.clone(),
                            value: given.to_string(),
                            suggestion: closest(given, values),
                            allowed: values.join(", "),
                        });
                    }
                    out.strings.insert(p.name.clone(), given.to_string());
                }
                ParamKind::Text => {
                    let given = v.as_str().ok_or_else(|| wrong("a string"))?;
                    out.strings.insert(p.name.clone(), given.to_string());
                }
            }
        }
        Ok(out)
    }

    /// The integer parameter, or `dflt` when it has a guest-dependent default and was not given.
    pub fn int_or(&self, name: &str, dflt: i64) -> i64 {
        self.ints.get(name).copied().unwrap_or(dflt)
    }

    /// The choice or text parameter's value, or `dflt`.
    pub fn str_or<'a>(&'a self, name: &str, dflt: &'a str) -> &'a str {
        self.strings.get(name).map_or(dflt, String::as_str)
    }
}
