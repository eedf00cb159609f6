//! A console log of bounded size: the head is written as it comes (a boot's story, flushed so
//! the file is readable while the VM runs), the rest only as a tail kept in memory and written
//! when the log is finished, after a line that says how much was cut. A guest that floods its
//! console therefore cannot fill the disk. Crash detection is not affected: it reads every byte
//! through `console::Evidence`, never this file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};

/// The head written as it comes.
pub const HEAD_BYTES: u64 = 2 << 20;
/// The tail kept and written at the end.
pub const TAIL_BYTES: usize = 2 << 20;

#[derive(Debug)]
pub struct CappedLog {
    file: BufWriter<File>,
    head_limit: u64,
    tail_limit: usize,
    written: u64,
    tail: VecDeque<u8>,
    /// Bytes that went neither to the head nor stay in the tail.
    cut: u64,
    finished: bool,
}

impl CappedLog {
    pub fn new(file: File) -> Self {
        Self::with_limits(file, HEAD_BYTES, TAIL_BYTES)
    }

    pub fn with_limits(file: File, head_limit: u64, tail_limit: usize) -> Self {
        CappedLog {
            file: BufWriter::new(file),
            head_limit,
            tail_limit,
            written: 0,
            tail: VecDeque::new(),
            cut: 0,
            finished: false,
        }
    }

    /// Appends console bytes. Errors are the file's (a full disk); callers treat the log as
    /// evidence, not the result, and go on.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let room = self.head_limit.saturating_sub(self.written);
        if room > 0 {
            let n = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.file.write_all(&bytes[..n])?;
            self.written += n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // Past the head: only the newest `tail_limit` bytes are kept.
        if bytes.len() >= self.tail_limit {
            self.cut += (self.tail.len() + bytes.len() - self.tail_limit) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
            return Ok(());
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..over);
        self.cut += over as u64;
        self.tail.extend(bytes);
        Ok(())
    }

    /// Pushes the head to the file (the tail waits for [`finish`](Self::finish)).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// Bytes left out of the file.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Writes the cut note and the tail; later calls do nothing. Also run on drop.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.cut > 0 {
            write!(
                self.file,
                "\n[ktstr: {} bytes of console output cut here; the log keeps the first {} and the last {} bytes]\n",
                self.cut,
                self.written,
                self.tail.len()
            )?;
        }
        let (a, b) = self.tail.as_slices();
        self.file.write_all(a)?;
        self.file.write_all(b)?;
        self.tail.clear();
        self.file.flush()
    }
}

impl Drop for CappedLog {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood(log: &mut CappedLog, total: usize, chunk: usize) -> Vec<u8> {
        let all: Vec<u8> = (0..total).map(|i| b'a' + (i % 26) as u8).collect();
        for c in all.chunks(chunk) {
            log.write_bytes(c).unwrap();
        }
        all
    }

    #[test]
    fn a_flood_keeps_head_and_tail_and_says_how_much_was_cut() {
        for chunk in [1, 7, 4096, 1 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("console.log");
            let mut log = CappedLog::with_limits(File::create(&p).unwrap(), 1000, 500);
            let all = flood(&mut log, 3 << 20, chunk);
            assert_eq!(log.cut(), (3 << 20) - 1500, "chunk {chunk}");
            drop(log);
            let text = std::fs::read(&p).unwrap();
            assert!(text.len() < 1000 + 500 + 200, "bounded: {}", text.len());
            assert_eq!(&text[..1000], &all[..1000], "the head, in order");
            assert_eq!(
                &text[text.len() - 500..],
                &all[all.len() - 500..],
                "the tail"
            );
            let note = String::from_utf8_lossy(&text[1000..text.len() - 500]).into_owned();
            assert!(
                note.contains(&format!("{} bytes of console output cut", (3 << 20) - 1500)),
                "{note}"
            );
        }
    }

    #[test]
    fn a_small_log_is_written_whole_without_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        let mut log = CappedLog::with_limits(File::create(&p).unwrap(), 10, 10);
        log.write_bytes(b"0123456789abc").unwrap();
        log.flush().unwrap();
        // While the VM runs, the head is on disk already.
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        log.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789abc");
        assert_eq!(log.cut(), 0);
    }
}
