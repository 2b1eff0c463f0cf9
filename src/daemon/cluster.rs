//! This daemon as one node of a shared journal: whether the database answers ([`Health`]), the
//! lease keeper that renews the leases of the jobs this node runs and takes over the jobs of
//! nodes that stopped renewing, and waiting out a database that is restarting or cut off.
//!
//! A node that cannot reach the database claims nothing new (admission and every journal write
//! wait for it), publishes nothing (the fence before publishing needs the database), says so in
//! its log, `status` and systemd's STATUS= line, and tries again with a growing pause. When it is
//! back, writes for jobs another node took meanwhile are refused, and their runners let go.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::journal::{JobId, JobRecord, Journal, JournalError};

/// The longest pause between attempts to reach the database.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Whether the journal's database answered the last call.
#[derive(Debug, Default)]
pub struct Health {
    /// Why it did not, while it does not.
    down: Mutex<Option<String>>,
    /// Wakes whoever shows the status when an outage starts or ends.
    changed: tokio::sync::Notify,
}

impl Health {
    /// Notes a failed call; logs the first one of an outage.
    pub fn failed(&self, error: &JournalError) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            warn!(error = %error, "the journal database cannot be reached; claiming nothing new and waiting for it");
            // One listener (the main loop); a permit is kept if it is busy right now.
            self.changed.notify_one();
        }
        *down = Some(error.to_string());
    }

    /// Notes a call that worked; logs the end of an outage.
    pub fn answered(&self) {
        if self.down.lock().unwrap_or_else(|p| p.into_inner()).take().is_some() {
            info!("the journal database answers again; carrying on");
            self.changed.notify_one();
        }
    }

    /// Resolves when an outage started or ended since the last call (for one listener).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Why the database cannot be reached, while it cannot.
    pub fn problem(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The pause before attempt `attempt` (from 0) to reach the database again.
pub fn backoff(attempt: u32) -> Duration {
    crate::api::policy::doubling(Duration::from_millis(250), attempt, MAX_BACKOFF)
}

/// Calls `f` (a blocking journal call) on a blocking thread until the database answers: a
/// transient failure is noted in `health` and tried again after a growing pause; any other
/// answer is returned.
pub async fn patiently<T: Send + 'static>(
    health: &Health,
    journal: &Arc<Journal>,
    f: impl Fn(&Journal) -> Result<T, JournalError> + Send + Sync + 'static,
) -> Result<T, JournalError> {
    let f = Arc::new(f);
    let mut attempt = 0;
    loop {
        let (journal, call) = (Arc::clone(journal), Arc::clone(&f));
        let path = journal.path().to_path_buf();
        let outcome = tokio::task::spawn_blocking(move || call(&journal))
            .await
            .unwrap_or_else(|e| Err(JournalError::Database { path, detail: format!("the journal call failed: {e}") }));
        match outcome {
            Err(e) if e.is_transient() => {
                health.failed(&e);
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => {
                health.answered();
                return other;
            }
        }
    }
}

/// The ids of the jobs this node runs now (their leases are renewed).
#[derive(Debug, Default)]
pub struct Running(Mutex<HashSet<JobId>>);

impl Running {
    /// Registers a running job until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>, id: JobId) -> RunningGuard {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        RunningGuard { running: Arc::clone(self), id }
    }

    pub fn ids(&self) -> Vec<JobId> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect()
    }
}

/// Keeps a job in [`Running`] while it lives.
#[derive(Debug)]
pub struct RunningGuard {
    running: Arc<Running>,
    id: JobId,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Renews this node's leases and heartbeat three times per lease, and hands the jobs it took
/// over from silent nodes to `taken` (at most `max_take` at a time). Ends with `cancel`.
pub fn keep_leases(
    journal: Arc<Journal>,
    health: Arc<Health>,
    running: Arc<Running>,
    lease: Duration,
    max_take: usize,
    taken: mpsc::Sender<Vec<JobRecord>>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let every = lease / 3;
        loop {
            let ids = running.ids();
            let renewed = {
                let ids = ids.clone();
                patiently(&health, &journal, move |j| j.renew(&ids)).await
            };
            if let Err(e) = renewed {
                warn!(error = %e, "cannot renew this node's leases");
            }
            let took = patiently(&health, &journal, move |j| j.take_over(&ids, max_take)).await;
            match took {
                Ok(jobs) if !jobs.is_empty() => {
                    info!(jobs = jobs.len(), "took over jobs whose node stopped renewing its lease");
                    if taken.send(jobs).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot look for jobs to take over"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn running_jobs_leave_the_set_with_their_guard() {
        let running = Arc::new(Running::default());
        let guard = running.enter(7);
        assert_eq!(running.ids(), [7]);
        drop(guard);
        assert!(running.ids().is_empty());
    }

    #[test]
    fn an_outage_is_noted_until_the_database_answers() {
        let health = Health::default();
        assert_eq!(health.problem(), None);
        health.failed(&JournalError::Unreachable { path: "db".into(), detail: "connection refused".into() });
        assert!(health.problem().unwrap().contains("connection refused"));
        health.answered();
        assert_eq!(health.problem(), None);
    }
}
