//! The result channel (COM2) as every backend reads it: framed, checksummed JSON from the guest
//! agent (`ktstr_guest::frame`), decoded as the bytes arrive, with the host-side times of the
//! agent's first frame and of its result.
//!
//! Everything on the channel is guest output and so untrusted: a broken or hostile guest may
//! announce huge frames, send frames forever or write garbage forever. What the reader keeps is
//! bounded by the limits below, and going past one is itself reported as a frame error, so a
//! run that hit a limit cannot pass for a clean one.

use ktstr_guest::frame::{self, Decoder};
use ktstr_guest::protocol::GuestMessage;
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest frame payload the decoder buffers; a header announcing more is a frame error and
/// nothing is buffered for it.
pub const MAX_FRAME_BYTES: usize = frame::MAX_FRAME_LEN;
/// Messages kept. The agent sends two (`AgentStarted`, then `Result`); the limit only stops a
/// guest that sends frames without end from growing the host's memory.
pub const MAX_MESSAGES: usize = 1000;
/// Frame errors kept; the ones after it are counted, not stored.
pub const MAX_FRAME_ERRORS: usize = 100;

/// The incremental reader of one VM's result channel.
#[derive(Debug)]
pub struct ResultChannel {
    decoder: Decoder,
    /// What `to_agent` and `to_result` count from (the VM's spawn).
    start: Instant,
    messages: Vec<GuestMessage>,
    frame_errors: Vec<String>,
    messages_dropped: usize,
    errors_dropped: usize,
    to_agent: Option<Duration>,
    to_result: Option<Duration>,
}

/// What one chunk of bytes completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Messages decoded (kept or, past [`MAX_MESSAGES`], dropped).
    pub messages: usize,
    /// One of them was a `Result`.
    pub result: bool,
}

/// What the channel brought over a whole run, limits and garbage reported as frame errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    pub messages: Vec<GuestMessage>,
    pub frame_errors: Vec<String>,
    /// Host time from the VM's spawn to the agent's first `AgentStarted`.
    pub to_agent: Option<Duration>,
    /// Host time from the VM's spawn to the first `Result`.
    pub to_result: Option<Duration>,
}

impl ResultChannel {
    /// A reader whose times count from `start`.
    pub fn new(start: Instant) -> Self {
        ResultChannel {
            decoder: Decoder::new(),
            start,
            messages: Vec::new(),
            frame_errors: Vec::new(),
            messages_dropped: 0,
            errors_dropped: 0,
            to_agent: None,
            to_result: None,
        }
    }

    /// Decodes `bytes`, which continue what was pushed before (a frame may span any number of
    /// pushes).
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        let mut pushed = Pushed::default();
        for item in self.decoder.push(bytes) {
            match item {
                Ok(msg) => {
                    let at = self.start.elapsed();
                    match &msg {
                        GuestMessage::AgentStarted(_) => {
                            self.to_agent.get_or_insert(at);
                        }
                        GuestMessage::Result(_) => {
                            self.to_result.get_or_insert(at);
                            pushed.result = true;
                        }
                    }
                    pushed.messages += 1;
                    if self.messages.len() < MAX_MESSAGES {
                        self.messages.push(msg);
                    } else {
                        self.messages_dropped += 1;
                    }
                }
                Err(e) if self.frame_errors.len() < MAX_FRAME_ERRORS => {
                    self.frame_errors.push(e.to_string());
                }
                Err(_) => self.errors_dropped += 1,
            }
        }
        pushed
    }

    /// Host time to the agent's first frame, once it has come.
    pub fn to_agent(&self) -> Option<Duration> {
        self.to_agent
    }

    /// Host time to the result, once it has come.
    pub fn to_result(&self) -> Option<Duration> {
        self.to_result
    }

    /// Everything so far; the limits that were hit and the garbage skipped (bytes that were in
    /// no frame) each add one frame error at the end.
    pub fn received(&self) -> Received {
        let mut frame_errors = self.frame_errors.clone();
        if self.errors_dropped > 0 {
            frame_errors.push(format!(
                "{} more frame errors not kept (limit {MAX_FRAME_ERRORS})",
                self.errors_dropped
            ));
        }
        if self.messages_dropped > 0 {
            frame_errors.push(format!(
                "{} messages past the limit of {MAX_MESSAGES} dropped",
                self.messages_dropped
            ));
        }
        if self.decoder.garbage_bytes > 0 {
            frame_errors.push(format!(
                "{} bytes of garbage on the result channel",
                self.decoder.garbage_bytes
            ));
        }
        Received {
            messages: self.messages.clone(),
            frame_errors,
            to_agent: self.to_agent,
            to_result: self.to_result,
        }
    }
}

