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

fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let path = CString::new("/dev/console").expect("constant");
        // SAFETY: opening a device with a valid path; dup2 onto the missing descriptor.
        unsafe {
            let c = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            if c >= 0 && c != fd {
                libc::dup2(c, fd);
                libc::close(c);
            }
        }
    }
}
