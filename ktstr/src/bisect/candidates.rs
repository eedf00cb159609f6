//! The candidates of a bisection, oldest first. Kernel commits: the commits from good to bad, read
//! from the repository with git2 before anything is built, so a wrong ref or a good commit that is
//! not an ancestor of the bad one is bad input, not a failed build an hour later. Kernel releases
//! (or any ordered list of kernel specs): the list as given, ranges expanded.

use crate::kernel::KernelSpec;
use serde::{Deserialize, Serialize};

/// One commit to test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Full sha.
    pub id: String,
    pub subject: String,
    pub author: String,
    /// The kernel spec that builds it: `git:REPO#SHA`.
    pub spec: String,
}

impl Candidate {
    /// `5edbb0c` for a commit, the release (`6.12.111`) for a release — what tables, step
    /// lines and step directory names show.
    pub fn short(&self) -> &str {
        let is_sha = self.id.len() == 40 && self.id.bytes().all(|b| b.is_ascii_hexdigit());
        if is_sha { &self.id[..12] } else { &self.id }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    #[error("--{which} {spec}: not a git kernel spec; give git:REPO#REF (REPO a path or URL)")]
    NotGit { which: &'static str, spec: String },
    #[error("--good and --bad name different repositories ({good} and {bad}); bisect within one")]
    TwoRepos { good: String, bad: String },
    #[error("--{which} {spec}: {why}")]
    Ref {
        which: &'static str,
        spec: String,
        why: String,
    },
    #[error(
        "--good {good} is not an ancestor of --bad {bad}{first_parent}: give a good commit that the bad one contains"
    )]
    NotAncestor {
        good: String,
        bad: String,
        first_parent: &'static str,
    },
    #[error("--good and --bad are the same commit ({0}): there is nothing to bisect")]
    Same(String),
    #[error("--kernels {list}: {why}")]
    List { list: String, why: String },
    #[error("reading the history of {repo}: {why}")]
    History { repo: String, why: String },
}

/// `(repo, ref)` of a `git:` spec.
fn git_parts(which: &'static str, spec: &str) -> Result<(String, String), CandidateError> {
    match KernelSpec::parse(spec) {
        Ok(KernelSpec::Git { repo, reference }) => Ok((repo, reference)),
        _ => Err(CandidateError::NotGit {
            which,
            spec: spec.to_string(),
        }),
    }
}

/// The commits from `good` to `bad` inclusive, oldest first: `good` first, `bad` last. With
/// `first_parent`, only the first-parent chain of `bad` (merges are one candidate each);
/// otherwise every commit reachable from bad and not from good, in topological order.
pub fn commits(
    good: &str,
    bad: &str,
    first_parent: bool,
    offline: bool,
) -> Result<Vec<Candidate>, CandidateError> {
    let (repo_path, good_ref) = git_parts("good", good)?;
    let (bad_repo, bad_ref) = git_parts("bad", bad)?;
    if repo_path != bad_repo {
        return Err(CandidateError::TwoRepos {
            good: repo_path,
            bad: bad_repo,
        });
    }
    let history = |e: git2::Error| CandidateError::History {
        repo: repo_path.clone(),
        why: e.message().to_string(),
    };
    let repo = crate::kernel::source::open_repo(&repo_path, &bad_ref, offline).map_err(|e| {
        CandidateError::Ref {
            which: "bad",
            spec: bad.to_string(),
            why: e.to_string(),
        }
    })?;
    let peel = |which: &'static str, spec: &str, r: &str| {
        repo.revparse_single(r)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
            .map_err(|e| CandidateError::Ref {
                which,
                spec: spec.to_string(),
                why: format!("unknown ref {r:?} ({})", e.message()),
            })
    };
    let good_id = peel("good", good, &good_ref)?;
    let bad_id = peel("bad", bad, &bad_ref)?;
    if good_id == bad_id {
        return Err(CandidateError::Same(good_id.to_string()));
    }
    let not_ancestor = || CandidateError::NotAncestor {
        good: good.to_string(),
        bad: bad.to_string(),
        first_parent: if first_parent {
            " on its first-parent chain"
        } else {
            ""
        },
    };
    if !repo.graph_descendant_of(bad_id, good_id).map_err(history)? {
        return Err(not_ancestor());
    }
    let mut ids = Vec::new();
    if first_parent {
        let mut c = repo.find_commit(bad_id).map_err(history)?;
        while c.id() != good_id {
            ids.push(c.id());
            c = match c.parent(0) {
                Ok(p) => p,
                Err(_) => return Err(not_ancestor()),
            };
        }
        ids.reverse();
    } else {
        let mut walk = repo.revwalk().map_err(history)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
            .map_err(history)?;
        walk.push(bad_id).map_err(history)?;
        walk.hide(good_id).map_err(history)?;
        for id in walk {
            ids.push(id.map_err(history)?);
        }
    }
    let mut out = Vec::with_capacity(ids.len() + 1);
    for id in std::iter::once(good_id).chain(ids) {
        let c = repo.find_commit(id).map_err(history)?;
        out.push(Candidate {
            id: id.to_string(),
            subject: c.summary().ok().flatten().unwrap_or("").to_string(),
            author: c.author().name().unwrap_or("").to_string(),
            spec: format!("git:{repo_path}#{id}"),
        });
    }
    Ok(out)
}

