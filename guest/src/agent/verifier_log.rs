//! The verifier's verdict in a scheduler's output. When the kernel refuses a BPF program, libbpf
//! prints the verifier's log between markers, and the verdict is at its end (the failing
//! instruction's complaint, then `processed N insns (limit 1000000) ...`); the scheduler's own
//! last line only says that loading failed. This finds the last such log and keeps its tail.

/// Lines of the log's end that go into the cell's reason.
const TAIL_LINES: usize = 4;
/// A verifier line can carry a whole register state; the reason stays readable.
const MAX_LINE_CHARS: usize = 240;
/// How much of the scheduler's output is searched (the log is at the end of a failed load).
const SEARCH_BYTES: u64 = 1 << 20;

/// libbpf >= 0.7: `prog 'NAME': -- BEGIN PROG LOAD LOG --` ... `-- END PROG LOAD LOG --`;
/// older libbpf: `-- BEGIN DUMP LOG ---` ... `-- END LOG --`.
const BEGIN: [&str; 2] = ["-- BEGIN PROG LOAD LOG --", "-- BEGIN DUMP LOG ---"];
const END: [&str; 2] = ["-- END PROG LOAD LOG --", "-- END LOG --"];

/// `verifier rejected prog 'NAME': <last lines of its log, joined by " | ">`, from the last
/// verifier log in `output`; `None` when there is none.
pub fn verdict(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let begin = lines
        .iter()
        .rposition(|l| BEGIN.iter().any(|m| l.contains(m)))?;
    let end = lines[begin..]
        .iter()
        .position(|l| END.iter().any(|m| l.contains(m)))
        .map(|i| begin + i);
    let mut body: Vec<&str> = lines[begin + 1..end.unwrap_or(lines.len())].to_vec();
    // A log without a trailing newline ends on the END marker's line.
    if let Some(e) = end {
        let before = END.iter().find_map(|m| Some(lines[e].split_once(m)?.0));
        body.extend(before);
    }
    let body: Vec<String> = body
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && *l != "libbpf:")
        .map(|l| l.chars().take(MAX_LINE_CHARS).collect())
        .collect();
    let tail = &body[body.len().saturating_sub(TAIL_LINES)..];
    let prog = lines[begin]
        .split_once("prog '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| format!(" prog '{name}'"))
        .unwrap_or_default();
    let tail = if tail.is_empty() {
        "(empty log)".to_string()
    } else {
        tail.join(" | ")
    };
    Some(format!("verifier rejected{prog}: {tail}"))
}

/// [`verdict`] of the end of the file at `path`.
pub fn verdict_in_file(path: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(SEARCH_BYTES)))
        .ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    verdict(&String::from_utf8_lossy(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a C scheduler's failed load (tools/sched_ext prints libbpf's warnings to
    /// stderr, then its own SCX_BUG line): a kfunc the kernel does not have.
    const C_SCHEDULER: &str = "\
libbpf: prog 'qmap_dispatch': BPF program load failed: Invalid argument
libbpf: prog 'qmap_dispatch': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
; int BPF_STRUCT_OPS(qmap_dispatch, s32 cpu, struct task_struct *prev) @ scx_qmap.bpf.c:310
0: (b7) r6 = 0                        ; R6_w=0
1: (85) call scx_bpf_dsq_move_to_local#-1
calling kernel function scx_bpf_dsq_move_to_local is not allowed
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'qmap_dispatch': failed to load: -22
libbpf: failed to load object 'scx_qmap'
libbpf: failed to load BPF skeleton 'scx_qmap': -22
[SCX_BUG] scx_qmap.c:112 (Invalid argument)
Failed to load skel
";

    #[test]
    fn the_verdict_is_the_end_of_the_last_log() {
        let v = verdict(C_SCHEDULER).unwrap();
        assert_eq!(
            v,
            "verifier rejected prog 'qmap_dispatch': 0: (b7) r6 = 0                        ; R6_w=0 \
             | 1: (85) call scx_bpf_dsq_move_to_local#-1 \
             | calling kernel function scx_bpf_dsq_move_to_local is not allowed \
             | processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 \
             peak_states 0 mark_read 0"
        );
    }

    #[test]
    fn a_rust_scheduler_s_logger_prefixes_only_the_markers() {
        // scx_utils' libbpf logger: one log record per libbpf message, the log's lines raw.
        let out = "\
12:00:01 [INFO] CPUs: online/possible = 2/2
12:00:01 [WARN] libbpf: prog 'rusty_init': BPF program load failed: Permission denied
12:00:01 [WARN] libbpf: prog 'rusty_init': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
2: (15) if r0 == 0x0 goto pc+222      ; R0_w=ptr_bpf_cpumask(ref_obj_id=2) refs=2
Unreleased reference id=2 alloc_insn=0
processed 40 insns (limit 1000000) max_states_per_insn 1 total_states 4 peak_states 4 mark_read 2
-- END PROG LOAD LOG --
12:00:01 [WARN] libbpf: prog 'rusty_init': failed to load: -13
Error: Failed to load BPF program
";
        let v = verdict(out).unwrap();
        assert!(
            v.starts_with("verifier rejected prog 'rusty_init': "),
            "{v}"
        );
        assert!(
            v.contains("| Unreleased reference id=2 alloc_insn=0 |"),
            "{v}"
        );
        assert!(v.ends_with("mark_read 2"), "{v}");
        assert!(!v.contains("Error: Failed"), "{v}");
    }

    #[test]
    fn the_last_of_several_logs_and_a_cut_off_log_count() {
        let two = format!(
            "libbpf: prog 'a': -- BEGIN PROG LOAD LOG --\nfirst\n-- END PROG LOAD LOG --\n{C_SCHEDULER}"
        );
        assert!(verdict(&two).unwrap().contains("'qmap_dispatch'"));
        // The output was cut before the END marker (the scheduler was killed mid-print).
        let cut = "libbpf: prog 'b': -- BEGIN PROG LOAD LOG --\nx\ny\n";
        assert_eq!(verdict(cut).unwrap(), "verifier rejected prog 'b': x | y");
        // libbpf before 0.7.
        let old = "libbpf: load bpf program failed: Invalid argument\n\
                   libbpf: -- BEGIN DUMP LOG ---\nlibbpf: \nR1 type=ctx expected=fp\n\
                   processed 3 insns\nlibbpf: -- END LOG --\n";
        assert_eq!(
            verdict(old).unwrap(),
            "verifier rejected: R1 type=ctx expected=fp | processed 3 insns"
        );
    }

    #[test]
    fn output_without_a_verifier_log_has_no_verdict() {
        assert_eq!(verdict("libbpf: failed to find valid kernel BTF\n"), None);
        assert_eq!(verdict(""), None);
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "r".repeat(1000);
        let out = format!("prog 'p': -- BEGIN PROG LOAD LOG --\n{long}\n-- END PROG LOAD LOG --\n");
        assert!(verdict(&out).unwrap().len() < MAX_LINE_CHARS + 40);
    }
}
