//! The QEMU backend.
