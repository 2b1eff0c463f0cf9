//! What every job task shares ([`Ctx`]): the configuration in force, the journal and its group
//! commit, the pause gate, the upload slots, server clients (one per host a job was started on),
//! counters, the learned poll plan, where job news goes, the jobs a person may still cancel
//! and whether an outbox's disk is full.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use tokio::sync::{Semaphore, broadcast};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::cluster::{Health, Running};
use super::commits::Committer;
use super::gate::Gate;
use super::metrics::Metrics;
use super::poll_plan::PollPlan;
use super::waiting::JobWait;
use super::{JobUpdate, Recovered};
use crate::api::{Client, Limits};
use crate::config::Config;
use crate::job::{Event, JobState};
use crate::journal::{JobId, JobRecord, Journal, JournalError};

pub(crate) struct Ctx {
    config: RwLock<Arc<Config>>,
    pub(super) journal: Arc<Journal>,
    /// Group commit of new jobs and state changes (see [`super::commits`]).
    pub(super) commits: Committer,
    pub(super) gate: Gate,
    pub(super) uploads: Semaphore,
    /// Credits held for starts not journaled yet (see [`ChargeHold`]).
    pub(super) pending_charges: Arc<Mutex<PendingCharges>>,
    /// Finished photos being made at once (`render.max_renders`).
    pub(super) renders: Semaphore,
    client: RwLock<Client>,
    /// Clients for hosts other than the configured one, for jobs started there.
    other_hosts: Mutex<HashMap<String, Client>>,
    pub(super) metrics: Metrics,
    pub(super) limits: Limits,
    updates: Option<broadcast::Sender<JobUpdate>>,
    /// Whether inboxes carry the marker file (not for `retouchd process`).
    pub(super) marks_inboxes: bool,
    /// Learned job durations, to poll near the expected completion.
    pub(super) poll_plan: PollPlan,
    /// When the server last answered a job's request properly (see the runner's backoff).
    last_server_success: Mutex<Option<Instant>>,
    /// Jobs of this run waiting for their first upload: a person may still cancel them.
    cancellable: Mutex<HashMap<JobId, CancellationToken>>,
    /// An outbox whose disk was found full, until a delivery succeeds.
    disk_full: Mutex<Option<PathBuf>>,
    /// The dashboard's address (`http://…/`), once it listens.
    pub(super) dashboard: std::sync::OnceLock<String>,
    /// Whether the journal's database answers (a shared journal; see [`super::cluster`]).
    pub(super) health: Arc<Health>,
    /// The jobs running here (a node renews their leases).
    pub(super) running: Arc<Running>,
    /// Paid results kept by content (see [`crate::result_cache`]).
    pub(super) results: crate::result_cache::ResultCache,
    /// Each watch's last folder probe (by inbox): when, and what it found.
    folders: Mutex<HashMap<PathBuf, FolderProbe>>,
    /// Why each job that is held up waits (a retry, a pause), until it moves on.
    job_waits: Mutex<HashMap<JobId, JobWait>>,
    /// The completion hook (`server.hook_url`).
    pub(super) hooks: super::completion_hook::Hooks,
    /// Where events go (`[[notify]]`).
    pub(super) notifier: super::notices::Notifier,
    /// The budget periods already announced as reached (whose, when they end).
    pub(super) budgets_announced: Mutex<std::collections::HashSet<(String, i64)>>,
}

/// When a watch's folders were probed, and what was found (why they cannot be written).
type FolderProbe = (Instant, Result<(), String>);

/// How long a folder probe's answer is trusted before uploads of its watch ask again.
const FOLDER_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a watch whose folders cannot be written tries them again.
const FOLDER_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Where news goes: each job's progress (for progress displays) and events (for the
/// notifications).
pub(super) struct News {
    pub(super) updates: Option<broadcast::Sender<JobUpdate>>,
    pub(super) notifier: super::notices::Notifier,
}

