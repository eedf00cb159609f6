//! Parsing of kernel specs (`6.12`, `path:DIR`, `git:REPO#REF`, ...) and config items
//! (`sched_ext`, `CONFIG_FOO=y`). Pure functions: everything here runs before any expensive work.

use super::KernelError;
use std::path::{Path, PathBuf};

/// What the user asked for with `--kernel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// `6.12` (any 6.12.x) or `6.12.117` (exactly that release).
    Version {
        major: u32,
        minor: u32,
        patch: Option<u32>,
    },
    /// `path:DIR`: a local source tree.
    Path(PathBuf),
    /// `tar:FILE`: a source tarball (.tar, .tar.gz, .tar.xz, .tar.zst).
    Tar(PathBuf),
    /// `git:REPO#REF`: a git repository (local path or URL) at REF.
    Git { repo: String, reference: String },
    /// `image:FILE` (or a bare existing file): a prebuilt image, no build.
    Image(PathBuf),
}

impl KernelSpec {
    pub fn parse(spec: &str) -> Result<Self, KernelError> {
        let bad = |why: &str| KernelError::BadSpec {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let spec_t = spec.trim();
        if spec_t.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = spec_t.strip_prefix("path:") {
            return non_empty(rest, "path:DIR needs a directory").map(|p| Self::Path(p.into()));
        }
        if let Some(rest) = spec_t.strip_prefix("tar:") {
            return non_empty(rest, "tar:FILE needs a tarball").map(|p| Self::Tar(p.into()));
        }
        if let Some(rest) = spec_t.strip_prefix("image:") {
            return non_empty(rest, "image:FILE needs a file").map(|p| Self::Image(p.into()));
        }
        if let Some(rest) = spec_t.strip_prefix("git:") {
            // The last '#' separates the ref: URLs may not contain '#' anyway.
            let Some((repo, reference)) = rest.rsplit_once('#') else {
                return Err(bad(
                    "git: specs are git:REPO#REF, e.g. git:/src/linux#v6.12",
                ));
            };
            if repo.is_empty() || reference.is_empty() {
                return Err(bad("git: specs are git:REPO#REF with both parts non-empty"));
            }
            return Ok(Self::Git {
                repo: repo.to_string(),
                reference: reference.to_string(),
            });
        }
        if let Some(v) = parse_version(spec_t) {
            return Ok(v);
        }
        // The CLI always accepted a path to an image; keep that working.
        if Path::new(spec_t).is_file() {
            return Ok(Self::Image(spec_t.into()));
        }
        Err(bad(
            "expected a version (6.12, 6.12.117), path:DIR, tar:FILE, git:REPO#REF or image:FILE",
        ))
    }

    pub fn needs_build(&self) -> bool {
        !matches!(self, Self::Image(_))
    }
}

fn non_empty(s: &str, why: &str) -> Result<String, KernelError> {
    if s.is_empty() {
        Err(KernelError::BadSpec {
            spec: s.to_string(),
            why: why.to_string(),
        })
    } else {
        Ok(s.to_string())
    }
}

fn parse_version(s: &str) -> Option<KernelSpec> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let nums: Option<Vec<u32>> = parts
        .iter()
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 4 {
                p.parse().ok()
            } else {
                None
            }
        })
        .collect();
    let nums = nums?;
    Some(KernelSpec::Version {
        major: nums[0],
        minor: nums[1],
        patch: nums.get(2).copied(),
    })
}

/// One requested option value, as written in a fragment or inline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigItem {
    /// Without the CONFIG_ prefix.
    pub name: String,
    /// `y`, `m`, `n`, a number, or a quoted string (quotes kept).
    pub value: String,
    /// Where it came from (`fragment base:12`, `inline`), for error messages.
    pub origin: String,
}

impl ConfigItem {
    /// The line as it appears in a .config.
    pub fn config_line(&self) -> String {
        if self.value == "n" {
            format!("# CONFIG_{} is not set", self.name)
        } else {
            format!("CONFIG_{}={}", self.name, self.value)
        }
    }
}

/// One element of `--config`: a named fragment with its parsed items, or an inline item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigPart {
    /// Fragment name, or `inline`.
    pub name: String,
    /// The fragment file's text (inline: the item itself); hashed into the recipe.
    pub text: String,
    pub items: Vec<ConfigItem>,
}

