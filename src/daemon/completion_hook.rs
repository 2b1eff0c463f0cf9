//! The completion hook (`server.hook_url`): every start asks the server to call
//! `{hook_url}/hook/<token>` when the job finishes, and the dashboard's listener receives that
//! call. The token is the path's only authority: 128 bits derived from a secret kept in the state
//! folder (`hook.key`, mode 0600) and the job's id, so it cannot be guessed, needs no journal
//! column and is the same after a restart. A call is never trusted: it only makes the job's
//! poller ask the server at once. Polling stays as the fallback (a lost call costs a later poll).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::warn;

/// The route the server calls, below `hook_url`.
pub const HOOK_PATH: &str = "/hook/";

/// The hook's secret and the jobs waiting for a call.
#[derive(Debug, Default)]
pub struct Hooks {
    /// `hook_url` and the secret, when hooks are on.
    on: Option<(String, [u8; 32])>,
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Hooks {
    /// Hooks for `hook_url` (none when it is `None`), with the secret from `state_dir` (made
    /// there on first use). A secret that cannot be read or made turns hooks off, with a warning:
    /// polling still finds every job.
    pub fn new(state_dir: &Path, hook_url: Option<&str>) -> Hooks {
        let on = hook_url.and_then(|url| match secret(state_dir) {
            Ok(key) => Some((url.trim_end_matches('/').to_string(), key)),
            Err(e) => {
                warn!(error = %e, "cannot keep the hook's secret in the state folder; completion hooks are off (polling finds every job)");
                None
            }
        });
        Hooks { on, waiting: Mutex::new(HashMap::new()) }
    }

    /// The path token of job `id`, when hooks are on.
    fn token(&self, id: i64) -> Option<String> {
        let (_, key) = self.on.as_ref()?;
        let mut hash = Sha256::new();
        hash.update(key);
        hash.update(b"retouchd completion hook, job ");
        hash.update(id.to_be_bytes());
        Some(hex::encode(&hash.finalize()[..16]))
    }

    /// The URL the server is to call when job `id` finishes, when hooks are on.
    pub fn url_for(&self, id: i64) -> Option<String> {
        let (base, _) = self.on.as_ref()?;
        Some(format!("{base}{HOOK_PATH}{}", self.token(id)?))
    }

    /// Job `id` waits for its call: what its poller listens to (`None` when hooks are off).
    pub fn expect(&self, id: i64) -> Option<Arc<Notify>> {
        let token = self.token(id)?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        Some(Arc::clone(waiting.entry(token).or_default()))
    }

    /// Job `id` no longer waits for its call.
    pub fn forget(&self, id: i64) {
        if let Some(token) = self.token(id) {
            self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        }
    }

    /// A call came for `token`: wakes its job's poller; false for a token no job waits for.
    pub fn called(&self, token: &str) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match waiting.get(token) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The secret in `state_dir/hook.key`: read, or made (32 random bytes, mode 0600).
fn secret(state_dir: &Path) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("hook.key");
    let mut key = [0u8; 32];
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
        Ok(mut file) => {
            file.read_exact(&mut key)?;
            return Ok(key);
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    getrandom::fill(&mut key).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unguessable_stable_across_restarts_and_only_known_ones_wake_a_job() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = Hooks::new(dir.path(), Some("https://studio.example.com/retouchd/"));
        let url = hooks.url_for(7).unwrap();
        assert!(url.starts_with("https://studio.example.com/retouchd/hook/"), "{url}");
        let token = url.rsplit('/').next().unwrap().to_string();
        assert_eq!(token.len(), 32, "128 bits");
        assert_ne!(hooks.url_for(8), Some(url.clone()));
        let again = Hooks::new(dir.path(), Some("https://studio.example.com/retouchd"));
        assert_eq!(again.url_for(7), Some(url), "the same after a restart");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Hooks::new(other.path(), Some("https://x")).token(7), again.token(7), "another secret");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("hook.key")).unwrap().permissions().mode() & 0o777, 0o600);

        assert!(!hooks.called(&token), "nobody waits yet");
        let notify = hooks.expect(7).unwrap();
        assert!(hooks.called(&token));
        assert!(!hooks.called("0123456789abcdef0123456789abcdef"), "a forged token wakes nothing");
        let woken = notify.notified();
        tokio::pin!(woken);
        assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_some(), "the call is kept for the poller");
        hooks.forget(7);
        assert!(!hooks.called(&token));
        assert!(Hooks::new(dir.path(), None).url_for(7).is_none(), "off without hook_url");
    }
}
