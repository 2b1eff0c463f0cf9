//! Sending failed files again (`retouchd retry`, the dashboard's Retry): each is moved from failed/
//! back into its inbox (where the daemon picks it up as a new job), its `.error.txt` removed.
//!
//! `--failed` takes every file whose newest job failed. Files refused before sending (not a
//! photo, over the limits) are left unless `--refused` asks for them too, since the same file
//! would be refused again; every file left is counted with the reason.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::Config;
use crate::deliver;
use crate::job::{JobState, StateName};
use crate::journal::{JobRecord, Journal, JournalError};

/// Which jobs to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// One job, by number.
    Job(i64),
    /// Every file whose newest job failed; with `refused`, also those refused before sending.
    Failed { refused: bool },
}

/// Why a job's file was not sent back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    NoSuchJob,
    NotFailed(StateName),
    /// Refused before sending: the same file would be refused again (`--refused` sends it).
    Refused,
    /// Its file is not in the failed folder: never moved there (`retouchd process` leaves
    /// files where they are), or moved away since.
    NotInFailedFolder {
        never_moved: bool,
    },
    InboxNotConfigured(PathBuf),
    CannotMove(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NoSuchJob => write!(f, "there is no such job"),
            Skip::NotFailed(state) => write!(f, "it is {state}, not failed"),
            Skip::Refused => write!(
                f,
                "it was refused before sending (not a photo, or over the limits) and would be refused again; \
                 add --refused to send such files anyway"
            ),
            Skip::NotInFailedFolder { never_moved: true } => write!(
                f,
                "its file was never moved to a failed folder (`retouchd process` leaves files where they are): \
                 run process on it again"
            ),
            Skip::NotInFailedFolder { never_moved: false } => {
                write!(f, "its file is no longer in the failed folder (moved or deleted since)")
            }
            Skip::InboxNotConfigured(inbox) => write!(f, "its inbox {} is no longer configured", inbox.display()),
            Skip::CannotMove(e) => write!(f, "it cannot be moved back: {e}"),
        }
    }
}

/// What happened to one job asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Retried {
    Moved { id: i64, to: PathBuf },
    Skipped { id: i64, why: Skip },
}

fn retry_one(config: &Config, job: &JobRecord, refused_too: bool) -> Retried {
    let id = job.id;
    let skipped = |why| Retried::Skipped { id, why };
    let moved_to = match &job.state {
        JobState::Failed { moved_to, .. } => moved_to.clone(),
        JobState::Rejected { moved_to, .. } if refused_too => moved_to.clone(),
        JobState::Rejected { .. } => return skipped(Skip::Refused),
        other => return skipped(Skip::NotFailed(other.name())),
    };
    let never_moved = moved_to.is_none();
    let Some(from) = moved_to.filter(|p| p.exists()) else {
        return skipped(Skip::NotInFailedFolder { never_moved });
    };
    if !config.watches.iter().any(|w| w.inbox == job.source.inbox) {
        return skipped(Skip::InboxNotConfigured(job.source.inbox.clone()));
    }
    let rel = &job.source.rel_path;
    let dir = rel.parent().map(|p| job.source.inbox.join(p)).unwrap_or_else(|| job.source.inbox.clone());
    let (stem, ext) = deliver::stem_and_ext(rel.file_name().unwrap_or_default());
    match deliver::place(&from, &dir, stem, ext) {
        Ok(to) => {
            let mut note = from.into_os_string();
            note.push(".error.txt");
            let _ = std::fs::remove_file(note);
            Retried::Moved { id, to }
        }
        Err(e) => skipped(Skip::CannotMove(e.to_string())),
    }
}

/// Retries one job by number, or every failed (and, if asked, refused) file.
pub fn retry(config: &Config, journal: &Journal, which: Which) -> Result<Vec<Retried>, JournalError> {
    let (jobs, refused_too) = match which {
        Which::Job(id) => match journal.get(id)? {
            Some(j) => (vec![j], true),
            None => return Ok(vec![Retried::Skipped { id, why: Skip::NoSuchJob }]),
        },
        Which::Failed { refused } => {
            let mut all = journal.recent_latest(StateName::Failed, usize::MAX >> 1)?;
            all.extend(journal.recent_latest(StateName::Rejected, usize::MAX >> 1)?);
            (all, refused)
        }
    };
    Ok(jobs.iter().map(|j| retry_one(config, j, refused_too)).collect())
}

/// What `retry --failed` says: each file sent back, then how many were left and why.
pub fn report(outcomes: &[Retried]) -> String {
    let mut out = String::new();
    let mut left: BTreeMap<&Skip, usize> = BTreeMap::new();
    let mut moved = 0;
    for outcome in outcomes {
        match outcome {
            Retried::Moved { id, to } => {
                moved += 1;
                out.push_str(&format!("#{id}: back in the inbox as {}\n", to.display()));
            }
            Retried::Skipped { why, .. } => *left.entry(why).or_default() += 1,
        }
    }
    out.push_str(&format!("{moved} file(s) sent back to their inbox; a running daemon picks them up.\n"));
    for (why, n) in left {
        out.push_str(&format!("{n} not sent back: {why}\n"));
    }
    out
}
