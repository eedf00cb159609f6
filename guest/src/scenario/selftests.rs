//! `sched-ext-selftests`: the kernel's own `tools/testing/selftests/sched_ext` runner, built by
//! the host from the booted kernel's tree and packed at [`RUNNER_PATH`]. The tests attach their
//! own BPF schedulers, so the cell runs without one of ktstr's.
//!
//! Each test runs in its own runner invocation (`-t NAME`): its output is then its own (the
//! runner's stdout is block-buffered when it is not a terminal, so the stdout and stderr of one
//! long run interleave out of order), and a hung test is killed at its timeout without losing the
//! others. `-t` matches substrings, so a name that is part of longer names runs those too; only
//! the exact name's line counts. The runner always exits 0: its per-test lines (`ok N name # `,
//! `ok N name # SKIP `, `not ok N name # `) are the verdicts.

use super::{
    CheckInfo, CheckOp, Env, MetricDirection, Outcome, ParamInfo, ParamKind, Params, Scenario,
    ScenarioError, ScenarioInfo, closest, metric, setup_err,
};
use crate::protocol::{SubResult, SubStatus};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const NAME: &str = "sched-ext-selftests";
/// Where the host packs the runner in the initramfs.
pub const RUNNER_PATH: &str = "/ktstr/selftests/runner";
/// The `tests` value that selects every test of the runner.
pub const ALL: &str = "all";
/// Arguments that make the runner list its tests without running any: a filter no test name
/// contains, with `-s` printing each filtered-out test as a skipped one.
pub const LIST_ARGS: [&str; 4] = ["-s", "-q", "-t", " ktstr: list only "];
const DEFAULT_TIMEOUT_S: i64 = 60;
/// Tests assumed for the time bound when `tests=all` reaches the guest unexpanded (the host
/// normally replaces `all` with the runner's list).
const ASSUMED_ALL: u64 = 64;
/// Output kept per test that did not pass.
const OUTPUT_TAIL: usize = 4000;

pub struct Selftests;

impl Scenario for Selftests {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::{Counter, HigherIsBetter as Higher, LowerIsBetter as Lower};
        let mut metrics = vec![
            metric(
                "selftests_passed",
                "count",
                Higher,
                false,
                "selftests the runner reported `ok`",
            ),
            metric(
                "selftests_failed",
                "count",
                Lower,
                false,
                "selftests the runner reported `not ok`, timed out, or gave no verdict for",
            ),
            metric(
                "selftests_skipped",
                "count",
                Counter,
                false,
                "selftests the runner skipped (`# SKIP`: the kernel or machine lacks what they need)",
            ),
            metric("selftests_run", "count", Counter, false, "selftests run"),
        ];
        // What the agent adds to every run (the clock; the scheduler's counters and BPF costs
        // stay absent: the selftests attach their own schedulers).
        metrics.extend(super::benchmark::agent_metrics());
        super::mark_headlines(&mut metrics, &["selftests_passed", "selftests_failed"]);
        ScenarioInfo {
            name: NAME.into(),
            purpose: "the kernel's own sched_ext selftests (`tools/testing/selftests/sched_ext`, \
                      built from the booted kernel's tree), each test a sub-result; the tests \
                      attach their own BPF schedulers, so it runs under `eevdf` only, and \
                      `--duration` does not apply (each test is bounded by `timeout_s`)"
                .into(),
            params: vec![
                ParamInfo {
                    name: "tests".into(),
                    doc: "`all`, or a comma list of test names as the runner lists them \
                          (checked against the built runner before boot)"
                        .into(),
                    kind: ParamKind::Text,
                    default: Some(serde_json::Value::from(ALL)),
                    default_doc: ALL.into(),
                },
                super::int_param(
                    "timeout_s",
                    "seconds one test may take before it is killed and counted as failed",
                    1,
                    3600,
                    Some(DEFAULT_TIMEOUT_S),
                    "60",
                ),
            ],
            metrics,
            checks: vec![CheckInfo {
                metric: "selftests_failed".into(),
                op: CheckOp::AtMost,
                default_threshold: Some(0.0),
                per_worker: false,
                doc: "no selftest failed (the failed ones are named)".into(),
            }],
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, _duration: Duration, _env: &Env) -> Result<Outcome, ScenarioError> {
        let runner = std::path::Path::new(RUNNER_PATH);
        if !runner.is_file() {
            return Err(setup_err(
                NAME,
                format!(
                    "no selftests runner at {RUNNER_PATH}: ktstr packs it for this scenario \
                     (run it with `ktstr run` or `ktstr matrix`)"
                ),
            ));
        }
        if !std::path::Path::new("/sys/kernel/sched_ext").is_dir() {
            return Err(setup_err(
                NAME,
                "this kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT)",
            ));
        }
        let names = match selection(p.str_or("tests", ALL)) {
            Some(names) => names,
            None => list_tests(RUNNER_PATH).map_err(|e| setup_err(NAME, e))?,
        };
        let timeout = Duration::from_secs(p.int_or("timeout_s", DEFAULT_TIMEOUT_S) as u64);
        let subtests: Vec<SubResult> = names
            .iter()
            .map(|n| run_one(RUNNER_PATH, n, timeout))
            .collect();
        let count = |s: SubStatus| subtests.iter().filter(|t| t.status == s).count() as f64;
        let metrics = BTreeMap::from([
            ("selftests_passed".to_string(), count(SubStatus::Ok)),
            ("selftests_failed".to_string(), count(SubStatus::Fail)),
            ("selftests_skipped".to_string(), count(SubStatus::Skip)),
            ("selftests_run".to_string(), subtests.len() as f64),
        ]);
        Ok(Outcome {
            workers: Vec::new(),
            metrics,
            subtests,
        })
    }
}

