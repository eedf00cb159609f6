//! Scheduler spec grammar (see docs/schedulers.md):
//!
//! ```text
//! SPEC    := SOURCE [ ":" ARGS ]
//! SOURCE  := "eevdf"                      the kernel's own scheduler, no sched_ext
//!          | "kernel:" TOOL               built from that kernel's tools/sched_ext
//!          | "cargo:" CRATE [ "@" VER ]   any crate from crates.io (not only the known ones)
//!          | NAME [ "@" VER ]             a known scx crate, or a binary on PATH
//!          | PATH                         contains a '/': an ELF executable on the host
//!          | NAME "@git:" REPO [ "#" REF ]  package NAME built from a ref (HEAD) of a git repository
//!          | NAME "@path:" DIR            package NAME built from a working tree
//! ARGS    := words split like a POSIX shell does (quotes, backslashes), so commas and
//!            colons inside ARGS are literal: `scx_layered:--spec "a,b:c"`.
//! ```
//!
//! Only the first ':' after SOURCE separates the arguments, which is why paths containing ':'
//! are not accepted (use a symlink).

use super::SchedError;
use std::path::PathBuf;

/// The schedulers of the kernel tree's `tools/sched_ext` (6.12's `c-sched-targets`).
pub const KERNEL_TOOLS: &[&str] = &["scx_simple", "scx_qmap", "scx_central", "scx_flatcg"];

