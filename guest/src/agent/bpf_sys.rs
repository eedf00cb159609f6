//! The few bpf(2) commands the agent needs to read the loaded programs' info: walk the program
//! ids, open each by id, read its `struct bpf_prog_info`. Hand-written over `libc::syscall`: the
//! guest is a static musl binary, and the crates that wrap bpf(2) bring libbpf (C) or a whole
//! loader for three read-only commands.

use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

// `enum bpf_cmd` of include/uapi/linux/bpf.h (stable ABI numbers).
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `BPF_PROG_TYPE_STRUCT_OPS` of `enum bpf_prog_type`: what a sched_ext scheduler's callbacks are.
pub const PROG_TYPE_STRUCT_OPS: u32 = 27;

/// `BPF_OBJ_NAME_LEN`: a program's name is truncated to 15 bytes plus the NUL.
const OBJ_NAME_LEN: usize = 16;

/// The id part of `union bpf_attr` (the anonymous struct used by `BPF_*_GET_*_ID`).
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    start_or_prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `info` part of `union bpf_attr` (`BPF_OBJ_GET_INFO_BY_FD`).
#[repr(C, align(8))]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` as of Linux 6.12 (232 bytes). The kernel copies
/// min(info_len, its own size) and writes back how much it filled: an older kernel leaves the
/// later fields (e.g. `verified_insns`, added in 5.16) untouched, and a newer kernel accepts a
/// shorter struct as long as we do not ask for more than we pass.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; OBJ_NAME_LEN],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    attach_btf_obj_id: u32,
    attach_btf_id: u32,
    _pad: u32,
}

/// What the agent keeps of one program's info.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgSample {
    pub id: u32,
    pub prog_type: u32,
    /// As the kernel keeps it: at most 15 bytes.
    pub name: String,
    /// `None` on kernels before 5.16, which do not report it.
    pub verified_insns: Option<u32>,
    /// Cumulative since load; only counted while `kernel.bpf_stats_enabled` is 1.
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

fn bpf(cmd: libc::c_long, attr: *mut libc::c_void, size: usize) -> Result<i64, std::io::Error> {
    // SAFETY: every caller passes a pointer to a live, zero-initialised #[repr(C)] attr of
    // exactly `size` bytes; the commands used only read it and write inside it (or into the
    // info buffer it points to, which the caller keeps alive and sized as it says).
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The id of the next loaded program after `after` (0 = the first), `None` at the end.
fn next_prog_id(after: u32) -> Result<Option<u32>, std::io::Error> {
    let mut attr = IdAttr {
        start_or_prog_id: after,
        ..Default::default()
    };
    match bpf(
        BPF_PROG_GET_NEXT_ID,
        (&mut attr as *mut IdAttr).cast(),
        std::mem::size_of::<IdAttr>(),
    ) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn prog_fd_by_id(id: u32) -> Result<OwnedFd, std::io::Error> {
    let mut attr = IdAttr {
        start_or_prog_id: id,
        ..Default::default()
    };
    let fd = bpf(
        BPF_PROG_GET_FD_BY_ID,
        (&mut attr as *mut IdAttr).cast(),
        std::mem::size_of::<IdAttr>(),
    )?;
    // SAFETY: on success BPF_PROG_GET_FD_BY_ID returns a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn prog_info(fd: &OwnedFd) -> Result<ProgSample, std::io::Error> {
    // SAFETY: ProgInfo is plain integers and byte arrays; all-zero is a valid value (and the
    // kernel requires the fields it does not fill to be zero).
    let mut info: ProgInfo = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: (&mut info as *mut ProgInfo) as u64,
    };
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        (&mut attr as *mut InfoAttr).cast(),
        std::mem::size_of::<InfoAttr>(),
    )?;
    let filled = attr.info_len as usize;
    let has = |end: usize| filled >= end;
    let name_len = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(OBJ_NAME_LEN);
    Ok(ProgSample {
        id: info.id,
        prog_type: info.prog_type,
        name: String::from_utf8_lossy(&info.name[..name_len]).into_owned(),
        verified_insns: has(std::mem::offset_of!(ProgInfo, verified_insns) + 4)
            .then_some(info.verified_insns)
            .filter(|&n| n > 0),
        run_cnt: if has(std::mem::offset_of!(ProgInfo, run_cnt) + 8) {
            info.run_cnt
        } else {
            0
        },
        run_time_ns: if has(std::mem::offset_of!(ProgInfo, run_time_ns) + 8) {
            info.run_time_ns
        } else {
            0
        },
    })
}

/// Every loaded program whose info could be read. A program unloaded between the id walk and
/// the open (ENOENT) is skipped; any other failure (no bpf(2), no CAP_SYS_ADMIN) is an error.
pub fn loaded_programs() -> Result<Vec<ProgSample>, std::io::Error> {
    let mut out = Vec::new();
    let mut id = 0;
    while let Some(next) = next_prog_id(id)? {
        id = next;
        let fd = match prog_fd_by_id(id) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        out.push(prog_info(&fd)?);
    }
    Ok(out)
}

/// A short name for `enum bpf_prog_type` values a scheduler may load; the number otherwise.
pub fn prog_type_name(t: u32) -> String {
    let known = match t {
        2 => "kprobe",
        5 => "tracepoint",
        7 => "perf_event",
        17 => "raw_tracepoint",
        26 => "tracing",
        PROG_TYPE_STRUCT_OPS => "struct_ops",
        28 => "ext",
        29 => "lsm",
        31 => "syscall",
        _ => return format!("type_{t}"),
    };
    known.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of include/uapi/linux/bpf.h in Linux 6.12, where every field after `name` sits.
    #[test]
    fn prog_info_matches_the_6_12_uapi_layout() {
        use std::mem::offset_of;
        assert_eq!(std::mem::size_of::<ProgInfo>(), 232);
        assert_eq!(offset_of!(ProgInfo, name), 64);
        assert_eq!(offset_of!(ProgInfo, netns_dev), 88);
        assert_eq!(offset_of!(ProgInfo, run_time_ns), 192);
        assert_eq!(offset_of!(ProgInfo, run_cnt), 200);
        assert_eq!(offset_of!(ProgInfo, verified_insns), 216);
        assert_eq!(std::mem::size_of::<IdAttr>(), 12);
        assert_eq!(std::mem::size_of::<InfoAttr>(), 16);
    }

    #[test]
    fn prog_types_read_as_names() {
        assert_eq!(prog_type_name(PROG_TYPE_STRUCT_OPS), "struct_ops");
        assert_eq!(prog_type_name(26), "tracing");
        assert_eq!(prog_type_name(999), "type_999");
    }
}
