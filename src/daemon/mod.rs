//! The daemon: one coordinator that owns the queue of ready files and the set of running jobs,
//! one watcher task per inbox, and one task per job (see `runner.rs`).
//!
//! [`run`] takes its shutdown signal as a future, so tests and the demo can run it in-process and
//! stop it. On start it takes the state-folder lock, opens the journal, resumes every
//! unfinished job by its restart rule, scans every inbox, then tells systemd it is ready.
//!
//! A new config sent through [`RunOptions::reloads`] (SIGHUP) takes effect without dropping
//! anything: jobs already running keep the watch settings they started with, new jobs take the
//! new token, payload and intervals, and watchers restart only if the watches changed.

mod commits;
mod gate;
mod metrics;
mod poll_plan;
mod runner;

pub use metrics::Metrics;

pub use gate::{Gate, PauseReason};

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::api::{ApiError, Client, Limits};
use crate::config::{Config, WatchConfig};
use crate::deliver::STAGING_DIR;
use crate::job::{Event, JobState};
use crate::journal::{JobRecord, Journal, JournalError, Source};
use crate::lock::{LockError, StateLock};
use crate::notify::Notifier;
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
    /// New configurations to switch to (already validated).
    pub reloads: Option<mpsc::Receiver<Config>>,
    /// Process exactly these files (inbox, path below it) instead of watching the inboxes, then
    /// return (`retouchd process`). No marker files are placed.
    pub files: Option<Vec<(PathBuf, PathBuf)>>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
}

/// What every job task shares.
pub(crate) struct Ctx {
    config: RwLock<Arc<Config>>,
    journal: Arc<Journal>,
    /// Group commit of new jobs and state changes (see [`commits`]).
    commits: commits::Committer,
    gate: Gate,
    uploads: Semaphore,
    client: RwLock<Client>,
    clients: Mutex<HashMap<String, Client>>,
    metrics: Metrics,
    limits: Limits,
    updates: Option<broadcast::Sender<JobUpdate>>,
    /// Whether inboxes carry the marker file (not for `retouchd process`).
    marks_inboxes: bool,
    /// Learned job durations, to poll near the expected completion.
    poll_plan: poll_plan::PollPlan,
    /// When the server last answered a job's request successfully (Unix ms).
    last_server_success: std::sync::atomic::AtomicI64,
}

