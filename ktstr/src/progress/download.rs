//! A reader that shows a download's progress: bytes/total, rate and ETA as a bar on a terminal,
//! plain lines at a bounded rate otherwise. Wraps the response body; the caller keeps reading,
//! hashing and checking as before.

use super::eta::{fmt_duration, rate_eta};
use super::plain::{RateLimit, Sink, stderr_sink};
use indicatif::HumanBytes;
use std::io::Read;
use std::time::Instant;

pub struct ProgressReader<R> {
    inner: R,
    label: String,
    done: u64,
    total: Option<u64>,
    start: Instant,
    bar: Option<indicatif::ProgressBar>,
    plain: Option<(RateLimit, Sink)>,
}

impl<R: Read> ProgressReader<R> {
    /// `total` is the Content-Length, if the server sent one. Nothing is shown when `enabled` is
    /// false; a bar when stderr is a terminal; plain lines otherwise.
    pub fn new(inner: R, total: Option<u64>, label: &str, enabled: bool) -> Self {
        use std::io::IsTerminal;
        if enabled && std::io::stderr().is_terminal() {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "[{elapsed_precise}] {prefix}: {bar:30} {binary_bytes}/{binary_total_bytes} \
                     ({binary_bytes_per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("download {label}"));
            let mut r = Self::quiet(inner, total, label);
            r.bar = Some(bar);
            return r;
        }
        let mut r = Self::quiet(inner, total, label);
        if enabled {
            r.plain = Some((RateLimit::new(r.start), stderr_sink()));
        }
        r
    }

    /// Plain lines into `sink` whatever stderr is (tests, and callers with their own log).
    pub fn with_sink(inner: R, total: Option<u64>, label: &str, sink: Sink) -> Self {
        let mut r = Self::quiet(inner, total, label);
        r.plain = Some((RateLimit::new(r.start), sink));
        r
    }

    /// The wrapped reader (e.g. to describe its errors).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn quiet(inner: R, total: Option<u64>, label: &str) -> Self {
        Self {
            inner,
            label: label.to_string(),
            done: 0,
            total: total.filter(|t| *t > 0),
            start: Instant::now(),
            bar: None,
            plain: None,
        }
    }

    /// `download linux-6.12.tar.xz: 45.2 MiB/140.0 MiB (32 %), 5.1 MiB/s, ETA 20s`.
    fn plain_line(&self) -> String {
        let elapsed = self.start.elapsed();
        let rate = self.done as f64 / elapsed.as_secs_f64().max(1e-3);
        let mut s = format!("download {}: {}", self.label, HumanBytes(self.done));
        if let Some(t) = self.total {
            s += &format!("/{} ({} %)", HumanBytes(t), self.done * 100 / t);
        }
        s += &format!(", {}/s", HumanBytes(rate as u64));
        if let Some(eta) = self.total.and_then(|t| rate_eta(self.done, t, elapsed)) {
            s += &format!(", ETA {}", fmt_duration(eta));
        }
        s
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(b) = &self.bar {
            b.set_position(self.done);
        }
        let fraction = self.total.map(|t| self.done as f64 / t as f64);
        let due = match &mut self.plain {
            Some((rate, _)) => n > 0 && rate.due(Instant::now(), fraction),
            None => false,
        };
        if due {
            let line = self.plain_line();
            if let Some((_, sink)) = &mut self.plain {
                sink(&line);
            }
        }
        Ok(n)
    }
}

impl<R> Drop for ProgressReader<R> {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn capture() -> (Sink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        (
            Box::new(move |s: &str| l.lock().unwrap().push(s.into())),
            lines,
        )
    }

    /// The bytes pass through unchanged, and a known total gives one line per tenth.
    #[test]
    fn passes_bytes_through_with_a_line_per_tenth() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (sink, lines) = capture();
        let mut r = ProgressReader::with_sink(&data[..], Some(data.len() as u64), "x.tar", sink);
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 10, "{lines:#?}");
        assert!(lines[0].starts_with("download x.tar: "), "{}", lines[0]);
        assert!(
            lines[0].contains("(10 %)") && lines[0].contains("ETA"),
            "{lines:?}"
        );
        assert!(lines[9].contains("(100 %)"), "{lines:?}");
    }

    /// Without a Content-Length there is no percentage or ETA, and no line before half a minute.
    #[test]
    fn unknown_total_prints_no_percent() {
        let data = vec![7u8; 50_000];
        let (sink, lines) = capture();
        let mut r = ProgressReader::with_sink(&data[..], None, "y", sink);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert!(lines.lock().unwrap().is_empty());
        assert!(!r.plain_line().contains('%'));
        assert!(!r.plain_line().contains("ETA"));
    }
}
