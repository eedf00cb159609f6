//! kernel.org's `sha256sums.asc`, verified: the clearsigned list is checked with `gpgv` against
//! the Kernel.org checksum autosigner key shipped in `ktstr/keys/kernel.org/` (public facts; see
//! the README there), and only the text inside the signature is used, so a mirror cannot add
//! lines around it. `KTSTR_KERNEL_ORG_KEYRING=FILE` replaces the keyring (tests sign with a key
//! they generate).

use super::{KernelError, io};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Primary-key fingerprint of "Kernel.org checksum autosigner <autosigner@kernel.org>".
pub const AUTOSIGNER_FINGERPRINT: &str = "B8868C80BA62A1FFFAF5FDA9632D3A06589DA6B1";
const AUTOSIGNER_KEY: &[u8] =
    include_bytes!("../../keys/kernel.org/B8868C80BA62A1FFFAF5FDA9632D3A06589DA6B1.asc");
/// gpgv reads two small local files: anything longer is wedged.
const GPGV_TIMEOUT: Duration = Duration::from_secs(30);

/// The verified text of the `sha256sums.asc` at `url`.
pub fn fetch(url: &str) -> Result<String, KernelError> {
    let signed = super::fetch::get_text(url)?;
    verify(signed.as_bytes(), url)
}

/// The `sha256` a verified sums text lists for `file`.
pub fn lookup(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (sum, name) = (it.next()?, it.next()?);
        (name == file && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| sum.to_ascii_lowercase())
    })
}

/// The keyring gpgv checks against (binary OpenPGP packets) and the primary fingerprint a good
/// signature must come from (None for a test keyring: any key in it).
fn keyring() -> Result<(Vec<u8>, Option<&'static str>), String> {
    match std::env::var_os("KTSTR_KERNEL_ORG_KEYRING") {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read KTSTR_KERNEL_ORG_KEYRING={}: {e}",
                    Path::new(&path).display()
                )
            })?;
            Ok((dearmor(&bytes)?, None))
        }
        None => Ok((dearmor(AUTOSIGNER_KEY)?, Some(AUTOSIGNER_FINGERPRINT))),
    }
}

/// gpgv reads binary keyrings only: the armored blocks of `data` decoded (binary data as is).
fn dearmor(data: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let text = match std::str::from_utf8(data) {
        Ok(t) if t.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => t,
        _ => return Ok(data.to_vec()),
    };
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim_end);
    while lines
        .by_ref()
        .any(|l| l == "-----BEGIN PGP PUBLIC KEY BLOCK-----")
    {
        // Armor headers (`Comment: ...`) end at the first blank line.
        let mut b64 = String::new();
        let mut in_headers = true;
        for l in lines.by_ref() {
            if l.starts_with("-----END PGP PUBLIC KEY BLOCK-----") {
                break;
            }
            if in_headers {
                in_headers = !l.is_empty();
                continue;
            }
            // `=XXXX` is the armor's CRC; gpgv checks the packets' own signatures.
            if !l.starts_with('=') {
                b64.push_str(l.trim());
            }
        }
        let packets = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("the keyring's armor is not valid base64: {e}"))?;
        out.extend(packets);
    }
    Ok(out)
}

/// Checks a clearsigned text and returns what the signature covers.
pub fn verify(signed: &[u8], url: &str) -> Result<String, KernelError> {
    let refuse = |why: String| KernelError::UnverifiedSums {
        url: url.into(),
        why,
    };
    let (ring, pinned) = keyring().map_err(refuse)?;
    let dir = tempfile::tempdir().map_err(io("creating a temp dir for gpgv"))?;
    let (ring_path, input, plain) = (
        dir.path().join("kernel.org.gpg"),
        dir.path().join("sha256sums.asc"),
        dir.path().join("sha256sums.txt"),
    );
    std::fs::write(&ring_path, ring).map_err(io("writing the keyring"))?;
    std::fs::write(&input, signed).map_err(io("writing sha256sums.asc"))?;
    let status_path = dir.path().join("status");
    let log_path = dir.path().join("log");
    let file = |p: &Path| std::fs::File::create(p).map_err(io(format!("creating {}", p.display())));
    let mut cmd = Command::new("gpgv");
    cmd.arg("--status-fd")
        .arg("1")
        .arg("--keyring")
        .arg(&ring_path)
        .arg("--output")
        .arg(&plain)
        .arg(&input)
        // gpgv's home must not be the user's: nothing of theirs is trusted or touched.
        .env("GNUPGHOME", dir.path())
        .stdin(Stdio::null())
        .stdout(file(&status_path)?)
        .stderr(file(&log_path)?);
    let ok = run_bounded(&mut cmd, GPGV_TIMEOUT).map_err(|e| match e {
        RunError::Interrupted => KernelError::Interrupted,
        RunError::Spawn(e) => refuse(format!(
            "cannot run gpgv to check its signature ({e}); install it with `apt-get install gpgv`"
        )),
        RunError::TimedOut => refuse(format!(
            "gpgv did not finish within {} s",
            GPGV_TIMEOUT.as_secs()
        )),
    })?;
    let status = std::fs::read_to_string(&status_path).unwrap_or_default();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let signer = good_signer(&status);
    let why = match (ok, &signer, pinned) {
        (true, Some(fpr), Some(want)) if !fpr.eq_ignore_ascii_case(want) => {
            format!("signed by {fpr}, not by the Kernel.org checksum autosigner ({want})")
        }
        (true, Some(_), _) => {
            return std::fs::read_to_string(&plain).map_err(io("reading gpgv's output"));
        }
        _ if status.contains("NODATA") || !signed.starts_with(b"-----BEGIN PGP SIGNED") => {
            "it is not signed (no clearsigned PGP message)".to_string()
        }
        _ if status.contains("NO_PUBKEY") => {
            "it is not signed by a key ktstr trusts (the Kernel.org checksum autosigner)".into()
        }
        _ if status.contains("BADSIG") => "its signature does not match its content".into(),
        _ => format!(
            "gpgv did not accept its signature: {}",
            log.lines().last().unwrap_or("no reason given")
        ),
    };
    Err(refuse(why))
}