impl Ctx {
    /// The configuration in force (a reload swaps it).
    fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn client(&self) -> Client {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A client for the host a job was started on (the task id is only valid there).
    fn client_for_host(&self, host: &str) -> Client {
        let current = self.client();
        if host == current.base_url() {
            return current;
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(host) {
            return c.clone();
        }
        let mut options = self.config().server.client_options();
        options.base_url = host.to_string();
        let client = Client::new(options).unwrap_or_else(|e| {
            warn!(host, error = %e, "cannot reach a job's original host; using the configured one");
            current.clone()
        });
        clients.insert(host.to_string(), client.clone());
        client
    }

    /// Applies `event` to the job and commits the new state before anything depends on it.
    async fn advance(&self, job: &mut JobRecord, event: Event) -> Result<(), JournalError> {
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
        self.commits.update(job.id, next.clone()).await?;
        info!(job = job.id, file = %job.source.rel_path.display(), state = next.name(), "job state");
        job.state = next;
        self.progress(job);
        Ok(())
    }

    /// Notes that the server answered a request properly (see the runner's backoff).
    fn server_answered(&self) {
        self.last_server_success.store(crate::journal::now_ms(), std::sync::atomic::Ordering::Relaxed);
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
    inbox: PathBuf,
    rel: PathBuf,
    stamp: Stamp,
    /// Set when the watcher already knows the file cannot be sent.
    reject: Option<String>,
}

/// A job's file: (inbox, path below it).
type JobKey = (PathBuf, PathBuf);
type JobOutcome = (JobKey, Result<Option<JobRecord>, runner::Halt>);

fn watch_for(config: &Config, inbox: &Path) -> Option<Arc<WatchConfig>> {
    config.watches.iter().find(|w| w.inbox == inbox).cloned().map(Arc::new)
}

/// Creates the journal entry for a ready file (after checking it against the limits) and drives it.
async fn new_job(ctx: Arc<Ctx>, item: Queued) -> Result<Option<JobRecord>, runner::Halt> {
    let Some(watch) = watch_for(&ctx.config(), &item.inbox) else { return Ok(None) };
    let source = Source {
        inbox: item.inbox.clone(),
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
        Ok(()) => JobState::new(runner::new_key()),
        Err(reason) => {
            info!(file = %source.rel_path.display(), reason, "refused before sending");
            JobState::rejected(reason)
        }
    };
    let id = ctx.commits.insert(source.clone(), state.clone()).await.map_err(runner::Halt::Journal)?;
    let now = crate::journal::now_ms();
    let record = JobRecord { id, source, state, created_at: now, updated_at: now, progress: None };
    ctx.progress(&record);
    runner::Runner::new(&ctx, record, watch).run().await.map(Some)
}

/// Drives a job found unfinished in the journal, with its inbox's watch settings.
async fn resume(ctx: Arc<Ctx>, job: JobRecord, watch: Arc<WatchConfig>) -> Result<Option<JobRecord>, runner::Halt> {
    runner::Runner::new(&ctx, job, watch).run().await.map(Some)
}

/// One generation of watcher tasks (replaced when a reload changes the watches).
struct Watchers {
    cancel: CancellationToken,
    count: usize,
}

fn start_watchers(config: &Config, tx: &mpsc::Sender<WatchEvent>, once: bool, parent: &CancellationToken) -> Watchers {
    let cancel = parent.child_token();
    for (index, w) in config.watches.iter().enumerate() {
        tokio::spawn(watch::run(index, w.clone(), tx.clone(), once, cancel.clone()));
    }
    Watchers { cancel, count: config.watches.len() }
}

/// What `retouchd status` shows of a running daemon: written to `daemon.json` in the state
/// folder on every pulse (temp file, then rename).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LiveStatus {
    pub pid: u32,
    /// Unix seconds.
    pub updated_at: u64,
    pub paused: Option<String>,
    pub pause_detail: Option<String>,
    pub uploading: i64,
    pub in_flight: usize,
    pub waiting: usize,
    pub done: u64,
    pub failed: u64,
    pub refused: u64,
    pub quota_left: Option<i64>,
    pub inboxes_unavailable: Vec<String>,
}

pub const LIVE_STATUS_FILE: &str = "daemon.json";

fn write_live_status(ctx: &Ctx, in_flight: usize, waiting: usize, summary: &Summary, unavailable: &HashSet<usize>) {
    let config = ctx.config();
    let paused = ctx.gate.paused();
    let status = LiveStatus {
        pid: std::process::id(),
        updated_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        paused: paused.as_ref().map(|(r, _)| r.as_str().to_string()),
        pause_detail: paused.map(|(_, m)| m),
        uploading: ctx.metrics.uploading(),
        in_flight,
        waiting,
        done: summary.done,
        failed: summary.failed,
        refused: summary.rejected,
        quota_left: ctx.metrics.quota_left(),
        inboxes_unavailable: unavailable
            .iter()
            .filter_map(|&i| config.watches.get(i).map(|w| w.inbox.display().to_string()))
            .collect(),
    };
    let path = config.state_dir.join(LIVE_STATUS_FILE);
    let tmp = config.state_dir.join(".daemon.json.tmp");
    let written = serde_json::to_vec_pretty(&status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        debug!(error = %e, "cannot write the live status file");
    }
}

/// The one-line status for systemd and logs.
fn status_line(ctx: &Ctx, in_flight: usize, queued: usize, summary: &Summary) -> String {
    let uploading = ctx.metrics.uploading();
    let mut line = format!(
        "{uploading} uploading, {} in flight, {queued} waiting, {} done, {} failed, {} refused",
        in_flight.saturating_sub(uploading as usize),
        summary.done,
        summary.failed,
        summary.rejected
    );
    if let Some((reason, _)) = ctx.gate.paused() {
        line.push_str(&format!(", paused: {}", reason.as_str()));
    }
    line
}

/// Switches to a new configuration. The state folder cannot change while running.
fn apply_reload(ctx: &Ctx, mut new: Config) -> bool {
    let old = ctx.config();
    if new.state_dir != old.state_dir {
        warn!(old = %old.state_dir.display(), new = %new.state_dir.display(), "state.dir changes need a restart; keeping the old one");
        new.state_dir = old.state_dir.clone();
    }
    match Client::new(new.server.client_options()) {
        Ok(client) => *ctx.client.write().unwrap_or_else(|p| p.into_inner()) = client,
        Err(e) => {
            error!(error = %e, "the new server settings do not work; keeping the old configuration");
            return false;
        }
    }
    ctx.clients.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let (old_uploads, new_uploads) = (old.server.max_uploads, new.server.max_uploads);
    if new_uploads > old_uploads {
        ctx.uploads.add_permits(new_uploads - old_uploads);
    } else if new_uploads < old_uploads {
        ctx.uploads.forget_permits(old_uploads - new_uploads);
    }
    for warning in &new.warnings {
        warn!("{warning}");
    }
    let watches_changed = new.watches != old.watches;
    *ctx.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    // A token problem may be fixed now: try at once.
    ctx.gate.retry_now();
    info!(watches_changed, "configuration reloaded");
    watches_changed
}

/// Runs the daemon until `shutdown` resolves (or, with `once`, until the inboxes are processed).
pub async fn run(
    config: Config,
    mut options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, DaemonError> {
    let notifier = Notifier::from_env();
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
    let marks_inboxes = options.files.is_none();
    if marks_inboxes {
        place_markers(&config, &journal)?;
    }
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
    let journal = Arc::new(journal);
    let commits = commits::Committer::start(Arc::clone(&journal)).map_err(|e| JournalError::Batch {
        path: journal.path().to_path_buf(),
        detail: format!("cannot start the journal writer thread: {e}"),
    })?;
    let ctx = Arc::new(Ctx {
        uploads: Semaphore::new(config.server.max_uploads),
        config: RwLock::new(Arc::new(config)),
        journal,
        commits,
        gate: Gate::default(),
        client: RwLock::new(client),
        clients: Mutex::new(HashMap::new()),
        metrics: Metrics::default(),
        limits,
        updates: options.updates.take(),
        marks_inboxes,
        poll_plan: poll_plan::PollPlan::default(),
        last_server_success: std::sync::atomic::AtomicI64::new(0),
    });

    let cancel = CancellationToken::new();
    let mut jobs: JoinSet<JobOutcome> = JoinSet::new();
    let mut active: HashSet<JobKey> = HashSet::new();
    let mut summary = Summary::default();
    for job in unfinished {
        let Some(watch) = watch_for(&ctx.config(), &job.source.inbox) else {
            warn!(job = job.id, inbox = %job.source.inbox.display(), "unfinished job for an inbox no longer configured; left as it is");
            continue;
        };
        let key = (job.source.inbox.clone(), job.source.rel_path.clone());
        active.insert(key.clone());
        let ctx = ctx.clone();
        jobs.spawn(async move { (key, resume(ctx, job, watch).await) });
    }

    if let Some(listen) = ctx.config().metrics_listen {
        tokio::spawn(metrics::serve(ctx.clone(), listen, cancel.child_token()));
    }
    let (tx, mut rx) = mpsc::channel::<WatchEvent>(1024);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut watchers = match options.files.take() {
        None => start_watchers(&ctx.config(), &tx, options.once, &cancel),
        Some(files) => {
            options.once = true;
            for (inbox, rel) in files {
                match std::fs::symlink_metadata(inbox.join(&rel)) {
                    Ok(meta) if meta.is_file() => {
                        queue.push_back(Queued { inbox, rel, stamp: watch::stamp_of(&meta), reject: None })
                    }
                    _ => warn!(file = %inbox.join(&rel).display(), "not a regular file; skipped"),
                }
            }
            Watchers { cancel: cancel.child_token(), count: 0 }
        }
    };
    let (mut scanned, mut drained) = (0, 0);
    let mut ready_sent = false;
    // Files seen again while their job runs; looked at once that job ends.
    let mut deferred: HashMap<JobKey, Queued> = HashMap::new();
    let mut pulse = tokio::time::interval(notifier.watchdog_every().unwrap_or(Duration::from_secs(10)));
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reloads = options.reloads.take();
    let mut unavailable: HashSet<usize> = HashSet::new();
    tokio::pin!(shutdown);
    let result = loop {
        while jobs.len() < ctx.config().server.max_in_flight
            && let Some(item) = queue.pop_front()
        {
            let key = (item.inbox.clone(), item.rel.clone());
            if !active.insert(key.clone()) {
                deferred.insert(key, item);
                continue;
            }
            let ctx = ctx.clone();
            jobs.spawn(async move { (key, new_job(ctx, item).await) });
        }
        if !ready_sent && scanned >= watchers.count {
            ready_sent = true;
            notifier.ready(&status_line(&ctx, jobs.len(), queue.len(), &summary));
            write_live_status(&ctx, jobs.len(), queue.len(), &summary, &unavailable);
            info!("ready: journal recovered and inboxes scanned");
        }
        if options.once && drained >= watchers.count && queue.is_empty() && jobs.is_empty() {
            break Ok(summary);
        }
        tokio::select! {
            _ = &mut shutdown => break Ok(summary),
            _ = pulse.tick() => {
                // Nothing before READY: systemd hears the service is up first, then its pulse.
                if ready_sent {
                    notifier.alive(&status_line(&ctx, jobs.len(), queue.len(), &summary));
                }
                write_live_status(&ctx, jobs.len(), queue.len(), &summary, &unavailable);
            }
            Some(new) = async { match reloads.as_mut() { Some(r) => r.recv().await, None => None } } => {
                notifier.reloading();
                if apply_reload(&ctx, new) {
                    watchers.cancel.cancel();
                    watchers = start_watchers(&ctx.config(), &tx, options.once, &cancel);
                    unavailable.clear();
                    queue.clear();
                    deferred.clear();
                    (scanned, drained) = (0, 0);
                }
                notifier.ready(&status_line(&ctx, jobs.len(), queue.len(), &summary));
            }
            Some(event) = rx.recv() => {
                let inbox_of = |index: usize| ctx.config().watches.get(index).map(|w| w.inbox.clone());
                match event {
                    WatchEvent::Ready { watch, rel, stamp } => {
                        let Some(inbox) = inbox_of(watch) else { continue };
                        let key = (inbox.clone(), rel.clone());
                        let item = Queued { inbox, rel, stamp, reject: None };
                        if active.contains(&key) {
                            deferred.insert(key, item);
                        } else {
                            queue.push_back(item);
                        }
                    }
                    WatchEvent::Incomplete { watch, rel, stamp } => {
                        let Some(inbox) = inbox_of(watch) else { continue };
                        let grace = humantime::format_duration(ctx.config().watches[watch].incomplete_grace);
                        let reason = if stamp.size == 0 {
                            format!("the file is empty (0 bytes) and stayed so for {grace}")
                        } else {
                            format!(
                                "the file stopped changing but is incomplete (a truncated image or zip?) after waiting \
                                 {grace}; copy it again in full"
                            )
                        };
                        queue.push_back(Queued { inbox, rel, stamp, reject: Some(reason) });
                    }
                    WatchEvent::Scanned { .. } => scanned += 1,
                    WatchEvent::Drained { .. } => drained += 1,
                    WatchEvent::Paused { watch, reason } => {
                        unavailable.insert(watch);
                        warn!(watch, reason, "watch paused");
                    }
                    WatchEvent::Resumed { watch } => {
                        unavailable.remove(&watch);
                        info!(watch, "watch resumed");
                    }
                }
            }
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
    notifier.stopping();
    cancel.cancel();
    jobs.shutdown().await;
    let _ = std::fs::remove_file(ctx.config().state_dir.join(LIVE_STATUS_FILE));
    info!("retouchd stopped");
    result
}
