//! The result channel: frames on the second UART, in raw mode.

use crate::frame;
use crate::protocol::{GuestMessage, GuestReport, RESULT_DEVICE};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

#[derive(Debug)]
pub struct Channel {
    dev: Option<File>,
    result_sent: bool,
}

impl Channel {
    /// Opens [`RESULT_DEVICE`] in raw mode: a cooked tty turns `\n` into `\r\n`, which would break
    /// every frame's length and checksum on the host.
    pub fn open() -> Result<Channel, String> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(RESULT_DEVICE)
            .map_err(|e| format!("opening the result channel {RESULT_DEVICE}: {e}"))?;
        // SAFETY: termios is plain data, filled by tcgetattr before use.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on an open tty fd with a termios we own.
        let rc = unsafe {
            if libc::tcgetattr(dev.as_raw_fd(), &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(dev.as_raw_fd(), libc::TCSANOW, &t)
            } else {
                -1
            }
        };
        if rc != 0 {
            return Err(format!(
                "setting {RESULT_DEVICE} to raw mode: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Channel {
            dev: Some(dev),
            result_sent: false,
        })
    }

    /// A channel that drops everything (the device could not be opened; the host will report a
    /// missing result with the console tail, which carries our one-line error).
    pub fn closed() -> Channel {
        Channel {
            dev: None,
            result_sent: false,
        }
    }

    pub fn send(&mut self, msg: &GuestMessage) {
        let Some(dev) = self.dev.as_mut() else {
            return;
        };
        if let Err(e) = dev.write_all(&frame::encode(msg)) {
            eprintln!("ktstr-guest: writing to {RESULT_DEVICE}: {e}");
        }
    }

    /// Sends the one `Result` of this boot (later calls are ignored) and waits until the UART
    /// has transmitted it, so that the power-off cannot cut it short.
    pub fn send_result(&mut self, report: GuestReport) {
        if self.result_sent {
            return;
        }
        self.result_sent = true;
        self.send(&GuestMessage::Result(Box::new(report)));
        if let Some(dev) = &self.dev {
            // SAFETY: tcdrain on an open tty fd.
            unsafe { libc::tcdrain(dev.as_raw_fd()) };
        }
    }
}
