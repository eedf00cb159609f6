//! `--sched` specs: no input panics in the grammar, the display name, the suggestions or
//! `at_ref` (the spec of one commit of a scheduler bisection), and `at_ref` keeps the spec's
//! package, repository and arguments.
#![no_main]

use ktstr::sched::from_source::at_ref;
use ktstr::sched::spec::{Source, parse, suggestions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = suggestions(text);
    let Ok(spec) = parse(text) else {
        return;
    };
    let _ = spec.display_name();
    if let Source::Git {
        name,
        repo,
        reference: None,
    } = &spec.source
    {
        let pinned = at_ref(text, "0123abcd").expect("a ref-less git spec takes a ref");
        let again = parse(&pinned).expect("the pinned spec parses");
        assert_eq!(
            again.source,
            Source::Git {
                name: name.clone(),
                repo: repo.clone(),
                reference: Some("0123abcd".into()),
            },
            "{pinned}"
        );
        assert_eq!(again.args, spec.args, "{pinned}");
    }
});
