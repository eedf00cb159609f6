//! The filesystems PID 1 mounts before anything else.

use std::ffi::CString;
use std::path::Path;

struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    /// Failing to mount an optional filesystem is not worth a console line.
    required: bool,
}

const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        required: true,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        required: true,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        required: true,
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        required: true,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        required: true,
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        required: false,
    },
    Mount {
        source: "debugfs",
        target: "/sys/kernel/debug",
        fstype: "debugfs",
        required: false,
    },
];

/// Mounts everything, enables the cpu and cpuset controllers for child cgroups, and makes sure
/// fds 0-2 exist (the kernel only opens /dev/console for init when the initramfs has that node).
/// Returns one-line errors for the required mounts that failed.
pub fn mount_all() -> Vec<String> {
    let mut errors = Vec::new();
    for m in MOUNTS {
        // debugfs/cgroup directories appear in sysfs only when the kernel has them.
        if !m.required && !Path::new(m.target).is_dir() {
            continue;
        }
        let _ = std::fs::create_dir_all(m.target);
        if let Err(e) = mount(m.source, m.target, m.fstype) {
            if m.required {
                errors.push(format!("mounting {} on {}: {e}", m.fstype, m.target));
            }
        }
    }
    ensure_stdio();
    enable_controllers(Path::new("/sys/fs/cgroup"), &["cpu", "cpuset"]);
    errors
}

fn mount(source: &str, target: &str, fstype: &str) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).expect("no NUL in mount constants");
    let (s, t, f) = (c(source), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // Already mounted (e.g. a kernel with DEVTMPFS_MOUNT) is fine.
    if e.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(e)
}

/// Writes `+ctrl` for each available controller; missing ones are simply not enabled.
pub fn enable_controllers(cgroup: &Path, wanted: &[&str]) {
    let available = std::fs::read_to_string(cgroup.join("cgroup.controllers")).unwrap_or_default();
    for c in wanted {
        if available.split_whitespace().any(|a| a == *c) {
            let _ = std::fs::write(cgroup.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// The console's tty for fds 0-2. With the kvm backend's MMIO console the kernel prints through
/// a boot console that has no tty, so /dev/console cannot be opened; COM1's port UART (ttyS0)
/// then carries the agent's output to the same console log.
const STDIO_DEVICES: [&str; 2] = ["/dev/console", "/dev/ttyS0"];

/// Points fds 0-2 at the console when they are closed or /dev/null (where Rust's runtime put
/// them when the kernel could not open /dev/console for init).
fn ensure_stdio() {
    for fd in 0..3 {
        if !closed_or_null(fd) {
            continue;
        }
        for dev in STDIO_DEVICES {
            let path = CString::new(dev).expect("constant");
            // SAFETY: opening a device with a valid path; dup2 onto the descriptor to replace.
            let opened = unsafe {
                let c = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
                if c >= 0 && c != fd {
                    libc::dup2(c, fd);
                    libc::close(c);
                }
                c >= 0
            };
            if opened {
                break;
            }
        }
    }
}

fn closed_or_null(fd: i32) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct, and fstat writes only
    // into the struct it is given.
    let (rc, st) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st), st)
    };
    rc != 0 || (st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3))
}

#[cfg(test)]
mod tests {
    use super::closed_or_null;
    use std::os::fd::AsRawFd;

    #[test]
    fn null_and_closed_descriptors_are_replaced_others_kept() {
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(closed_or_null(null.as_raw_fd()));
        let file = tempfile_in_tmp();
        assert!(!closed_or_null(file.as_raw_fd()));
        assert!(closed_or_null(100_000), "not an open descriptor");
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("ktstr-guest-stdio-{}", std::process::id()));
        let f = std::fs::File::create(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }
}
