//! The daemon. [`run`] is five steps: recover (lock, journal, folders, inbox claims, limits),
//! build the shared context, resume unfinished jobs, start the watchers (or take the given
//! files), then hand every event to the `coordinator` until shutdown.
//!
//! - `recovery`: start-up; `claims`: this daemon's claims on its inboxes; `context`: what
//!   job tasks share; `coordinator`: the queue, running jobs and one method per event;
//!   `admission`: a ready file becomes a job; `runner`: one job's steps; `gate`: pauses
//!   for account and setup problems; `poll_plan`: when to poll; `commits`: group commit of
//!   journal writes; `metrics`: counters; `metrics_endpoint`: the Prometheus endpoint; [`live_status`]: what
//!   `retouchd status` reads of a running daemon; [`control`]: what the dashboard may ask and do.
//!
//! `run` takes its shutdown signal as a future, so tests and the demo run it in-process and stop
//! it. A new config sent through [`RunOptions::reloads`] (SIGHUP) takes effect without dropping
//! anything: jobs already running keep the watch settings they started with, new jobs take the
//! new token, payload and intervals, and watchers restart only if the watches changed.

mod admission;
mod batches;
mod claims;
mod cluster;
mod commits;
pub mod completion_hook;
mod context;
pub mod control;
mod coordinator;
mod gate;
pub mod live_status;
mod metrics;
mod metrics_endpoint;
mod notices;
mod poll_plan;
mod recovery;
mod runner;
pub mod waiting;

/// Raises this process's soft limit of open files to its hard limit (systemd's default soft
/// limit is 1,024): many slow dashboard connections, inboxes and jobs must not run the daemon
/// out of descriptors.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(open_files = ?limit.maximum, "raised the open file limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
        }
    }
}

pub use batches::BatchView;
pub use control::Handle;
pub use gate::{Gate, PauseReason};
pub use gate::{hold_words, until_words};
pub use live_status::{LIVE_STATUS_FILE, LiveStatus, USER_PAUSE};
pub use metrics::Metrics;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{ApiError, Client};
use crate::config::Config;
use crate::job::{JobState, StateName};
use crate::journal::JournalError;
use crate::lock::LockError;
use crate::systemd::Systemd;
use crate::watch::WatchEvent;
use coordinator::Coordinator;
pub(crate) use recovery::Recovered;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot set up the server client: {0}")]
    Client(#[from] ApiError),
    #[error(transparent)]
    InboxOwned(#[from] crate::inbox::InboxOwned),
    #[error(
        "cannot open the dashboard on web.listen = {addr}: {error}; pick another address or port, or stop what uses it"
    )]
    Web { addr: std::net::SocketAddr, error: std::io::Error },
}

/// A job's news, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub id: i64,
    pub file: PathBuf,
    pub state: StateName,
    pub progress: Option<f64>,
    pub reason: Option<String>,
    /// Why the job is held up now (a retry, a pause), in words.
    pub waiting: Option<String>,
}

/// How the daemon runs.
#[derive(Default)]
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
    /// Send files delivered (or refused) before again, each for a new credit (`process --again`).
    pub again: bool,
    /// How to read the configuration again (the dashboard's Reload).
    pub reload_source: Option<control::ReloadSource>,
    /// What to serve beside the daemon (the dashboard: see `crate::serve`); not with `files`.
    pub front: Option<Front>,
    /// How notifications are sent (tests give their own; the real one by default).
    pub transport: Option<crate::notify::Transport>,
}

/// Something served beside the daemon, started once its context exists and before any job
/// runs: it gets a handle on the daemon and a token that stops it, and answers with its
/// address (or why it cannot listen, which stops the start). The daemon knows nothing more of
/// it, so the dashboard sits above the daemon and never the other way round.
pub type Front = Box<dyn FnOnce(Handle, CancellationToken) -> FrontStart + Send>;

/// A [`Front`] starting: its address once it listens.
pub type FrontStart = std::pin::Pin<Box<dyn Future<Output = Result<String, DaemonError>> + Send>>;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
    /// With `once`: files not sent because an earlier job delivered or refused this version.
    pub before: Vec<Before>,
}

/// A file an earlier job handled: not sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub file: PathBuf,
    pub job: i64,
    /// How it ended: `done` (with its outputs) or `rejected` (with the reason).
    pub state: JobState,
}