impl Ctx {
    pub(super) fn new(
        config: Config,
        recovered: &Recovered,
        commits: Committer,
        health: Arc<Health>,
        client: Client,
        news: News,
        marks_inboxes: bool,
    ) -> Ctx {
        let News { updates, notifier } = news;
        let results = crate::result_cache::ResultCache::new(&config.state_dir, config.result_cache_mb);
        let hooks = super::completion_hook::Hooks::new(&config.state_dir, config.server.hook_url.as_deref());
        Ctx {
            hooks,
            results,
            uploads: Semaphore::new(config.server.max_uploads),
            pending_charges: Arc::default(),
            renders: Semaphore::new(config.max_renders),
            config: RwLock::new(Arc::new(config)),
            journal: Arc::clone(&recovered.journal),
            commits,
            gate: Gate::with_notifier(notifier.clone()),
            notifier,
            budgets_announced: Mutex::default(),
            client: RwLock::new(client),
            other_hosts: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            limits: recovered.limits.clone(),
            updates,
            marks_inboxes,
            poll_plan: PollPlan::default(),
            last_server_success: Mutex::new(None),
            cancellable: Mutex::new(HashMap::new()),
            disk_full: Mutex::new(None),
            dashboard: std::sync::OnceLock::new(),
            health,
            running: Arc::default(),
            folders: Mutex::new(HashMap::new()),
            job_waits: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `watch`'s outbox, done and failed folders can be written (probed on a
    /// blocking thread, at most every [`FOLDER_PROBE_EVERY`] while they can), so that no credit is
    /// spent on a result that could not be delivered. While they cannot, this watch's uploads
    /// wait (the others go on), with a warning that names the folder, the user and the fix.
    pub(super) async fn until_deliverable(&self, watch: &crate::config::WatchConfig, job: &JobRecord) {
        let mut warned = false;
        loop {
            let known = self.folders.lock().unwrap_or_else(|p| p.into_inner()).get(&watch.inbox).cloned();
            let verdict = match known {
                Some((at, Ok(()))) if at.elapsed() < FOLDER_PROBE_EVERY => Ok(()),
                _ => {
                    let folders = watch.delivery_folders();
                    let probed = tokio::task::spawn_blocking(move || {
                        folders.iter().try_for_each(|(dir, is_outbox)| crate::deliver::probe_folder(dir, *is_outbox))
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("the folder probe stopped: {e}")));
                    self.folders
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(watch.inbox.clone(), (Instant::now(), probed.clone()));
                    probed
                }
            };
            match verdict {
                Ok(()) => {
                    if warned {
                        info!(inbox = %watch.inbox.display(), "its folders can be written again; uploads go on");
                        self.job_waits(job, None);
                    }
                    return;
                }
                Err(why) => {
                    if !warned {
                        warn!(inbox = %watch.inbox.display(), problem = %why,
                            "uploads of this watch wait: a result could not be delivered (no credit is spent)");
                        warned = true;
                    }
                    let retry_at = Some(crate::vocab::now_secs() + FOLDER_RETRY.as_secs());
                    let why =
                        format!("held before upload: a result could not be delivered ({why}); no credit is spent");
                    self.job_waits(job, Some(JobWait { why, retry_at }));
                    tokio::time::sleep(FOLDER_RETRY).await;
                }
            }
        }
    }

    /// Why `watch`'s uploads are held, if its last folder probe found a folder it cannot write.
    pub(super) fn folder_problem(&self, inbox: &std::path::Path) -> Option<String> {
        let folders = self.folders.lock().unwrap_or_else(|p| p.into_inner());
        folders.get(inbox).and_then(|(_, found)| found.clone().err())
    }

    /// Notes why `job` waits now (`None`: it moves on), and tells listeners.
    pub(super) fn job_waits(&self, job: &JobRecord, wait: Option<JobWait>) {
        let changed = {
            let mut waits = self.job_waits.lock().unwrap_or_else(|p| p.into_inner());
            match wait {
                Some(wait) => waits.insert(job.id, wait.clone()).as_ref() != Some(&wait),
                None => waits.remove(&job.id).is_some(),
            }
        };
        if changed {
            self.announce(job);
        }
    }

    /// Why job `id` is held up, if it is.
    pub(super) fn job_wait(&self, id: JobId) -> Option<JobWait> {
        self.job_waits.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Why each held-up job waits.
    pub(super) fn all_job_waits(&self) -> std::collections::BTreeMap<JobId, JobWait> {
        let waits = self.job_waits.lock().unwrap_or_else(|p| p.into_inner());
        waits.iter().map(|(id, w)| (*id, w.clone())).collect()
    }

    /// The configuration in force (a reload swaps it).
    pub(super) fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn client(&self) -> Client {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A client for the host a job was started on (the task id is only valid there).
    pub(super) fn client_for_host(&self, host: &str) -> Client {
        let current = self.client();
        if host == current.base_url() {
            return current;
        }
        let mut clients = self.other_hosts.lock().unwrap_or_else(|p| p.into_inner());
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
    pub(super) async fn advance(&self, job: &mut JobRecord, event: Event) -> Result<(), JournalError> {
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
        self.commits.update(job.id, job.generation, next.clone()).await?;
        if matches!(next, JobState::Delivered { .. }) {
            self.set_disk_full(None);
        }
        info!(job = job.id, file = %job.source.rel_path.display(), state = %next.name(), "job state");
        job.state = next;
        job.progress = None;
        self.job_waits.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
        self.announce(job);
        Ok(())
    }

    /// Tells listeners (progress bars, the demo) where a job is.
    pub(super) fn announce(&self, job: &JobRecord) {
        if let Some(tx) = &self.updates {
            let _ = tx.send(JobUpdate {
                id: job.id,
                file: job.source.rel_path.clone(),
                state: job.state.name(),
                progress: job.progress,
                reason: job.state.reason().map(str::to_string),
                waiting: self.job_wait(job.id).map(|w| w.describe(crate::vocab::now_secs())),
            });
        }
    }

    /// Notes that the server answered a request properly.
    pub(super) fn server_answered(&self) {
        *self.last_server_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether the server answered anyone after `since`.
    pub(super) fn server_answered_since(&self, since: Instant) -> bool {
        self.last_server_success.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at > since)
    }

    /// A job about to wait for its first upload: the token a cancel fires.
    pub(super) fn waiting_to_send(&self, id: JobId) -> CancellationToken {
        let token = CancellationToken::new();
        self.cancellable.lock().unwrap_or_else(|p| p.into_inner()).insert(id, token.clone());
        token
    }

    /// The job is about to upload: no cancel from now on. False if it was cancelled first.
    pub(super) fn sending(&self, id: JobId) -> bool {
        let token = self.cancellable.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        token.is_some_and(|t| !t.is_cancelled())
    }

    pub(super) fn is_cancellable(&self, id: JobId) -> bool {
        self.cancellable.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id)
    }

    /// Every job's news from now on (when anyone listens).
    pub(super) fn subscribe(&self) -> Option<broadcast::Receiver<JobUpdate>> {
        self.updates.as_ref().map(|tx| tx.subscribe())
    }

    /// Cancels a job that waits for its first upload; false if it is not waiting (any more).
    pub(super) fn cancel_waiting(&self, id: JobId) -> bool {
        match self.cancellable.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Notes that an outbox's disk is full (`Some`), or that deliveries work again (`None`).
    pub(super) fn set_disk_full(&self, outbox: Option<PathBuf>) {
        *self.disk_full.lock().unwrap_or_else(|p| p.into_inner()) = outbox;
    }

    pub(super) fn disk_full(&self) -> Option<PathBuf> {
        self.disk_full.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Switches to a new configuration; returns whether the watches changed. The state folder
    /// and the dashboard's settings cannot change while running; new server settings that do not
    /// work keep the old config (the error says why).
    pub(super) fn reload(&self, mut new: Config) -> Result<bool, String> {
        let old = self.config();
        if new.state_dir != old.state_dir {
            warn!(old = %old.state_dir.display(), new = %new.state_dir.display(), "state.dir changes need a restart; keeping the old one");
            new.state_dir = old.state_dir.clone();
        }
        if new.web != old.web {
            warn!("[web] changes need a restart; the dashboard keeps its address and password");
            new.web = old.web.clone();
        }
        if !crate::notify::Channel::same(&new.notify, &old.notify) {
            warn!("[[notify]] changes need a restart; the notifications keep their channels");
            new.notify = old.notify.clone();
        }
        match Client::new(new.server.client_options()) {
            Ok(client) => *self.client.write().unwrap_or_else(|p| p.into_inner()) = client,
            Err(e) => {
                error!(error = %e, "the new server settings do not work; keeping the old configuration");
                return Err(format!("the new server settings do not work ({e}); the old configuration keeps running"));
            }
        }
        self.other_hosts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        resize(&self.uploads, old.server.max_uploads, new.server.max_uploads);
        resize(&self.renders, old.max_renders, new.max_renders);
        for warning in &new.warnings {
            warn!("{warning}");
        }
        let watches_changed = new.watches != old.watches;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        // A token or URL problem may be fixed now: try at once.
        self.gate.retry_now();
        info!(watches_changed, "configuration reloaded");
        Ok(watches_changed)
    }
}

/// Changes a semaphore's number of permits from `old` to `new`.
fn resize(semaphore: &Semaphore, old: usize, new: usize) {
    if new > old {
        semaphore.add_permits(new - old);
    } else if new < old {
        semaphore.forget_permits(old - new);
    }
}

/// Credits held by jobs between their budget check and their start being journaled, by inbox,
/// and how many holds were released so far: a check whose journal count was read before a
/// release reads again, so a start journaled meanwhile is never missed.
#[derive(Debug, Default)]
pub(super) struct PendingCharges {
    pub(super) held: HashMap<PathBuf, u64>,
    pub(super) released: u64,
}

/// One credit of a budget held by a job between the budget check and its start being journaled,
/// so two jobs checked at once cannot both take the last credit. Released when dropped.
pub(super) struct ChargeHold {
    pending: Arc<Mutex<PendingCharges>>,
    inbox: PathBuf,
}

impl ChargeHold {
    /// Holds a credit for `inbox` (the caller holds the lock on `pending` as `guard`).
    pub(super) fn new(
        pending: &Arc<Mutex<PendingCharges>>,
        guard: &mut PendingCharges,
        inbox: &std::path::Path,
    ) -> ChargeHold {
        *guard.held.entry(inbox.to_path_buf()).or_default() += 1;
        ChargeHold { pending: Arc::clone(pending), inbox: inbox.to_path_buf() }
    }
}

impl Drop for ChargeHold {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pending.held.get_mut(&self.inbox) {
            *n = n.saturating_sub(1);
        }
        pending.released += 1;
    }
}
