//! Scheduler-commit bisection: `--sched NAME@git:REPO` (no `#REF`) with `--good`/`--bad` refs of
//! that repository. The candidates are the same git2 listing as kernel commits
//! ([`super::candidates::commits`]), each a scheduler spec `NAME@git:REPO#SHA`; every step boots
//! one fixed kernel with the candidate as its scheduler.

use super::candidates::{self, Candidate, CandidateError};
use super::step::Evidence;
use crate::sched::{self, Source};

/// The repository of `sched` when it is a scheduler repository without a ref (the spec of a
/// scheduler bisection); `None` for any other scheduler spec.
pub fn repository(sched: &str) -> Option<String> {
    match sched::spec::parse(sched).ok()?.source {
        Source::Git {
            repo,
            reference: None,
            ..
        } => Some(repo),
        _ => None,
    }
}

/// The commits from `good` to `bad` (refs of `sched`'s repository), good first, as scheduler
/// specs.
pub fn commits(
    sched: &str,
    good: &str,
    bad: &str,
    first_parent: bool,
    offline: bool,
) -> Result<Vec<Candidate>, CandidateError> {
    let repo = repository(sched).ok_or_else(|| CandidateError::NotGit {
        which: "good",
        spec: sched.to_string(),
    })?;
    let mut cands = candidates::commits(
        &format!("git:{repo}#{good}"),
        &format!("git:{repo}#{bad}"),
        first_parent,
        offline,
    )?;
    for c in &mut cands {
        c.spec = sched::from_source::at_ref(sched, &c.id).map_err(|e| CandidateError::Ref {
            which: "good",
            spec: sched.to_string(),
            why: e.to_string(),
        })?;
    }
    Ok(cands)
}

/// The scheduler binary's sha256 (a culprit identical to its parent is suspicious) and its build
/// time, from the cache entry the step's resolution left: nothing is built.
pub fn add_sched_facts(ev: &mut Evidence, spec: &str) {
    if let Some(e) = sched::source_build::lookup(&sched::cache::Cache::at_default(), spec) {
        ev.image_sha256 = Some(e.sha256);
        ev.build_s = e.build_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn candidates_are_scheduler_specs_of_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let r = git2::Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let mut parent: Option<git2::Oid> = None;
        for msg in ["a", "b", "c"] {
            std::fs::write(dir.path().join("f"), msg).unwrap();
            let mut idx = r.index().unwrap();
            idx.add_path(Path::new("f")).unwrap();
            let tree = r.find_tree(idx.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit> =
                parent.iter().map(|p| r.find_commit(*p).unwrap()).collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            let id = r.commit(None, &sig, &sig, msg, &tree, &refs).unwrap();
            r.reference(&format!("refs/tags/{msg}"), id, true, "t")
                .unwrap();
            parent = Some(id);
        }
        let p = dir.path().display().to_string();
        let sched = format!("scx_x@git:{p}:-u 100");
        assert_eq!(repository(&sched).as_deref(), Some(p.as_str()));
        assert_eq!(repository(&format!("scx_x@git:{p}#a")), None);
        assert_eq!(repository("scx_rusty"), None);
        let c = commits(&sched, "a", "c", true, true).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[2].spec, format!("scx_x@git:{p}#{}:-u 100", c[2].id));
        let e = commits(&sched, "nope", "c", true, true).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
