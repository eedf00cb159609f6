//! Configure: tinyconfig (or a user .config) + fragments in order (later wins) + olddefconfig, then
//! verify that every requested option kept its value. Kconfig silently drops options whose
//! dependencies are unmet; we name each dropped option and, where the Kconfig files tell, why.

use super::make;
use super::spec::{ConfigPart, effective_items};
use super::{KernelError, io};
use crate::progress::Progress;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A configured (not yet built) O= directory.
#[derive(Debug)]
pub struct Configured {
    pub build_dir: PathBuf,
    /// The final .config reduced to its option lines (no header/comments): the key's input.
    pub normalized: String,
    pub version: String,
    /// Owns the scratch directory until the build takes it over.
    tmp: crate::scratch::ScratchDir,
}

/// Prefix of a configure run's scratch dir (in `kernels/builds`).
pub const CFG_PREFIX: &str = ".cfg-";

impl Configured {
    /// Renames the configured directory to `dest` (the build's O= tree); on failure it is
    /// removed with this value.
    pub fn install_as(self, dest: &Path) -> std::io::Result<()> {
        self.tmp.install_as(dest)
    }
    pub fn discard(self) {}
}

pub fn configure(
    tree: &Path,
    base: Option<&Path>,
    parts: &[ConfigPart],
    progress: &mut Progress,
) -> Result<Configured, KernelError> {
    let builds = super::cache::builds_root();
    std::fs::create_dir_all(&builds).map_err(io(format!("creating {}", builds.display())))?;
    // What killed configure runs left goes first.
    crate::scratch::sweep(&builds, &[CFG_PREFIX]);
    let tmp = crate::scratch::ScratchDir::new_in(&builds, CFG_PREFIX)
        .map_err(io("creating a temp build dir"))?;
    let dir = tmp.path().to_path_buf();
    let log = dir.join("configure.log");
    let config = dir.join(".config");
    match base {
        Some(b) => {
            std::fs::copy(b, &config).map_err(io(format!("copying {}", b.display())))?;
        }
        None => {
            progress.phase("configure: tinyconfig");
            make::run_make(
                tree,
                &dir,
                &["tinyconfig"],
                1,
                &log,
                progress,
                "make tinyconfig",
            )
            .map_err(|e| keep_log(e, &tmp, &builds))?;
        }
    }
    let wanted = effective_items(parts);
    let text = std::fs::read_to_string(&config).map_err(io("reading .config"))?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for item in &wanted {
        let set = format!("CONFIG_{}=", item.name);
        let unset = format!("# CONFIG_{} is not set", item.name);
        match lines
            .iter_mut()
            .find(|l| l.starts_with(&set) || **l == unset)
        {
            Some(l) => *l = item.config_line(),
            None => lines.push(item.config_line()),
        }
    }
    std::fs::write(&config, lines.join("\n") + "\n").map_err(io("writing .config"))?;
    progress.phase("configure: olddefconfig");
    make::run_make(
        tree,
        &dir,
        &["olddefconfig"],
        1,
        &log,
        progress,
        "make olddefconfig",
    )
    .map_err(|e| keep_log(e, &tmp, &builds))?;

    let final_text = std::fs::read_to_string(&config).map_err(io("reading the final .config"))?;
    let values = parse_values(&final_text);
    let dropped: Vec<_> = wanted
        .iter()
        .filter(|i| {
            let got = values
                .get(i.name.as_str())
                .map(String::as_str)
                .unwrap_or("n");
            got != i.value
        })
        .collect();
    if !dropped.is_empty() {
        let kconfig = KconfigIndex::new(tree);
        let details: Vec<String> = dropped
            .iter()
            .map(|i| {
                let got = match values.get(i.name.as_str()) {
                    Some(v) if v != "n" => format!("it is {v}"),
                    _ => "it is not set".to_string(),
                };
                format!(
                    "  CONFIG_{}={} ({}): {got}; {}",
                    i.name,
                    i.value,
                    i.origin,
                    kconfig.explain(&i.name, &values)
                )
            })
            .collect();
        return Err(KernelError::Dropped {
            details: details.join("\n"),
        });
    }
    let normalized = normalize(&final_text);
    let mut version = super::source::tree_version(tree).unwrap_or_else(|| "unknown".into());
    if let Some(local) = values.get("LOCALVERSION") {
        version.push_str(local.trim_matches('"'));
    }
    Ok(Configured {
        build_dir: dir,
        normalized,
        version,
        tmp,
    })
}

/// The scratch dir goes with a failed configure, its log must not: it is copied beside it under
/// the same name (`.cfg-XXXX.log`, removed by a sweep once an hour old) and the error names the copy.
fn keep_log(e: KernelError, scratch: &crate::scratch::ScratchDir, builds: &Path) -> KernelError {
    let KernelError::Command {
        what,
        code,
        log,
        tail,
    } = e
    else {
        return e;
    };
    let name = scratch
        .path()
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let kept = builds.join(format!("{name}.log"));
    let log = match std::fs::copy(&log, &kept) {
        Ok(_) => kept,
        Err(_) => log,
    };
    KernelError::Command {
        what,
        code,
        log,
        tail,
    }
}

