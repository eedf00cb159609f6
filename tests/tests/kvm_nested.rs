//! The own kvm backend end to end, nested: L1 = Debian's cloud kernel under QEMU TCG (`-cpu max`
//! emulates SVM with nested paging) with kvm/kvm-amd loaded; inside it this build's ktstr boots
//! L2 (the same Debian kernel) with `--backend auto` / `--backend kvm`.
//!
//! TCG L1 is slow, so all cases share ONE L1 boot (a script running each inner command in turn);
//! every #[test] checks its own case from that boot's console. Also checks, on the host, that
//! `--backend auto` refuses this host's /dev/kvm when the probe fails.

use ktstr::nested::{self, L1Request};
use ktstr_e2e as e2e;
use ktstr_matrix::result::{CellResult, Outcome};
use std::sync::OnceLock;
use std::time::Duration;

/// Marker the topology case's L2 command prints: online CPUs, packages, cores per package.
const TOPO_MARK: &str = "KTSTR-TOPO";
/// Marker the NUMA case's L2 command prints: the NUMA nodes L2 sees.
const NUMA_MARK: &str = "KTSTR-NUMA";

/// Marker the interactive case types into L2's shell, with arithmetic only the guest evaluates.
const TTY_MARK: &str = "KTSTR-TTY";

/// Every case the shared L1 script runs, in order.
const LABELS: [&str; 7] = [
    "smoke",
    "topology",
    "steal",
    "numa",
    "interactive",
    "hang",
    "panic",
];

fn l1() -> &'static nested::L1Outcome {
    static L1: OnceLock<nested::L1Outcome> = OnceLock::new();
    L1.get_or_init(|| {
        let common = "--kernel $L2_KERNEL --memory-mib 256";
        let mut script = String::new();
        // boot + smoke, and auto must pick kvm here (L1's /dev/kvm is hardware-style SVM).
        script += &nested::case(
            "smoke",
            &format!("$KTSTR run --backend auto {common} --scenario smoke --duration 2s --topology 1n1l2c1t"),
        );
        // The topology as L2 sees it.
        let topo_cmd = format!(
            "echo {TOPO_MARK} $(nproc) $(cat /sys/devices/system/cpu/cpu*/topology/physical_package_id | sort -u | wc -l) $(grep -l . /sys/devices/system/cpu/cpu*/topology/core_id | wc -l)"
        );
        script += &nested::case(
            "topology",
            &format!("$KTSTR shell --backend kvm {common} --topology 1n2l2c1t --exec '{topo_cmd}'"),
        );
        // 8 spinning vCPUs on 2 host CPUs: PV steal time must show.
        script += &nested::case(
            "steal",
            &format!("$KTSTR run --backend kvm {common} --scenario steal --duration 3s --topology 1n1l8c1t --cpu-budget 2"),
        );
        // Two NUMA nodes (SRAT from the kvm backend's ACPI tables) as L2 sees them.
        script += &nested::case(
            "numa",
            &format!("$KTSTR shell --backend kvm {common} --topology 2n1l1c1t --exec 'echo {NUMA_MARK} $(ls -d /sys/devices/system/node/node[0-9]* | wc -l)'"),
        );
        // Interactive console: a script piped into `ktstr shell` reaches L2's shell (COM1 input),
        // its output comes back, and the shell's exit status is the command's.
        script += &nested::piped_case(
            "interactive",
            &format!("echo {TTY_MARK} $((6*7))\\nexit 3\\n"),
            &format!("$KTSTR shell --backend kvm {common} --timeout 120s"),
        );
        // A guest that never reports ends as timeout; a kernel panic as crashed. The panic goes
        // last: its trace reaches L1's console, whose crash watch then ends L1.
        script += &nested::case(
            "hang",
            &format!("$KTSTR shell --backend kvm {common} --timeout 45s --exec 'sleep 600'"),
        );
        script += &nested::case(
            "panic",
            &format!("$KTSTR shell --backend kvm {common} --exec 'echo c > /proc/sysrq-trigger'"),
        );
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let mut req = L1Request::new(e2e::ktstr_bin(), script, dir.join("l1-console.log"));
        req.timeout = Duration::from_secs(1200);
        e2e::debian_kernel();
        let boot = || nested::run_l1(&req).unwrap_or_else(|e| panic!("L1 boot: {e}"));
        let mut out = boot();
        // Seen in CI: L1 (the emulated host, not the VMM under test) reset itself mid-script with
        // no kernel message (twice, both times 4 s into the 8-vCPU `steal` case). Up to two more
        // L1 boots, each lost one's console kept; a real fault of the VMM repeats and fails the
        // cases below.
        //
        // Also seen (11-22, 3 of ~80 kvm benchmark boots, and on qemu-kvm too: a kvm L2 triple
        // fault with no kernel message, a qemu-kvm L2 reset mid-boot): an L2 that resets itself
        // during boot. Such a case is run again too; a VMM that breaks the boot every time fails
        // again in the next L1.
        for attempt in 1..=2 {
            let missing: Vec<&str> = LABELS
                .into_iter()
                .filter(|l| {
                    let doc = out.json.iter().find(|d| d["label"] == *l);
                    doc.is_none_or(|d| {
                        *l != "panic" && spurious_reset(d, &case_output_in(&out.console, l))
                    })
                })
                .collect();
            if missing.is_empty() {
                break;
            }
            let lost = req.console_log.with_extension(format!("lost{attempt}.log"));
            let _ = std::fs::copy(&req.console_log, &lost);
            eprintln!(
                "nested: L1 ended {:?} after {:?} before cases {missing:?} reported (crash line {:?}); \
                 its console is kept at {}; tail:\n{}\nbooting L1 again",
                out.run.end,
                out.run.wall,
                out.run.crash_line,
                lost.display(),
                out.run.console_tail
            );
            out = boot();
        }
        eprintln!(
            "L1 ended {:?} after {:?}; console at {}",
            out.run.end,
            out.run.wall,
            req.console_log.display()
        );
        out
    })
}

