//! Progress of long host-side work (kernel builds, source extraction): a spinner with the phase,
//! the elapsed time and the last line of the tool's output on a terminal; plain phase lines
//! otherwise, so CI logs show where the time went. During `make` the kbuild steps are counted;
//! with a previous build of the recipe (or series) on record the spinner becomes a bar with
//! steps done/expected and an ETA, and logs get a line every tenth or every half minute.

pub mod download;
pub mod eta;
pub mod kbuild;
pub mod log_watch;
pub mod plain;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Phase, elapsed time and the last make line; a spinner on a terminal, phase lines otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    start: Instant,
    phase: String,
    label: String,
    recipe: Option<String>,
    history: kbuild::History,
    /// The make being counted; behind a lock because make's lines arrive through `&self`.
    build: Mutex<Option<BuildCount>>,
}

/// A running make: steps seen so far, what the previous build said to expect.
#[derive(Debug)]
struct BuildCount {
    recipe: String,
    series: String,
    incremental: bool,
    steps: u64,
    last_line: String,
    /// Seconds since the start at each step, for the curve the next build is estimated from.
    marks: Vec<f64>,
    started: Instant,
    expected: Option<kbuild::BuildRecord>,
    rate: plain::RateLimit,
}

impl BuildCount {
    fn eta(&self) -> Option<Duration> {
        let e = self.expected.as_ref()?;
        let elapsed = self.started.elapsed();
        let at_last_step = Duration::from_secs_f64(self.marks.last().copied().unwrap_or(0.0));
        let since = elapsed.saturating_sub(at_last_step);
        eta::curve_eta(self.steps, e.steps, at_last_step, since, &e.curve)
            .or_else(|| eta::build_eta(self.steps, e.steps, elapsed, e.duration()))
    }

    /// `kernel 6.12 build: 4210/8800 objects (48 %), ETA 3m50s`, or the count and the time so far
    /// when there is nothing to compare with.
    fn plain_line(&self, label: &str) -> String {
        let head = format!("kernel {label} build");
        match (&self.expected, self.eta()) {
            (Some(e), Some(eta)) => format!(
                "{head}: {}/{} objects ({} %), ETA {}",
                self.steps,
                e.steps.max(self.steps),
                (self.steps * 100 / e.steps.max(1)).min(99),
                eta::fmt_duration(eta)
            ),
            _ => format!(
                "{head}: {} objects, {} so far",
                self.steps,
                eta::fmt_duration(self.started.elapsed())
            ),
        }
    }
}

impl Progress {
    pub fn new(enabled: bool, label: &str) -> Self {
        use std::io::IsTerminal;
        let tty = enabled && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(spinner_style());
            b.set_prefix(label.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            bar,
            lines: enabled && !tty,
            start: Instant::now(),
            phase: String::new(),
            label: label.to_string(),
            recipe: None,
            history: kbuild::History::in_cache(),
            build: Mutex::new(None),
        }
    }

    /// The recipe whose previous build estimates this one (the cache's recipe hash).
    pub fn set_recipe(&mut self, recipe: &str) {
        self.recipe = Some(recipe.to_string());
    }

    /// Where build records are read and written (tests use a temp dir).
    pub fn set_history(&mut self, history: kbuild::History) {
        self.history = history;
    }

    /// A kernel make starts: count its steps against the previous build of the recipe, else of
    /// the series (`version` `6.12.3` is series `6.12`), of the same kind (full or incremental).
    pub fn start_build(&mut self, version: &str, incremental: bool) {
        let recipe = self.recipe.clone().unwrap_or_else(|| self.label.clone());
        let series = kbuild::series(version);
        let expected = self.history.estimate(&recipe, &series, incremental);
        if let (Some(b), Some(e)) = (&self.bar, &expected) {
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "[{elapsed_precise}] {prefix}: {bar:30} {pos}/{len} objects ({percent}%) \
                     ETA {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_length(e.steps.max(1));
            b.set_position(0);
        }
        let now = Instant::now();
        *self.build.lock().unwrap_or_else(|p| p.into_inner()) = Some(BuildCount {
            recipe,
            series,
            incremental,
            steps: 0,
            last_line: String::new(),
            marks: Vec::new(),
            started: now,
            expected,
            rate: plain::RateLimit::new(now),
        });
    }

    /// make succeeded: its step count and duration estimate the next build of this recipe.
    pub fn finish_build(&mut self) {
        let taken = self.build.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(b) = &self.bar {
            b.set_style(spinner_style());
        }
        if let Some(b) = taken {
            let seconds = b.started.elapsed().as_secs_f64();
            self.history.record(&kbuild::BuildRecord {
                recipe: b.recipe,
                series: b.series,
                incremental: b.incremental,
                steps: b.steps,
                seconds,
                curve: eta::curve_of(&b.marks, seconds, 101),
            });
        }
    }

