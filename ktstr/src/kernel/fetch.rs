//! HTTP downloads from kernel.org and its mirrors: https unless `KTSTR_ALLOW_HTTP=1`, connect and
//! read timeouts, and a body that stops within [`POLL`] of Ctrl-C. The request runs on its own
//! thread and hands chunks over a channel, so the reader's waits are bounded by [`POLL`] whatever
//! the server does (a blocking socket read cannot be interrupted by a flag).

use super::KernelError;
use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

/// How often a waiting reader looks at [`crate::cancel::requested`].
pub const POLL: Duration = Duration::from_millis(100);
/// No response head or no body byte for this long: the server is dead.
const STALL: Duration = Duration::from_secs(60);
const CHUNK: usize = 64 << 10;

/// `KTSTR_ALLOW_HTTP` set (and not `0`): plain-http mirrors are accepted.
pub fn allow_http() -> bool {
    std::env::var_os("KTSTR_ALLOW_HTTP").is_some_and(|v| v != "0")
}

/// Refuses a plain-http URL unless opted in.
pub fn check_scheme(url: &str) -> Result<(), KernelError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") && !allow_http() {
        return Err(KernelError::InsecureUrl { url: url.into() });
    }
    Ok(())
}

/// One agent per request: a stalled server ends in an error, not a hang.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(STALL))
        .timeout_recv_body(Some(Duration::from_secs(60 * 60)))
        .build()
        .into()
}

enum Msg {
    Head(Option<u64>),
    Data(Vec<u8>),
    Failed(String),
}

/// A response body being received on another thread; reads return within [`POLL`] of Ctrl-C
/// (as an error; [`crate::cancel::requested`] then says why).
pub struct Body {
    url: String,
    rx: Receiver<Msg>,
    pending: Vec<u8>,
    at: usize,
    done: bool,
    len: Option<u64>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("url", &self.url).finish()
    }
}

/// GETs `url`, returning once the response head is in (a non-2xx status is an error).
pub fn get(url: &str) -> Result<Body, KernelError> {
    check_scheme(url)?;
    let (tx, rx) = sync_channel(4);
    let u = url.to_string();
    std::thread::spawn(move || {
        let mut resp = match agent().get(&u).call() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e.to_string()));
                return;
            }
        };
        if tx.send(Msg::Head(resp.body().content_length())).is_err() {
            return;
        }
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        loop {
            let mut buf = vec![0u8; CHUNK];
            let msg = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Msg::Data(buf)
                }
                Err(e) => Msg::Failed(e.to_string()),
            };
            let failed = matches!(msg, Msg::Failed(_));
            // The reader was dropped (Ctrl-C, an error): nobody wants the rest.
            if tx.send(msg).is_err() || failed {
                return;
            }
        }
    });
    let mut body = Body {
        url: url.into(),
        rx,
        pending: Vec::new(),
        at: 0,
        done: false,
        len: None,
    };
    match body.next().map_err(|e| body.error(e))? {
        Some(Msg::Head(len)) => body.len = len,
        _ => return Err(body.error(std::io::Error::other("no response"))),
    }
    Ok(body)
}

/// A small GET as text (sums, listings), at most 16 MiB.
pub fn get_text(url: &str) -> Result<String, KernelError> {
    let body = get(url)?;
    let mut text = String::new();
    let mut limited = body.take(16 << 20);
    let r = limited.read_to_string(&mut text);
    let body = limited.into_inner();
    r.map_err(|e| body.error(e))?;
    Ok(text)
}

impl Body {
    /// The Content-Length the server announced.
    pub fn content_length(&self) -> Option<u64> {
        self.len
    }

    /// The typed error for a failed read: Interrupted after Ctrl-C, else a download failure.
    pub fn error(&self, e: std::io::Error) -> KernelError {
        if crate::cancel::requested() {
            KernelError::Interrupted
        } else {
            KernelError::Download {
                url: self.url.clone(),
                why: e.to_string(),
            }
        }
    }

    /// The next message, waiting in [`POLL`] steps; None at the end of the body.
    fn next(&mut self) -> std::io::Result<Option<Msg>> {
        let started = Instant::now();
        loop {
            if crate::cancel::requested() {
                return Err(std::io::Error::other("interrupted"));
            }
            match self.rx.recv_timeout(POLL) {
                Ok(Msg::Failed(why)) => return Err(std::io::Error::other(why)),
                Ok(m) => return Ok(Some(m)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) if started.elapsed() >= STALL => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data for {} s", STALL.as_secs()),
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            match self.next()? {
                Some(Msg::Data(chunk)) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Some(_) => {}
                None => self.done = true,
            }
        }
        let n = out.len().min(self.pending.len() - self.at);
        out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_the_opt_in() {
        // The opt-in itself is covered by the e2e tests, which run ktstr with it set.
        if allow_http() {
            return;
        }
        let e = check_scheme("http://mirror.example/pub/linux/kernel").unwrap_err();
        assert!(e.is_bad_input());
        let text = e.to_string();
        assert!(text.contains("http://mirror.example"), "{text}");
        assert!(text.contains("KTSTR_ALLOW_HTTP=1"), "{text}");
        assert!(check_scheme("https://cdn.kernel.org/pub/linux/kernel").is_ok());
    }
}
