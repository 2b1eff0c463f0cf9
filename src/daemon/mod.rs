//! The daemon: one coordinator that owns the queue of ready files and the set of running jobs,
//! one watcher task per inbox, and one task per job (see [`runner`]).
//!
//! [`run`] takes its shutdown signal as a future, so tests and the demo can run it in-process and
//! stop it. On start it takes the state-folder lock, opens the journal, resumes every
//! unfinished job by its restart rule, and scans every inbox.

mod gate;
mod runner;

pub use gate::{Gate, PauseReason};

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{ApiError, Client, Limits};
use crate::config::{Config, WatchConfig};
use crate::deliver::STAGING_DIR;
use crate::job::{Event, JobState};
use crate::journal::{JobRecord, Journal, JournalError, Source};
use crate::lock::{LockError, StateLock};
use crate::watch::{self, Stamp, WatchEvent};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot set up the server client: {0}")]
    Client(#[from] ApiError),
}

/// A job's news, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub id: i64,
    pub file: PathBuf,
    pub state: &'static str,
    pub progress: Option<f64>,
    pub reason: Option<String>,
}

/// How the daemon runs.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Process what is in the inboxes (and the journal) to the end, then return.
    pub once: bool,
    /// Where to send job updates, if anyone listens.
    pub updates: Option<broadcast::Sender<JobUpdate>>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
}

/// Counters for status lines and metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    uploading: AtomicI64,
    submissions: AtomicU64,
    retries: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    quota_left: AtomicI64,
}

impl Metrics {
    fn uploading(&self, delta: i64) {
        self.uploading.fetch_add(delta, Ordering::Relaxed);
    }

    fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn submitted(&self, bytes: u64, quota: Option<i64>) {
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
        if let Some(q) = quota {
            self.quota_left.store(q, Ordering::Relaxed);
        }
    }

