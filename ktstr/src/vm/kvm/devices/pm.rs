//! The ACPI PM1a event and control registers the FADT ([`crate::vm::kvm::boot::acpi`]) points
//! at: the only fixed ACPI hardware this VMM offers.

use std::sync::atomic::{AtomicU16, Ordering};

/// PM1a event block (status + enable, 2 bytes each) and control block ports.
pub const PM1A_EVT: u16 = 0x600;
pub const PM1A_CNT: u16 = 0x604;
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_LEN: u8 = 2;
/// PM1 control: SCI_EN.
const PM1_CNT_SCI_EN: u8 = 1;

/// The PM1a event/control registers: status always clear (no events are ever raised), the
/// enable bits read back as written (ACPICA verifies them), SCI_EN always set.
#[derive(Debug, Default)]
pub struct Pm {
    enable: AtomicU16,
}

impl Pm {
    fn owns(port: u16) -> bool {
        (PM1A_EVT..PM1A_EVT + u16::from(PM1_EVT_LEN)).contains(&port)
            || (PM1A_CNT..PM1A_CNT + u16::from(PM1_CNT_LEN)).contains(&port)
    }

    /// Port read; `None` if the port is not a PM1 register.
    pub fn io_in(&self, port: u16, data: &mut [u8]) -> Option<()> {
        if !Self::owns(port) {
            return None;
        }
        data.fill(0);
        let enable = self.enable.load(Ordering::Relaxed).to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = match port + i as u16 {
                p if p == PM1A_EVT + 2 => enable[0],
                p if p == PM1A_EVT + 3 => enable[1],
                p if p == PM1A_CNT => PM1_CNT_SCI_EN,
                _ => 0,
            };
        }
        Some(())
    }

    /// Port write; `None` if the port is not a PM1 register.
    pub fn io_out(&self, port: u16, data: &[u8]) -> Option<()> {
        if !Self::owns(port) {
            return None;
        }
        for (i, &b) in data.iter().enumerate() {
            let p = port.wrapping_add(i as u16);
            if p == PM1A_EVT + 2 || p == PM1A_EVT + 3 {
                let mut v = self.enable.load(Ordering::Relaxed).to_le_bytes();
                v[usize::from(p - PM1A_EVT - 2)] = b;
                self.enable.store(u16::from_le_bytes(v), Ordering::Relaxed);
            }
        }
        Some(())
    }
}