/// Option lines only, in file order: comments and the header (which names the kernel version and
/// can carry a timestamp) do not change the build.
pub fn normalize(config: &str) -> String {
    config
        .lines()
        .filter(|l| {
            l.starts_with("CONFIG_") || (l.starts_with("# CONFIG_") && l.ends_with(" is not set"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// name (without CONFIG_) -> value, `n` for `is not set`.
pub fn parse_values(config: &str) -> HashMap<String, String> {
    config
        .lines()
        .filter_map(|l| super::spec::parse_config_line(l, "").ok().flatten())
        .map(|i| (i.name, i.value))
        .collect()
}

/// The Kconfig files of a tree, searched only when something was dropped.
struct KconfigIndex {
    tree: PathBuf,
    files: Vec<PathBuf>,
}

impl KconfigIndex {
    fn new(tree: &Path) -> Self {
        let mut files = Vec::new();
        let mut stack = vec![tree.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name();
                let name = name.to_string_lossy();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let rel = p.strip_prefix(tree).unwrap_or(&p);
                    // Other architectures and userspace tools do not define x86 kernel symbols.
                    let skip = name.starts_with('.')
                        || rel.starts_with("Documentation")
                        || rel.starts_with("tools")
                        || (rel.starts_with("arch")
                            && rel.components().count() == 2
                            && name != "x86");
                    if !skip {
                        stack.push(p);
                    }
                } else if name.starts_with("Kconfig") {
                    files.push(p);
                }
            }
        }
        files.sort();
        Self {
            tree: tree.to_path_buf(),
            files,
        }
    }

    /// "Kconfig (file): depends on X && Y; unmet: X is not set" or what is known.
    fn explain(&self, sym: &str, values: &HashMap<String, String>) -> String {
        let header = |l: &str| {
            let t = l.trim();
            t == format!("config {sym}") || t == format!("menuconfig {sym}")
        };
        let mut found = Vec::new();
        for f in &self.files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            // `if X ... endif` blocks add X to the dependencies of every entry inside them.
            let mut ifs: Vec<String> = Vec::new();
            for (n, l) in lines.iter().enumerate() {
                let t = l.trim();
                if let Some(cond) = t.strip_prefix("if ") {
                    ifs.push(cond.trim().to_string());
                } else if t == "endif" {
                    ifs.pop();
                }
                if !header(l) {
                    continue;
                }
                let mut deps = ifs.clone();
                for l in &lines[n + 1..] {
                    let t = l.trim();
                    let first = t.split_whitespace().next().unwrap_or("");
                    if matches!(
                        first,
                        "config"
                            | "menuconfig"
                            | "choice"
                            | "endchoice"
                            | "menu"
                            | "endmenu"
                            | "if"
                            | "endif"
                            | "source"
                            | "comment"
                    ) {
                        break;
                    }
                    if let Some(d) = t.strip_prefix("depends on") {
                        deps.push(d.trim().to_string());
                    }
                }
                let rel = f
                    .strip_prefix(&self.tree)
                    .unwrap_or(f)
                    .display()
                    .to_string();
                found.push((rel, deps));
            }
        }
        if found.is_empty() {
            return format!(
                "no `config {sym}` in this tree's Kconfig files: the option does not exist in this kernel"
            );
        }
        let mut out = Vec::new();
        for (file, deps) in found {
            if deps.is_empty() {
                out.push(format!(
                    "Kconfig ({file}): no `depends on`; it may be a choice member, a value out of range, or need a `select`"
                ));
                continue;
            }
            let expr = deps.join(" && ");
            let unmet: Vec<String> = unmet_symbols(&expr, values);
            let why = if unmet.is_empty() {
                "dependencies look met (check choices and `if` blocks)".to_string()
            } else {
                format!("unmet: {}", unmet.join(", "))
            };
            out.push(format!("Kconfig ({file}): depends on {expr}; {why}"));
        }
        out.join("; ")
    }
}

/// Symbols in a dependency expression whose value is n/absent (negated ones `!X` whose value is set).
fn unmet_symbols(expr: &str, values: &HashMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let sym = &expr[start..i];
            if sym.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let negated = expr[..start].trim_end().ends_with('!');
            let v = values.get(sym).map(String::as_str).unwrap_or("n");
            let desc = if negated {
                (v != "n").then(|| format!("{sym} is {v} (must be off)"))
            } else {
                (v == "n").then(|| format!("{sym} is not set"))
            };
            if let Some(d) = desc
                && !out.contains(&d)
            {
                out.push(d);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmet_dependencies_are_named() {
        let values = parse_values("CONFIG_X86=y\n# CONFIG_PARAVIRT is not set\nCONFIG_SMP=y\n");
        assert_eq!(
            unmet_symbols("PARAVIRT", &values),
            vec!["PARAVIRT is not set"]
        );
        assert_eq!(
            unmet_symbols("X86 && !SMP && (FOO || PARAVIRT)", &values),
            vec![
                "SMP is y (must be off)",
                "FOO is not set",
                "PARAVIRT is not set"
            ]
        );
    }

    #[test]
    fn normalize_drops_header_and_comments() {
        let t = "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.12.117 Kernel Configuration\n#\nCONFIG_A=y\n\n# General setup\n# CONFIG_B is not set\n";
        assert_eq!(normalize(t), "CONFIG_A=y\n# CONFIG_B is not set\n");
    }
}
