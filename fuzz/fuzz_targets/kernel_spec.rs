//! `--kernel` specs: no input panics, and a parsed version spec is what its text says.
#![no_main]

use ktstr::kernel::KernelSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(KernelSpec::Version {
        major,
        minor,
        patch,
    }) = KernelSpec::parse(text)
    {
        let again = match patch {
            Some(p) => format!("{major}.{minor}.{p}"),
            None => format!("{major}.{minor}"),
        };
        assert_eq!(
            KernelSpec::parse(&again).ok(),
            Some(KernelSpec::Version {
                major,
                minor,
                patch
            })
        );
    }
});
