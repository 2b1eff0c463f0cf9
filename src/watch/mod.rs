//! Watching one inbox: file-system events are hints, scans are the truth.
//!
//! On local disks notify (inotify) reports changes as they happen; on network file systems
//! (NFS, SMB/CIFS, FUSE), where inotify misses what other machines write, the inbox is scanned
//! on an interval instead. Either way it is scanned fully at start, when the event queue
//! overflows, and every `rescan_interval` as a safety net. Files go through [`Readiness`] and are
//! handed to the coordinator once settled and complete. Symlinks are never followed.

mod readiness;

pub use readiness::{Outcome, Readiness, Unsettled};

use crate::beneath::{self, Dir};
pub use crate::inbox::MARKER;
use crate::inbox::inbox_available;
use crate::source::Stamp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{WatchConfig, WatchMode};
use crate::formats::{self, FileKind};
use crate::ignore::IgnoreRules;

/// What a watcher tells the coordinator. Each event names its inbox by path, so an event still
/// in flight during a reload is never read against another watch's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A settled, complete file: `inbox/rel`.
    Ready {
        inbox: PathBuf,
        rel: PathBuf,
        stamp: Stamp,
    },
    /// A file that stopped changing but stayed incomplete for `waited` (settle and grace time).
    Incomplete {
        inbox: PathBuf,
        rel: PathBuf,
        stamp: Stamp,
        waited: Duration,
    },
    /// The first full scan is done (or found the inbox unavailable).
    Scanned {
        inbox: PathBuf,
    },
    /// (With `--once`) everything present at start has been handed on.
    Drained {
        inbox: PathBuf,
    },
    /// The inbox cannot be read (unmounted share, deleted folder); nothing is treated as gone.
    Paused {
        inbox: PathBuf,
        reason: String,
    },
    Resumed {
        inbox: PathBuf,
    },
    /// A file handed on earlier left the inbox (moved to done/ or failed/, or removed).
    Gone {
        inbox: PathBuf,
        rel: PathBuf,
    },
}

/// What each inbox's watcher has found and not handed on yet (settling, or incomplete), for
/// `status` and the dashboard: published by the watcher at most every [`PUBLISH_EVERY`], read
/// without waiting for it (a watcher held up by a hung share never holds up a status).
#[derive(Debug, Default)]
pub struct Board(Mutex<HashMap<PathBuf, Arc<[Unsettled]>>>);

/// How often a watcher's unsettled files are published at most.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<[Unsettled]>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, inbox: &Path, files: Vec<Unsettled>) {
        self.lock().insert(inbox.to_path_buf(), files.into());
    }

    /// Each inbox's unsettled files, as last published.
    pub fn unsettled(&self) -> Vec<(PathBuf, Arc<[Unsettled]>)> {
        let mut all: Vec<_> = self.lock().iter().map(|(inbox, files)| (inbox.clone(), Arc::clone(files))).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Forgets everything (the watchers restart and publish again).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Whether a folder lies on a network file system, where inotify misses remote writes.
pub fn is_network_fs(path: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs fills the zeroed struct we own; `c` is a valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const NFS: i64 = 0x6969;
    const SMB: i64 = 0x517B;
    const CIFS: i64 = 0xFF53_4D42;
    const SMB2: i64 = 0xFE53_4D42;
    const FUSE: i64 = 0x6573_5546;
    const CEPH: i64 = 0x00C3_6400;
    const V9FS: i64 = 0x0102_1997;
    const AFS: i64 = 0x5346_414F;
    matches!(st.f_type as i64, NFS | SMB | CIFS | SMB2 | FUSE | CEPH | V9FS | AFS)
}

/// Whether the file `rel` of `inbox` has all its bytes. Files that are not images or zips count
/// as complete, and so do files that cannot be opened (no permission): inspection then refuses
/// them at once with the real reason, instead of as "incomplete" after the grace time.
fn content_complete(inbox: &Path, rel: &Path) -> bool {
    let mut file = match Dir::root(inbox).and_then(|inbox| inbox.open_file(rel)) {
        Ok(file) => file,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound && !beneath::is_refused(&e),
    };
    let Ok(meta) = file.metadata() else { return false };
    if meta.len() == 0 {
        return false;
    }
    let mut head = [0u8; 8];
    let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    match formats::sniff(&head[..n]) {
        FileKind::Unknown => true,
        kind => formats::is_complete(&mut file, kind).unwrap_or(false),
    }
}

/// The stamp of the regular file `rel` of `inbox`, reached without following a link; `None`
/// for anything else.
fn stamp_beneath(inbox: &Path, rel: &Path) -> Option<Stamp> {
    Dir::root(inbox).and_then(|inbox| inbox.metadata(rel)).ok().filter(|m| m.is_file()).map(|m| Stamp::of(&m))
}

/// The files below `inbox` that may become jobs, with their stamps.
fn scan(inbox: &Path, recursive: bool, rules: &IgnoreRules) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    // The inbox itself must be there; subfolders that vanish mid-scan are skipped.
    inbox_available(inbox, true)?;
    list_files(inbox, recursive, rules)
}