/// scx schedulers published on crates.io that ktstr knows by name, with the version used when
/// the spec names none. Pinned (not "latest") so a cell means the same binary on every machine;
/// the scx crates are released in lockstep, so one version fits all of them.
pub const KNOWN_CRATES: &[&str] = &[
    "scx_bpfland",
    "scx_cosmos",
    "scx_flash",
    "scx_lavd",
    "scx_layered",
    "scx_p2dq",
    "scx_rlfifo",
    "scx_rustland",
    "scx_rusty",
    "scx_tickless",
];
pub const DEFAULT_CRATE_VERSION: &str = "1.1.4";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Eevdf,
    /// A scheduler from the kernel's `tools/sched_ext`.
    KernelTool(String),
    /// A crate: `explicit` for `cargo:NAME`, which also allows names outside [`KNOWN_CRATES`].
    Crate {
        name: String,
        version: Option<String>,
        explicit: bool,
    },
    /// A file on the host.
    Path(PathBuf),
    /// Package `name` of the cargo workspace in a git repository (a path or URL), built from
    /// `reference` (HEAD when `None`).
    Git {
        name: String,
        repo: String,
        reference: Option<String>,
    },
    /// Package `name` of the cargo workspace in the directory `dir`, built as it is.
    Tree {
        name: String,
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedSpec {
    pub source: Source,
    pub args: Vec<String>,
}

impl Source {
    /// The package a from-source spec builds (empty for the other sources).
    fn display_name_of_package(&self) -> &str {
        match self {
            Source::Git { name, .. } | Source::Tree { name, .. } => name,
            _ => "",
        }
    }
}

impl SchedSpec {
    /// The name the guest and the report show: `eevdf`, `kernel:scx_simple`, `scx_rusty`, or the
    /// file name of a path.
    pub fn display_name(&self) -> String {
        match &self.source {
            Source::Eevdf => "eevdf".into(),
            Source::KernelTool(t) => format!("kernel:{t}"),
            Source::Crate { name, .. } | Source::Git { name, .. } | Source::Tree { name, .. } => {
                name.clone()
            }
            Source::Path(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

pub(super) fn bad(spec: &str, msg: impl Into<String>) -> SchedError {
    SchedError::BadSpec {
        spec: spec.to_string(),
        msg: msg.into(),
    }
}

/// Parses the grammar only; it does not look at the file system (see `super::validate_spec`).
pub fn parse(spec: &str) -> Result<SchedSpec, SchedError> {
    let s = spec.trim();
    if s.is_empty() {
        return Err(bad(
            spec,
            "empty; use `eevdf`, `kernel:scx_simple`, `scx_rusty[@1.1.4]` or a path",
        ));
    }
    if let Some(parts) = super::from_source::split(spec, s)? {
        let name = parts.source.display_name_of_package();
        check_name(spec, name)?;
        let args = match parts.tail.strip_prefix(':') {
            Some(a) => parse_args(spec, a)?,
            None => Vec::new(),
        };
        return Ok(SchedSpec {
            source: parts.source,
            args,
        });
    }
    let (prefix, rest) = if let Some(r) = s.strip_prefix("kernel:") {
        ("kernel", r)
    } else if let Some(r) = s.strip_prefix("cargo:") {
        ("cargo", r)
    } else {
        ("", s)
    };
    let (head, args) = match rest.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (rest, None),
    };
    let args = match args {
        None => Vec::new(),
        Some(a) => parse_args(spec, a)?,
    };
    if head.is_empty() {
        return Err(bad(spec, "no scheduler name before the arguments"));
    }
    let source = match prefix {
        "kernel" => {
            if head.contains('@') {
                return Err(bad(
                    spec,
                    "kernel:NAME takes no @VERSION: it is always built from that kernel's own tree",
                ));
            }
            check_name(spec, head)?;
            Source::KernelTool(head.to_string())
        }
        "cargo" => {
            let (name, version) = split_version(spec, head)?;
            if version.is_none() {
                return Err(bad(
                    spec,
                    "cargo:NAME needs an exact version, e.g. cargo:scx_rusty@1.1.4",
                ));
            }
            Source::Crate {
                name,
                version,
                explicit: true,
            }
        }
        _ if head.contains('/') => Source::Path(PathBuf::from(head)),
        _ if head == "eevdf" => {
            if !args.is_empty() {
                return Err(bad(
                    spec,
                    "eevdf is the kernel's built-in scheduler and takes no arguments",
                ));
            }
            Source::Eevdf
        }
        _ => {
            let (name, version) = split_version(spec, head)?;
            Source::Crate {
                name,
                version,
                explicit: false,
            }
        }
    };
    Ok(SchedSpec { source, args })
}

fn parse_args(spec: &str, a: &str) -> Result<Vec<String>, SchedError> {
    if a.trim().is_empty() {
        return Err(bad(
            spec,
            "empty argument list after ':'; drop the ':' or add arguments like `:--slice-us=5000`",
        ));
    }
    let words = shlex::split(a).ok_or_else(|| {
        bad(spec, "unbalanced quote or trailing backslash in the arguments (they are split like a shell command line)")
    })?;
    if words.iter().any(|w| w.contains('\0')) {
        return Err(bad(spec, "NUL byte in the arguments"));
    }
    Ok(words)
}

/// `NAME@VER` -> (NAME, Some(VER)). VER is an exact crate version (`1.1.4`, `1.2.0-rc.1`): a
/// requirement like `^1` would make the cache key mean different binaries over time.
fn split_version(spec: &str, head: &str) -> Result<(String, Option<String>), SchedError> {
    let (name, version) = match head.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (head, None),
    };
    check_name(spec, name)?;
    if let Some(v) = version {
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b));
        if !ok {
            return Err(bad(
                spec,
                format!("version {v:?} is not an exact MAJOR.MINOR.PATCH version like 1.1.4"),
            ));
        }
    }
    Ok((name.to_string(), version.map(String::from)))
}

/// Crate and tool names: what crates.io allows (ASCII letters, digits, '_' and '-').
fn check_name(spec: &str, name: &str) -> Result<(), SchedError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(bad(
            spec,
            format!(
                "{name:?} is not a scheduler name (letters, digits, '_', '-'; a path needs a '/', e.g. ./{name})"
            ),
        ))
    }
}