/// A case whose L2 reset itself (triple fault) before its result, without a kernel message
/// that would explain it. Interactive cases have no result; their output carries the VMM's line.
fn spurious_reset(doc: &serde_json::Value, output: &str) -> bool {
    let reason = doc["result"]["reason"].as_str().unwrap_or("");
    let tail = doc["result"]["console_tail"].as_str().unwrap_or("");
    let explained = |t: &str| t.contains("Kernel panic") || t.contains("Oops");
    (reason.contains("triple fault") || output.contains("triple fault"))
        && !explained(tail)
        && !explained(output)
}

/// The CellResult of case `label`, with the console as evidence when it is missing.
fn case(label: &str) -> (i64, Option<CellResult>) {
    let out = l1();
    let doc = out
        .json
        .iter()
        .find(|d| d["label"] == label)
        .unwrap_or_else(|| {
            panic!(
                "case {label} never reported; L1 ended {:?} after {:?}, crash line {:?}, exit {:?}\n\
                 --- L1 console tail (with QEMU's stderr) ---\n{}\n--- L1 console ---\n{}",
                out.run.end,
                out.run.wall,
                out.run.crash_line,
                out.exit_code,
                out.run.console_tail,
                out.console
            )
        });
    let result = match &doc["result"] {
        serde_json::Value::Null => None,
        r => Some(serde_json::from_value(r.clone()).expect("CellResult JSON")),
    };
    (doc["exit"].as_i64().unwrap_or(-1), result)
}

#[test]
fn auto_picks_kvm_in_l1_and_smoke_passes() {
    let (_, r) = case("smoke");
    let r = r.expect("smoke result");
    assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
    assert!(r.backend.starts_with("kvm"), "backend {}", r.backend);
    let to_agent = r.timings.to_agent_ms.expect("time to agent");
    let to_result = r.timings.to_result_ms.expect("time to result");
    assert!(to_agent > 0.0 && to_agent < to_result, "{:?}", r.timings);
    eprintln!("nested kvm: agent after {to_agent:.0} ms, result after {to_result:.0} ms");
}