/// The files below `folder` that are not ignored, with their stamps. Walked through opened
/// folder handles: links are never followed, and a subfolder swapped for a link mid-scan is
/// skipped.
pub fn list_files(inbox: &Path, recursive: bool, rules: &IgnoreRules) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    use rustix::fs::{AtFlags, FileType};
    let mut found = Vec::new();
    let mut dirs = vec![(Dir::root(inbox)?, PathBuf::new())];
    while let Some((dir, rel_dir)) = dirs.pop() {
        let Ok(entries) = dir.entries() else { continue };
        for (name, _) in entries {
            let rel = rel_dir.join(&name);
            let Ok(stat) = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    if recursive
                        && !rules.skips_dir(&name, &rel)
                        && let Ok(sub) = dir.dir(Path::new(&name))
                    {
                        dirs.push((sub, rel));
                    }
                }
                FileType::RegularFile if !rules.skips_file(&rel) => found.push((rel, Stamp::of_stat(&stat))),
                _ => {}
            }
        }
    }
    Ok(found)
}

/// Whether `rel` (below the inbox) may be a job: no ignored folder on the way, not ignored itself.
fn wanted(rel: &Path, recursive: bool, rules: &IgnoreRules) -> bool {
    let mut parents = rel.parent().map(|p| p.components().count()).unwrap_or(0);
    if !recursive && parents > 0 {
        return false;
    }
    let mut so_far = PathBuf::new();
    for part in rel.components() {
        if parents == 0 {
            break;
        }
        so_far.push(part);
        if rules.skips_dir(part.as_os_str(), &so_far) {
            return false;
        }
        parents -= 1;
    }
    !rules.skips_file(rel)
}

enum Hint {
    Path(PathBuf),
    Rescan,
}

