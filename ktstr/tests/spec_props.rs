//! Property tests of the spec parsers: what a user can write parses to what it says, and the
//! forms ktstr writes back (a topology's display, a config item's .config line) parse to the
//! same value.

use ktstr::kernel::KernelSpec;
use ktstr::kernel::spec::{ConfigItem, parse_config_line};
use ktstr::sched::spec::{SchedSpec, Source, parse};
use ktstr::topology::{MAX_CPUS, Topology};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn topology_display_parses_back(
        nodes in 1u32..5, llcs in 1u32..5, cores in 1u32..9, threads in 1u32..3,
    ) {
        let t = Topology { nodes, llcs_per_node: llcs, cores_per_llc: cores, threads_per_core: threads };
        let parsed = t.to_string().parse::<Topology>();
        if t.cpus() <= MAX_CPUS {
            prop_assert_eq!(parsed, Ok(t));
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn any_text_is_a_topology_or_an_error(s in any::<String>()) {
        if let Ok(t) = s.parse::<Topology>() {
            prop_assert_eq!(t.to_string().parse::<Topology>(), Ok(t));
        }
    }

    #[test]
    fn kernel_versions_parse_to_their_numbers(
        major in 0u32..10000, minor in 0u32..10000, patch in proptest::option::of(0u32..10000),
        v in any::<bool>(),
    ) {
        let text = match patch {
            Some(p) => format!("{major}.{minor}.{p}"),
            None => format!("{major}.{minor}"),
        };
        let text = if v { format!("v{text}") } else { text };
        prop_assert_eq!(
            KernelSpec::parse(&text).unwrap(),
            KernelSpec::Version { major, minor, patch }
        );
    }

    #[test]
    fn kernel_git_specs_split_at_the_last_hash(
        repo in "[a-zA-Z0-9/:._#-]{1,40}", reference in "[a-zA-Z0-9/._-]{1,20}",
    ) {
        prop_assert_eq!(
            KernelSpec::parse(&format!("git:{repo}#{reference}")).unwrap(),
            KernelSpec::Git { repo, reference }
        );
    }

    #[test]
    fn any_text_is_a_kernel_spec_or_an_error(s in any::<String>()) {
        let _ = KernelSpec::parse(&s);
    }

    #[test]
    fn crate_specs_keep_name_version_and_args(
        name in "[a-z][a-z0-9_-]{0,30}",
        version in proptest::option::of((0u32..100, 0u32..100, 0u32..100)),
        args in prop::collection::vec(any::<String>(), 0..4),
    ) {
        // `eevdf`, `kernel:` and `cargo:` are words of the grammar, not crate names.
        prop_assume!(!["eevdf", "kernel", "cargo"].contains(&name.as_str()));
        prop_assume!(args.iter().all(|a| !a.contains('\0')));
        let version = version.map(|(a, b, c)| format!("{a}.{b}.{c}"));
        let mut spec = name.clone();
        if let Some(v) = &version {
            spec = format!("{spec}@{v}");
        }
        let quoted = shlex::try_join(args.iter().map(String::as_str)).unwrap();
        let args = if quoted.trim().is_empty() { Vec::new() } else { args };
        if !args.is_empty() {
            spec = format!("{spec}:{quoted}");
        }
        prop_assert_eq!(
            parse(&spec).unwrap(),
            SchedSpec {
                source: Source::Crate { name, version, explicit: false },
                args,
            }
        );
    }

    #[test]
    fn any_text_is_a_sched_spec_or_an_error(s in any::<String>()) {
        if let Ok(spec) = parse(&s) {
            let _ = spec.display_name();
        }
    }

    #[test]
    fn config_items_survive_their_config_line(
        name in "[A-Z0-9_]{1,30}",
        value in prop_oneof![
            Just("y".to_string()),
            Just("m".to_string()),
            Just("n".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u32>().prop_map(|n| format!("0x{n:x}")),
            "[^\\p{Cc}]{0,30}".prop_map(|s| format!("\"{}\"", s.trim())),
        ],
    ) {
        let item = ConfigItem { name, value, origin: "prop".into() };
        let line = item.config_line();
        prop_assert_eq!(line.lines().count(), 1);
        prop_assert_eq!(parse_config_line(&line, "prop").unwrap(), Some(item));
    }

    #[test]
    fn any_config_line_writes_back_as_one_line(s in any::<String>()) {
        if let Ok(Some(item)) = parse_config_line(&s, "prop") {
            let line = item.config_line();
            prop_assert_eq!(line.lines().count(), 1);
            prop_assert_eq!(parse_config_line(&line, "prop").unwrap(), Some(item));
        }
    }
}
