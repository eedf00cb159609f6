//! Kernels: spec -> source -> configure -> build -> cache.
