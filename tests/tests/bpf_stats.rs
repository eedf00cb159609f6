//! What the scheduler's BPF side costs, in a real guest on the shared 6.12 sched_ext kernel:
//! scx_simple's programs come back with their verified instructions and, over the scenario's
//! window, run counts and time per run; EEVDF has no such metrics; and a scheduler whose program
//! the verifier refuses fails with the verifier's own words in the cell's reason.

use ktstr::kernel::{self, ResolveOptions};
use ktstr::sched::ResolvedSched;
use ktstr_e2e as e2e;
use ktstr_guest::protocol::SchedulerEnding;
use ktstr_guest::scenario::{BPF_METRIC_PREFIX, metric_info};
use ktstr_matrix::result::{CellResult, Outcome};
use std::path::{Path, PathBuf};

/// One `ktstr run` of `steady` on the shared sched_ext kernel: its JSON result.
fn run_steady(sched: &str) -> CellResult {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let mut args = vec!["run"];
    args.extend(e2e::sched_ext_kernel_args());
    // More workers than CPUs, so tasks queue and the enqueue/dispatch callbacks run.
    args.extend([
        "--sched",
        sched,
        "--scenario",
        "steady",
        "--param",
        "workers=4",
        "--duration",
        "3s",
        "--topology",
        "1n1l2c1t",
        "--json",
        json.to_str().unwrap(),
    ]);
    e2e::ktstr(&args);
    let text = std::fs::read_to_string(&json).expect("--json writes a result");
    serde_json::from_str(&text).expect("CellResult JSON")
}

#[test]
fn scx_simple_programs_report_verified_insns_and_run_costs() {
    let r = run_steady("kernel:scx_simple");
    assert_eq!(r.outcome, Outcome::Pass, "{:?}", r.reason);
    let g = r.report.as_ref().unwrap();
    let sched = g.scheduler.as_ref().unwrap();
    let progs = &sched.bpf_programs;
    let names: Vec<&str> = progs.iter().map(|p| p.name.as_str()).collect();
    eprintln!("{progs:#?}");
    for p in progs {
        assert_eq!(p.prog_type, "struct_ops", "{p:?}");
        assert!(p.verified_insns.is_some_and(|n| n > 0), "{p:?}");
    }
    for hot in ["simple_enqueue", "simple_dispatch"] {
        let p = progs
            .iter()
            .find(|p| p.name == hot)
            .unwrap_or_else(|| panic!("{hot} not among {names:?}"));
        assert!(p.runs.is_some_and(|n| n > 0), "{p:?}");
        assert!(p.run_time_ns.is_some_and(|n| n > 0), "{p:?}");
    }

    let m = &g.scenario.as_ref().unwrap().metrics;
    assert_eq!(m["bpf_prog_count"], progs.len() as f64);
    let total: u32 = progs.iter().filter_map(|p| p.verified_insns).sum();
    assert_eq!(m["bpf_verified_insns_total"], f64::from(total));
    assert!(
        m["bpf_runs_total"] > 0.0 && m["bpf_ns_per_run"] > 0.0,
        "{m:?}"
    );
    assert!(m["bpf_simple_enqueue_ns_per_run"] > 0.0, "{m:?}");
    assert!(m["bpf_simple_dispatch_runs"] > 0.0, "{m:?}");
    // The report judges metrics by the catalogue only: each of them must be described there.
    for name in m.keys().filter(|k| k.starts_with(BPF_METRIC_PREFIX)) {
        assert!(
            metric_info("steady", name).is_some(),
            "{name} not catalogued"
        );
    }
}

#[test]
fn eevdf_has_no_bpf_metrics() {
    let r = run_steady("eevdf");
    assert_eq!(r.outcome, Outcome::Pass, "{:?}", r.reason);
    let g = r.report.as_ref().unwrap();
    assert!(g.scheduler.is_none());
    let m = &g.scenario.as_ref().unwrap().metrics;
    assert!(!m.is_empty());
    let bpf: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with(BPF_METRIC_PREFIX))
        .collect();
    assert!(bpf.is_empty(), "{bpf:?}");
}

/// scx_simple as built for the shared kernel, with one instruction of its `simple_dispatch`
/// program changed to read a register nothing wrote (`r1 = 0` becomes `r1 = r5`): a real
/// scheduler binary whose program the real verifier refuses.
fn scx_simple_reading_an_uninitialised_register(dir: &Path) -> PathBuf {
    let k = kernel::resolve(
        "6.12",
        &["sched_ext,steal-time".to_string()],
        &ResolveOptions::default(),
    )
    .expect("the shared sched_ext kernel");
    let path = match ktstr::sched::resolve("kernel:scx_simple", &k).unwrap() {
        ResolvedSched::Binary { path, .. } => path,
        other => panic!("kernel:scx_simple resolved to {other:?}"),
    };
    let mut bin = std::fs::read(&path).unwrap();
    let insn = dispatch_first_insn(&bin);
    // BPF_ALU64|BPF_MOV|BPF_K r1, imm 0  ->  BPF_ALU64|BPF_MOV|BPF_X r1, r5.
    assert_eq!(
        bin[insn..insn + 8],
        [0xb7, 0x01, 0, 0, 0, 0, 0, 0],
        "simple_dispatch of this scx_simple does not start with `r1 = 0`"
    );
    bin[insn] = 0xbf;
    bin[insn + 1] = 0x51;
    let out = dir.join("scx_simple");
    std::fs::write(&out, bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

/// File offset of the first instruction of `struct_ops/simple_dispatch` in the BPF object the
/// skeleton embeds in the scheduler binary.
fn dispatch_first_insn(bin: &[u8]) -> usize {
    use goblin::elf::Elf;
    const EM_BPF: u16 = 247;
    let mut at = 1;
    while let Some(i) = bin[at..].windows(4).position(|w| w == b"\x7fELF") {
        let start = at + i;
        at = start + 1;
        let Ok(elf) = Elf::parse(&bin[start..]) else {
            continue;
        };
        if elf.header.e_machine != EM_BPF {
            continue;
        }
        let sec = elf
            .section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some("struct_ops/simple_dispatch"))
            .expect("the embedded BPF object has struct_ops/simple_dispatch");
        return start + sec.sh_offset as usize;
    }
    panic!("no embedded BPF object in scx_simple");
}

#[test]
fn a_program_the_verifier_refuses_is_reported_with_the_verifiers_words() {
    let dir = tempfile::tempdir().unwrap();
    let broken = scx_simple_reading_an_uninitialised_register(dir.path());
    let r = run_steady(broken.to_str().unwrap());
    assert_eq!(r.outcome, Outcome::Error, "{r:#?}");
    let reason = r.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("verifier rejected prog 'simple_dispatch'"),
        "{reason}"
    );
    // The verifier's complaint about the instruction we changed.
    assert!(reason.contains("R5 !read_ok"), "{reason}");
    let s = r.report.as_ref().unwrap().scheduler.as_ref().unwrap();
    assert!(
        matches!(&s.ending, SchedulerEnding::NeverAttached { reason } if reason.contains("R5 !read_ok")),
        "{:?}",
        s.ending
    );
}
