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
    /// `Keyed` parameters: `metric.p99_us=...` is `keyed["metric"]["p99_us"]`.
    keyed: BTreeMap<String, BTreeMap<String, String>>,
}

impl Params {
    /// Validates `given` against `info` and fills in fixed defaults.
    pub fn resolve(
        info: &ScenarioInfo,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Params, ScenarioError> {
        let known: Vec<String> = info.params.iter().map(|p| p.name.clone()).collect();
        let mut out = Params::default();
        for (name, value) in given {
            if out.take_keyed(info, name, value)? {
                continue;
            }
            if !known.contains(name) {
                return Err(ScenarioError::UnknownParam {
                    scenario: info.name.clone(),
                    param: name.clone(),
                    suggestion: closest(name, &known).or_else(|| {
                        // `metrc.p99`: suggest by the prefix of a keyed parameter.
                        let (prefix, rest) = name.split_once('.')?;
                        closest(prefix, &known).map(|k| format!("{k}.{rest}"))
                    }),
                    known: if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        for p in &info.params {
            if matches!(p.kind, ParamKind::Keyed { .. }) {
                continue;
            }
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
                    let given = as_text(v).ok_or_else(|| wrong("a string"))?;
                    out.strings.insert(p.name.clone(), given);
                }
                ParamKind::Keyed { .. } => {}
            }
        }
        Ok(out)
    }

    /// A `Keyed` parameter given as `PREFIX.KEY=VALUE`, or as `PREFIX={KEY: VALUE, ...}` (a TOML
    /// table): stores its entries and returns true; false when `name` is no keyed parameter.
    fn take_keyed(
        &mut self,
        info: &ScenarioInfo,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<bool, ScenarioError> {
        let (prefix, key) = match name.split_once('.') {
            Some((prefix, key)) => (prefix, Some(key)),
            None => (name, None),
        };
        let Some(p) = info.params.iter().find(|p| p.name == prefix) else {
            return Ok(false);
        };
        let ParamKind::Keyed { values } = &p.kind else {
            return Ok(false);
        };
        let entries: Vec<(String, &serde_json::Value)> = match (key, value) {
            (Some(k), v) => vec![(k.to_string(), v)],
            (None, serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            (None, v) => {
                return Err(ScenarioError::WrongType {
                    scenario: info.name.clone(),
                    param: name.into(),
                    expected: format!("given per name, as {prefix}.NAME=VALUE"),
                    value: v.to_string(),
                });
            }
        };
        for (k, v) in entries {
            let param = format!("{prefix}.{k}");
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(ScenarioError::BadParam {
                    scenario: info.name.clone(),
                    param,
                    reason: "the name after the dot must be letters, digits, '_', '-' or '.'"
                        .into(),
                });
            }
            let text = as_text(v).ok_or_else(|| ScenarioError::WrongType {
                scenario: info.name.clone(),
                param: param.clone(),
                expected: "a string".into(),
                value: v.to_string(),
            })?;
            if !values.is_empty() && !values.contains(&text) {
                return Err(ScenarioError::BadChoice {
                    scenario: info.name.clone(),
                    param,
                    value: text.clone(),
                    suggestion: closest(&text, values),
                    allowed: values.join(", "),
                });
            }
            self.keyed
                .entry(prefix.to_string())
                .or_default()
                .insert(k, text);
        }
        Ok(true)
    }

    /// The entries of a `Keyed` parameter (empty when none were given).
    pub fn keyed(&self, name: &str) -> BTreeMap<String, String> {
        self.keyed.get(name).cloned().unwrap_or_default()
    }

    /// A text parameter, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.strings.get(name).map(String::as_str)
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

/// A text value: a string, or a number or boolean as written (`--param args=3` arrives as the
/// JSON number 3).
fn as_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}
