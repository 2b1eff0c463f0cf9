//! `retouchd retry`: sends failed files again by moving them from failed/ back into their inbox
//! (where the daemon picks them up as new jobs), removing the `.error.txt` beside them.

use std::path::PathBuf;

use crate::config::Config;
use crate::deliver;
use crate::job::{JobState, StateName};
use crate::journal::{JobRecord, Journal};

/// What happened to one job asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Retried {
    Moved { id: i64, to: PathBuf },
    Skipped { id: i64, why: String },
}

fn retry_one(config: &Config, job: &JobRecord) -> Retried {
    let id = job.id;
    let moved_to = match &job.state {
        JobState::Failed { moved_to, .. } | JobState::Rejected { moved_to, .. } => moved_to.clone(),
        other => return Retried::Skipped { id, why: format!("it is {}, not failed", other.name()) },
    };
    let Some(from) = moved_to.filter(|p| p.exists()) else {
        return Retried::Skipped { id, why: "its file is no longer in the failed folder".into() };
    };
    if !config.watches.iter().any(|w| w.inbox == job.source.inbox) {
        return Retried::Skipped {
            id,
            why: format!("its inbox {} is no longer configured", job.source.inbox.display()),
        };
    }
    let rel = &job.source.rel_path;
    let dir = rel.parent().map(|p| job.source.inbox.join(p)).unwrap_or_else(|| job.source.inbox.clone());
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = deliver::split_name(&name);
    match deliver::place(&from, &dir, stem, ext) {
        Ok(to) => {
            let mut note = from.into_os_string();
            note.push(".error.txt");
            let _ = std::fs::remove_file(note);
            Retried::Moved { id, to }
        }
        Err(e) => Retried::Skipped { id, why: format!("cannot move it back: {e}") },
    }
}

/// Retries one job by number, or every failed/rejected job when `job` is `None`.
pub fn retry(
    config: &Config,
    journal: &Journal,
    job: Option<i64>,
) -> Result<Vec<Retried>, crate::journal::JournalError> {
    let jobs = match job {
        Some(id) => match journal.get(id)? {
            Some(j) => vec![j],
            None => return Ok(vec![Retried::Skipped { id, why: "no such job".into() }]),
        },
        None => {
            let mut all = journal.recent(StateName::Failed, usize::MAX >> 1)?;
            all.extend(journal.recent(StateName::Rejected, usize::MAX >> 1)?);
            all
        }
    };
    Ok(jobs.iter().map(|j| retry_one(config, j)).collect())
}