/// Watches one inbox until `shutdown`, sending what it finds to `tx`. With `once`, stops after
/// handing on everything that was present at the first scan.
pub async fn run(
    config: WatchConfig,
    tx: mpsc::Sender<WatchEvent>,
    board: Arc<Board>,
    once: bool,
    shutdown: CancellationToken,
) {
    let rules = IgnoreRules::new(&config.ignore);
    let inbox = config.inbox.clone();
    let network = crate::share::blocking(&inbox, || is_network_fs(&inbox));
    let use_notify = match config.mode {
        WatchMode::Notify => true,
        WatchMode::Poll => false,
        WatchMode::Auto => !network,
    };
    let (hint_tx, mut hints) = mpsc::unbounded_channel::<Hint>();
    let mut _notifier = None;
    if use_notify && !once {
        let sender = hint_tx.clone();
        let handler = move |result: notify::Result<notify::Event>| match result {
            Ok(event) if event.need_rescan() => {
                let _ = sender.send(Hint::Rescan);
            }
            // Our own scans and checks open files and folders; reacting to those would loop.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
            Ok(event) => {
                for path in event.paths {
                    let _ = sender.send(Hint::Path(path));
                }
            }
            Err(_) => {
                let _ = sender.send(Hint::Rescan);
            }
        };
        let mode =
            if config.recursive { notify::RecursiveMode::Recursive } else { notify::RecursiveMode::NonRecursive };
        match notify::recommended_watcher(handler).and_then(|mut w| w.watch(&inbox, mode).map(|()| w)) {
            Ok(w) => _notifier = Some(w),
            Err(e) => warn!(
                inbox = %inbox.display(), error = %e,
                "cannot watch for events (on Linux, raise fs.inotify.max_user_watches); scanning on an interval instead"
            ),
        }
    }
    let polling = _notifier.is_none();
    info!(inbox = %inbox.display(), mode = if polling { "scan" } else { "notify" }, network, "watching");
    let scan_every = if polling { config.scan_interval } else { config.rescan_interval };
    let mut scan_timer = tokio::time::interval_at(Instant::now() + scan_every, scan_every);
    // Settled files are checked when due, in batches at most every DUE_GAP (a burst of files
    // costs one pass over the pending ones, not one per file).
    let mut last_due = Instant::now();
    let mut readiness = Readiness::new(config.settle, config.incomplete_grace);
    let mut paused: Option<String> = None;

    let full_scan = |readiness: &mut Readiness, paused: &mut Option<String>| -> Vec<WatchEvent> {
        let mut events = Vec::new();
        match crate::share::blocking(&inbox, || scan(&inbox, config.recursive, &rules)) {
            Ok(files) => {
                if paused.take().is_some() {
                    info!(inbox = %inbox.display(), "inbox is back; resuming");
                    events.push(WatchEvent::Resumed { inbox: inbox.clone() });
                }
                let now = Instant::now();
                let present: std::collections::HashSet<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
                for rel in readiness.retain(|p| present.contains(p)) {
                    events.push(WatchEvent::Gone { inbox: inbox.clone(), rel });
                }
                for (rel, stamp) in &files {
                    readiness.observe(rel, *stamp, now);
                }
                debug!(inbox = %inbox.display(), files = files.len(), pending = readiness.pending(), "scanned");
            }
            Err(e) => {
                let reason = format!("cannot read the inbox {}: {e}", inbox.display());
                if paused.as_ref() != Some(&reason) {
                    warn!(inbox = %inbox.display(), error = %e, "inbox unreadable (unmounted share?); watch paused, nothing is treated as gone");
                    events.push(WatchEvent::Paused { inbox: inbox.clone(), reason: reason.clone() });
                    *paused = Some(reason);
                }
            }
        }
        events
    };

    let mut outgoing = full_scan(&mut readiness, &mut paused);
    outgoing.push(WatchEvent::Scanned { inbox: inbox.clone() });
    let (mut published_at, mut changed): (Option<Instant>, bool) = (None, true);
    loop {
        if changed && published_at.is_none_or(|at| at.elapsed() >= PUBLISH_EVERY) {
            board.publish(&inbox, readiness.unsettled(Instant::now()));
            (published_at, changed) = (Some(Instant::now()), false);
        }
        for event in outgoing.drain(..) {
            tokio::select! {
                sent = tx.send(event) => if sent.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
        if once && readiness.pending() == 0 && paused.is_none() {
            let _ = tx.send(WatchEvent::Drained { inbox: inbox.clone() }).await;
            return;
        }
        // Published again a moment after the last change (a burst costs one list, not one per file).
        let republish = async move {
            match published_at {
                Some(at) if changed => tokio::time::sleep_until(at + PUBLISH_EVERY).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = republish => {}
            Some(hint) = hints.recv() => match hint {
                Hint::Rescan => outgoing = full_scan(&mut readiness, &mut paused),
                Hint::Path(path) => {
                    let Ok(rel) = path.strip_prefix(&inbox).map(Path::to_path_buf) else { continue };
                    match crate::share::blocking(&inbox, || Dir::root(&inbox).and_then(|dir| dir.metadata(&rel))) {
                        Ok(meta) if meta.is_dir() => outgoing = full_scan(&mut readiness, &mut paused),
                        Ok(meta) if meta.is_file() && wanted(&rel, config.recursive, &rules) => {
                            readiness.observe(&rel, Stamp::of(&meta), Instant::now())
                        }
                        Ok(_) => {}
                        Err(_) => {
                            if readiness.forget(&rel) {
                                outgoing.push(WatchEvent::Gone { inbox: inbox.clone(), rel });
                            }
                        }
                    }
                }
            },
            _ = scan_timer.tick() => outgoing = full_scan(&mut readiness, &mut paused),
            _ = sleep_until_due(readiness.next_check(), last_due) => {
                last_due = Instant::now();
                let stat = |rel: &Path| stamp_beneath(&inbox, rel);
                let complete = |rel: &Path| content_complete(&inbox, rel);
                let due = crate::share::blocking(&inbox, || readiness.due(Instant::now(), stat, complete));
                for rel in readiness.newly_incomplete() {
                    warn!(inbox = %inbox.display(), file = %rel.display(), waits = ?config.incomplete_grace,
                        "the file stopped changing but is incomplete (still being copied, or truncated); \
                         it waits for the rest, then fails");
                }
                for outcome in due {
                    outgoing.push(match outcome {
                        Outcome::Ready(rel, stamp) => WatchEvent::Ready { inbox: inbox.clone(), rel, stamp },
                        Outcome::Incomplete(rel, stamp) => WatchEvent::Incomplete {
                            inbox: inbox.clone(),
                            rel,
                            stamp,
                            waited: config.settle + config.incomplete_grace,
                        },
                    });
                }
            }
        }
        changed = true;
    }
}

/// The shortest time between two passes over the pending files.
const DUE_GAP: Duration = Duration::from_millis(20);

/// Sleeps until the next pending file is due (never sooner than DUE_GAP after the last pass);
/// forever when nothing is pending.
async fn sleep_until_due(next: Option<Instant>, last_due: Instant) {
    match next {
        Some(at) => tokio::time::sleep_until(at.max(last_due + DUE_GAP)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_skip_junk_symlinks_and_nas_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(MARKER), b"").unwrap();
        for f in ["a.jpg", "sub/b.PNG", "@eaDir/c.jpg", ".DS_Store", "sub/x.jpg.part", "#recycle/d.jpg"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.jpg")).unwrap();
        let rules = IgnoreRules::new(&[]);
        let mut found: Vec<PathBuf> = scan(root, true, &rules).unwrap().into_iter().map(|(p, _)| p).collect();
        found.sort();
        assert_eq!(found, vec![PathBuf::from("a.jpg"), PathBuf::from("sub/b.PNG")]);
        let top: Vec<PathBuf> = scan(root, false, &rules).unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(top, vec![PathBuf::from("a.jpg")]);
    }

    #[test]
    fn event_paths_are_filtered_like_scans() {
        let rules = IgnoreRules::new(&[]);
        assert!(wanted(Path::new("sub/a.jpg"), true, &rules));
        assert!(!wanted(Path::new("sub/a.jpg"), false, &rules));
        assert!(!wanted(Path::new("@eaDir/a.jpg"), true, &rules));
        assert!(!wanted(Path::new("._a.jpg"), true, &rules));
    }

    #[test]
    fn a_missing_inbox_or_marker_is_an_error_not_an_empty_scan() {
        assert!(scan(Path::new("/nonexistent/inbox"), true, &IgnoreRules::new(&[])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let err = scan(dir.path(), true, &IgnoreRules::new(&[])).unwrap_err();
        assert!(err.to_string().contains("unmounted"), "{err}");
    }

    #[test]
    fn local_temp_folders_are_not_network_file_systems() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_network_fs(dir.path()));
    }
}
