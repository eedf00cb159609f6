//! The guest paths of `-i HOST[:GUEST]` inputs, checked with the other inputs before anything is
//! built: each is absolute and free of `.`/`..` (so it names a place under the initramfs root and
//! nowhere else), takes no path ktstr puts in every image (`/init`, the cell spec, busybox, the
//! device nodes, the mount points) and no two inputs claim one path or place a file where another
//! needs a directory.

use super::archive::{Node, Tree, TreeError};
use super::{DEFAULT_BUSYBOX, MOUNT_DIRS, guest_path_for};
use ktstr_guest::protocol::SPEC_PATH;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why an `-i` guest path is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GuestPathError {
    #[error(
        "guest path {0:?} must be absolute and free of `.`/`..` components: give HOST:/GUEST/PATH, or HOST alone for /ktstr/files/NAME"
    )]
    NotPlain(String),
    #[error("guest path {path} is taken by {owner}; choose another guest path")]
    Taken { path: String, owner: String },
}

/// What ktstr itself places in every image, as (guest path, what it is).
fn reserved() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("/init", "ktstr's guest agent (PID 1)"),
        (SPEC_PATH, "ktstr's cell spec"),
        ("/dev/console", "ktstr's console device"),
        ("/dev/null", "ktstr's null device"),
        (DEFAULT_BUSYBOX, "ktstr's busybox"),
    ];
    v.extend(
        MOUNT_DIRS
            .iter()
            .map(|d| (*d, "a directory ktstr makes in every image")),
    );
    v
}

/// Checks the guest paths of `files` ((host, guest) as [`super::parse_include`] gives them);
/// returns the normalised guest path of each.
pub fn check(files: &[(PathBuf, String)]) -> Result<Vec<String>, (usize, GuestPathError)> {
    let mut tree = Tree::new();
    // Guest path (normalised, with its `/`) -> who placed it there.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (path, what) in reserved() {
        let node = if MOUNT_DIRS.contains(&path) {
            Node::Dir
        } else {
            Node::Symlink(format!("\u{1}{path}"))
        };
        tree.insert(path, node)
            .expect("the reserved paths do not conflict");
        owners.insert(path.to_string(), what.to_string());
    }
    let mut out = Vec::with_capacity(files.len());
    for (i, (host, guest)) in files.iter().enumerate() {
        let wanted = guest_path_for(host, guest);
        let plain = Tree::normalise(&wanted)
            .map(|p| format!("/{p}"))
            .map_err(|_| (i, GuestPathError::NotPlain(wanted.clone())))?;
        // The same host file at the same place twice is harmless (and common in scripts).
        let node = Node::Symlink(format!("\u{1}{}", host.display()));
        match tree.insert(&plain, node) {
            Ok(()) => {
                owners
                    .entry(plain.clone())
                    .or_insert_with(|| format!("-i {}", host.display()));
            }
            Err(TreeError::Conflict { path, existing }) => {
                let owner = owners.get(&path).cloned().unwrap_or_else(|| {
                    format!("{existing} (the parent of another input or of a ktstr file)")
                });
                return Err((i, GuestPathError::Taken { path, owner }));
            }
            Err(TreeError::BadPath(p)) => return Err((i, GuestPathError::NotPlain(p))),
        }
        out.push(plain);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(host: &str, guest: &str) -> Result<Vec<String>, (usize, GuestPathError)> {
        check(&[(PathBuf::from(host), guest.to_string())])
    }

    #[test]
    fn plain_paths_are_accepted_and_normalised() {
        assert_eq!(one("/x/sched", "").unwrap(), ["/ktstr/files/sched"]);
        assert_eq!(one("/x/sched", "/opt//bin/s/").unwrap(), ["/opt/bin/s"]);
        // One file given twice at one place is not a conflict.
        let twice = [
            (PathBuf::from("/x/a"), "/opt/a".to_string()),
            (PathBuf::from("/x/a"), "/opt/a".to_string()),
        ];
        assert!(check(&twice).is_ok());
    }

    #[test]
    fn escaping_and_relative_paths_are_refused() {
        for bad in ["/../etc/passwd", "/opt/../../x", "/./init", "/a/./b", "/"] {
            assert!(
                matches!(one("/x/a", bad), Err((0, GuestPathError::NotPlain(_)))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ktstr_own_paths_are_refused_and_named() {
        for (bad, owner) in [
            ("/init", "guest agent"),
            ("/ktstr/cell.json", "cell spec"),
            ("/bin/busybox", "busybox"),
            ("/dev/console", "console"),
            ("/proc", "directory"),
            ("/init/x", "guest agent"),
            ("/ktstr", "directory"),
        ] {
            let err = one("/x/a", bad).unwrap_err().1;
            assert!(err.to_string().contains(owner), "{bad}: {err}");
        }
    }

    #[test]
    fn two_inputs_cannot_share_a_path_or_nest() {
        let same = [
            (PathBuf::from("/x/a"), "/opt/a".to_string()),
            (PathBuf::from("/y/b"), "/opt/a".to_string()),
        ];
        let (i, err) = check(&same).unwrap_err();
        assert_eq!(i, 1);
        assert!(err.to_string().contains("-i /x/a"), "{err}");
        let nested = [
            (PathBuf::from("/x/a"), "/opt/a".to_string()),
            (PathBuf::from("/y/b"), "/opt/a/b".to_string()),
        ];
        assert!(check(&nested).is_err());
        let nested = [
            (PathBuf::from("/y/b"), "/opt/a/b".to_string()),
            (PathBuf::from("/x/a"), "/opt/a".to_string()),
        ];
        assert!(check(&nested).is_err());
    }
}