/// An ordered list of kernel specs (releases, ranges expanded by the caller, or any spec), good
/// first and bad last.
pub fn kernel_list(list: &str, specs: &[String]) -> Result<Vec<Candidate>, CandidateError> {
    let err = |why: String| CandidateError::List {
        list: list.to_string(),
        why,
    };
    if specs.len() < 2 {
        return Err(err(format!(
            "{} kernel(s); a bisection needs at least two, the good one first and the bad one last",
            specs.len()
        )));
    }
    let mut out: Vec<Candidate> = Vec::with_capacity(specs.len());
    for spec in specs {
        KernelSpec::parse(spec).map_err(|e| err(e.to_string()))?;
        let id = step_label(spec);
        if out.iter().any(|c| c.id == id) {
            return Err(err(format!("{spec} is listed twice")));
        }
        out.push(Candidate {
            id,
            subject: format!("kernel {spec}"),
            author: String::new(),
            spec: spec.clone(),
        });
    }
    Ok(out)
}

/// A spec as a label fit for a directory name: `6.12.111` stays, `image:/a/bzImage` becomes
/// `image_a_bzImage`.
fn step_label(spec: &str) -> String {
    let mut label = String::new();
    for c in spec.chars() {
        let c = if c.is_ascii_alphanumeric() || ".-".contains(c) {
            c
        } else {
            '_'
        };
        // One separator for a run of them: `image:/tmp` is `image_tmp`.
        if !(c == '_' && label.ends_with('_')) {
            label.push(c);
        }
    }
    let label = label.trim_matches('_');
    let start = label.len().saturating_sub(48);
    label[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A repo with `main`: a - b - m(merge of side) - d, where side branches off a.
    fn repo(dir: &Path) -> (git2::Repository, Vec<git2::Oid>) {
        let r = git2::Repository::init(dir).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let commit = |r: &git2::Repository, msg: &str, file: &str, parents: &[git2::Oid]| {
            std::fs::write(dir.join(file), msg).unwrap();
            let mut idx = r.index().unwrap();
            idx.add_path(Path::new(file)).unwrap();
            let tree = r.find_tree(idx.write_tree().unwrap()).unwrap();
            idx.write().unwrap();
            let parents: Vec<git2::Commit> =
                parents.iter().map(|p| r.find_commit(*p).unwrap()).collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            r.commit(None, &sig, &sig, msg, &tree, &refs).unwrap()
        };
        let a = commit(&r, "a", "f", &[]);
        let b = commit(&r, "b: main work", "f", &[a]);
        let s = commit(&r, "s: side work", "g", &[a]);
        let m = commit(&r, "m: merge side", "h", &[b, s]);
        let d = commit(&r, "d: more", "f", &[m]);
        r.reference("refs/heads/main", d, true, "t").unwrap();
        r.reference("refs/tags/good", a, true, "t").unwrap();
        drop(r);
        (git2::Repository::open(dir).unwrap(), vec![a, b, s, m, d])
    }

    #[test]
    fn first_parent_walks_the_main_line_and_all_includes_side_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (_r, ids) = repo(dir.path());
        let p = dir.path().display().to_string();
        let (good, bad) = (format!("git:{p}#good"), format!("git:{p}#main"));
        let fp = commits(&good, &bad, true, true).unwrap();
        let got: Vec<&str> = fp.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(got, ["a", "b: main work", "m: merge side", "d: more"]);
        assert_eq!(fp[0].id, ids[0].to_string());
        assert_eq!(fp[3].spec, format!("git:{p}#{}", ids[4]));
        let all = commits(&good, &bad, false, true).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].subject, "a");
        assert_eq!(all[4].subject, "d: more");
        assert!(all.iter().any(|c| c.subject == "s: side work"));
    }

    #[test]
    fn a_kernel_list_keeps_its_order_and_refuses_short_or_repeated_lists() {
        let specs: Vec<String> = ["6.12.111", "6.12.115", "image:/tmp/k/bzImage"]
            .map(String::from)
            .to_vec();
        let c = kernel_list("l", &specs).unwrap();
        assert_eq!(c[0].short(), "6.12.111");
        assert_eq!(c[2].spec, "image:/tmp/k/bzImage");
        assert_eq!(c[2].short(), "image_tmp_k_bzImage");
        let e = kernel_list("6.12.111", &specs[..1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least two"), "{e}");
        let twice = vec!["6.12.111".to_string(), "6.12.111".to_string()];
        assert!(
            kernel_list("l", &twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let e = kernel_list("l", &["6.12".into(), "nonsense!".into()]).unwrap_err();
        assert!(e.to_string().contains("nonsense!"), "{e}");
    }

    #[test]
    fn bad_refs_and_order_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let (_r, ids) = repo(dir.path());
        let p = dir.path().display().to_string();
        let e = commits(
            &format!("git:{p}#nope"),
            &format!("git:{p}#main"),
            true,
            true,
        )
        .unwrap_err();
        assert!(
            matches!(e, CandidateError::Ref { which: "good", .. }),
            "{e}"
        );
        // Good after bad.
        let e = commits(
            &format!("git:{p}#main"),
            &format!("git:{p}#good"),
            true,
            true,
        )
        .unwrap_err();
        assert!(matches!(e, CandidateError::NotAncestor { .. }), "{e}");
        // The side commit is an ancestor of main, but not on its first-parent chain.
        let side = format!("git:{p}#{}", ids[2]);
        let e = commits(&side, &format!("git:{p}#main"), true, true).unwrap_err();
        assert!(e.to_string().contains("first-parent"), "{e}");
        assert_eq!(
            commits(&side, &format!("git:{p}#main"), false, true)
                .unwrap()
                .len(),
            4
        );
        let e = commits("6.12", &format!("git:{p}#main"), true, true).unwrap_err();
        assert!(matches!(e, CandidateError::NotGit { .. }), "{e}");
        let e = commits(
            &format!("git:{p}#main"),
            &format!("git:{p}#main"),
            true,
            true,
        )
        .unwrap_err();
        assert!(matches!(e, CandidateError::Same(_)), "{e}");
    }
}
