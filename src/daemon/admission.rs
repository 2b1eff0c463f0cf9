//! Admitting a ready file as a job: it must still be the file the watcher found ready, no job may
//! be running or done for this version of it, and it must pass the checks against the server's
//! limits. A file that fails those checks is journaled as refused (it goes to failed/ with the
//! reason); one that passes is journaled with a fresh Idempotency-Key before anything is sent.
//!
//! A version of a file that was delivered before is not paid for again, and one refused before
//! that is still where it was (never moved: `retouchd process`) is not refused again: both are
//! [`Admission::Before`], which one-shot runs report, unless the run asks to do them `again`.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::context::Ctx;
use crate::config::{Config, WatchConfig};
use crate::job::JobState;
use crate::journal::{JobRecord, JournalError};
use crate::source::{Source, SourceCheck, Stamp};

/// A file waiting for a job slot.
#[derive(Debug)]
pub(super) struct Queued {
    pub inbox: PathBuf,
    pub rel: PathBuf,
    pub stamp: Stamp,
    /// Set when the watcher already knows the file cannot be sent.
    pub reject: Option<String>,
    /// A person cancelled it while it waited: it goes to failed/ unsent.
    pub cancelled: bool,
}

impl Queued {
    /// The job's key in the coordinator: (inbox, path below it).
    pub fn key(&self) -> (PathBuf, PathBuf) {
        (self.inbox.clone(), self.rel.clone())
    }
}

/// The watch settings of `inbox` in `config`.
pub(super) fn watch_for(config: &Config, inbox: &std::path::Path) -> Option<Arc<WatchConfig>> {
    config.watches.iter().find(|w| w.inbox == inbox).cloned().map(Arc::new)
}

/// Why a file that stopped changing but stayed incomplete for `waited` is refused.
pub(super) fn incomplete_reason(stamp: Stamp, waited: std::time::Duration) -> String {
    let waited = humantime::format_duration(waited);
    if stamp.size == 0 {
        format!("the file is empty (0 bytes) and stayed so for {waited}")
    } else {
        format!(
            "the file stopped changing but is incomplete (a truncated image or zip?) after waiting {waited}; \
             copy it again in full"
        )
    }
}

/// Why a file a person cancelled before it was sent is in failed/.
pub(crate) const CANCELLED: &str =
    "cancelled from the dashboard before it was sent (nothing was charged); Retry sends it again";

/// A fresh Idempotency-Key.
pub(super) fn new_key() -> String {
    format!("retouchd-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// What became of a ready file.
pub(super) enum Admission {
    /// A new job, journaled, to run with its watch's settings.
    Job(JobRecord, Arc<WatchConfig>),
    /// This version of the file was delivered, or refused and left in place, by an earlier job.
    Before(JobRecord),
    /// Not a job (any more): changed or gone since it was ready, its job still runs, or its
    /// inbox is no longer watched.
    Nothing,
}

/// Journals a new job for `item`, unless the file is not (or no longer) one. With `again`, a
/// file done or refused before is sent anew (a new credit).
pub(super) async fn admit(ctx: &Ctx, item: Queued, again: bool) -> Result<Admission, JournalError> {
    let Some(watch) = watch_for(&ctx.config(), &item.inbox) else { return Ok(Admission::Nothing) };
    let source = Source { inbox: item.inbox, rel_path: item.rel, stamp: item.stamp };
    // Changed since it was found ready: the watcher hands the new version on once it settles.
    if !matches!(crate::share::blocking(&source.inbox, || source.check(ctx.marks_inboxes)), SourceCheck::Same) {
        return Ok(Admission::Nothing);
    }
    let (inbox, rel) = (source.inbox.clone(), source.rel_path.clone());
    let latest = super::cluster::patiently(&ctx.health, &ctx.journal, move |j| j.latest_for(&inbox, &rel)).await?;
    match latest {
        Some(previous) if !previous.state.is_terminal() => return Ok(Admission::Nothing),
        Some(previous) if previous.source == source && !again => match previous.state {
            // Kept on success: the same file is not paid for twice.
            JobState::Done { .. } | JobState::Rejected { moved_to: None, .. } => {
                return Ok(Admission::Before(previous));
            }
            _ => {}
        },
        _ => {}
    }
    let state = if item.cancelled {
        info!(file = %source.rel_path.display(), "cancelled before sending");
        JobState::Failing { reason: CANCELLED.to_string() }
    } else {
        match verdict(ctx, &source, item.reject).await {
            Some(Ok(())) => JobState::new(new_key()),
            Some(Err(reason)) => {
                info!(file = %source.rel_path.display(), reason, "refused before sending");
                JobState::rejected(reason)
            }
            None => return Ok(Admission::Nothing),
        }
    };
    let id = match ctx.commits.insert(source.clone(), state.clone()).await {
        Ok(id) => id,
        // Another node of a shared journal claimed this version of the file first.
        Err(JournalError::Taken { .. }) => return Ok(Admission::Nothing),
        Err(e) => return Err(e),
    };
    let now = crate::vocab::now_ms();
    let record = JobRecord {
        id,
        source,
        state,
        created_at: now,
        updated_at: now,
        progress: None,
        generation: crate::vocab::FIRST_GENERATION,
    };
    ctx.announce(&record);
    Ok(Admission::Job(record, watch))
}

/// Whether `source` may be sent: checked against the server's limits unless the watcher already
/// refused it; `None` when it changed or vanished meanwhile. The file is opened beneath its inbox
/// (no link on the way) and inspected through that opened file. Running out of file
/// descriptors is a passing condition: it waits and tries again, never refuses the file.
async fn verdict(ctx: &Ctx, source: &Source, reject: Option<String>) -> Option<Result<(), String>> {
    if let Some(reason) = reject {
        return Some(Err(reason));
    }
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        let (file, limits, marked) = (source.clone(), ctx.limits.clone(), ctx.marks_inboxes);
        let checked = tokio::task::spawn_blocking(move || match file.open_same(marked) {
            Ok(file) => Ok(crate::inspect::inspect_file(file, &limits)),
            Err(check) => Err(check),
        })
        .await;
        return match checked {
            Ok(Ok(Ok(verdict))) => Some(verdict.map(drop)),
            Ok(Ok(Err(e))) | Ok(Err(SourceCheck::Unreadable(e))) if crate::beneath::is_out_of_descriptors(&e) => {
                tracing::warn!(file = %source.rel_path.display(), error = %e, retry_in = ?wait,
                    "out of file descriptors; the file waits");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
                continue;
            }
            Ok(Ok(Err(e))) | Ok(Err(SourceCheck::Unreadable(e))) => {
                Some(Err(format!("the file cannot be read: {e}; check its permissions")))
            }
            Ok(Err(_)) => None,
            Err(e) => Some(Err(format!("internal error while checking the file: {e}"))),
        };
    }
}