/// The console line an L2 command printed after `mark` (not the copy inside a case's JSON, nor
/// the command itself), and the numbers that follow the mark on it.
fn marker_numbers(mark: &str) -> (String, Vec<u32>) {
    let line = l1()
        .console
        .lines()
        .find(|l| {
            l.contains(&format!("{mark} ")) && !l.contains("$(") && !l.contains(nested::JSON_PREFIX)
        })
        .unwrap_or_else(|| panic!("no {mark} line in:\n{}", l1().console));
    let nums = line
        .split_whitespace()
        .skip_while(|w| *w != mark)
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    (line.to_string(), nums)
}

#[test]
fn topology_1n2l2c1t_is_visible_in_l2() {
    let (code, _) = case("topology");
    assert_eq!(code, 0);
    let (line, nums) = marker_numbers(TOPO_MARK);
    // 4 CPUs online, 2 packages (one per LLC), 4 CPUs with a core id.
    assert_eq!(nums, vec![4, 2, 4], "{line}");
}

#[test]
fn numa_2n1l1c1t_shows_two_nodes_in_l2() {
    let (code, _) = case("numa");
    assert_eq!(code, 0);
    let (line, nodes) = marker_numbers(NUMA_MARK);
    assert_eq!(nodes, vec![2], "{line}");
}

#[test]
fn eight_vcpus_on_a_budget_of_two_accumulate_steal() {
    let (_, r) = case("steal");
    let r = r.expect("steal result");
    let report = r.report.as_ref().expect("guest report");
    let scen = report.scenario.as_ref().expect("scenario report");
    let steal = scen
        .metrics
        .iter()
        .find(|(k, _)| k.contains("steal"))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no steal metric in {:?}", scen.metrics));
    assert!(steal > 0.0, "steal {steal}: {:?}", scen.metrics);
    assert_eq!(report.kernel.online_cpus, 8);
}

#[test]
fn piped_input_reaches_the_interactive_shell() {
    let (code, _) = case("interactive");
    let (line, nums) = marker_numbers(TTY_MARK);
    assert_eq!(nums, vec![42], "{line}");
    assert_eq!(code, 3, "the shell's `exit 3` is ktstr shell's status");
}

/// What case `label` printed in a given L1 console (between its JSON line and the next one);
/// empty when the case never reported.
fn case_output_in(console: &str, label: &str) -> String {
    let Some(start) = console.find(&format!("{}{{\"label\":\"{label}\"", nested::JSON_PREFIX))
    else {
        return String::new();
    };
    let rest = &console[start..];
    let body = &rest[rest.find('\n').map_or(rest.len(), |i| i + 1)..];
    body[..body.find(nested::JSON_PREFIX).unwrap_or(body.len())].to_string()
}

#[test]
fn guest_panic_is_crashed() {
    let (_, r) = case("panic");
    let r = r.expect("panic result");
    assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
    assert!(r.console_tail.contains("Kernel panic") || r.console_tail.contains("sysrq"));
}

#[test]
fn hung_guest_is_timeout() {
    let (_, r) = case("hang");
    let r = r.expect("hang result");
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
}

/// On the host: the choice line names the backend, and the probe's verdict decides it. Where the
/// probe fails (a software KVM such as this project's dev machines'), auto must not pick kvm.
#[test]
fn auto_backend_follows_the_probe_on_the_host() {
    let verdict = ktstr::vm::select::kvm_verdict();
    let sel = ktstr::vm::select::select(ktstr::vm::select::BackendChoice::Auto).expect("select");
    eprintln!("{} (probe: {verdict:?})", sel.why);
    match verdict {
        Ok(()) => assert!(sel.why.starts_with("backend kvm"), "{}", sel.why),
        Err(_) => assert!(
            sel.why.contains("tcg") || sel.why.contains("kvm"),
            "{}",
            sel.why
        ),
    }
    if let Err(ktstr::vm::kvm::probe::ProbeError::Guest(_)) = verdict {
        assert!(
            !sel.why.starts_with("backend kvm"),
            "a KVM that failed the probe guest must not be chosen: {}",
            sel.why
        );
        assert!(sel.why.to_lowercase().contains("tcg"), "{}", sel.why);
    }
}
