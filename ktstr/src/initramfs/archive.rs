//! An in-memory tree of initramfs entries and its deterministic cpio `newc` serialisation.
//!
//! Determinism: entries are emitted in path order, with mtime 0, uid/gid 0 and inode numbers
//! assigned by position, so the same inputs give the same bytes on every host and every run; the
//! cache key is the sha256 of these bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Dir,
    /// Contents are shared: a large binary is read once even if placed twice.
    File {
        data: Arc<Vec<u8>>,
        mode: u32,
    },
    Symlink(String),
    /// Character device (e.g. /dev/console, which the kernel opens for init's stdio before any
    /// devtmpfs is mounted).
    CharDev {
        major: u32,
        minor: u32,
    },
}

/// Paths are stored without the leading `/`.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TreeError {
    #[error("guest path {0:?} must be absolute and free of `.`/`..` components")]
    BadPath(String),
    #[error("guest path {path:?} is given twice (already {existing})")]
    Conflict { path: String, existing: String },
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalises `/a//b/` to `a/b`, refusing relative paths and `.`/`..`.
    pub fn normalise(path: &str) -> Result<String, TreeError> {
        let bad = || TreeError::BadPath(path.to_string());
        if !path.starts_with('/') {
            return Err(bad());
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(bad());
        }
        Ok(parts.join("/"))
    }

    /// Inserts `node` at `path`, creating parent directories. Re-inserting an identical node is a
    /// no-op (two binaries needing the same library); a different node at the same path is an error.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let rel = Self::normalise(path)?;
        let mut parent = String::new();
        let comps: Vec<&str> = rel.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            match self.nodes.get(&parent) {
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(other) => {
                    return Err(TreeError::Conflict {
                        path: format!("/{parent}"),
                        existing: describe(other),
                    });
                }
            }
        }
        match self.nodes.get(&rel) {
            None => {
                self.nodes.insert(rel, node);
                Ok(())
            }
            Some(existing) if *existing == node => Ok(()),
            Some(existing) => Err(TreeError::Conflict {
                path: format!("/{rel}"),
                existing: describe(existing),
            }),
        }
    }

    /// Inserts unless something is already at `path` (busybox applet links never displace files).
    pub fn insert_if_absent(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let rel = Self::normalise(path)?;
        if self.nodes.contains_key(&rel) {
            return Ok(());
        }
        self.insert(path, node)
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        Self::normalise(path).ok().and_then(|p| self.nodes.get(&p))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Serialises the tree as an uncompressed cpio newc archive.
    pub fn to_cpio(&self) -> io::Result<Vec<u8>> {
        let size: usize = self
            .nodes
            .values()
            .map(|n| match n {
                Node::File { data, .. } => data.len() + 256,
                _ => 256,
            })
            .sum();
        let mut out = Vec::with_capacity(size + 512);
        for (i, (path, node)) in self.nodes.iter().enumerate() {
            // Inode 0 is avoided: some tools treat it as "no inode".
            let ino = i as u32 + 1;
            let b = cpio::newc::Builder::new(path)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(0);
            match node {
                Node::Dir => {
                    let w = b.mode(0o040755).nlink(2).write(&mut out, 0);
                    w.finish()?;
                }
                Node::File { data, mode } => {
                    let mut w = b
                        .mode(0o100000 | (mode & 0o7777))
                        .nlink(1)
                        .write(&mut out, len_u32(data.len())?);
                    w.write_all(data)?;
                    w.finish()?;
                }
                Node::Symlink(target) => {
                    let mut w = b
                        .mode(0o120777)
                        .nlink(1)
                        .write(&mut out, len_u32(target.len())?);
                    w.write_all(target.as_bytes())?;
                    w.finish()?;
                }
                Node::CharDev { major, minor } => {
                    let w = b
                        .mode(0o020600)
                        .nlink(1)
                        .rdev_major(*major)
                        .rdev_minor(*minor)
                        .write(&mut out, 0);
                    w.finish()?;
                }
            }
        }
        cpio::newc::trailer(&mut out)?;
        Ok(out)
    }
}

fn len_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n)
        .map_err(|_| io::Error::other("file larger than 4 GiB cannot go in a cpio newc archive"))
}

fn describe(n: &Node) -> String {
    match n {
        Node::Dir => "a directory".into(),
        Node::File { data, .. } => format!("a {}-byte file", data.len()),
        Node::Symlink(t) => format!("a symlink to {t}"),
        Node::CharDev { major, minor } => format!("device {major}:{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(b: &[u8]) -> Node {
        Node::File {
            data: Arc::new(b.to_vec()),
            mode: 0o755,
        }
    }

    #[test]
    fn parents_are_created_and_order_is_by_path() {
        let mut t = Tree::new();
        t.insert("/z/y/x", file(b"1")).unwrap();
        t.insert("/a", file(b"2")).unwrap();
        assert_eq!(t.get("/z"), Some(&Node::Dir));
        assert_eq!(t.get("/z/y"), Some(&Node::Dir));
        let cpio = t.to_cpio().unwrap();
        let mut names = Vec::new();
        let mut rest = &cpio[..];
        loop {
            let r = cpio::NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push(r.entry().name().to_string());
            rest = r.finish().unwrap();
        }
        assert_eq!(names, ["a", "z", "z/y", "z/y/x"]);
    }

    #[test]
    fn same_inputs_same_bytes_regardless_of_insert_order() {
        let mut a = Tree::new();
        a.insert("/bin/x", file(b"x")).unwrap();
        a.insert("/etc/y", Node::Symlink("/bin/x".into())).unwrap();
        let mut b = Tree::new();
        b.insert("/etc/y", Node::Symlink("/bin/x".into())).unwrap();
        b.insert("/bin/x", file(b"x")).unwrap();
        assert_eq!(a.to_cpio().unwrap(), b.to_cpio().unwrap());
    }

    #[test]
    fn conflicts_and_bad_paths_are_refused() {
        let mut t = Tree::new();
        t.insert("/a/b", file(b"1")).unwrap();
        t.insert("/a/b", file(b"1")).unwrap();
        assert!(matches!(
            t.insert("/a/b", file(b"2")),
            Err(TreeError::Conflict { .. })
        ));
        assert!(matches!(
            t.insert("/a/b/c", file(b"3")),
            Err(TreeError::Conflict { .. })
        ));
        for bad in ["relative", "/", "/a/../b", "/./x"] {
            assert!(
                matches!(Tree::normalise(bad), Err(TreeError::BadPath(_))),
                "{bad}"
            );
        }
        t.insert_if_absent("/a/b", Node::Symlink("x".into()))
            .unwrap();
        assert_eq!(t.get("/a/b"), Some(&file(b"1")));
    }
}
