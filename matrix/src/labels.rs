//! Short column labels: a column named by a long kernel spec (`git:/path/to/linux#<40 hex>`)
//! would make every table wider than a screen, so renderings show `linux#5edbb0c` and list the
//! full spec once in a legend. Labels stay unique: a clash falls back to a longer form.

/// Kernel specs longer than this after abbreviation are cut in the middle.
const MAX_KERNEL_LABEL: usize = 28;

fn is_hex_sha(s: &str) -> bool {
    s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The last path component of `p`, without a trailing `/` or `.git`.
fn base_name(p: &str) -> &str {
    let p = p.trim_end_matches('/');
    let name = p.rsplit(['/', ':']).next().unwrap_or(p);
    name.strip_suffix(".git").unwrap_or(name)
}

fn cut_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let head: String = s.chars().take(keep / 2).collect();
    let tail: String = s.chars().skip(n - (keep - keep / 2)).collect();
    format!("{head}…{tail}")
}

/// `git:/path/to/linux#<sha>` -> `linux#<sha[..sha_len]>`; `path:/src/linux` -> `linux`;
/// `image:/boot/vmlinuz-6.12` -> `vmlinuz-6.12`; versions stay as they are.
fn short_kernel(kernel: &str, sha_len: usize) -> String {
    let short = if let Some(rest) = kernel.strip_prefix("git:") {
        let (repo, reference) = rest.rsplit_once('#').unwrap_or((rest, ""));
        let reference = if is_hex_sha(reference) {
            &reference[..sha_len.min(reference.len())]
        } else {
            reference
        };
        if reference.is_empty() {
            base_name(repo).to_string()
        } else {
            format!("{}#{reference}", base_name(repo))
        }
    } else if let Some(dir) = kernel.strip_prefix("path:") {
        base_name(dir).to_string()
    } else if let Some(file) = kernel.strip_prefix("image:") {
        base_name(file).to_string()
    } else {
        kernel.to_string()
    };
    cut_middle(&short, MAX_KERNEL_LABEL)
}

/// The label of a column id `[a:|b:]KERNEL/CONFIGS` whose kernel part is `kernel`.
fn short_id(id: &str, kernel: &str, sha_len: usize) -> String {
    match id.find(kernel) {
        Some(at) => format!(
            "{}{}{}",
            &id[..at],
            short_kernel(kernel, sha_len),
            &id[at + kernel.len()..]
        ),
        None => id.to_string(),
    }
}

/// Short labels for columns given as `(id, kernel spec)`, in the same order. Unique whenever the
/// ids are: a clash is retried with 12 hex digits, then the full id is used.
pub fn abbreviate(columns: &[(&str, &str)]) -> Vec<String> {
    let mut labels: Vec<String> = columns.iter().map(|(i, k)| short_id(i, k, 7)).collect();
    for (sha_len, full) in [(12, false), (0, true)] {
        let clashing: Vec<usize> = (0..labels.len())
            .filter(|&i| labels.iter().filter(|l| **l == labels[i]).count() > 1)
            .collect();
        for i in clashing {
            let (id, kernel) = columns[i];
            labels[i] = if full {
                id.to_string()
            } else {
                short_id(id, kernel, sha_len)
            };
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "5edbb0c0123456789abcdef0123456789abcdef0";

    #[test]
    fn a_git_spec_keeps_the_repo_name_and_seven_hex_digits() {
        let id = format!("git:/path/to/linux#{SHA}/sched_ext");
        let kernel = format!("git:/path/to/linux#{SHA}");
        assert_eq!(abbreviate(&[(&id, &kernel)]), ["linux#5edbb0c/sched_ext"]);
        let url = "git:https://git.kernel.org/pub/scm/linux/kernel/git/tj/sched_ext.git#for-6.13";
        assert_eq!(
            abbreviate(&[(&format!("b:{url}/sched_ext"), url)]),
            ["b:sched_ext#for-6.13/sched_ext"]
        );
    }

    #[test]
    fn paths_images_and_versions() {
        assert_eq!(
            abbreviate(&[
                ("path:/home/me/src/linux/x", "path:/home/me/src/linux"),
                ("image:/boot/vmlinuz-6.12/x", "image:/boot/vmlinuz-6.12"),
                ("6.12/sched_ext", "6.12"),
            ]),
            ["linux/x", "vmlinuz-6.12/x", "6.12/sched_ext"]
        );
    }

    #[test]
    fn clashing_labels_get_longer_until_unique() {
        let a = format!("git:/a/linux#{SHA}");
        let b = format!("git:/b/linux#{}", SHA.replace("0123", "9999"));
        let c = format!("git:/c/linux#{SHA}");
        let ids = [format!("{a}/x"), format!("{b}/x"), format!("{c}/x")];
        let labels = abbreviate(&[(&ids[0], &a), (&ids[1], &b), (&ids[2], &c)]);
        // b differs from a within 12 digits; a and c share every digit, so they stay full.
        assert_eq!(labels[1], "linux#5edbb0c99994/x");
        assert_eq!(labels[0], ids[0]);
        assert_eq!(labels[2], ids[2]);
    }

    #[test]
    fn long_names_are_cut_in_the_middle() {
        let k = "path:/src/a-very-long-kernel-tree-name-that-goes-on-and-on";
        let label = &abbreviate(&[(&format!("{k}/x"), k)])[0];
        assert!(label.chars().count() <= MAX_KERNEL_LABEL + 2, "{label}");
        assert!(
            label.starts_with("a-very") && label.ends_with("on-and-on/x"),
            "{label}"
        );
    }
}
