//! Remote `git:` repositories (`https://`, `ssh://`, `user@host:path`, `git://`, `file://`): a
//! bare mirror per URL under the cache, fetched on each resolution (not when offline), with
//! credentials from ssh-agent, `~/.ssh` keys or git's credential helpers.

use super::KernelError;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// True when `repo` names a remote (a URL or scp-like `user@host:path`), not a local directory.
pub fn is_url(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':'))
}

/// The bare mirror of `url` under the cache.
pub fn mirror_dir(url: &str) -> PathBuf {
    crate::paths::sources_dir()
        .join("git")
        .join(&hex::encode(Sha256::digest(url.as_bytes()))[..16])
}

/// A server that accepts no connection would otherwise hold a resolution for the OS's TCP
/// timeout (minutes). libgit2 leaves the socket non-blocking after a timed connect and then only
/// waits on reads that have a timeout too (else reads fail with EAGAIN), so both are set; a
/// fetch that gets no byte for 5 minutes is dead.
fn set_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: set libgit2 globals before any of our transports run; no pointers involved.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(10_000);
            let _ = git2::opts::set_server_timeout_in_milliseconds(300_000);
        }
    });
}

/// Opens the mirror of `url`, fetching `reference`, branches and tags first unless `offline`.
pub fn open(url: &str, reference: &str, offline: bool) -> Result<git2::Repository, KernelError> {
    let spec = format!("git:{url}#{reference}");
    let dir = mirror_dir(url);
    if offline {
        return git2::Repository::open_bare(&dir).map_err(|_| KernelError::BadSpec {
            spec,
            why: format!(
                "offline, and {url} was never fetched; run once online, or clone it yourself and \
                 use git:/path/to/clone#{reference}"
            ),
        });
    }
    let (r, created) = match git2::Repository::open_bare(&dir) {
        Ok(r) => (r, false),
        Err(_) => (
            git2::Repository::init_bare(&dir).map_err(|e| KernelError::Git(e.message().into()))?,
            true,
        ),
    };
    set_timeouts();
    if let Err(e) = fetch_all(&r, url, reference) {
        // An empty mirror would later pass for "fetched before" when offline.
        if created {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e);
    }
    Ok(r)
}

fn fetch_all(r: &git2::Repository, url: &str, reference: &str) -> Result<(), KernelError> {
    let mut remote = r
        .remote_anonymous(url)
        .map_err(|e| fetch_error(url, reference, &e))?;
    let refspecs = [
        format!("+{reference}:refs/ktstr/fetched"),
        "+refs/heads/*:refs/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    let fetch = |remote: &mut git2::Remote, specs: &[String]| {
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(callbacks());
        remote.fetch(specs, Some(&mut fo), None)
    };
    // A ref that is a sha cannot be fetched by name on every server; the wildcards cover it.
    // Only a refused refspec is worth a second try, not an unreachable server.
    if let Err(e) = fetch(&mut remote, &refspecs) {
        if is_transport(&e) {
            return Err(fetch_error(url, reference, &e));
        }
        fetch(&mut remote, &refspecs[1..]).map_err(|e| fetch_error(url, reference, &e))?;
    }
    Ok(())
}

/// Opens the mirror an earlier [`open`] fetched, without fetching again.
pub fn open_fetched(url: &str) -> Result<git2::Repository, KernelError> {
    git2::Repository::open_bare(mirror_dir(url))
        .map_err(|e| KernelError::Git(format!("mirror of {url}: {}", e.message())))
}

fn is_transport(e: &git2::Error) -> bool {
    use git2::ErrorClass as C;
    matches!(
        e.class(),
        C::Net | C::Http | C::Ssl | C::Ssh | C::Os | C::Callback
    ) || e.code() == git2::ErrorCode::Auth
        || e.code() == git2::ErrorCode::Certificate
}

fn fetch_error(url: &str, reference: &str, e: &git2::Error) -> KernelError {
    let msg = e.message();
    let fix = if msg.contains("unsupported URL protocol") {
        "use an https://, ssh://, user@host:path, git:// or file:// URL".to_string()
    } else if e.class() == git2::ErrorClass::Ssh || e.code() == git2::ErrorCode::Auth {
        "load a key into ssh-agent (ssh-add) or put it in ~/.ssh/id_ed25519 or ~/.ssh/id_rsa, \
         add the host to ~/.ssh/known_hosts (ssh-keyscan HOST >> ~/.ssh/known_hosts); for https, \
         configure a git credential helper"
            .to_string()
    } else if e.code() == git2::ErrorCode::Certificate || e.class() == git2::ErrorClass::Ssl {
        "the server's certificate is not trusted; install its CA (or point SSL_CERT_FILE at it)"
            .to_string()
    } else {
        format!(
            "check the URL and the network; without network, clone it elsewhere and use \
             git:/path/to/clone#{reference}, or pass --offline to use what an earlier run fetched"
        )
    };
    KernelError::GitFetch {
        url: url.to_string(),
        why: msg.to_string(),
        fix,
    }
}

/// Credentials in the order git tries them; each source once, so a refusal ends the fetch
/// instead of libgit2 asking again forever.
fn callbacks<'a>() -> git2::RemoteCallbacks<'a> {
    use git2::{Cred, CredentialType};
    let mut cb = git2::RemoteCallbacks::new();
    let mut tried_agent = false;
    let mut tried_helper = false;
    let mut tried_default = false;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut keys = ["id_ed25519", "id_ecdsa", "id_rsa"]
        .into_iter()
        .map(move |k| home.join(".ssh").join(k))
        .filter(|p| p.is_file());
    cb.credentials(move |url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if !tried_agent {
                tried_agent = true;
                if let Ok(c) = Cred::ssh_key_from_agent(user) {
                    return Ok(c);
                }
            }
            if let Some(k) = keys.next() {
                return Cred::ssh_key(user, None, &k, None);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !tried_helper {
            tried_helper = true;
            if let Ok(c) = git2::Config::open_default()
                .and_then(|cfg| Cred::credential_helper(&cfg, url, username))
            {
                return Ok(c);
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !tried_default {
            tried_default = true;
            return Cred::default();
        }
        Err(git2::Error::new(
            git2::ErrorCode::Auth,
            git2::ErrorClass::Ssh,
            "no accepted credentials (tried ssh-agent, ~/.ssh keys, git credential helpers)",
        ))
    });
    cb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        for url in [
            "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
            "ssh://git@example.com/linux.git",
            "git@example.com:linux.git",
            "git://127.0.0.1/linux",
            "file:///src/linux",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in ["/src/linux", "linux", "../linux"] {
            assert!(!is_url(path), "{path}");
        }
    }

    #[test]
    fn a_transport_error_names_the_url_and_a_fix() {
        let e = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Net,
            "failed to connect to 127.0.0.1: Connection refused",
        );
        assert!(is_transport(&e));
        let text = fetch_error("https://127.0.0.1:9/linux.git", "v6.12", &e).to_string();
        assert!(text.contains("https://127.0.0.1:9/linux.git"), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
        assert!(text.contains("git:/path/to/clone#v6.12"), "{text}");
    }
}