/// Parses one `.config`-style line. `Ok(None)` for blank lines and comments.
pub fn parse_config_line(line: &str, origin: &str) -> Result<Option<ConfigItem>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix('#') {
        // `# CONFIG_FOO is not set` is the .config spelling of =n; other comments are ignored.
        let rest = rest.trim();
        if let Some(name) = rest
            .strip_prefix("CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            check_name(name)?;
            return Ok(Some(ConfigItem {
                name: name.to_string(),
                value: "n".into(),
                origin: origin.into(),
            }));
        }
        return Ok(None);
    }
    let Some((lhs, value)) = line.split_once('=') else {
        return Err(format!("`{line}` is not CONFIG_NAME=VALUE"));
    };
    let Some(name) = lhs.trim().strip_prefix("CONFIG_") else {
        return Err(format!("`{line}`: the option must start with CONFIG_"));
    };
    check_name(name)?;
    let value = value.trim();
    // An inline item is one argument and may hold a newline; written into .config it would add
    // lines (options) nobody asked for.
    if value.chars().any(char::is_control) {
        return Err(format!(
            "`{}`: the value holds a control character (a newline?); give one line",
            line.escape_debug()
        ));
    }
    let ok = matches!(value, "y" | "m" | "n")
        || is_number(value)
        || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"'));
    if !ok {
        return Err(format!(
            "`{line}`: the value must be y, m, n, a number or a \"quoted string\""
        ));
    }
    Ok(Some(ConfigItem {
        name: name.to_string(),
        value: value.to_string(),
        origin: origin.into(),
    }))
}

fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "`CONFIG_{name}`: option names are upper case letters, digits and _"
        ))
    }
}

fn is_number(v: &str) -> bool {
    let d = v.strip_prefix('-').unwrap_or(v);
    if let Some(hex) = d.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// The directory holding named fragments: `KTSTR_CONFIGS_DIR`, else `kernel-configs/` next to the
/// workspace this binary was built from, else next to the executable (installed layouts).
pub fn fragments_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KTSTR_CONFIGS_DIR") {
        return PathBuf::from(dir);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-configs");
    if let Ok(dir) = std::fs::canonicalize(&built) {
        return dir;
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for cand in [
            dir.join("kernel-configs"),
            dir.join("../share/ktstr/kernel-configs"),
        ] {
            if cand.is_dir() {
                return cand;
            }
        }
    }
    built
}

/// Names of the available fragments, sorted.
pub fn fragment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The fragment every built kernel gets first.
pub const BASE: &str = "base";

