//! Progress of a tool that writes its output to a log file rather than a pipe (`cargo install`):
//! a thread follows the log, counts the lines that mark a unit of work (cargo's `Compiling`),
//! and shows them against the count of the previous build of the same package, with an ETA.
//! The count and duration are recorded when the build succeeds.

use super::eta::{build_eta, fmt_duration};
use super::plain::{RateLimit, Sink, stderr_sink};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A previous build: how many units it printed and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    pub units: u64,
    pub seconds: f64,
}

/// Whether a cargo output line starts compiling a crate.
pub fn is_cargo_unit(line: &str) -> bool {
    line.trim_start().starts_with("Compiling ")
}

/// `cargo scx_rusty 1.0.14: 120/310 crates (38 %), ETA 4m10s`, or the count so far.
pub fn line(label: &str, units: u64, elapsed: Duration, previous: Option<Previous>) -> String {
    match previous.filter(|p| p.units > 0) {
        Some(p) => {
            let eta = build_eta(
                units,
                p.units,
                elapsed,
                Duration::from_secs_f64(p.seconds.max(0.0)),
            )
            .unwrap_or_default();
            format!(
                "{label}: {units}/{} crates ({} %), ETA {}",
                p.units.max(units),
                (units * 100 / p.units).min(99),
                fmt_duration(eta)
            )
        }
        None => format!("{label}: {units} crates, {} so far", fmt_duration(elapsed)),
    }
}

/// Reads and writes the record of one package's previous build (best effort).
pub fn load(path: &Path) -> Option<Previous> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn store(path: &Path, p: Previous) {
    if let (Some(dir), Ok(text)) = (path.parent(), serde_json::to_vec(&p)) {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(path, text);
    }
}

/// Counts units in `log` while the build runs; stops (and clears its bar) when dropped.
pub struct LogWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
    started: Instant,
}

impl LogWatch {
    /// A bar on a terminal, plain lines at a bounded rate otherwise.
    pub fn start(log: PathBuf, label: String, previous: Option<Previous>) -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(500));
            b
        });
        let sink = (bar.is_none()).then(stderr_sink);
        Self::spawn(log, label, previous, bar, sink)
    }

    /// Plain lines into `sink` (tests).
    pub fn with_sink(log: PathBuf, label: String, previous: Option<Previous>, sink: Sink) -> Self {
        Self::spawn(log, label, previous, None, Some(sink))
    }

    fn spawn(
        log: PathBuf,
        label: String,
        previous: Option<Previous>,
        bar: Option<indicatif::ProgressBar>,
        mut sink: Option<Sink>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut units = 0u64;
            let mut offset = 0u64;
            let mut rate = RateLimit::new(started);
            loop {
                // One last pass after the stop so the final count includes the log's tail.
                let stopping = flag.load(Ordering::Relaxed);
                let (read, new_units) = read_from(&log, offset);
                offset += read;
                units += new_units;
                let now_line = line(&label, units, started.elapsed(), previous);
                if let Some(b) = &bar {
                    b.set_message(now_line);
                } else if let Some(s) = &mut sink {
                    let fraction = previous.map(|p| units as f64 / p.units.max(1) as f64);
                    if new_units > 0 && rate.due(Instant::now(), fraction) {
                        s(&now_line);
                    }
                }
                if stopping {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            units
        });
        Self {
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// Stops following the log; the units counted and the time since the start.
    pub fn finish(mut self) -> Previous {
        let units = self.join();
        Previous {
            units,
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }

    fn join(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        self.join();
    }
}

/// Complete lines of `log` past `offset`: the bytes consumed and the units among them.
fn read_from(log: &Path, offset: u64) -> (u64, u64) {
    let Ok(mut f) = std::fs::File::open(log) else {
        return (0, 0);
    };
    if f.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return (0, 0);
    }
    let (mut read, mut units) = (0u64, 0u64);
    let mut r = std::io::BufReader::new(f);
    let mut buf = String::new();
    // A line still being written (no newline yet) is left for the next pass.
    while let Ok(n) = r.read_line(&mut buf) {
        if n == 0 || !buf.ends_with('\n') {
            break;
        }
        read += n as u64;
        units += u64::from(is_cargo_unit(&buf));
        buf.clear();
    }
    (read, units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    #[test]
    fn cargo_units() {
        assert!(is_cargo_unit("   Compiling libc v0.2.170"));
        assert!(!is_cargo_unit("    Updating crates.io index"));
        assert!(!is_cargo_unit("  Downloaded serde v1.0.219"));
        assert!(!is_cargo_unit(
            "warning: unused variable `x` (Compiling ...)"
        ));
    }

    #[test]
    fn lines_with_and_without_a_previous_build() {
        let p = Some(Previous {
            units: 200,
            seconds: 100.0,
        });
        let l = line("cargo scx_x 1.0", 50, Duration::from_secs(25), p);
        assert_eq!(l, "cargo scx_x 1.0: 50/200 crates (25 %), ETA 1m15s");
        let l = line("cargo scx_x 1.0", 50, Duration::from_secs(25), None);
        assert_eq!(l, "cargo scx_x 1.0: 50 crates, 25s so far");
    }

    /// The watcher counts the `Compiling` lines appended to a log while it runs, including a
    /// last line written just before it stops, and a half-written line only once complete.
    #[test]
    fn follows_a_growing_log() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("build.log");
        let mut f = std::fs::File::create(&log).unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l = lines.clone();
        let prev = Previous {
            units: 10,
            seconds: 1.0,
        };
        let w = LogWatch::with_sink(
            log.clone(),
            "cargo t".into(),
            Some(prev),
            Box::new(move |s: &str| l.lock().unwrap().push(s.into())),
        );
        for i in 0..9 {
            writeln!(f, "   Compiling c{i} v1.0.0").unwrap();
        }
        write!(f, "   Compiling c9 v1.0.0").unwrap();
        f.flush().unwrap();
        writeln!(f, "\n    Finished `release` profile").unwrap();
        let done = w.finish();
        assert_eq!(done.units, 10);
        let lines = lines.lock().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("cargo t: ") && l.contains("/10 crates")),
            "{lines:?}"
        );
    }
}
