//! `retouchd migrate-journal`: copies a daemon's SQLite journal into the shared PostgreSQL one,
//! every job with its state, times and history, in batches of one transaction each. Jobs still
//! unfinished arrive with no owner and an expired lease, so the first node to look takes them
//! over and resumes them by their restart rules (same Idempotency-Key, same task id).

use std::path::Path;

use super::{JobId, Journal, JournalError, Result};

/// Jobs copied per transaction.
const BATCH: usize = 5_000;

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub jobs: u64,
    pub unfinished: u64,
}

/// Copies every job of `from` into `to`, which must hold no jobs yet (a second run would copy
/// everything twice). Calls `progress` after each batch with the jobs copied so far.
pub fn copy(from: &Journal, to: &Journal, mut progress: impl FnMut(u64)) -> Result<Copied> {
    if to.counts()?.values().sum::<u64>() > 0 {
        return Err(JournalError::Database {
            path: to.path().to_path_buf(),
            detail: "it already holds jobs; migrate-journal copies into an empty journal only (once)".into(),
        });
    }
    let mut copied = Copied { jobs: 0, unfinished: 0 };
    let mut after: JobId = 0;
    loop {
        let jobs = from.jobs_after(after, BATCH)?;
        let Some(last) = jobs.last() else { break };
        after = last.job.id;
        copied.unfinished += jobs.iter().filter(|j| !j.job.state.is_terminal()).count() as u64;
        copied.jobs += jobs.len() as u64;
        to.import(&jobs)?;
        progress(copied.jobs);
    }
    for inbox in from.marked_inboxes()? {
        to.mark(&inbox)?;
    }
    let holds = from.pauses()?;
    if let Some(hold) = holds.all {
        to.set_pause(None, Some(hold))?;
    }
    for (inbox, hold) in holds.watches {
        to.set_pause(Some(&inbox), Some(hold))?;
    }
    Ok(copied)
}

/// The shared journal of `cluster`, to copy into (its schema made if needed; not as a node).
pub fn target_journal(cluster: &crate::config::ClusterConfig) -> Result<Journal> {
    Ok(Journal::from_store(Box::new(super::pg::Postgres::connect(cluster, super::pg::Role::Admin)?)))
}

/// The state folder's SQLite journal, read only; a clear error when there is none.
pub fn source_journal(state_dir: &Path) -> Result<Journal> {
    let file = state_dir.join(super::FILE_NAME);
    if !file.exists() {
        return Err(JournalError::NotWritable {
            path: file,
            detail: "there is no journal to copy here; give the state folder of the daemon whose journal to copy"
                .into(),
        });
    }
    Journal::open_read_only(state_dir)
}