/// Parses `--config` values (each may be a comma-separated list) into parts, in order.
/// Unknown fragments and malformed items are errors here, before any work.
pub fn parse_configs(configs: &[String], dir: &Path) -> Result<Vec<ConfigPart>, KernelError> {
    let mut parts = Vec::new();
    // `base` (what the VM and the guest agent need) always comes first, unless listed explicitly.
    let listed_base = configs
        .iter()
        .flat_map(|c| c.split(','))
        .any(|i| i.trim() == BASE);
    let implicit = (!listed_base && dir.join(BASE).is_file()).then(|| BASE.to_string());
    for item in implicit
        .iter()
        .map(String::as_str)
        .chain(configs.iter().flat_map(|c| c.split(',')))
    {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if item.starts_with("CONFIG_") || item.contains('=') {
            let parsed =
                parse_config_line(item, "inline").map_err(|why| KernelError::BadConfig {
                    item: item.to_string(),
                    why,
                })?;
            let Some(parsed) = parsed else { continue };
            parts.push(ConfigPart {
                name: "inline".into(),
                text: item.to_string(),
                items: vec![parsed],
            });
            continue;
        }
        let path = dir.join(item);
        let valid_name = item
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name || !path.is_file() {
            let names = fragment_names(dir);
            let close: Vec<&String> = names
                .iter()
                .filter(|n| strsim::normalized_damerau_levenshtein(n, item) >= 0.5)
                .collect();
            let hint = match close.first() {
                Some(c) => format!("did you mean `{c}`? "),
                None => String::new(),
            };
            return Err(KernelError::BadConfig {
                item: item.to_string(),
                why: format!(
                    "no such fragment in {}; {hint}available: {}; inline items look like CONFIG_FOO=y",
                    dir.display(),
                    names.join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| KernelError::Io {
            what: format!("reading fragment {}", path.display()),
            source: e,
        })?;
        let mut items = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let origin = format!("fragment {item}:{}", n + 1);
            match parse_config_line(line, &origin) {
                Ok(Some(i)) => items.push(i),
                Ok(None) => {}
                Err(why) => {
                    return Err(KernelError::BadConfig { item: origin, why });
                }
            }
        }
        parts.push(ConfigPart {
            name: item.to_string(),
            text,
            items,
        });
    }
    Ok(parts)
}

/// The requested options after "later wins": one item per name, in first-seen order.
pub fn effective_items(parts: &[ConfigPart]) -> Vec<ConfigItem> {
    let mut out: Vec<ConfigItem> = Vec::new();
    for item in parts.iter().flat_map(|p| &p.items) {
        match out.iter_mut().find(|o| o.name == item.name) {
            Some(o) => *o = item.clone(),
            None => out.push(item.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_prefixes() {
        assert_eq!(
            KernelSpec::parse("6.12").unwrap(),
            KernelSpec::Version {
                major: 6,
                minor: 12,
                patch: None
            }
        );
        assert_eq!(
            KernelSpec::parse("6.12.117").unwrap(),
            KernelSpec::Version {
                major: 6,
                minor: 12,
                patch: Some(117)
            }
        );
        assert_eq!(
            KernelSpec::parse("git:/src/linux#v6.12").unwrap(),
            KernelSpec::Git {
                repo: "/src/linux".into(),
                reference: "v6.12".into()
            }
        );
        assert_eq!(
            KernelSpec::parse("path:/x").unwrap(),
            KernelSpec::Path("/x".into())
        );
        assert_eq!(
            KernelSpec::parse("tar:/x.tar").unwrap(),
            KernelSpec::Tar("/x.tar".into())
        );
        assert!(KernelSpec::parse("6.x").is_err());
        assert!(KernelSpec::parse("git:/src/linux").is_err());
        assert!(KernelSpec::parse("/definitely/not/here").is_err());
    }

    #[test]
    fn config_lines() {
        let ok = |l: &str| parse_config_line(l, "t").unwrap().unwrap();
        assert_eq!(ok("CONFIG_HZ=1000").value, "1000");
        assert_eq!(ok("CONFIG_X=\"a b\"").value, "\"a b\"");
        assert_eq!(ok("# CONFIG_X is not set").value, "n");
        assert_eq!(ok("CONFIG_P=-1").value, "-1");
        assert!(parse_config_line("# a comment", "t").unwrap().is_none());
        assert!(parse_config_line("CONFIG_X=maybe", "t").is_err());
        assert!(parse_config_line("FOO=y", "t").is_err());
        assert!(parse_config_line("CONFIG_foo=y", "t").is_err());
    }

    /// An inline item whose quoted value held a newline was accepted and became two lines of the
    /// kernel's .config (the config_lines fuzz target checks every written item is one line).
    #[test]
    fn a_value_cannot_smuggle_a_second_line() {
        let item = "CONFIG_CMDLINE=\"quiet\nCONFIG_MODULES=y\"";
        let err = parse_config_line(item, "inline").unwrap_err();
        assert!(err.contains("control character"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        assert!(parse_configs(&[item.into()], dir.path()).is_err());
    }

    #[test]
    fn fragments_and_suggestions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("steal-time"), "CONFIG_A=y\n").unwrap();
        std::fs::write(dir.path().join("base"), "CONFIG_A=n\nCONFIG_B=m\n").unwrap();
        let parts =
            parse_configs(&["base,steal-time".into(), "CONFIG_B=y".into()], dir.path()).unwrap();
        let eff = effective_items(&parts);
        assert_eq!(eff.len(), 2);
        assert_eq!(eff[0].value, "y", "later fragment wins");
        assert_eq!(eff[1].value, "y", "inline after fragment wins");
        let implicit = parse_configs(&["steal-time".into()], dir.path()).unwrap();
        let names: Vec<&str> = implicit.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base", "steal-time"], "base comes first implicitly");
        let err = parse_configs(&["steal-tim".into()], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `steal-time`"), "{err}");
        assert!(parse_configs(&["CONFIG_X=bogus".into()], dir.path()).is_err());
    }
}
