//! Scheduler specs -> binaries to pack into the initramfs.