/// Runs the daemon until `shutdown` resolves (or, with `once`, until the inboxes are processed).
pub async fn run(
    config: Config,
    mut options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, DaemonError> {
    let systemd = Systemd::from_env();
    let client = Client::new(config.server.client_options())?;
    let marks_inboxes = options.files.is_none();

    // 1. Recover: lock, journal, folders, inbox claims, staged leftovers, the server's limits.
    let recovered = recovery::recover(&config, &client, marks_inboxes).await?;

    // 2. The context every job shares. What runs beside the daemon (the dashboard) needs job
    //    news, and starts before any job runs (a port in use stops the start with a clear error).
    let front = options.front.take().filter(|_| marks_inboxes);
    let updates = match options.updates.take() {
        Some(tx) => Some(tx),
        None => front.as_ref().map(|_| broadcast::channel(1024).0),
    };
    let health = Arc::new(cluster::Health::default());
    let commits = commits::Committer::start(Arc::clone(&recovered.journal), Arc::clone(&health));
    let cancel = CancellationToken::new();
    let notifier = notices::Notifier::start(
        config.notify.clone(),
        Arc::clone(&recovered.journal),
        options.transport.take().unwrap_or_else(crate::notify::real_transport),
        cancel.child_token(),
    );
    let news = context::News { updates, notifier };
    let ctx = Arc::new(context::Ctx::new(config, &recovered, commits, health, client, news, marks_inboxes));
    ctx.gate.load_holds(recovered.journal.pauses()?);
    let (requests_tx, mut requests) = mpsc::channel::<control::Request>(64);
    if let Some(front) = front {
        let handle = Handle::new(ctx.clone(), requests_tx.clone(), options.reload_source.take());
        let address = front(handle, cancel.child_token()).await?;
        let _ = ctx.dashboard.set(address);
    }

    // 3. Resume unfinished jobs by their restart rules.
    let mut coordinator = Coordinator::new(ctx.clone(), options.once, options.again, recovered.claims);
    coordinator.resume(recovered.unfinished);

    // 4. Watch the inboxes, or take the given files.
    if let Some(listen) = ctx.config().metrics_listen {
        tokio::spawn(metrics_endpoint::serve(ctx.clone(), listen, cancel.child_token()));
    }
    tokio::spawn(follow_holds(ctx.clone(), cancel.child_token()));
    // A node of a shared journal keeps its leases and takes over the jobs of silent nodes.
    let (taken_tx, mut taken) = mpsc::channel::<Vec<crate::journal::JobRecord>>(4);
    if let Some(cluster) = ctx.config().cluster.clone().filter(|_| ctx.journal.node().is_some()) {
        cluster::keep_leases(
            Arc::clone(&ctx.journal),
            Arc::clone(&ctx.health),
            Arc::clone(&ctx.running),
            cluster.lease,
            ctx.config().server.max_in_flight,
            taken_tx,
            cancel.child_token(),
        );
    }
    let (events_tx, mut events) = mpsc::channel::<WatchEvent>(1024);
    match options.files.take() {
        None => coordinator.start_watchers(&events_tx, &cancel),
        Some(files) => coordinator.take_files(files),
    }

    // 5. Hand every event to the coordinator until shutdown (or, with `once`, the end).
    let mut pulse = tokio::time::interval(systemd.watchdog_every().unwrap_or(Duration::from_secs(10)));
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reloads = options.reloads.take();
    tokio::pin!(shutdown);
    let result = loop {
        coordinator.fill_slots();
        if coordinator.becomes_ready() {
            systemd.ready(&coordinator.on_tick().line());
        }
        if coordinator.is_finished() {
            coordinator.close_batches();
            ctx.notifier.flush(NOTICES_AT_THE_END).await;
            break Ok(coordinator.summary());
        }
        let batch_close = coordinator.next_batch_close();
        tokio::select! {
            _ = &mut shutdown => break coordinator.collect_finished().map(|()| coordinator.summary()),
            () = async { tokio::time::sleep_until(batch_close.unwrap_or_else(tokio::time::Instant::now)).await },
                if batch_close.is_some() => coordinator.close_batches(),
            _ = pulse.tick() => {
                let status = coordinator.on_tick();
                // Nothing before READY: systemd hears the service is up first, then its pulse.
                if coordinator.is_ready() {
                    systemd.alive(&status.line());
                }
            }
            Some(new) = async { match reloads.as_mut() { Some(r) => r.recv().await, None => None } } => {
                systemd.reloading();
                let _ = coordinator.on_reload(new, &events_tx, &cancel);
                systemd.ready(&coordinator.live_status().line());
            }
            Some(request) = requests.recv() => coordinator.on_request(request, &events_tx, &cancel),
            Some(jobs) = taken.recv() => coordinator.resume(jobs),
            Some(event) = events.recv() => coordinator.on_watch_event(event),
            // `status` shows a pause as soon as it starts, not at the next pulse.
            _ = ctx.gate.pause_changed() => {
                coordinator.write_status();
            }
            // …and a shared journal's database going away or coming back, with systemd's STATUS=.
            _ = ctx.health.changed() => {
                let status = coordinator.write_status();
                if coordinator.is_ready() {
                    systemd.alive(&status.line());
                }
            }
            joined = coordinator.next_finished() => {
                if let Err(e) = coordinator.on_job_finished(joined) {
                    break Err(e);
                }
            }
        }
    };
    systemd.stopping();
    cancel.cancel();
    let state_dir = ctx.config().state_dir.clone();
    coordinator.shutdown().await;
    LiveStatus::remove(&state_dir);
    info!("retouchd stopped");
    result
}

/// How long a run to the end (`retouchd process`) gives its last notices to be sent before it
/// returns (what is left waits in the journal for the daemon or the next run).
const NOTICES_AT_THE_END: Duration = Duration::from_secs(15);

/// How often the daemon reads the pauses people set (`retouchd pause` from a shell, or on
/// another node of a shared journal).
const HOLDS_EVERY: Duration = Duration::from_secs(2);

/// Keeps the gate's pauses as the journal has them.
async fn follow_holds(ctx: Arc<context::Ctx>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(HOLDS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let journal = Arc::clone(&ctx.journal);
        match tokio::task::spawn_blocking(move || journal.pauses()).await {
            Ok(Ok(holds)) => {
                ctx.gate.set_holds(holds);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "the pauses could not be read; kept as they were"),
            Err(_) => {}
        }
    }
}