/// The primary fingerprint of a good, valid signature, from gpgv's status lines. Any bad or
/// unverifiable signature in the file fails the whole file.
fn good_signer(status: &str) -> Option<String> {
    let mut signer = None;
    for l in status.lines() {
        let mut f = l.split_whitespace();
        if f.next() != Some("[GNUPG:]") {
            continue;
        }
        match f.next() {
            Some("BADSIG" | "ERRSIG" | "EXPSIG" | "EXPKEYSIG" | "REVKEYSIG" | "NO_PUBKEY") => {
                return None;
            }
            Some("VALIDSIG") => {
                let fields: Vec<&str> = f.collect();
                // The last field is the primary key's fingerprint (present with --status-fd).
                signer = fields.last().map(|s| s.to_string());
            }
            _ => {}
        }
    }
    signer
}

pub(super) enum RunError {
    Spawn(std::io::Error),
    TimedOut,
    Interrupted,
}

/// Runs `cmd` contained (own process group, dies with ktstr), killed after `timeout` or on
/// Ctrl-C; true when it exited 0.
pub(super) fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<bool, RunError> {
    let mut child = crate::cancel::contain(cmd)
        .spawn()
        .map_err(RunError::Spawn)?;
    let _tracked = crate::cancel::TrackedGroup::new(child.id());
    let started = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(st.success());
        }
        let stop = if crate::cancel::requested() {
            Some(RunError::Interrupted)
        } else if started.elapsed() > timeout {
            Some(RunError::TimedOut)
        } else {
            None
        };
        if let Some(e) = stop {
            // SAFETY: kill(2) on the process group of a child not yet reaped.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_key_dearmors_to_one_public_key_packet_stream() {
        let packets = dearmor(AUTOSIGNER_KEY).unwrap();
        // A new-format public-key packet (tag 6) or an old-format one (0x98/0x99).
        assert!(
            matches!(packets[0], 0x98 | 0x99 | 0xc6),
            "{:#x}",
            packets[0]
        );
        assert!(packets.len() > 500, "{} bytes", packets.len());
    }

    #[test]
    fn the_shipped_key_is_the_pinned_autosigner() {
        let dir = tempfile::tempdir().unwrap();
        let ring = dir.path().join("ring.gpg");
        std::fs::write(&ring, dearmor(AUTOSIGNER_KEY).unwrap()).unwrap();
        let out = Command::new("gpg")
            .args(["--batch", "--with-colons", "--show-keys"])
            .arg(&ring)
            .env("GNUPGHOME", dir.path())
            .output()
            .expect("running gpg (apt-get install gpg)");
        let text = String::from_utf8_lossy(&out.stdout);
        let fprs: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':'))
            .collect();
        assert_eq!(fprs.first(), Some(&AUTOSIGNER_FINGERPRINT), "{text}");
        assert!(text.contains("Kernel.org checksum autosigner"), "{text}");
    }

    #[test]
    fn good_signer_needs_validsig_and_no_bad_signature() {
        let fpr = AUTOSIGNER_FINGERPRINT;
        let good = format!(
            "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 632D3A06589DA6B1 x\n[GNUPG:] VALIDSIG {fpr} 2026-01-01 0 0 4 0 1 8 01 {fpr}\n"
        );
        assert_eq!(good_signer(&good).as_deref(), Some(fpr));
        let mixed = format!("{good}[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 632D3A06589DA6B1 x\n");
        assert_eq!(good_signer(&mixed), None);
        assert_eq!(good_signer("[GNUPG:] NODATA 1\n"), None);
    }

    #[test]
    fn lookup_takes_only_a_full_hex_sum_for_the_exact_name() {
        let sums = format!(
            "{a}  linux-6.12.1.tar.xz\n{b}  linux-6.12.10.tar.xz\nzz  linux-6.12.2.tar.xz\n",
            a = "a".repeat(64),
            b = "B".repeat(64)
        );
        assert_eq!(lookup(&sums, "linux-6.12.1.tar.xz"), Some("a".repeat(64)));
        assert_eq!(lookup(&sums, "linux-6.12.10.tar.xz"), Some("b".repeat(64)));
        assert_eq!(lookup(&sums, "linux-6.12.2.tar.xz"), None);
        assert_eq!(lookup(&sums, "linux-6.12.3.tar.xz"), None);
    }
}
