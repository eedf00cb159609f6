//! The two 16550 UARTs (vm-superio). COM1 (0x3f8, IRQ 4) is the kernel console,
//! COM2 (0x2f8, IRQ 3) carries the agent's frames. Interrupts are delivered through irqfds into
//! the in-kernel PIC/IOAPIC. Everything the guest writes is untrusted: sinks never panic, and
//! COM2's sink is the [`ResultChannel`] every backend reads its results with, which bounds what
//! it keeps.

use super::console_ring::ConsoleRing;
use super::mmio_console::{self, WriteDecoder};
use crate::vm::console::Evidence;
use crate::vm::result_channel::ResultChannel;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM2_BASE: u16 = 0x2f8;
pub const COM1_IRQ: u32 = 4;
pub const COM2_IRQ: u32 = 3;
/// Raises the UART's IRQ through an irqfd registered with KVM.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// COM1: log file and the console's [`Evidence`] (tail, crash line, first warning, classified
/// as the qemu backend does); optionally echoed to the terminal.
///
/// The log is written a line at a time (vm-superio hands over one byte per call and "flushes"
/// after each; a write(2) per byte meant one syscall per console byte, each emulated under
/// nested TCG). [`ConsoleSink::finish`] writes out a trailing partial line when the VM ends.
#[derive(Debug)]
pub struct ConsoleSink {
    log: Option<crate::vm::capped_log::CappedLog>,
    echo: bool,
    pub evidence: Evidence,
    /// Host arrival times of a few boot milestones, when profiling (`KTSTR_KVM_TIMINGS`).
    pub milestones: Option<Milestones>,
}

impl ConsoleSink {
    pub fn new(log: Option<File>, echo: bool) -> Self {
        ConsoleSink {
            log: log.map(crate::vm::capped_log::CappedLog::new),
            echo,
            evidence: Evidence::default(),
            milestones: None,
        }
    }

    /// Writes what is buffered to the log file (called when the VM has ended).
    pub fn finish(&mut self) {
        if let Some(f) = self.log.as_mut() {
            let _ = f.finish();
        }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(f) = self.log.as_mut() {
            // A full disk must not kill the VM; the evidence still has the tail.
            let _ = f.write_bytes(buf);
            if buf.contains(&b'\n') {
                let _ = f.flush();
            }
        }
        if self.echo {
            let mut out = io::stdout().lock();
            let _ = out.write_all(buf);
            let _ = out.flush();
        }
        let lines_before = self.evidence.lines();
        self.evidence.feed(buf);
        if let Some(m) = self.milestones.as_mut()
            && !buf.is_empty()
        {
            m.observe(&self.evidence, lines_before);
        }
        Ok(buf.len())
    }
    /// A no-op: vm-superio calls it after every byte; the log is flushed per line instead.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// When the first console byte and a few boot milestones reached the host, counted from the
/// VM's start: how much of a boot passes before the guest's own clock starts (`kvm-clock`),
/// which the guest's uptime cannot show (docs/benchmarks.md, "where a kvm boot goes before the
/// guest's clock"). It reads the lines the console's [`Evidence`] has already assembled.
#[derive(Debug)]
pub struct Milestones {
    start: Instant,
    pub seen: Vec<(Duration, String)>,
}

impl Milestones {
    /// Lines whose arrival is kept (their start, up to 40 characters).
    const MARKS: [&'static str; 4] = [
        "kvm-clock: Using",
        "smp: Brought up",
        "Freeing unused kernel",
        "Run /init",
    ];

    pub fn new(start: Instant) -> Self {
        Milestones {
            start,
            seen: Vec::new(),
        }
    }

    /// Console bytes just reached `evidence`, which had completed `lines_before` lines before them.
    fn observe(&mut self, evidence: &Evidence, lines_before: u64) {
        if self.seen.is_empty() {
            self.seen
                .push((self.start.elapsed(), "first console byte".into()));
        }
        let new = (evidence.lines() - lines_before) as usize;
        for line in evidence.last_lines(new) {
            if let Some(at) = Self::MARKS.iter().find_map(|m| line.find(m)) {
                let text: String = line[at..].chars().take(40).collect();
                self.seen.push((self.start.elapsed(), text));
            }
        }
    }