/// The sink of a UART model (the kvm backend's COM2): every byte written is pushed.
impl Write for ResultChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `r` (the qemu backend's COM2 pipe) until its end or a read error into `channel`,
/// calling `on_messages` after each read that completed a message.
pub fn read_into(
    channel: &Mutex<ResultChannel>,
    mut r: impl Read,
    mut on_messages: impl FnMut(Pushed),
) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let pushed = channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&buf[..n]);
        if pushed.messages > 0 {
            on_messages(pushed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_guest::frame::encode;
    use ktstr_guest::protocol::{AgentStarted, PROTOCOL_VERSION};

    fn started(uptime_ms: u64) -> GuestMessage {
        GuestMessage::AgentStarted(AgentStarted {
            protocol_version: PROTOCOL_VERSION,
            uptime_ms,
            kernel_release: "6.12.0".into(),
            online_cpus: 2,
        })
    }

    /// A frame whose payload no longer matches its checksum.
    fn corrupted(uptime_ms: u64) -> Vec<u8> {
        let mut f = encode(&started(uptime_ms));
        let n = f.len();
        f[n - 3] ^= 0x20;
        f
    }

    fn stream() -> Vec<u8> {
        let mut s = b"early noise\r\n".to_vec();
        s.extend(encode(&started(1)));
        s.extend(corrupted(2));
        s.extend(b"@@KTSTR nonsense\n");
        s.extend(encode(&started(3)));
        s.extend(b"\x00\xff");
        s.extend(encode(&started(4)));
        s
    }

    fn read_in_chunks(bytes: &[u8], cuts: impl IntoIterator<Item = usize>) -> Received {
        let mut ch = ResultChannel::new(Instant::now());
        let mut at = 0;
        for cut in cuts {
            let cut = cut.clamp(at, bytes.len());
            ch.push(&bytes[at..cut]);
            at = cut;
        }
        ch.push(&bytes[at..]);
        let mut r = ch.received();
        (r.to_agent, r.to_result) = (None, None);
        r
    }

    /// However the bytes are cut into reads, the same messages and frame errors come out.
    #[test]
    fn any_chunking_gives_the_same_messages() {
        let s = stream();
        let whole = read_in_chunks(&s, []);
        assert_eq!(whole.messages, vec![started(1), started(3), started(4)]);
        assert_eq!(whole.frame_errors.len(), 3, "{:?}", whole.frame_errors);
        assert!(whole.frame_errors[0].contains("checksum"));
        assert!(whole.frame_errors[2].contains("garbage"));
        for size in 1..=s.len() {
            let cuts = (size..s.len()).step_by(size);
            assert_eq!(read_in_chunks(&s, cuts), whole, "chunks of {size}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < s.len() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                at += (x % 40) as usize;
                cuts.push(at);
            }
            assert_eq!(read_in_chunks(&s, cuts.clone()), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn times_are_those_of_the_first_agent_frame_and_result() {
        let mut ch = ResultChannel::new(Instant::now());
        assert_eq!(ch.push(b"no frame yet"), Pushed::default());
        let p = ch.push(&encode(&started(1)));
        assert_eq!(
            p,
            Pushed {
                messages: 1,
                result: false
            }
        );
        let first = ch.to_agent().unwrap();
        ch.push(&encode(&started(2)));
        assert_eq!(ch.to_agent(), Some(first));
        assert!(ch.to_result().is_none());
    }

    /// A header announcing more than [`MAX_FRAME_BYTES`] is a frame error naming the limit, and
    /// nothing is held back for it: the next frame decodes at once.
    #[test]
    fn an_oversized_frame_is_a_frame_error_not_a_buffer() {
        let mut ch = ResultChannel::new(Instant::now());
        let header = format!("\n@@KTSTR {} 00000000\n", MAX_FRAME_BYTES + 1);
        ch.push(header.as_bytes());
        ch.push(&encode(&started(1)));
        let r = ch.received();
        assert_eq!(r.messages, vec![started(1)]);
        assert!(
            r.frame_errors[0].contains(&MAX_FRAME_BYTES.to_string()),
            "{:?}",
            r.frame_errors
        );
    }

    #[test]
    fn messages_past_the_limit_are_dropped_and_reported() {
        let mut ch = ResultChannel::new(Instant::now());
        let frame = encode(&started(1));
        for _ in 0..MAX_MESSAGES + 7 {
            ch.push(&frame);
        }
        let r = ch.received();
        assert_eq!(r.messages.len(), MAX_MESSAGES);
        assert_eq!(r.frame_errors.len(), 1);
        assert!(
            r.frame_errors[0].contains("7 messages past the limit of 1000"),
            "{:?}",
            r.frame_errors
        );
    }

    #[test]
    fn frame_errors_past_the_limit_are_counted_and_reported() {
        let mut ch = ResultChannel::new(Instant::now());
        let bad = corrupted(1);
        for _ in 0..MAX_FRAME_ERRORS + 50 {
            ch.push(&bad);
        }
        let r = ch.received();
        assert!(r.messages.is_empty());
        assert_eq!(r.frame_errors.len(), MAX_FRAME_ERRORS + 1);
        assert!(
            r.frame_errors[..MAX_FRAME_ERRORS]
                .iter()
                .all(|e| e.contains("checksum"))
        );
        assert!(
            r.frame_errors[MAX_FRAME_ERRORS].contains("50 more frame errors not kept"),
            "{}",
            r.frame_errors[MAX_FRAME_ERRORS]
        );
    }

    /// Garbage without end keeps nothing but a count.
    #[test]
    fn endless_garbage_is_one_frame_error() {
        let mut ch = ResultChannel::new(Instant::now());
        for _ in 0..1000 {
            ch.push(&[b'x'; 4096]);
        }
        let r = ch.received();
        assert!(r.messages.is_empty());
        assert_eq!(r.frame_errors.len(), 1);
        assert!(r.frame_errors[0].contains("bytes of garbage"));
    }

    #[test]
    fn read_into_reports_reads_that_completed_messages() {
        let ch = Mutex::new(ResultChannel::new(Instant::now()));
        let mut bytes = encode(&started(1));
        bytes.extend(b"trailing");
        let mut seen = Vec::new();
        read_into(&ch, &bytes[..], |p| seen.push(p));
        assert_eq!(
            seen,
            vec![Pushed {
                messages: 1,
                result: false
            }]
        );
        assert_eq!(ch.lock().unwrap().received().messages, vec![started(1)]);
    }
}
