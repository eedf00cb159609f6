//! The devices the guest talks to, all of them emulated in this process (interrupt controllers
//! and the PIT stay in KVM): the two [`serial`] UARTs (COM1 console, COM2 results) with the
//! kernel console's [`mmio_console`] and the [`console_ring`] that spares console bytes their
//! exits, the [`cmos`] clock and the ACPI [`pm`] registers.

pub mod cmos;
pub mod console_ring;
pub mod mmio_console;
pub mod pm;
pub mod serial;