    pub fn report(&self) -> String {
        let parts: Vec<String> = self
            .seen
            .iter()
            .map(|(d, what)| format!("{what} {:.0} ms", d.as_secs_f64() * 1000.0))
            .collect();
        parts.join(", ")
    }
}

pub type Uart<W> = Serial<IrqTrigger, vm_superio::serial::NoEvents, W>;

/// The legacy devices the vCPU threads dispatch port I/O to.
#[derive(Debug)]
pub struct Uarts {
    pub com1: Mutex<Uart<ConsoleSink>>,
    pub com2: Mutex<Uart<ResultChannel>>,
    /// COM1 THR bytes KVM queued without an exit (absent when the host lacks coalesced PIO).
    /// Lock order: this, then `com1`.
    console_ring: OnceLock<Mutex<ConsoleRing>>,
    /// The kernel console's MMIO UART ([`super::mmio_console`]); its bytes go to COM1's sink.
    /// Lock order: after `console_ring`, before `com1`.
    mmio_console: Mutex<WriteDecoder>,
}

impl Uarts {
    pub fn new(
        com1_irq: EventFd,
        com2_irq: EventFd,
        console: ConsoleSink,
        results: ResultChannel,
    ) -> Arc<Self> {
        Arc::new(Uarts {
            com1: Mutex::new(Serial::new(IrqTrigger(com1_irq), console)),
            com2: Mutex::new(Serial::new(IrqTrigger(com2_irq), results)),
            console_ring: OnceLock::new(),
            mmio_console: Mutex::new(WriteDecoder::default()),
        })
    }

    /// From now on COM1's THR writes may arrive through `ring`.
    pub fn attach_console_ring(&self, ring: ConsoleRing) {
        let _ = self.console_ring.set(Mutex::new(ring));
    }

    /// Applies the queued COM1 bytes, oldest first.
    pub fn drain_console_ring(&self) {
        let Some(ring) = self.console_ring.get() else {
            return;
        };
        let mut ring = lock(ring);
        let mut mmio = lock(&self.mmio_console);
        let mut com1 = lock(&self.com1);
        ring.drain(|w| {
            if !w.pio {
                mmio_console_write(&mut mmio, &mut com1, w.addr, w.value);
            } else if let Some(off) = u16::try_from(w.addr)
                .ok()
                .and_then(|p| offset(p, COM1_BASE))
            {
                let _ = com1.write(off, w.value);
            }
        });
    }

