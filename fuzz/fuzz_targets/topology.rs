//! Topology strings (`NnNlNcNt`): no input panics, an accepted topology counts its CPUs without
//! overflow within the limit, and its display form parses back to it.
#![no_main]

use ktstr::topology::{MAX_CPUS, Topology};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = text.parse::<Topology>() else {
        return;
    };
    assert!(t.cpus() >= 1 && t.cpus() <= MAX_CPUS);
    assert_eq!(t.llcs() * t.cpus_per_llc(), t.cpus());
    assert_eq!(t.to_string().parse::<Topology>(), Ok(t));
});
