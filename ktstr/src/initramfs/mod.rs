//! Initramfs builder: cpio newc, zstd, deterministic, cached by sha256 of inputs.

/// The static guest agent, built by build.rs and embedded here; it becomes /init.
pub static GUEST_AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ktstr-guest"));