/// `None` for `all`, else the names of a comma list (blanks around commas ignored).
pub fn selection(tests: &str) -> Option<Vec<String>> {
    let t = tests.trim();
    if t == ALL {
        return None;
    }
    Some(
        t.split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    )
}

/// The `tests` parameter is `all` or a non-empty comma list of plausible test names; whether the
/// names exist is known only from the built runner ([`check_names_exist`]).
pub fn check_names_syntax(p: &Params) -> Result<(), ScenarioError> {
    let value = p.str_or("tests", ALL);
    let bad = |why: &str| ScenarioError::WrongType {
        scenario: NAME.into(),
        param: "tests".into(),
        expected: format!("`{ALL}` or a comma list of test names ({why})"),
        value: format!("'{value}'"),
    };
    let Some(names) = selection(value) else {
        return Ok(());
    };
    if names.is_empty() {
        return Err(bad("none given"));
    }
    let plausible = |n: &str| {
        n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    };
    if let Some(n) = names.iter().find(|n| !plausible(n)) {
        return Err(bad(&format!(
            "'{n}' has characters other than letters, digits, _ and -"
        )));
    }
    if let Some((_, n)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(bad(&format!("'{n}' is named twice")));
    }
    Ok(())
}

/// Every name of `tests` is one the runner has (`known`, from [`parse_results`] of its listing).
pub fn check_names_exist(tests: &str, known: &[String]) -> Result<(), ScenarioError> {
    for n in selection(tests).unwrap_or_default() {
        if !known.contains(&n) {
            return Err(ScenarioError::BadChoice {
                scenario: NAME.into(),
                param: "tests".into(),
                value: n.clone(),
                suggestion: closest(&n, known),
                allowed: format!("{ALL}, or a comma list of: {}", known.join(", ")),
            });
        }
    }
    Ok(())
}

/// The longest the selected tests may take: each is bounded by `timeout_s`.
pub fn time_bound(params: &BTreeMap<String, serde_json::Value>) -> Duration {
    let timeout = params
        .get("timeout_s")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
        .unwrap_or(DEFAULT_TIMEOUT_S as u64);
    let tests = params.get("tests").and_then(|v| v.as_str()).unwrap_or(ALL);
    let n = selection(tests).map_or(ASSUMED_ALL, |v| v.len() as u64);
    Duration::from_secs(n.max(1) * timeout)
}

/// The runner's per-test verdict lines, in order: `ok 3 name # `, `ok 3 name # SKIP `,
/// `not ok 3 name # `. Other lines (the tests' own output) are ignored.
pub fn parse_results(output: &str) -> Vec<(String, SubStatus)> {
    output
        .lines()
        .filter_map(|line| {
            let (failed, rest) = match line.strip_prefix("not ok ") {
                Some(rest) => (true, rest),
                None => (false, line.strip_prefix("ok ")?),
            };
            let (num, rest) = rest.split_once(' ')?;
            num.parse::<u32>().ok()?;
            let (name, directive) = rest.split_once(" #")?;
            let status = if failed {
                SubStatus::Fail
            } else if directive.trim_start().starts_with("SKIP") {
                SubStatus::Skip
            } else {
                SubStatus::Ok
            };
            Some((name.trim().to_string(), status))
        })
        .collect()
}

