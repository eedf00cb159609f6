//! What the `command` scenario reads from a program's stdout: the user's patterns
//! (`metric.NAME=REGEX`), or else a JSON object of numbers and `key=value` lines.

use regex::{Regex, RegexBuilder};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The most of an instance's output kept (its last bytes): the patterns and parsers run over at
/// most this much, so a chatty program cannot exhaust the guest's memory.
pub const MAX_OUTPUT: usize = 1 << 20;
/// The compiled size a pattern may reach (the regex crate's own guard against huge automata).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Metric names the scenario emits itself; a program's metric of the same name is ignored.
pub const RESERVED: &[&str] = &["workers", "exit_code", "metrics_parsed"];

/// Compiles a `metric.NAME` pattern: a valid regex with at least one capture group (the value).
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let re = RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            format!("'{pattern}' is not a valid regular expression ({e}); fix the pattern")
        })?;
    if re.captures_len() < 2 {
        return Err(format!(
            "'{pattern}' has no capture group; put the number in parentheses, e.g. 'p99.*?(\\d+)'"
        ));
    }
    Ok(re)
}

/// The metrics in `stdout`: with `patterns`, only theirs (each the first capture group of the
/// pattern's last match: benchmarks print interim figures before the final ones); without, the
/// numbers of a JSON object (the whole output, or any line that is one) and of `key=value` lines.
pub fn parse(stdout: &str, patterns: &BTreeMap<String, Regex>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if !patterns.is_empty() {
        for (name, re) in patterns {
            let value = re
                .captures_iter(stdout)
                .filter_map(|c| c.get(1))
                .filter_map(|m| number(m.as_str()))
                .last();
            if let Some(v) = value {
                out.insert(name.clone(), v);
            }
        }
    } else {
        let whole = stdout.trim();
        if whole.starts_with('{') {
            json_numbers(whole, &mut out);
        }
        for line in stdout.lines() {
            let line = line.trim();
            if line.starts_with('{') && line != whole {
                json_numbers(line, &mut out);
            } else if let Some(c) = kv_line().captures(line)
                && let Some(v) = number(&c[2])
            {
                out.insert(c[1].to_string(), v);
            }
        }
    }
    out.retain(|k, _| !RESERVED.contains(&k.as_str()));
    out
}

fn kv_line() -> &'static Regex {
    static KV: OnceLock<Regex> = OnceLock::new();
    KV.get_or_init(|| {
        Regex::new(r"^([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(\S+)$").expect("a valid constant regex")
    })
}

/// A finite number, e.g. `42`, `-1.5`, `3e6`.
fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The numeric members of a JSON object (one level of nesting as `outer.inner`).
fn json_numbers(text: &str, out: &mut BTreeMap<String, f64>) {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    for (k, v) in &m {
        match v {
            serde_json::Value::Number(n) => {
                if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                    out.insert(k.clone(), x);
                }
            }
            serde_json::Value::Object(inner) => {
                for (k2, v2) in inner {
                    if let Some(x) = v2.as_f64().filter(|x| x.is_finite()) {
                        out.insert(format!("{k}.{k2}"), x);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Keeps the last [`MAX_OUTPUT`] bytes of a stream.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Vec<u8>,
    /// Bytes dropped from the front.
    pub dropped: u64,
}

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_OUTPUT {
            let excess = self.buf.len() - MAX_OUTPUT;
            self.buf.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// The last `lines` lines of `text` (evidence for the console).
pub fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_key_value_lines_are_read_without_patterns() {
        let out = "starting\n{\"ops_per_s\": 1200.5, \"lat\": {\"p99_us\": 40}, \"name\": \"x\"}\n\
                   p50_us = 12\nnoise=abc\nrps=3e3\n";
        let m = parse(out, &BTreeMap::new());
        assert_eq!(m["ops_per_s"], 1200.5);
        assert_eq!(m["lat.p99_us"], 40.0);
        assert_eq!(m["p50_us"], 12.0);
        assert_eq!(m["rps"], 3000.0);
        assert!(!m.contains_key("noise") && !m.contains_key("name"), "{m:?}");
        let pretty = "{\n  \"a\": 1,\n  \"b\": 2\n}\n";
        assert_eq!(parse(pretty, &BTreeMap::new()).len(), 2);
    }

    #[test]
    fn patterns_take_the_last_match_and_replace_the_default_parsers() {
        let p: BTreeMap<String, Regex> = [(
            "p99_us".to_string(),
            compile_pattern(r"99\.0th: (\d+)").unwrap(),
        )]
        .into();
        let out = "99.0th: 10\nx=5\n99.0th: 30\n";
        let m = parse(out, &p);
        assert_eq!(m, [("p99_us".to_string(), 30.0)].into());
    }

    #[test]
    fn bad_patterns_are_named() {
        let e = compile_pattern("p99(").unwrap_err();
        assert!(e.contains("not a valid regular expression"), "{e}");
        let e = compile_pattern(r"p99 \d+").unwrap_err();
        assert!(e.contains("no capture group"), "{e}");
    }

    #[test]
    fn reserved_names_and_nonfinite_values_are_dropped() {
        let m = parse("workers=3\nx=inf\ny=NaN\nz=1\n", &BTreeMap::new());
        assert_eq!(m, [("z".to_string(), 1.0)].into());
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; MAX_OUTPUT]);
        t.push(b"end");
        assert_eq!(t.dropped, 3);
        assert!(t.text().ends_with("aend"));
        assert_eq!(t.text().len(), MAX_OUTPUT);
    }
}