    fn downloaded(&self, bytes: u64) {
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What every job task shares.
pub(crate) struct Ctx {
    config: Config,
    journal: Journal,
    gate: Gate,
    uploads: Semaphore,
    client: Client,
    clients: Mutex<HashMap<String, Client>>,
    metrics: Metrics,
    limits: Limits,
    updates: Option<broadcast::Sender<JobUpdate>>,
}

impl Ctx {
    fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client for the host a job was started on (the task id is only valid there).
    fn client_for_host(&self, host: &str) -> Client {
        if host == self.client.base_url() {
            return self.client.clone();
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(host) {
            return c.clone();
        }
        let mut options = self.config.server.client_options();
        options.base_url = host.to_string();
        let client = Client::new(options).unwrap_or_else(|e| {
            warn!(host, error = %e, "cannot reach a job's original host; using the configured one");
            self.client.clone()
        });
        clients.insert(host.to_string(), client.clone());
        client
    }

    /// Applies `event` to the job and commits the new state before anything depends on it.
    fn advance(&self, job: &mut JobRecord, event: Event) -> Result<(), JournalError> {
        let next = match job.state.apply(event) {
            Ok(next) => next,
            Err(e) => {
                error!(job = job.id, error = %e, "internal error: impossible job transition");
                match &job.state {
                    s if s.is_terminal() => return Ok(()),
                    _ => JobState::Failing { reason: format!("internal error: {e}") },
                }
            }
        };
        self.journal.update(job.id, &next)?;
        info!(job = job.id, file = %job.source.rel_path.display(), state = next.name(), "job state");
        job.state = next;
        self.progress(job);
        Ok(())
    }

    fn progress(&self, job: &JobRecord) {
        if let Some(tx) = &self.updates {
            let _ = tx.send(JobUpdate {
                id: job.id,
                file: job.source.rel_path.clone(),
                state: job.state.name(),
                progress: job.progress,
                reason: job.state.reason().map(str::to_string),
            });
        }
    }
}

/// Puts the marker file in inboxes retouchd has not used before; where it was placed before and is
/// missing now, the watch starts paused (see [`watch::MARKER`]).
fn place_markers(config: &Config, journal: &Journal) -> Result<(), JournalError> {
    for w in &config.watches {
        if journal.is_marked(&w.inbox)? {
            if let Err(e) = watch::inbox_available(&w.inbox) {
                warn!(inbox = %w.inbox.display(), error = %e, "inbox unavailable; its watch waits for it");
            }
            continue;
        }
        match std::fs::write(w.inbox.join(watch::MARKER), b"retouchd watches this folder; keep this file.\n") {
            Ok(()) => journal.mark(&w.inbox)?,
            Err(e) => {
                warn!(inbox = %w.inbox.display(), error = %e, "cannot place the marker file; is the inbox writable?")
            }
        }
    }
    Ok(())
}

/// Removes staged leftovers that no journaled job will publish.
fn clean_staging(config: &Config, unfinished: &[JobRecord]) {
    let keep: HashSet<&Path> = unfinished
        .iter()
        .filter_map(|j| match &j.state {
            JobState::Delivering { staged, .. } => Some(staged.as_path()),
            _ => None,
        })
        .collect();
    for w in &config.watches {
        let staging = w.outbox.join(STAGING_DIR);
        let Ok(entries) = std::fs::read_dir(&staging) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if keep.contains(path.as_path()) {
                continue;
            }
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(e) = removed {
                warn!(path = %path.display(), error = %e, "cannot remove a leftover staging file");
            }
        }
    }
}

/// A file waiting for a job slot.
#[derive(Debug)]
struct Queued {
    watch: usize,
    rel: PathBuf,
    stamp: Stamp,
    /// Set when the watcher already knows the file cannot be sent.
    reject: Option<String>,
}

type JobKey = (usize, PathBuf);
type JobOutcome = (JobKey, Result<Option<JobRecord>, runner::Halt>);

fn watch_of(config: &Config, inbox: &Path) -> Option<usize> {
    config.watches.iter().position(|w| w.inbox == inbox)
}

/// Creates the journal entry for a ready file (after checking it against the limits) and drives it.
async fn new_job(ctx: Arc<Ctx>, item: Queued) -> Result<Option<JobRecord>, runner::Halt> {
    let watch = &ctx.config.watches[item.watch];
    let source = Source {
        inbox: watch.inbox.clone(),
        rel_path: item.rel.clone(),
        size: item.stamp.size,
        mtime_ns: item.stamp.mtime_ns,
    };
    // Changed since it was found ready: the watcher hands the new version on once it settles.
    match std::fs::symlink_metadata(source.path()) {
        Ok(meta) if watch::stamp_of(&meta) == item.stamp => {}
        _ => return Ok(None),
    }
    match ctx.journal.latest_for(&source.inbox, &source.rel_path).map_err(runner::Halt::Journal)? {
        Some(previous) if !previous.state.is_terminal() => return Ok(None),
        // Kept on success: the same file is not paid for twice.
        Some(previous) if previous.source == source && matches!(previous.state, JobState::Done { .. }) => {
            return Ok(None);
        }
        _ => {}
    }
    let verdict = match item.reject {
        Some(reason) => Err(reason),
        None => {
            let path = source.path();
            let limits = ctx.limits.clone();
            match tokio::task::spawn_blocking(move || crate::inspect::inspect(&path, &limits)).await {
                Ok(Ok(verdict)) => verdict.map(drop),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Ok(Err(e)) => Err(format!("the file cannot be read: {e}; check its permissions")),
                Err(e) => Err(format!("internal error while checking the file: {e}")),
            }
        }
    };
    let state = match verdict {
        Ok(()) => JobState::new(format!("retouchd-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))),
        Err(reason) => {
            info!(file = %source.rel_path.display(), reason, "refused before sending");
            JobState::rejected(reason)
        }
    };
    let id = ctx.journal.insert(&source, &state).map_err(runner::Halt::Journal)?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let record = JobRecord { id, source, state, created_at: now, updated_at: now, progress: None };
    ctx.progress(&record);
    drive(ctx.clone(), record).await.map(Some)
}

async fn drive(ctx: Arc<Ctx>, job: JobRecord) -> Result<JobRecord, runner::Halt> {
    let Some(index) = watch_of(&ctx.config, &job.source.inbox) else {
        return Ok(job);
    };
    let watch: &WatchConfig = &ctx.config.watches[index];
    runner::Runner { ctx: &ctx, job, watch, attempt: 0 }.run().await
}

/// Runs the daemon until `shutdown` resolves (or, with `once`, until the inboxes are processed).
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, DaemonError> {
    let _lock = StateLock::acquire(&config.state_dir)?;
    let journal = Journal::open(&config.state_dir)?;
    for w in &config.watches {
        for dir in [&w.outbox, &w.done_dir, &w.failed_dir] {
            if !dir.as_os_str().is_empty()
                && let Err(e) = std::fs::create_dir_all(dir)
            {
                warn!(dir = %dir.display(), error = %e, "cannot create folder; jobs will wait until it can be written");
            }
        }
    }
    place_markers(&config, &journal)?;
    let client = Client::new(config.server.client_options())?;
    let limits = match tokio::time::timeout(Duration::from_secs(10), client.limits()).await {
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
    };
    let unfinished = journal.unfinished()?;
    clean_staging(&config, &unfinished);
    info!(
        journal = %journal.path().display(),
        unfinished = unfinished.len(),
        watches = config.watches.len(),
        "retouchd started"
    );
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let max_in_flight = config.server.max_in_flight;
    let ctx = Arc::new(Ctx {
        uploads: Semaphore::new(config.server.max_uploads),
        config,
        journal,
        gate: Gate::default(),
        client,
        clients: Mutex::new(HashMap::new()),
        metrics: Metrics::default(),
        limits,
        updates: options.updates,
    });

    let cancel = CancellationToken::new();
    let mut jobs: JoinSet<JobOutcome> = JoinSet::new();
    let mut active: HashSet<JobKey> = HashSet::new();
    let mut summary = Summary::default();
    for job in unfinished {
        let Some(index) = watch_of(&ctx.config, &job.source.inbox) else {
            warn!(job = job.id, inbox = %job.source.inbox.display(), "unfinished job for an inbox no longer configured; left as it is");
            continue;
        };
        let key = (index, job.source.rel_path.clone());
        active.insert(key.clone());
        let ctx = ctx.clone();
        jobs.spawn(async move { (key, drive(ctx, job).await.map(Some)) });
    }

    let (tx, mut rx) = mpsc::channel::<WatchEvent>(1024);
    for (index, w) in ctx.config.watches.iter().enumerate() {
        tokio::spawn(watch::run(index, w.clone(), tx.clone(), options.once, cancel.child_token()));
    }
    drop(tx);

    let mut queue: VecDeque<Queued> = VecDeque::new();
    // Files seen again while their job runs; looked at once that job ends.
    let mut deferred: HashMap<JobKey, Queued> = HashMap::new();
    let mut drained = 0;
    let mut watchers_open = true;
    tokio::pin!(shutdown);
    let result = loop {
        while jobs.len() < max_in_flight
            && let Some(item) = queue.pop_front()
        {
            let key = (item.watch, item.rel.clone());
            if !active.insert(key.clone()) {
                deferred.insert(key, item);
                continue;
            }
            let ctx = ctx.clone();
            jobs.spawn(async move { (key, new_job(ctx, item).await) });
        }
        if options.once && drained >= ctx.config.watches.len() && queue.is_empty() && jobs.is_empty() {
            break Ok(summary);
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(summary),
            event = rx.recv(), if watchers_open => match event {
                None => watchers_open = false,
                Some(WatchEvent::Ready { watch, rel, stamp }) => {
                    let item = Queued { watch, rel, stamp, reject: None };
                    if active.contains(&(watch, item.rel.clone())) {
                        deferred.insert((watch, item.rel.clone()), item);
                    } else {
                        queue.push_back(item);
                    }
                }
                Some(WatchEvent::Incomplete { watch, rel, stamp }) => {
                    let grace = humantime::format_duration(ctx.config.watches[watch].incomplete_grace);
                    let reason = if stamp.size == 0 {
                        format!("the file is empty (0 bytes) and stayed so for {grace}")
                    } else {
                        format!(
                            "the file stopped changing but is incomplete (a truncated image or zip?) after waiting \
                             {grace}; copy it again in full"
                        )
                    };
                    queue.push_back(Queued { watch, rel, stamp, reject: Some(reason) });
                }
                Some(WatchEvent::Drained { .. }) => drained += 1,
                Some(WatchEvent::Paused { watch, reason }) => warn!(watch, reason, "watch paused"),
                Some(WatchEvent::Resumed { watch }) => info!(watch, "watch resumed"),
            },
            Some(joined) = jobs.join_next(), if !jobs.is_empty() => match joined {
                Ok((key, Ok(record))) => {
                    active.remove(&key);
                    if let Some(item) = deferred.remove(&key) {
                        queue.push_back(item);
                    }
                    match record.map(|r| r.state) {
                        Some(JobState::Done { .. }) => summary.done += 1,
                        Some(JobState::Failed { .. }) => summary.failed += 1,
                        Some(JobState::Rejected { .. }) => summary.rejected += 1,
                        _ => {}
                    }
                }
                Ok((_, Err(runner::Halt::Journal(e)))) => break Err(DaemonError::Journal(e)),
                Err(e) if e.is_panic() => error!(error = %e, "a job task panicked; its job resumes at the next start"),
                Err(_) => {}
            },
        }
    };
    cancel.cancel();
    jobs.shutdown().await;
    info!("retouchd stopped");
    result
}
