//! An inbox's marker file ([`MARKER`]) and the owner record it carries.
//!
//! The marker tells an inbox from the empty mount point of an unmounted share: once placed, an
//! inbox without it is unavailable, never "empty". It also says which daemon owns the inbox:
//! host, pid, state folder and a heartbeat renewed on every status pulse. One inbox has one
//! owner: a second daemon (say, one started by hand with another state folder) refuses an
//! inbox whose owner's heartbeat is fresh, since both would pay for every photo. The record is a
//! plain file, not a lock, because file locks are unreliable on SMB/NFS shares, where inboxes
//! often live; an owner that stopped renewing for [`STALE_AFTER`] (or whose process is gone, on
//! the same host) is taken over. Several daemons on one inbox is what a shared journal is for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vocab::{host_name, now_secs};

/// The file retouchd leaves in each inbox it watches.
pub const MARKER: &str = ".retouchd";
/// The host an inbox's owner record names when a cluster of nodes owns it (its state folder
/// is the shared journal's address).
pub const CLUSTER_HOST: &str = "(the nodes of a shared journal)";
/// An owner that has not renewed its record for this long is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

const HEADER: &str = "# retouchd watches this folder; keep this file. It names the daemon that owns the inbox.\n";

/// Who owns an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub state_dir: PathBuf,
    /// Unix seconds of the last renewal.
    pub heartbeat: u64,
}

impl Owner {
    /// This process, with `state_dir`, now.
    pub fn me(state_dir: &Path) -> Owner {
        Owner { host: host_name(), pid: std::process::id(), state_dir: state_dir.to_path_buf(), heartbeat: now_secs() }
    }

    /// The owner this daemon claims inboxes as: itself, or, as a node of a shared journal, the
    /// whole cluster (every node watches the same inboxes; the journal hands out the files),
    /// named by its database (nodes may reach it by different addresses).
    pub fn for_config(config: &crate::config::Config) -> Owner {
        match &config.cluster {
            Some(cluster) => Owner {
                host: CLUSTER_HOST.into(),
                pid: 0,
                state_dir: PathBuf::from(format!(
                    "database {}",
                    cluster.database.get_dbname().or(cluster.database.get_user()).unwrap_or("postgres")
                )),
                heartbeat: now_secs(),
            },
            None => Owner::me(&config.state_dir),
        }
    }

    /// The same daemon (same host and state folder; the state folder's lock makes that one).
    fn is_same_daemon(&self, other: &Owner) -> bool {
        self.host == other.host && self.state_dir == other.state_dir
    }

    /// Whether this owner may still be at work, seen from this machine at `now`: on another
    /// host, while it renews; on this one, while its process lives.
    fn is_alive(&self, now: u64) -> bool {
        if now.saturating_sub(self.heartbeat) > STALE_AFTER.as_secs() {
            return false;
        }
        if self.host != host_name() {
            return true;
        }
        crate::lock::is_running(self.pid)
    }
}

/// The inbox belongs to another live daemon.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the inbox {inbox} is in use by another retouchd: host {host}, pid {pid}, state folder {state_dir} \
     (heartbeat {age}s ago). One inbox has one owner, or both would pay for every photo: stop that \
     daemon (e.g. `systemctl stop retouchd` there), or give this one another inbox. If that daemon is \
     gone for good, its claim expires {stale}s after its last heartbeat.",
    inbox = .inbox.display(), host = .owner.host, pid = .owner.pid, state_dir = .owner.state_dir.display(),
    age = .age_secs, stale = STALE_AFTER.as_secs()
)]
pub struct InboxOwned {
    pub inbox: PathBuf,
    pub owner: Owner,
    pub age_secs: u64,
}

/// Whether an inbox can be trusted to show what is in it: readable, and (when `marked`) still
/// carrying its marker file.
pub fn inbox_available(inbox: &Path, marked: bool) -> std::io::Result<()> {
    let dir = crate::beneath::Dir::root(inbox)?;
    dir.entries()?;
    if !marked || dir.metadata(Path::new(MARKER)).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "its marker file {MARKER} is missing, so the share looks unmounted; mount it again \
             (or, if the folder is really empty on purpose, `touch {}`)",
            inbox.join(MARKER).display()
        ),
    ))
}

/// The owner record in `inbox`'s marker, if there is a readable one (an older retouchd's
/// marker holds only a sentence: no owner).
pub fn owner_of(inbox: &Path) -> Option<Owner> {
    let mut file = crate::beneath::Dir::root(inbox).and_then(|d| d.open_file(Path::new(MARKER))).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&mut file, 64 * 1024), &mut text).ok()?;
    toml::from_str(&text).ok()
}

/// What claiming found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// Nobody owned it (or an older retouchd's plain marker).
    Free,
    /// It was this daemon's already (a restart).
    Ours,
    /// Its owner had stopped renewing, or its process is gone: taken over.
    TakenOver(Owner),
}

/// Claims `inbox` for `me` (or renews the claim): refuses while another live daemon owns it.
pub fn claim(inbox: &Path, me: &Owner) -> Result<Claimed, ClaimError> {
    let now = now_secs();
    let claimed = match owner_of(inbox) {
        None => Claimed::Free,
        Some(owner) if owner.is_same_daemon(me) => Claimed::Ours,
        Some(owner) if owner.is_alive(now) => {
            let age_secs = now.saturating_sub(owner.heartbeat);
            return Err(ClaimError::Owned(InboxOwned { inbox: inbox.to_path_buf(), owner, age_secs }));
        }
        Some(owner) => Claimed::TakenOver(owner),
    };
    write_marker(inbox, Some(&Owner { heartbeat: now, ..me.clone() })).map_err(ClaimError::Io)?;
    Ok(claimed)
}

