//! A read-only MC146818 CMOS real-time clock at ports 0x70/0x71. KVM has no in-kernel RTC, and
//! an absent one reads as all ones, which Linux's rtc-cmos / mach_get_cmos_time take as "update
//! in progress" forever and spin on (seconds of boot time). This answers with the host's UTC
//! time in BCD, 24-hour mode, update never in progress; writes to clock registers are ignored.

use std::sync::atomic::{AtomicU8, Ordering};

pub const INDEX: u16 = 0x70;
pub const DATA: u16 = 0x71;

#[derive(Debug, Default)]
pub struct Cmos {
    index: AtomicU8,
}

fn bcd(v: u32) -> u8 {
    (((v / 10) << 4) | (v % 10)) as u8
}

/// (year, month, day, hours, minutes, seconds, weekday 1..7 with Sunday = 1) for a UNIX time.
fn civil(secs: u64) -> (u32, u32, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = ((days + 4).rem_euclid(7) + 1) as u32; // 1970-01-01 was a Thursday.
    (
        y as u32,
        m as u32,
        d as u32,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
        weekday,
    )
}

impl Cmos {
    /// OUT to 0x70: bit 7 is the NMI mask, the rest selects the register.
    pub fn select(&self, value: u8) {
        self.index.store(value & 0x7f, Ordering::Relaxed);
    }

    pub fn read(&self) -> u8 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (y, mo, d, h, mi, s, wd) = civil(now);
        match self.index.load(Ordering::Relaxed) {
            0x00 => bcd(s),
            0x02 => bcd(mi),
            0x04 => bcd(h),
            0x06 => bcd(wd),
            0x07 => bcd(d),
            0x08 => bcd(mo),
            0x09 => bcd(y % 100),
            0x32 => bcd(y / 100),
            // Register A: 32.768 kHz base, 1024 Hz rate, UIP clear.
            0x0a => 0x26,
            // Register B: 24-hour mode, BCD, no interrupts enabled.
            0x0b => 0x02,
            // Register D: valid RAM and time.
            0x0d => 0x80,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0, 5));
        // 2024-02-29 12:34:56 UTC, a Thursday.
        assert_eq!(civil(1_709_210_096), (2024, 2, 29, 12, 34, 56, 5));
        let c = Cmos::default();
        c.select(0x8a);
        assert_eq!(c.read() & 0x80, 0, "update-in-progress must read clear");
    }
}
