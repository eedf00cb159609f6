//! The own KVM VMM backend.
