//! Shared helpers for ktstr's end-to-end tests (which boot real kernels).
