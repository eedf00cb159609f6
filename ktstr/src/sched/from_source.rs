//! Schedulers built from source: `NAME@git:REPO[#REF]` (a ref of a git repository, local path
//! or URL) and `NAME@path:DIR` (a working tree), where the repository or DIR is the cargo
//! workspace (or single crate) holding package NAME, e.g. the scx repository with
//! `scheds/rust/scx_rusty`. This file parses and checks them without building; building and
//! caching is [`super::source_build`].

use super::SchedError;
use super::spec::{Source, bad};
use std::path::{Path, PathBuf};

/// The part of a spec that [`split`] recognises as from-source.
pub(super) struct Parts<'a> {
    pub source: Source,
    /// The text after the location (and ref), `:ARGS` included, verbatim.
    pub tail: &'a str,
}

/// `NAME@git:...` or `NAME@path:...` -> its source and the rest; `None` for any other spec.
pub(super) fn split<'a>(spec: &str, s: &'a str) -> Result<Option<Parts<'a>>, SchedError> {
    let Some((name, rest)) = s.split_once('@') else {
        return Ok(None);
    };
    if let Some(body) = rest.strip_prefix("git:") {
        // A URL has ':' of its own: the arguments start at the first ':' after `#REF`, or after
        // the URL's scheme when there is no ref.
        let (repo, reference, tail) = match body.split_once('#') {
            Some((repo, after)) => {
                let end = after.find(':').unwrap_or(after.len());
                (repo, Some(&after[..end]), &after[end..])
            }
            None => {
                let from = body.find("://").map_or(0, |i| i + 3);
                let end = body[from..].find(':').map_or(body.len(), |i| from + i);
                (&body[..end], None, &body[end..])
            }
        };
        if repo.is_empty() {
            return Err(bad(
                spec,
                "no repository after `git:`; give NAME@git:/path/to/repo#REF",
            ));
        }
        if reference == Some("") {
            return Err(bad(
                spec,
                "empty ref after '#'; give a branch, tag or commit",
            ));
        }
        return Ok(Some(Parts {
            source: Source::Git {
                name: name.to_string(),
                repo: repo.to_string(),
                reference: reference.map(String::from),
            },
            tail,
        }));
    }
    if let Some(body) = rest.strip_prefix("path:") {
        let end = body.find(':').unwrap_or(body.len());
        if end == 0 {
            return Err(bad(
                spec,
                "no directory after `path:`; give NAME@path:/path/to/workspace",
            ));
        }
        return Ok(Some(Parts {
            source: Source::Tree {
                name: name.to_string(),
                dir: PathBuf::from(&body[..end]),
            },
            tail: &body[end..],
        }));
    }
    Ok(None)
}

/// `spec` (a `NAME@git:REPO` spec without a ref) with `#reference` added, arguments kept: the
/// spec of one commit of a scheduler bisection.
pub fn at_ref(spec: &str, reference: &str) -> Result<String, SchedError> {
    let s = spec.trim();
    match split(spec, s)? {
        Some(Parts {
            source:
                Source::Git {
                    name,
                    repo,
                    reference: None,
                },
            tail,
        }) => Ok(format!("{name}@git:{repo}#{reference}{tail}")),
        _ => Err(bad(
            spec,
            "not a scheduler repository without a ref; give NAME@git:REPO (no #REF)",
        )),
    }
}

/// The commit `reference` (HEAD when `None`) of `repo` resolves to.
pub(super) fn open_at(
    spec: &str,
    repo: &str,
    reference: Option<&str>,
) -> Result<(git2::Repository, git2::Oid), SchedError> {
    let r = reference.unwrap_or("HEAD");
    let offline = std::env::var_os("KTSTR_OFFLINE").is_some_and(|v| v != "0");
    let repository = crate::kernel::source::open_repo(repo, r, offline).map_err(|e| {
        bad(
            spec,
            format!("repository {repo}: {e}; give the path of a git repository (or its URL)"),
        )
    })?;
    let commit = repository
        .revparse_single(r)
        .or_else(|e| {
            if crate::kernel::git_remote::is_url(repo) {
                repository.revparse_single("refs/ktstr/fetched")
            } else {
                Err(e)
            }
        })
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| {
            bad(
                spec,
                format!(
                    "unknown ref {r:?} in {repo} ({}); give a branch, tag or commit of it",
                    e.message()
                ),
            )
        })?
        .id();
    Ok((repository, commit))
}

/// [`open_at`], plus the id of the commit's tree (what a build from it is keyed by).
pub(super) fn open_tree_at(
    spec: &str,
    repo: &str,
    reference: Option<&str>,
) -> Result<(git2::Repository, git2::Oid, git2::Oid), SchedError> {
    let (r, commit) = open_at(spec, repo, reference)?;
    let tree = r
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| bad(spec, format!("reading {repo}: {}", e.message())))?
        .id();
    Ok((r, commit, tree))
}

