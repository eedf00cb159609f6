//! `ktstr matrix --emit ENGINE`: the job definition that fans a matrix out over an engine the user
//! already runs (Slurm, Kubernetes, GitHub Actions, Buildkite). ktstr schedules nothing itself:
//! each shard is `ktstr matrix --shard K/N --resume` into its own output directory, and one merge
//! step runs `ktstr merge` over all of them once every shard has ended, whether it passed or not
//! (a failed shard is listed as missing in the merged report; it must not block the merge).

mod buildkite;
mod github;
mod k8s;
mod slurm;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Slurm,
    K8s,
    Github,
    Buildkite,
}

impl Engine {
    pub const ALL: [Engine; 4] = [
        Engine::Slurm,
        Engine::K8s,
        Engine::Github,
        Engine::Buildkite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Slurm => "slurm",
            Engine::K8s => "k8s",
            Engine::Github => "github",
            Engine::Buildkite => "buildkite",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--emit {given}: unknown engine; choose one of: {}", Engine::ALL.map(Engine::name).join(", "))]
pub struct UnknownEngine {
    pub given: String,
}

impl FromStr for Engine {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s || (s == "kubernetes" && *e == Engine::K8s))
            .ok_or_else(|| UnknownEngine {
                given: s.to_string(),
            })
    }
}

/// What every template needs to know about the run.
#[derive(Debug, Clone)]
pub struct Job {
    /// How many shards (N of `--shard K/N`).
    pub shards: u32,
    /// `ktstr matrix` arguments that reproduce the spec (no `--out`, `--shard`, `--resume`).
    pub matrix_args: Vec<String>,
    /// CPUs one shard asks for: the largest topology's vCPUs (a shard boots one VM at a time
    /// when given no more).
    pub cpus: u32,
}

impl Job {
    /// `matrix_args` quoted for a POSIX shell.
    fn shell_args(&self) -> String {
        self.matrix_args
            .iter()
            .map(|a| shlex::try_quote(a).map_or_else(|_| a.replace('\0', ""), |q| q.into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The merge command's shard directories under `root` (a shell glob would also take the
    /// directories of a run with another shard count).
    fn shard_dirs(&self, root: &str) -> String {
        (1..=self.shards)
            .map(|k| format!("{root}/shard-{k}-of-{}", self.shards))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// POSIX shell that merges the shard directories under `root` that hold results into `out`,
/// naming on stderr each that holds none (its shard never stored a cell; the merged report then
/// lists its cells as missing). `root` is put in as given, after the snippet's own text.
fn merge_shell(
    job: &Job,
    ktstr: &str,
    root: &str,
    out: &str,
    escape: impl Fn(&str) -> String,
) -> String {
    let body = escape(&format!(
        "set --; for d in {dirs}; do if [ -f \"$d/results.jsonl\" ]; then set -- \"$@\" \"$d\"; \
         else echo \"merge: $d has no results.jsonl (its shard stored no cell)\" >&2; fi; done; \
         [ $# -gt 0 ] || {{ echo 'merge: no shard stored results' >&2; exit 1; }}; \
         exec {ktstr} merge --out {out} \"$@\"",
        dirs = job.shard_dirs("@ROOT@"),
    ));
    body.replace("@ROOT@", root)
}

/// The job definition for `engine`.
pub fn render(engine: Engine, job: &Job) -> String {
    match engine {
        Engine::Slurm => slurm::render(job),
        Engine::K8s => k8s::render(job),
        Engine::Github => github::render(job),
        Engine::Buildkite => buildkite::render(job),
    }
}
