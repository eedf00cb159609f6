//! ktstr's guest side: the protocol shared with the host, and the agent that runs as PID 1.
//!
//! The host writes a [`protocol::CellSpec`] into the initramfs at [`protocol::SPEC_PATH`]; the agent
//! answers with framed [`protocol::GuestMessage`]s on the second UART ([`protocol::RESULT_DEVICE`]),
//! apart from the kernel console on the first.

pub mod frame;
pub mod protocol;
