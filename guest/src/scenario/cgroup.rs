//! The scenario's cgroup v2 subtree: created before the workers, removed after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A cgroup v2 directory this process may create children in.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    pub path: PathBuf,
}

impl CgroupRoot {
    /// The cgroup v2 directory of this process (its mount point joined with `/proc/self/cgroup`'s
    /// `0::` path), if cgroup v2 is mounted and a child can be created there.
    pub fn detect() -> Option<CgroupRoot> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split(' ').next()? == "cgroup2")
                .then(|| pre.split(' ').nth(4).map(PathBuf::from))?
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        let path = mount.join(rel.trim_start_matches('/'));
        let probe = path.join(format!("ktstr-probe-{}", std::process::id()));
        std::fs::create_dir(&probe).ok()?;
        let _ = std::fs::remove_dir(&probe);
        Some(CgroupRoot { path })
    }

    /// Controllers available to children of this directory.
    pub fn controllers(&self) -> Vec<String> {
        std::fs::read_to_string(self.path.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

/// A scenario's own subtree `ktstr-<pid>-<n>/{name...}`; removed on drop.
#[derive(Debug)]
pub struct Subtree {
    pub dir: PathBuf,
    pub children: Vec<PathBuf>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Subtree {
    /// Creates the subtree with `controllers` enabled for its children (each must be available)
    /// and one child per name.
    pub fn create(
        root: &CgroupRoot,
        controllers: &[&str],
        names: &[String],
    ) -> Result<Subtree, String> {
        let dir = root.path.join(format!(
            "ktstr-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let mut tree = Subtree {
            dir: dir.clone(),
            children: Vec::new(),
        };
        for c in controllers {
            std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")).map_err(|e| {
                format!(
                    "enabling the {c} controller in {} (needs +{c} in every ancestor's cgroup.subtree_control): {e}",
                    dir.display()
                )
            })?;
        }
        for n in names {
            let child = dir.join(n);
            std::fs::create_dir(&child).map_err(|e| format!("mkdir {}: {e}", child.display()))?;
            tree.children.push(child);
        }
        Ok(tree)
    }
}

pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| format!("writing '{value}' to {}: {e}", dir.join(file).display()))
}

impl Drop for Subtree {
    fn drop(&mut self) {
        // Workers are reaped before this runs; a leftover directory is harmless in a VM but would
        // litter a developer's host, so try.
        for c in self.children.iter().rev() {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
