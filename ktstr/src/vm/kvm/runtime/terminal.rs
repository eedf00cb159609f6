//! The user's terminal while `ktstr shell --backend kvm` runs: raw mode, so keys reach the guest
//! as typed (no local echo or line editing; Ctrl-C interrupts the guest's job, not ktstr), and
//! Ctrl-A x to leave, as with QEMU's console (`-chardev stdio,mux=on,signal=off`).

use crate::vm::kvm::devices::serial::{self, Uarts};
use std::sync::Arc;
use std::time::Duration;

/// Ctrl-A: the escape key. Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A.
const ESCAPE: u8 = 0x01;

/// Puts the terminal on stdin into raw mode and restores it when dropped (also on unwind).
pub struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    /// `None` when stdin is not a terminal (a piped script) or its mode cannot be changed.
    pub fn enter() -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it and fails on a non-terminal fd 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a termios we own.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        raw.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        // Output processing stays on: ktstr's own messages keep their line endings.
        raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
        raw.c_cflag &= !(libc::CSIZE | libc::PARENB);
        raw.c_cflag |= libc::CS8;
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: fd 0 is a terminal (tcgetattr succeeded); `raw` is a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the mode read from the same fd in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

/// Splits terminal input into what goes to the guest and the user's request to quit.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    pending: bool,
}

/// What one chunk of terminal input means.
#[derive(Debug, PartialEq, Eq)]
pub struct Filtered {
    /// Bytes for the guest's console.
    pub to_guest: Vec<u8>,
    /// Ctrl-A x was typed: end the VM.
    pub quit: bool,
}

impl EscapeFilter {
    pub fn feed(&mut self, input: &[u8]) -> Filtered {
        let mut to_guest = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'x' | b'X' => {
                        return Filtered {
                            to_guest,
                            quit: true,
                        };
                    }
                    // Ctrl-A Ctrl-A: one literal Ctrl-A; Ctrl-A + anything else: both bytes.
                    ESCAPE => to_guest.push(ESCAPE),
                    other => to_guest.extend([ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                to_guest.push(b);
            }
        }
        Filtered {
            to_guest,
            quit: false,
        }
    }
}

/// Interactive console: terminal input goes to COM1 once the guest agent has started (its
/// first frame on COM2; see [`crate::vm::wait_for_agent`], e.g. for a script piped into `ktstr
/// shell`). From a terminal, Ctrl-A x ends the VM ([`EscapeFilter`]). The thread ends with the
/// process (a blocking stdin read cannot be interrupted portably); it holds the UARTs only
/// weakly.
pub(crate) fn forward_stdin(uarts: &Arc<Uarts>, from_terminal: bool) {
    let weak = Arc::downgrade(uarts);
    let _ = std::thread::Builder::new()
        .name("kvm-stdin".into())
        .spawn(move || {
            use std::io::Read;
            let started = |u: &Uarts| serial::lock(&u.com2).writer().to_agent().is_some();
            if !crate::vm::wait_for_agent(&weak, started) {
                return;
            }
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            let mut escape = EscapeFilter::default();
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                let input = if from_terminal {
                    let f = escape.feed(&buf[..n]);
                    if f.quit {
                        crate::cancel::request();
                    }
                    f.to_guest
                } else {
                    buf[..n].to_vec()
                };
                let mut sent = 0;
                while sent < input.len() {
                    // Upgraded per attempt: a guest that stops reading must not pin the VM.
                    let Some(uarts) = weak.upgrade() else { return };
                    sent += uarts.console_input(&input[sent..]);
                    drop(uarts);
                    if sent < input.len() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_x_quits_and_everything_else_reaches_the_guest() {
        let mut f = EscapeFilter::default();
        let out = f.feed(b"ls\x03\r");
        assert_eq!(
            (out.to_guest.as_slice(), out.quit),
            (&b"ls\x03\r"[..], false)
        );
        // The escape may arrive split across reads.
        assert_eq!(f.feed(b"a\x01").to_guest, b"a");
        let out = f.feed(b"x ignored");
        assert_eq!((out.to_guest.as_slice(), out.quit), (&b""[..], true));
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"\x01\x01\x01b").to_guest, b"\x01\x01b");
    }

    /// Not a terminal (cargo test's stdin is not one in CI): no raw mode, nothing changed.
    #[test]
    fn raw_mode_needs_a_terminal() {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            assert!(RawTerminal::enter().is_none());
        }
    }
}