    /// The plain line a count would print now (tests; what CI logs show).
    pub fn build_line(&self) -> Option<String> {
        let g = self.build.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|b| b.plain_line(&self.label))
    }

    pub fn phase(&mut self, phase: &str) {
        self.phase = phase.to_string();
        if let Some(b) = &self.bar {
            b.set_message(phase.to_string());
        } else if self.lines {
            eprintln!(
                "[{:>6.1}s] kernel: {phase}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Shows the tool's latest output line next to the phase (terminal only); during a kernel
    /// make also counts it and moves the bar, or prints a plain line when one is due.
    pub fn line(&self, line: &str) {
        let mut g = self.build.lock().unwrap_or_else(|p| p.into_inner());
        let Some(count) = g.as_mut() else {
            if let Some(b) = &self.bar {
                b.set_message(format!("{} | {}", self.phase, line.trim()));
            }
            return;
        };
        if kbuild::is_step(line) {
            count.steps += 1;
            count.marks.push(count.started.elapsed().as_secs_f64());
        }
        count.last_line = line.trim().to_string();
        self.show(count);
    }

    /// Refreshes the ETA while make prints nothing (a link runs for tens of seconds); off a
    /// terminal this is what keeps a line coming every half minute.
    pub fn tick(&self) {
        let mut g = self.build.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = g.as_mut() {
            self.show(count);
        }
    }

    fn show(&self, count: &mut BuildCount) {
        if let Some(b) = &self.bar {
            match (&count.expected, count.eta()) {
                (Some(e), Some(eta)) => {
                    b.set_length(e.steps.max(count.steps + 1));
                    b.set_position(count.steps);
                    b.set_message(format!("{} | {}", eta::fmt_duration(eta), count.last_line));
                }
                _ => b.set_message(format!("{} | {}", self.phase, count.last_line)),
            }
        } else if self.lines {
            let fraction = count
                .expected
                .as_ref()
                .map(|e| count.steps as f64 / e.steps.max(1) as f64);
            if count.rate.due(Instant::now(), fraction) {
                eprintln!("{}", count.plain_line(&self.label));
            }
        }
    }

    pub fn finish(&mut self, what: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.lines || what == "built" {
            eprintln!(
                "[{:>6.1}s] kernel: {what}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

fn spinner_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
}

/// The last `n` lines of a build log, for an error message (empty if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full 6.12 build's steps in the shape make prints them (CC lines with a few AR and LD).
    fn make_output(objects: usize) -> Vec<String> {
        let mut lines = vec!["make[1]: Entering directory '/tmp/o'".to_string()];
        for i in 0..objects {
            lines.push(match i % 10 {
                9 => format!("  AR      drivers/d{i}/built-in.a"),
                8 => format!("  LD [M]  drivers/d{i}/m.ko"),
                _ => format!("  CC      kernel/f{i}.o"),
            });
        }
        lines.push("Kernel: arch/x86/boot/bzImage is ready  (#1)".into());
        lines
    }

    /// The first build has nothing to compare with; its record makes the second one a bar with
    /// objects done/expected and an ETA.
    #[test]
    fn second_build_of_a_recipe_is_estimated_from_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let history = kbuild::History::new(tmp.path().to_path_buf());
        let mut first = Progress::new(false, "6.12");
        first.set_history(history.clone());
        first.set_recipe("r1");
        first.start_build("6.12.3", false);
        for l in make_output(200) {
            first.line(&l);
        }
        let line = first.build_line().unwrap();
        assert!(
            line.starts_with("kernel 6.12 build: 200 objects, "),
            "{line}"
        );
        first.finish_build();

        let mut second = Progress::new(false, "6.12");
        second.set_history(history.clone());
        second.set_recipe("r1");
        second.start_build("6.12.3", false);
        for l in &make_output(200)[..101] {
            second.line(l);
        }
        let line = second.build_line().unwrap();
        assert!(
            line.starts_with("kernel 6.12 build: 100/200 objects (50 %), ETA "),
            "{line}"
        );
        // An incremental make of the same recipe is not measured against the full build.
        let mut incr = Progress::new(false, "6.12");
        incr.set_history(history);
        incr.set_recipe("r1");
        incr.start_build("6.12.3", true);
        incr.line("  CC      kernel/sched/core.o");
        assert!(!incr.build_line().unwrap().contains("ETA"));
    }
}
