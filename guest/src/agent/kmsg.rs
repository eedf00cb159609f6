//! Kernel log lines about sched_ext, read from /dev/kmsg.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

#[derive(Debug)]
pub struct Kmsg {
    file: Option<File>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Syslog level (0 emerg .. 7 debug).
    pub level: u8,
    pub text: String,
}

impl Kmsg {
    /// Opens /dev/kmsg positioned at its end: only lines logged from now on are seen.
    pub fn from_now() -> Kmsg {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Kmsg { file }
    }

    /// Every record logged since the last call.
    pub fn drain(&mut self) -> Vec<Line> {
        let mut out = Vec::new();
        let Some(f) = self.file.as_mut() else {
            return out;
        };
        let mut buf = vec![0u8; 8192];
        loop {
            // One read returns one record.
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(l) = parse(&buf[..n]) {
                        out.push(l);
                    }
                }
                // EPIPE: records were overwritten before we read them; keep going.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

/// `prio,seq,ts,flags;message\n continuation...`
fn parse(rec: &[u8]) -> Option<Line> {
    let s = String::from_utf8_lossy(rec);
    let (hdr, msg) = s.split_once(';')?;
    let prio: u32 = hdr.split(',').next()?.parse().ok()?;
    let text = msg.lines().next().unwrap_or("").to_string();
    Some(Line {
        level: (prio & 7) as u8,
        text,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_records() {
        let l = super::parse(b"3,812,30512345,-;sched_ext: BPF scheduler \"simple\" disabled (runnable task stall)\n").unwrap();
        assert_eq!(l.level, 3);
        assert!(l.text.ends_with("(runnable task stall)"));
        assert!(super::parse(b"garbage").is_none());
    }
}
