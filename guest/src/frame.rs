//! Framing of [`GuestMessage`]s on a byte stream (a UART). A frame is
//! `\n@@KTSTR <len> <crc32 hex>\n<json>\n`; the length and checksum let the host resync after
//! garbage and reject corrupted frames instead of misreading them.

use crate::protocol::GuestMessage;
use thiserror::Error;

const MAGIC: &[u8] = b"@@KTSTR ";
/// Bound on one frame; a longer announced length is garbage, not a reason to buffer forever.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Bound on a header line, magic and newline included. Judged on these bytes alone, so that how
/// the stream was chunked never changes which headers are accepted.
const MAX_HEADER_LEN: usize = 64;

#[derive(Debug, Error, PartialEq)]
pub enum FrameError {
    #[error("frame header is malformed: {0:?}")]
    BadHeader(String),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLong(usize),
    #[error("frame checksum mismatch (header {expected:08x}, payload {actual:08x})")]
    Checksum { expected: u32, actual: u32 },
    #[error("frame payload is not a valid message: {0}")]
    Json(String),
}

/// Serializes one message as a frame.
pub fn encode(msg: &GuestMessage) -> Vec<u8> {
    let json = serde_json::to_vec(msg).expect("protocol types always serialize");
    let crc = crc32fast::hash(&json);
    let mut out = format!("\n@@KTSTR {} {crc:08x}\n", json.len()).into_bytes();
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// Incremental decoder: feed bytes as they arrive, collect messages and errors.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes skipped because they were not part of any frame.
    pub garbage_bytes: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns every complete frame they finish, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<GuestMessage, FrameError>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(start) = find(&self.buf, MAGIC) else {
                // Keep a possible partial magic at the end; the rest is garbage.
                let keep = MAGIC.len().saturating_sub(1).min(self.buf.len());
                let drop = self.buf.len() - keep;
                self.garbage_bytes += count_non_ws(&self.buf[..drop]);
                self.buf.drain(..drop);
                return out;
            };
            self.garbage_bytes += count_non_ws(&self.buf[..start]);
            self.buf.drain(..start);
            let window = &self.buf[..self.buf.len().min(MAX_HEADER_LEN)];
            let Some(nl) = window.iter().position(|&b| b == b'\n') else {
                if self.buf.len() >= MAX_HEADER_LEN {
                    out.push(Err(FrameError::BadHeader(lossy(window))));
                    self.buf.drain(..MAGIC.len());
                    continue;
                }
                return out;
            };
            let header = lossy(&self.buf[MAGIC.len()..nl]);
            let parsed = parse_header(&header);
            let (len, crc) = match parsed {
                Ok(v) => v,
                Err(e) => {
                    out.push(Err(e));
                    self.buf.drain(..MAGIC.len());
                    continue;
                }
            };
            let body_start = nl + 1;
            if self.buf.len() < body_start + len {
                return out;
            }
            let body = &self.buf[body_start..body_start + len];
            let actual = crc32fast::hash(body);
            let item = if actual != crc {
                Err(FrameError::Checksum {
                    expected: crc,
                    actual,
                })
            } else {
                serde_json::from_slice(body).map_err(|e| FrameError::Json(e.to_string()))
            };
            out.push(item);
            self.buf.drain(..body_start + len);
        }
    }
}

/// Decodes a complete byte stream (e.g. a result file read after the VM ended).
pub fn decode_all(bytes: &[u8]) -> (Vec<GuestMessage>, Vec<FrameError>) {
    let mut d = Decoder::new();
    let mut msgs = Vec::new();
    let mut errs = Vec::new();
    for item in d.push(bytes) {
        match item {
            Ok(m) => msgs.push(m),
            Err(e) => errs.push(e),
        }
    }
    (msgs, errs)
}

fn parse_header(header: &str) -> Result<(usize, u32), FrameError> {
    let bad = || FrameError::BadHeader(header.to_string());
    let mut parts = header.split(' ');
    let len: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let crc = parts
        .next()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong(len));
    }
    Ok((len, crc))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count_non_ws(b: &[u8]) -> usize {
    b.iter().filter(|c| !c.is_ascii_whitespace()).count()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AgentStarted, PROTOCOL_VERSION};

    fn started(uptime_ms: u64) -> GuestMessage {
        GuestMessage::AgentStarted(AgentStarted {
            protocol_version: PROTOCOL_VERSION,
            uptime_ms,
            kernel_release: "6.12.0".into(),
            online_cpus: 2,
        })
    }

    #[test]
    fn roundtrip_through_garbage_and_split_reads() {
        let mut stream = b"noise\x00\xff".to_vec();
        stream.extend(encode(&started(1)));
        stream.extend(b"@@KTSTR nonsense\n");
        stream.extend(encode(&started(2)));
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            got.extend(d.push(chunk));
        }
        let oks: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(oks, vec![&started(1), &started(2)]);
        assert!(
            got.iter()
                .any(|r| matches!(r, Err(FrameError::BadHeader(_))))
        );
        assert!(d.garbage_bytes > 0);
    }

    #[test]
    fn corrupted_payload_is_rejected() {
        let mut f = encode(&started(7));
        let n = f.len();
        f[n - 3] ^= 0x20;
        let (msgs, errs) = decode_all(&f);
        assert!(msgs.is_empty());
        assert!(matches!(errs[0], FrameError::Checksum { .. }));
    }

    /// Found by the frame_decoder fuzz target: a header line longer than the limit was accepted
    /// when its newline arrived in the same read and refused when it arrived later.
    #[test]
    fn long_header_is_judged_the_same_in_any_chunking() {
        let body = br#"{"type":"agent_started"}"#;
        let mut stream = format!(
            "@@KTSTR {:0>60} {:08x}\n",
            body.len(),
            crc32fast::hash(body)
        )
        .into_bytes();
        stream.extend_from_slice(body);
        let whole = Decoder::new().push(&stream);
        let mut d = Decoder::new();
        let bytewise: Vec<_> = stream.chunks(1).flat_map(|c| d.push(c)).collect();
        assert_eq!(whole, bytewise);
        assert!(matches!(whole[0], Err(FrameError::BadHeader(_))));
    }

    #[test]
    fn oversized_length_is_refused() {
        let (msgs, errs) = decode_all(b"@@KTSTR 999999999999 0\n");
        assert!(msgs.is_empty());
        assert!(matches!(
            errs[0],
            FrameError::TooLong(_) | FrameError::BadHeader(_)
        ));
    }
}