/// The runner's tests, in its order, without running any.
pub fn list_tests(runner: &str) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(runner)
        .args(LIST_ARGS)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {runner}: {e}"))?;
    let names: Vec<String> = parse_results(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if names.is_empty() {
        return Err(format!(
            "{runner} {} listed no tests (exit {:?}): {}",
            LIST_ARGS.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(names)
}

/// Runs test `name` alone, killing it (and what it started) after `timeout`.
fn run_one(runner: &str, name: &str, timeout: Duration) -> SubResult {
    let t0 = Instant::now();
    let (output, ended) = match run_captured(runner, &["-t", name], timeout) {
        Ok(r) => r,
        Err(e) => {
            return SubResult {
                name: name.into(),
                status: SubStatus::Fail,
                output: e,
                duration_ms: t0.elapsed().as_millis() as u64,
            };
        }
    };
    let verdict = parse_results(&output)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s);
    let (status, note) = match (verdict, ended) {
        (Some(s), _) => (s, String::new()),
        (None, Ended::TimedOut) => (
            SubStatus::Fail,
            format!(
                "\nktstr: killed after {} s without a verdict",
                timeout.as_secs()
            ),
        ),
        (None, Ended::Exited(code)) => (
            SubStatus::Fail,
            format!("\nktstr: the runner printed no verdict for {name} (wait status {code})"),
        ),
    };
    SubResult {
        name: name.into(),
        status,
        output: if status == SubStatus::Ok {
            String::new()
        } else {
            tail(&format!("{output}{note}"), OUTPUT_TAIL)
        },
        duration_ms: t0.elapsed().as_millis() as u64,
    }
}

enum Ended {
    Exited(i32),
    TimedOut,
}

/// Runs `prog args` with stdout and stderr into one file (a pipe would need a reader that a
/// leftover grandchild holding it open could block), bounded by `timeout`.
fn run_captured(prog: &str, args: &[&str], timeout: Duration) -> Result<(String, Ended), String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let log = std::env::temp_dir().join(format!("ktstr-selftest-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let file2 = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(file)
        .stderr(file2)
        // Its own process group, so a timeout kills what the test started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("running {prog}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let ended = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ended::Exited(st.into_raw()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                // SAFETY: kill takes no pointers; the group is the runner's own (process_group(0)).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                break Ended::TimedOut;
            }
        }
    };
    let text = std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    Ok((text, ended))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the 6.12 runner prints them (its `print_test_result`), around a test's output.
    const RUNNER_OUTPUT: &str = "===== START =====\nTEST: create_dsq\nOUTPUT:\n\
        ok 1 create_dsq # \n=====  END  =====\n===== START =====\nTEST: hotplug\nOUTPUT:\n\
        EXIT: unregistered from the main kernel (cpu 1 going online, exiting scheduler)\n\
        ok 8 hotplug # SKIP \n=====  END  =====\n===== START =====\nTEST: exit\nOUTPUT:\n\
        ERR: exit.c:30\nnot ok 7 exit # \n=====  END  =====\n\n\nRESULTS:\n\nPASSED:  1\n";

    #[test]
    fn verdict_lines_parse_to_ok_skip_fail() {
        assert_eq!(
            parse_results(RUNNER_OUTPUT),
            vec![
                ("create_dsq".to_string(), SubStatus::Ok),
                ("hotplug".to_string(), SubStatus::Skip),
                ("exit".to_string(), SubStatus::Fail),
            ]
        );
        assert!(parse_results("ok then\nok x y\nnot ok\n").is_empty());
    }

    #[test]
    fn names_are_checked_for_syntax_then_against_the_runner() {
        let resolve = |v: &str| {
            Params::resolve(
                &Selftests.info(),
                &BTreeMap::from([("tests".to_string(), serde_json::json!(v))]),
            )
            .unwrap()
        };
        assert!(check_names_syntax(&resolve("all")).is_ok());
        assert!(check_names_syntax(&resolve("exit, hotplug")).is_ok());
        let e = check_names_syntax(&resolve(" , ")).unwrap_err();
        assert!(e.to_string().contains("none given"), "{e}");
        let e = check_names_syntax(&resolve("exit,minimal,exit")).unwrap_err();
        assert!(e.to_string().contains("'exit' is named twice"), "{e}");
        let e = check_names_syntax(&resolve("exit;rm")).unwrap_err();
        assert!(e.to_string().contains("'exit;rm'"), "{e}");
        let known = vec!["exit".to_string(), "hotplug".to_string()];
        assert!(check_names_exist("exit,hotplug", &known).is_ok());
        assert!(check_names_exist("all", &known).is_ok());
        let e = check_names_exist("exit,hotplgu", &known).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'hotplgu'") && msg.contains("did you mean 'hotplug'"),
            "{msg}"
        );
    }

    #[test]
    fn the_time_bound_grows_with_the_tests_and_their_timeout() {
        let p = |v: serde_json::Value| serde_json::from_value(v).unwrap();
        assert_eq!(
            time_bound(&p(serde_json::json!({"tests": "a,b,c", "timeout_s": 10}))),
            Duration::from_secs(30)
        );
        assert_eq!(
            time_bound(&p(serde_json::json!({}))),
            Duration::from_secs(ASSUMED_ALL * DEFAULT_TIMEOUT_S as u64)
        );
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let t0 = Instant::now();
        let (_, ended) =
            run_captured("/bin/sh", &["-c", "sleep 30"], Duration::from_millis(200)).unwrap();
        assert!(matches!(ended, Ended::TimedOut));
        assert!(t0.elapsed() < Duration::from_secs(10));
        let (out, ended) = run_captured(
            "/bin/sh",
            &["-c", "echo out; echo err >&2"],
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(matches!(ended, Ended::Exited(0)));
        assert_eq!(out, "out\nerr\n");
    }
}
