//! Start-up: take the state folder, open the journal, make the output folders, claim the
//! inboxes (see [`crate::inbox`]), remove staged leftovers no job will publish, and read the
//! server's limits. What it
//! returns ([`Recovered`]) is everything the coordinator needs to resume.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::DaemonError;
use super::claims::{ClaimFailure, Claims};
use crate::api::{Client, Limits};
use crate::beneath::Dir;
use crate::config::Config;
use crate::deliver::{self, STAGING_DIR};
use crate::journal::{JobRecord, Journal};
use crate::lock::StateLock;

/// What start-up found.
pub(crate) struct Recovered {
    /// Held for as long as the daemon runs.
    pub _lock: StateLock,
    pub journal: Arc<Journal>,
    /// Jobs to resume, oldest first.
    pub unfinished: Vec<JobRecord>,
    pub limits: Limits,
    /// The claims on the inboxes (none for `retouchd process`, which watches nothing).
    pub claims: Option<Claims>,
}

/// Everything before the first job runs. `marks_inboxes`: claim the inboxes with marker files
/// (not for `retouchd process`).
pub(crate) async fn recover(config: &Config, client: &Client, marks_inboxes: bool) -> Result<Recovered, DaemonError> {
    let lock = StateLock::acquire(&config.state_dir)?;
    let journal = Journal::for_config(config, true)?;
    create_folders(config);
    let claims = match marks_inboxes.then(|| Claims::claim_all(config, &journal)).transpose() {
        Ok(claims) => claims,
        Err(ClaimFailure::Owned(owned)) => return Err(DaemonError::InboxOwned(owned)),
        Err(ClaimFailure::Journal(e)) => return Err(DaemonError::Journal(e)),
    };
    let limits = probe_limits(client).await;
    let unfinished = journal.resume_mine()?;
    // In a shared journal other nodes' jobs may be staging in the same outboxes right now.
    if journal.node().is_some() {
        clean_staging(config, &journal.unfinished()?, true);
    } else {
        clean_staging(config, &unfinished, false);
    }
    info!(
        journal = %journal.path().display(),
        node = journal.node().unwrap_or("-"),
        unfinished = unfinished.len(),
        watches = config.watches.len(),
        "retouchd started"
    );
    for warning in &config.warnings {
        warn!("{warning}");
    }
    Ok(Recovered { _lock: lock, journal: Arc::new(journal), unfinished, limits, claims })
}

/// Makes every outbox, done and failed folder that does not exist yet.
fn create_folders(config: &Config) {
    for w in &config.watches {
        for dir in [Some(&w.outbox), w.done_dir.as_ref(), w.failed_dir.as_ref()].into_iter().flatten() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                warn!(dir = %dir.display(), error = %e, "cannot create folder; jobs will wait until it can be written");
            }
        }
    }
}

/// The server's limits; the documented ones when it has no limits route (production) or does
/// not answer within 10 s.
async fn probe_limits(client: &Client) -> Limits {
    match tokio::time::timeout(Duration::from_secs(10), client.limits()).await {
        Ok(Ok(Some(limits))) => limits,
        Ok(Ok(None)) => Limits::default(),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot read the server's limits; using the documented ones");
            Limits::default()
        }
        Err(_) => {
            warn!("the server did not answer the limits request in time; using the documented limits");
            Limits::default()
        }
    }
}

/// Removes staged leftovers that no journaled job will publish. `shared`: other nodes stage in
/// the same folders, so only what belongs to a job that has ended is removed (downloads under
/// way and the stages of unfinished jobs stay).
fn clean_staging(config: &Config, unfinished: &[JobRecord], shared: bool) {
    // A staged path, or the work folder an output was made in (`job-N.render/flat.jpg`).
    let keep: HashSet<&Path> =
        unfinished.iter().flat_map(|j| j.state.staged_paths()).flat_map(|p| [Some(p), p.parent()]).flatten().collect();
    let unfinished_ids: HashSet<i64> = unfinished.iter().map(|j| j.id).collect();
    for w in &config.watches {
        let staging_path = deliver::staging_path(&w.outbox);
        // Beneath the outbox's handle: a staging folder swapped for a link is not emptied.
        let Ok(staging) = Dir::root(&w.outbox).and_then(|outbox| outbox.dir(Path::new(STAGING_DIR))) else {
            continue;
        };
        let Ok(entries) = staging.entries() else { continue };
        for (name, _) in entries {
            let path = staging_path.join(&name);
            if keep.contains(path.as_path()) {
                continue;
            }
            if shared && deliver::staged_job(&name).is_none_or(|id| unfinished_ids.contains(&id)) {
                continue;
            }
            if let Err(e) = staging.remove_all(Path::new(&name)) {
                warn!(path = %path.display(), error = %e, "cannot remove a leftover staging file");
            }
        }
    }
}