/// The closest known names to `name`, best first, at most 3. Compared without the common
/// `kernel:` and `scx_` prefixes, which would otherwise make every scx name look close.
pub fn suggestions(name: &str) -> Vec<String> {
    fn core(s: &str) -> &str {
        let s = s.strip_prefix("kernel:").unwrap_or(s);
        s.strip_prefix("scx_").unwrap_or(s)
    }
    let mut cands: Vec<(f64, String)> = KNOWN_CRATES
        .iter()
        .map(|c| c.to_string())
        .chain(KERNEL_TOOLS.iter().map(|t| format!("kernel:{t}")))
        .chain(std::iter::once("eevdf".to_string()))
        .map(|c| (strsim::jaro_winkler(core(name), core(&c)), c))
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let best = cands.first().map_or(0.0, |c| c.0);
    cands
        .into_iter()
        .take_while(|(s, _)| *s >= best - 0.08)
        .take(3)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_src(name: &str, version: Option<&str>) -> Source {
        Source::Crate {
            name: name.into(),
            version: version.map(String::from),
            explicit: false,
        }
    }

    #[test]
    fn parses_each_source() {
        assert_eq!(parse("eevdf").unwrap().source, Source::Eevdf);
        assert_eq!(
            parse("kernel:scx_qmap").unwrap().source,
            Source::KernelTool("scx_qmap".into())
        );
        assert_eq!(
            parse("scx_rusty").unwrap().source,
            crate_src("scx_rusty", None)
        );
        assert_eq!(
            parse("scx_rusty@1.1.4").unwrap().source,
            crate_src("scx_rusty", Some("1.1.4"))
        );
        assert_eq!(
            parse("./bin/s").unwrap().source,
            Source::Path("./bin/s".into())
        );
        assert_eq!(
            parse("cargo:scx_foo@0.2.0-rc.1").unwrap().source,
            Source::Crate {
                name: "scx_foo".into(),
                version: Some("0.2.0-rc.1".into()),
                explicit: true
            }
        );
    }

    #[test]
    fn args_split_like_a_shell_and_keep_commas_and_colons() {
        let s = parse("scx_rusty@1.1.4:--slice-us=5000 -v").unwrap();
        assert_eq!(s.args, ["--slice-us=5000", "-v"]);
        let s = parse(r#"kernel:scx_qmap:-e 100 --x "a,b:c d""#).unwrap();
        assert_eq!(s.source, Source::KernelTool("scx_qmap".into()));
        assert_eq!(s.args, ["-e", "100", "--x", "a,b:c d"]);
        let s = parse("/opt/s:--k=v:w").unwrap();
        assert_eq!(s.source, Source::Path("/opt/s".into()));
        assert_eq!(s.args, ["--k=v:w"]);
    }

    #[test]
    fn rejects_malformed() {
        for bad_spec in [
            "",
            "scx_rusty:",
            "scx_rusty:  ",
            "scx_rusty:\"--x",
            "eevdf:-v",
            "scx_rusty@1.1",
            "scx_rusty@^1.1.4",
            "scx_rusty@",
            "kernel:scx_simple@1.0.0",
            "kernel:",
            "cargo:scx_rusty",
            ":-v",
            "scx rusty",
            "9lives",
        ] {
            let e = parse(bad_spec).expect_err(bad_spec);
            assert!(matches!(e, SchedError::BadSpec { .. }), "{bad_spec}: {e}");
            assert!(e.is_bad_input());
        }
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(suggestions("scx_rustyy")[0], "scx_rusty");
        assert_eq!(suggestions("scx_simpel")[0], "kernel:scx_simple");
        assert_eq!(suggestions("scx_bpflnd")[0], "scx_bpfland");
        assert!(suggestions("zzzzzz").is_empty());
        assert_eq!(suggestions("scx_simpel"), ["kernel:scx_simple"]);
        assert_eq!(suggestions("scx_lavdd"), ["scx_lavd"]);
    }

    #[test]
    fn display_names() {
        assert_eq!(
            parse("kernel:scx_simple:-v").unwrap().display_name(),
            "kernel:scx_simple"
        );
        assert_eq!(parse("/x/y/my_sched").unwrap().display_name(), "my_sched");
        assert_eq!(parse("scx_lavd@1.1.4").unwrap().display_name(), "scx_lavd");
    }
}