/// Gives the inbox up (the daemon stops): the marker stays, without an owner.
pub fn release(inbox: &Path, me: &Owner) {
    if owner_of(inbox).is_some_and(|o| o.is_same_daemon(me)) {
        let _ = write_marker(inbox, None);
    }
}

/// Why an inbox could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Owned(InboxOwned),
    #[error("cannot write the marker file: {0}; is the inbox writable?")]
    Io(std::io::Error),
}

/// Writes the marker: a new temporary file under an unpredictable name, then a rename, so a
/// reader never sees half a record and a link planted in the inbox is never written through.
fn write_marker(inbox: &Path, owner: Option<&Owner>) -> std::io::Result<()> {
    let mut text = HEADER.to_string();
    if let Some(owner) = owner {
        text.push_str(&toml::to_string(owner).map_err(std::io::Error::other)?);
    }
    crate::beneath::Dir::root(inbox)?.write_replace(Path::new(MARKER), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(state: &str, heartbeat_ago: u64) -> Owner {
        Owner {
            host: "nas-elsewhere".into(),
            pid: 4242,
            state_dir: state.into(),
            heartbeat: now_secs() - heartbeat_ago,
        }
    }

    #[test]
    fn a_live_owner_keeps_its_inbox_and_the_refusal_says_who_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write_marker(dir.path(), Some(&other("/var/lib/retouchd", 5))).unwrap();
        let me = Owner::me(Path::new("/home/me/.local/share/retouchd"));
        let Err(ClaimError::Owned(err)) = claim(dir.path(), &me) else { panic!("claimed a live daemon's inbox") };
        let text = err.to_string();
        for part in ["nas-elsewhere", "4242", "/var/lib/retouchd", "systemctl stop retouchd", "60s"] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
        assert_eq!(owner_of(dir.path()).unwrap().host, "nas-elsewhere", "the record is left alone");
    }

    #[test]
    fn stale_and_dead_owners_are_taken_over_and_old_markers_count_as_free() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::me(Path::new("/state/mine"));
        let stale = other("/state/theirs", STALE_AFTER.as_secs() + 5);
        write_marker(dir.path(), Some(&stale)).unwrap();
        assert_eq!(claim(dir.path(), &me).unwrap(), Claimed::TakenOver(stale));
        assert_eq!(owner_of(dir.path()).unwrap().pid, std::process::id());

        // Same host, fresh heartbeat, but the process is gone (a crash): taken over at once.
        let dead = Owner { host: host_name(), pid: i32::MAX as u32, ..other("/state/theirs", 1) };
        write_marker(dir.path(), Some(&dead)).unwrap();
        assert!(matches!(claim(dir.path(), &me).unwrap(), Claimed::TakenOver(_)));

        std::fs::write(dir.path().join(MARKER), b"retouchd watches this folder; keep this file.\n").unwrap();
        assert_eq!(claim(dir.path(), &me).unwrap(), Claimed::Free);
        assert_eq!(claim(dir.path(), &me).unwrap(), Claimed::Ours, "renewing our own claim");

        release(dir.path(), &me);
        assert_eq!(owner_of(dir.path()), None);
        assert!(dir.path().join(MARKER).exists(), "the marker stays: it tells an inbox from an empty mount point");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [MARKER], "no temp files left");
    }

    #[test]
    fn the_nodes_of_a_shared_journal_share_an_inbox_that_a_lone_daemon_may_not_take() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = |name: &str| Owner {
            host: CLUSTER_HOST.into(),
            pid: 0,
            state_dir: format!("database {name}").into(),
            heartbeat: now_secs(),
        };
        // A lone daemon of this host that died: the cluster takes its inbox over (a migration).
        let dead = Owner { host: host_name(), pid: i32::MAX as u32, ..other("/state/alone", 1) };
        write_marker(dir.path(), Some(&dead)).unwrap();
        assert!(matches!(claim(dir.path(), &cluster("studio")).unwrap(), Claimed::TakenOver(_)));
        // Every node claims as the cluster: the same owner.
        assert_eq!(claim(dir.path(), &cluster("studio")).unwrap(), Claimed::Ours);
        // A lone daemon, or another cluster, is refused while the nodes renew.
        let alone = Owner::me(Path::new("/state/alone"));
        assert!(matches!(claim(dir.path(), &alone), Err(ClaimError::Owned(_))));
        assert!(matches!(claim(dir.path(), &cluster("other")), Err(ClaimError::Owned(_))));
    }

    #[test]
    fn the_heartbeat_never_writes_through_a_link_planted_at_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, victim) = (dir.path().join("inbox"), dir.path().join("victim"));
        std::fs::create_dir(&inbox).unwrap();
        std::fs::write(&victim, b"keep me").unwrap();
        // The old predictable temp name, and the marker itself, planted as links.
        std::os::unix::fs::symlink(&victim, inbox.join(format!("{MARKER}.{}.tmp", std::process::id()))).unwrap();
        let me = Owner::me(Path::new("/state"));
        claim(&inbox, &me).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        std::fs::remove_file(inbox.join(MARKER)).unwrap();
        std::os::unix::fs::symlink(&victim, inbox.join(MARKER)).unwrap();
        claim(&inbox, &me).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(!inbox.join(MARKER).symlink_metadata().unwrap().is_symlink(), "the link was replaced");
    }
}
