//! The tests of suite-running scenarios (`sched-ext-selftests`) in the report: per scenario,
//! topology and scheduler, one row per test and one column per kernel, each cell the test's
//! verdicts over repeats (`ok`, `skip`, `FAIL`, or `ok 2/3`), with the first failure's output.

use crate::store::CellRecord;
use ktstr_guest::protocol::{SubResult, SubStatus};
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One suite's tests across the report's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteTable {
    pub scenario: String,
    pub topology: String,
    pub sched: String,
    /// Report column ids with at least one run of this suite.
    pub columns: Vec<String>,
    /// Tests in the order the runner ran them (first met).
    pub rows: Vec<SuiteRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteRow {
    pub name: String,
    /// One per entry of `SuiteTable::columns`; `None` where the test did not run.
    pub cells: Vec<Option<SuiteCell>>,
}

/// A test's verdicts over the repeats of one column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuiteCell {
    pub ok: u32,
    pub skip: u32,
    pub fail: u32,
    /// The output of its first failure (else of its first skip), for the reader.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

impl SuiteCell {
    fn add(&mut self, t: &SubResult) {
        match t.status {
            SubStatus::Ok => self.ok += 1,
            SubStatus::Skip => self.skip += 1,
            SubStatus::Fail => self.fail += 1,
        }
        let first_of_kind = match t.status {
            SubStatus::Fail => self.fail == 1,
            SubStatus::Skip => self.skip == 1 && self.fail == 0,
            SubStatus::Ok => false,
        };
        if first_of_kind {
            self.output = t.output.clone();
        }
    }

    /// `ok`, `skip`, `FAIL` when every repeat agrees, else the counts (`ok 2/3, FAIL 1/3`).
    pub fn text(&self) -> String {
        let n = self.ok + self.skip + self.fail;
        let parts: Vec<(&str, u32)> = [("ok", self.ok), ("skip", self.skip), ("FAIL", self.fail)]
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .collect();
        match parts.as_slice() {
            [(word, _)] => word.to_string(),
            _ => parts
                .iter()
                .map(|(w, c)| format!("{w} {c}/{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The suites of the records, by column id (in report column order).
pub fn tables(columns: &[(&str, &[&CellRecord])]) -> Vec<SuiteTable> {
    let mut out: Vec<SuiteTable> = Vec::new();
    for (col, records) in columns {
        for r in records.iter() {
            let Some(sc) = r.result.report.as_ref().and_then(|g| g.scenario.as_ref()) else {
                continue;
            };
            if sc.subtests.is_empty() {
                continue;
            }
            let (scenario, topology, sched) =
                (r.key.scenario.label(), &r.key.topology, &r.key.sched);
            let i = match out.iter().position(|t| {
                t.scenario == scenario && &t.topology == topology && &t.sched == sched
            }) {
                Some(i) => i,
                None => {
                    out.push(SuiteTable {
                        scenario,
                        topology: topology.clone(),
                        sched: sched.clone(),
                        columns: Vec::new(),
                        rows: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let table = &mut out[i];
            let c = match table.columns.iter().position(|c| c == col) {
                Some(c) => c,
                None => {
                    table.columns.push(col.to_string());
                    for row in &mut table.rows {
                        row.cells.push(None);
                    }
                    table.columns.len() - 1
                }
            };
            for t in &sc.subtests {
                let ncols = table.columns.len();
                let row = match table.rows.iter().position(|row| row.name == t.name) {
                    Some(k) => &mut table.rows[k],
                    None => {
                        table.rows.push(SuiteRow {
                            name: t.name.clone(),
                            cells: vec![None; ncols],
                        });
                        table.rows.last_mut().expect("just pushed")
                    }
                };
                row.cells[c].get_or_insert_with(SuiteCell::default).add(t);
            }
        }
    }
    out
}

fn title(t: &SuiteTable) -> String {
    format!("{} / {} / {}", t.scenario, t.topology, t.sched)
}

fn counts(t: &SuiteTable, col: usize) -> String {
    let (mut ok, mut skip, mut fail) = (0, 0, 0);
    for c in t.rows.iter().filter_map(|r| r.cells[col].as_ref()) {
        ok += c.ok;
        skip += c.skip;
        fail += c.fail;
    }
    format!("{ok} ok, {skip} skip, {fail} fail")
}

/// The first line worth quoting of a test's output: the last non-framing line before its verdict.
fn gist(output: &str) -> String {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("=====")
                && !l.starts_with("ok ")
                && !l.starts_with("not ok ")
        })
        .unwrap_or("")
        .to_string()
}

/// The terminal rendering: a table per suite, then each failure's gist.
pub fn terminal(tables: &[SuiteTable]) -> String {
    use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
    let mut out = String::new();
    for t in tables {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header = vec!["test".to_string()];
        header.extend(t.columns.iter().cloned());
        table.set_header(header);
        for row in &t.rows {
            let mut line = vec![row.name.clone()];
            line.extend(row.cells.iter().map(cell_text));
            table.add_row(line);
        }
        let mut totals = vec!["(all)".to_string()];
        totals.extend((0..t.columns.len()).map(|c| counts(t, c)));
        table.add_row(totals);
        let _ = writeln!(out, "{}\n{table}", title(t));
        for (row, col, cell) in failures(t) {
            let _ = writeln!(out, "FAIL {} @ {col}: {}", row, gist(&cell.output));
        }
        out.push('\n');
    }
    out
}

fn cell_text(c: &Option<SuiteCell>) -> String {
    c.as_ref().map_or_else(|| "-".into(), SuiteCell::text)
}

fn failures(t: &SuiteTable) -> impl Iterator<Item = (&str, &str, &SuiteCell)> {
    t.rows.iter().flat_map(move |row| {
        row.cells
            .iter()
            .zip(&t.columns)
            .filter_map(move |(c, col)| {
                c.as_ref()
                    .filter(|c| c.fail > 0)
                    .map(|c| (row.name.as_str(), col.as_str(), c))
            })
    })
}

/// report.md: a section with a table per suite and each failure's output.
pub fn markdown(tables: &[SuiteTable]) -> String {
    if tables.is_empty() {
        return String::new();
    }
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("## Test suites (each test's verdict per kernel)\n\n");
    for t in tables {
        let _ = writeln!(out, "### {}\n", title(t));
        let _ = writeln!(out, "| test | {} |", t.columns.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(t.columns.len()));
        for row in &t.rows {
            let cells: Vec<String> = row.cells.iter().map(cell_text).collect();
            let _ = writeln!(out, "| {} | {} |", esc(&row.name), cells.join(" | "));
        }
        let totals: Vec<String> = (0..t.columns.len()).map(|c| counts(t, c)).collect();
        let _ = writeln!(out, "| **(all)** | {} |\n", totals.join(" | "));
        for (row, col, cell) in failures(t) {
            let _ = writeln!(
                out,
                "<details><summary>FAIL {} @ {}: {}</summary>\n\n```\n{}\n```\n</details>\n",
                esc(row),
                esc(col),
                esc(&gist(&cell.output)),
                cell.output.replace("```", "'''")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{CellInputs, CellKey};
    use crate::result::{CellResult, HostTimings, Outcome, RESULT_FORMAT_VERSION};
    use crate::spec::ScenarioSel;
    use ktstr_guest::protocol::{GuestReport, GuestStatus, KernelInfo, ScenarioReport};

    fn record(kernel: &str, repeat: u32, tests: &[(&str, SubStatus)]) -> CellRecord {
        let subtests = tests
            .iter()
            .map(|(n, s)| SubResult {
                name: n.to_string(),
                status: *s,
                output: if *s == SubStatus::Fail {
                    format!("OUTPUT:\nERR: {n}.c:42 wrong\nnot ok 1 {n} # \n=====  END  =====\n")
                } else {
                    String::new()
                },
                duration_ms: 5,
            })
            .collect();
        CellRecord {
            format_version: crate::store::STORE_FORMAT_VERSION,
            id: format!("{kernel}{repeat}"),
            key: CellKey {
                kernel: kernel.into(),
                configs: vec!["sched_ext".into()],
                sched: "eevdf".into(),
                scenario: ScenarioSel {
                    name: "sched-ext-selftests".into(),
                    params: Default::default(),
                },
                topology: "1n1l2c1t".into(),
                duration_ms: 1000,
                repeat,
            },
            inputs: CellInputs::default(),
            result: CellResult {
                format_version: RESULT_FORMAT_VERSION,
                outcome: Outcome::Pass,
                reason: None,
                report: Some(GuestReport {
                    status: GuestStatus::Passed,
                    kernel: KernelInfo::default(),
                    exit_code: None,
                    scheduler: None,
                    scenario: Some(ScenarioReport {
                        name: "sched-ext-selftests".into(),
                        subtests,
                        ..Default::default()
                    }),
                    uptime_ms: 1,
                }),
                console_tail: String::new(),
                timings: HostTimings::default(),
                backend: "test".into(),
            },
            finished_at: 0,
        }
    }

    #[test]
    fn tests_are_rows_kernels_columns_repeats_counted() {
        use SubStatus::{Fail, Ok, Skip};
        let a1 = record("6.12", 1, &[("create_dsq", Ok), ("exit", Ok)]);
        let a2 = record("6.12", 2, &[("create_dsq", Ok), ("exit", Fail)]);
        let b1 = record("6.13", 1, &[("create_dsq", Skip), ("hotplug", Ok)]);
        let (a, b) = (vec![&a1, &a2], vec![&b1]);
        let t = tables(&[("6.12/sched_ext", &a), ("6.13/sched_ext", &b)]);
        assert_eq!(t.len(), 1);
        let t = &t[0];
        assert_eq!(t.columns, vec!["6.12/sched_ext", "6.13/sched_ext"]);
        let names: Vec<&str> = t.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["create_dsq", "exit", "hotplug"]);
        let text: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|r| r.cells.iter().map(cell_text).collect())
            .collect();
        assert_eq!(text[0], vec!["ok", "skip"]);
        assert_eq!(text[1], vec!["ok 1/2, FAIL 1/2", "-"]);
        assert_eq!(text[2], vec!["-", "ok"]);
        let md = markdown(std::slice::from_ref(t));
        assert!(md.contains("| exit | ok 1/2, FAIL 1/2 | - |"), "{md}");
        assert!(
            md.contains("FAIL exit @ 6.12/sched_ext: ERR: exit.c:42 wrong"),
            "{md}"
        );
        assert!(
            md.contains("| **(all)** | 3 ok, 0 skip, 1 fail | 1 ok, 1 skip, 0 fail |"),
            "{md}"
        );
        let term = terminal(std::slice::from_ref(t));
        assert!(
            term.contains("FAIL exit @ 6.12/sched_ext: ERR: exit.c:42 wrong"),
            "{term}"
        );
        assert_eq!(markdown(&[]), "");
    }
}