    /// An MMIO write that exited (the ring was full, or there is none); returns true if it
    /// belongs to the MMIO console. Queued bytes go first, to keep the guest's order.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        if !mmio_console::contains(addr) {
            return false;
        }
        self.drain_console_ring();
        if let [value] = data {
            let mut mmio = lock(&self.mmio_console);
            mmio_console_write(&mut mmio, &mut lock(&self.com1), addr, *value);
        }
        true
    }

    /// Port write; returns true if the port belongs to a UART. An IRQ that cannot be raised
    /// is the guest's loss, not a host error, so write errors are dropped.
    pub fn write(&self, port: u16, value: u8) -> bool {
        // Every UART access first applies the queued console bytes: for COM1 to keep the
        // guest's order, for COM2 so a guest busy on COM2 does not hold its console back.
        // Other ports (e.g. the 0x80 I/O delay) do not pay for it.
        if let Some(off) = offset(port, COM1_BASE) {
            self.drain_console_ring();
            let _ = lock(&self.com1).write(off, value);
        } else if let Some(off) = offset(port, COM2_BASE) {
            self.drain_console_ring();
            let _ = lock(&self.com2).write(off, value);
        } else {
            return false;
        }
        true
    }

    pub fn read(&self, port: u16) -> Option<u8> {
        let (com1, com2) = (offset(port, COM1_BASE), offset(port, COM2_BASE));
        if com1.is_some() || com2.is_some() {
            self.drain_console_ring();
        }
        if let Some(off) = com1 {
            Some(lock(&self.com1).read(off))
        } else {
            com2.map(|off| lock(&self.com2).read(off))
        }
    }

    /// Terminal input for `ktstr shell` (interactive): queued into COM1's receive FIFO.
    pub fn console_input(&self, bytes: &[u8]) -> usize {
        lock(&self.com1).enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// One guest write to the MMIO console's page: the console byte it carries, if any, goes to
/// COM1's sink (the same log, evidence and echo as the port console).
fn mmio_console_write(mmio: &mut WriteDecoder, com1: &mut Uart<ConsoleSink>, addr: u64, value: u8) {
    if let Some(b) = mmio.write(addr, value) {
        let _ = com1.writer_mut().write_all(&[b]);
    }
}

fn offset(port: u16, base: u16) -> Option<u8> {
    port.checked_sub(base).filter(|&o| o < 8).map(|o| o as u8)
}

/// A vCPU thread that panicked while holding a UART lock must not take the others down.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_guest::protocol::{AgentStarted, GuestMessage, PROTOCOL_VERSION};

    #[test]
    fn milestones_keep_the_first_byte_and_marked_lines_in_order() {
        let mut sink = ConsoleSink::new(None, false);
        sink.milestones = Some(Milestones::new(Instant::now()));
        sink.write_all(b"Linux version 6.1\nkvm-clock: Using msrs 4b564d01 and 4b564d00\nnoise\n")
            .unwrap();
        sink.write_all(b"[ 2.0] Run /init as init process\n")
            .unwrap();
        let m = sink.milestones.unwrap();
        let what: Vec<&str> = m.seen.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            what,
            [
                "first console byte",
                "kvm-clock: Using msrs 4b564d01 and 4b564",
                "Run /init as init process"
            ]
        );
        assert!(m.seen.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(m.report().starts_with("first console byte "));
    }

    fn uarts() -> Arc<Uarts> {
        let e = || EventFd::new(libc::EFD_NONBLOCK).unwrap();
        Uarts::new(
            e(),
            e(),
            ConsoleSink::new(None, false),
            ResultChannel::new(Instant::now()),
        )
    }

    /// Guest garbage on every UART register (and unrelated ports) never panics and never
    /// yields a message; a real frame written after the garbage is still decoded.
    #[test]
    fn random_port_io_never_panics() {
        let u = uarts();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = if x & 1 == 0 {
                COM2_BASE + (x >> 8) as u16 % 8
            } else {
                COM1_BASE
                    .wrapping_add((x >> 16) as u16 % 0x200)
                    .wrapping_sub(0x100)
            };
            if x & 2 == 0 {
                u.write(port, (x >> 24) as u8);
            } else {
                u.read(port);
            }
        }
        // Line control back to 8N1 with DLAB off, modem control out of loopback, then a frame
        // on COM2's THR.
        u.write(COM2_BASE + 3, 0x03);
        u.write(COM2_BASE + 4, 0x00);
        let msg = GuestMessage::AgentStarted(AgentStarted {
            protocol_version: PROTOCOL_VERSION,
            uptime_ms: 5,
            kernel_release: "x".into(),
            online_cpus: 1,
        });
        for b in ktstr_guest::frame::encode(&msg) {
            u.write(COM2_BASE, b);
        }
        let sink = lock(&u.com2);
        assert_eq!(sink.writer().received().messages.last(), Some(&msg));
        assert!(sink.writer().to_agent().is_some());
    }

    /// A scheduler's "enabled" line is not a crash; the error after it is, as in the qemu
    /// backend (both classify with `vm::console::classify`).
    #[test]
    fn console_reports_the_sched_ext_error_after_an_enable() {
        let mut c = ConsoleSink::new(None, false);
        c.write_all(b"[ 2.0] sched_ext: BPF scheduler \"simple\" enabled\n")
            .unwrap();
        c.write_all(b"[ 9.0] sched_ext: BPF scheduler \"simple\" errored, disabling\n")
            .unwrap();
        let (kind, line) = c.evidence.crash().unwrap();
        assert_eq!(*kind, crate::vm::console::CrashKind::SchedExt);
        assert!(line.contains("errored"), "{line}");
    }

    #[test]
    fn console_detects_panics_and_bounds_lines() {
        let mut c = ConsoleSink::new(None, false);
        c.write_all(&vec![b'x'; 100_000]).unwrap();
        c.write_all(b"\nKernel panic - not syncing: boom\nmore\n")
            .unwrap();
        assert!(c.evidence.crash().unwrap().1.contains("boom"));
        assert!(
            c.evidence
                .tail()
                .lines()
                .all(|l| l.len() <= crate::vm::console::MAX_LINE)
        );
    }
}