/// Checks what a from-source spec names: the repository and ref exist (or DIR is a directory),
/// and a Cargo.toml in it declares package `name`.
pub(super) fn validate(spec: &str, source: &Source) -> Result<(), SchedError> {
    let (name, found) = match source {
        Source::Git {
            name,
            repo,
            reference,
        } => {
            let (r, _, tree) = open_tree_at(spec, repo, reference.as_deref())?;
            let tree = r
                .find_tree(tree)
                .map_err(|e| bad(spec, format!("reading {repo}: {}", e.message())))?;
            (name, git_tree_has_package(&r, &tree, name))
        }
        Source::Tree { name, dir } => {
            if !dir.is_dir() {
                return Err(bad(
                    spec,
                    format!(
                        "{} is not a directory; give the cargo workspace that holds {name}",
                        dir.display()
                    ),
                ));
            }
            (name, dir_has_package(dir, name))
        }
        _ => return Ok(()),
    };
    if found {
        Ok(())
    } else {
        Err(bad(
            spec,
            format!(
                "no Cargo.toml there declares package {name}; give the workspace (or crate) that holds it, e.g. the scx repository for scx_rusty"
            ),
        ))
    }
}

/// True when `manifest` (a Cargo.toml's text) is package `name`'s.
fn declares(manifest: &[u8], name: &str) -> bool {
    let Ok(text) = std::str::from_utf8(manifest) else {
        return false;
    };
    let Ok(value) = text.parse::<toml::Table>() else {
        return false;
    };
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        == Some(name)
}

fn git_tree_has_package(r: &git2::Repository, tree: &git2::Tree, name: &str) -> bool {
    let mut found = false;
    let _ = tree.walk(git2::TreeWalkMode::PreOrder, |_, e| {
        if e.name().ok() == Some("Cargo.toml")
            && e.kind() == Some(git2::ObjectType::Blob)
            && r.find_blob(e.id())
                .is_ok_and(|b| declares(b.content(), name))
        {
            found = true;
            return git2::TreeWalkResult::Abort;
        }
        git2::TreeWalkResult::Ok
    });
    found
}

/// Directories never part of a scheduler's source: build output and git's own.
pub(super) fn skipped_dir(name: &std::ffi::OsStr) -> bool {
    name == "target" || name == ".git"
}

fn dir_has_package(dir: &Path, name: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut subdirs = Vec::new();
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_file()
            && e.file_name() == "Cargo.toml"
            && std::fs::read(e.path()).is_ok_and(|b| declares(&b, name))
        {
            return true;
        }
        if ft.is_dir() && !skipped_dir(&e.file_name()) {
            subdirs.push(e.path());
        }
    }
    subdirs.iter().any(|d| dir_has_package(d, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(name: &str, repo: &str, reference: Option<&str>) -> Source {
        Source::Git {
            name: name.into(),
            repo: repo.into(),
            reference: reference.map(String::from),
        }
    }

    #[test]
    fn splits_repo_ref_and_arguments() {
        let p = split("x", "scx_rusty@git:/src/scx#v1.0:-u 100")
            .unwrap()
            .unwrap();
        assert_eq!(p.source, git("scx_rusty", "/src/scx", Some("v1.0")));
        assert_eq!(p.tail, ":-u 100");
        let p = split("x", "scx_rusty@git:/src/scx").unwrap().unwrap();
        assert_eq!(p.source, git("scx_rusty", "/src/scx", None));
        let p = split("x", "s@git:https://h.example/scx.git:-v")
            .unwrap()
            .unwrap();
        assert_eq!(p.source, git("s", "https://h.example/scx.git", None));
        assert_eq!(p.tail, ":-v");
        let p = split("x", "s@path:/w/scx:-v").unwrap().unwrap();
        assert_eq!(
            p.source,
            Source::Tree {
                name: "s".into(),
                dir: "/w/scx".into()
            }
        );
        assert!(split("x", "scx_rusty@1.1.4").unwrap().is_none());
        assert!(split("x", "s@git:#v1").is_err());
        assert!(split("x", "s@git:/r#").is_err());
        assert!(split("x", "s@path:").is_err());
    }

    #[test]
    fn at_ref_inserts_the_ref_before_the_arguments() {
        assert_eq!(
            at_ref("scx_rusty@git:/src/scx:-u 100", "abc").unwrap(),
            "scx_rusty@git:/src/scx#abc:-u 100"
        );
        assert!(at_ref("scx_rusty@git:/src/scx#v1", "abc").is_err());
        assert!(at_ref("scx_rusty", "abc").is_err());
    }

    #[test]
    fn finds_packages_in_a_workspace_but_not_in_target() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("scheds/rust/scx_a");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("Cargo.toml"), "[package]\nname = \"scx_a\"\n").unwrap();
        let t = d.path().join("target/x");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("Cargo.toml"), "[package]\nname = \"scx_b\"\n").unwrap();
        assert!(dir_has_package(d.path(), "scx_a"));
        assert!(!dir_has_package(d.path(), "scx_b"));
    }
}
