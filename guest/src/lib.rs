//! ktstr's guest side: the protocol shared with the host, the scenario catalogue, and the agent
//! that runs as PID 1.
//!
//! The host writes a [`protocol::CellSpec`] into the initramfs at [`protocol::SPEC_PATH`]; the agent
//! answers with framed [`protocol::GuestMessage`]s on the second UART ([`protocol::RESULT_DEVICE`]),
//! apart from the kernel console on the first. [`scenario::catalogue`] and [`scenario::validate`]
//! let the host list and check scenarios before any boot.

pub mod agent;
pub mod frame;
pub mod protocol;
pub mod scenario;
