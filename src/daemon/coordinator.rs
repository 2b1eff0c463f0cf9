//! The coordinator: owns the queue of ready files, the running jobs (one task each), the files
//! seen again while their job runs (deferred until it ends), the watchers, and what this run did.
//! It has one method per thing that happens: a watcher's event, a job's end, a reload, a tick.
//! [`super::run`]'s loop only waits for the next of these and hands it over.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::admission::{self, Admission, Queued};
use super::batches::{Batches, Settled};
use super::claims::Claims;
use super::context::Ctx;
use super::control::{Request, WaitingPage};
use super::live_status::{LiveStatus, USER_PAUSE};
use super::runner::Runner;
use super::waiting::{self, WaitingFile, Why};
use super::{Before, DaemonError, Summary};
use crate::config::Config;
use crate::job::{JobState, StateName};
use crate::journal::{JobRecord, JournalError};
use crate::source::Stamp;
use crate::watch::{self, WatchEvent};

/// A job's file: (inbox, path below it).
pub(super) type JobKey = (PathBuf, PathBuf);
/// How a job task ended.
pub(super) type JobOutcome = (JobKey, Result<Ended, JournalError>);

pub(super) enum Ended {
    /// The job ran to this final record; whether the server charged a credit for it.
    Ran(JobRecord, bool),
    /// An earlier job handled this version of the file.
    Before(JobRecord),
    /// The file turned out not to be a job.
    Nothing,
}

/// One generation of watcher tasks (replaced when a reload changes the watches).
struct Watchers {
    cancel: CancellationToken,
    /// Each watcher's own token, to stop one whose inbox another daemon took.
    by_inbox: HashMap<PathBuf, CancellationToken>,
    count: usize,
    /// How many have finished their first scan, and (with `once`) handed on everything.
    scanned: usize,
    drained: usize,
}

pub(super) struct Coordinator {
    ctx: Arc<Ctx>,
    /// Process what is there, then stop.
    once: bool,
    /// Send files done or refused before again (`process --again`).
    again: bool,
    queue: VecDeque<Queued>,
    jobs: JoinSet<JobOutcome>,
    active: HashSet<JobKey>,
    /// Files seen again while their job runs; looked at once that job ends.
    deferred: HashMap<JobKey, Queued>,
    /// Files still in their inbox whose very version an earlier job delivered or refused
    /// (not sent again), until they change or leave.
    kept: HashMap<JobKey, (Stamp, i64, StateName)>,
    /// What the watchers found and have not handed on yet.
    board: Arc<watch::Board>,
    watchers: Watchers,
    /// Inboxes that cannot be read now (unmounted shares).
    unavailable: BTreeSet<PathBuf>,
    ready_announced: bool,
    summary: Summary,
    /// The claims on the inboxes (none for `retouchd process`).
    claims: Option<Claims>,
    /// Files dropped together, until each batch is told about (`batch_done`).
    batches: Batches,
}

impl Coordinator {
    pub(super) fn new(ctx: Arc<Ctx>, once: bool, again: bool, claims: Option<Claims>) -> Self {
        Coordinator {
            ctx,
            once,
            again,
            queue: VecDeque::new(),
            jobs: JoinSet::new(),
            active: HashSet::new(),
            deferred: HashMap::new(),
            kept: HashMap::new(),
            board: Arc::default(),
            watchers: Watchers {
                cancel: CancellationToken::new(),
                by_inbox: HashMap::new(),
                count: 0,
                scanned: 0,
                drained: 0,
            },
            unavailable: BTreeSet::new(),
            ready_announced: false,
            summary: Summary::default(),
            claims,
            batches: Batches::default(),
        }
    }

    /// Starts a task for each job found unfinished in the journal (or taken over from a node
    /// that stopped renewing its lease), by its restart rule.
    pub(super) fn resume(&mut self, unfinished: Vec<JobRecord>) {
        let config = self.ctx.config();
        for job in unfinished {
            let Some(watch) = admission::watch_for(&config, &job.source.inbox) else {
                warn!(job = job.id, inbox = %job.source.inbox.display(), "unfinished job for an inbox no longer configured; left as it is");
                continue;
            };
            let key = (job.source.inbox.clone(), job.source.rel_path.clone());
            self.active.insert(key.clone());
            let ctx = self.ctx.clone();
            self.batches.arrived(&key, job.created_at);
            self.spawn_job(key, async move { ran(&ctx, Runner::new(&ctx, job, watch).run().await).await });
        }
    }

    /// Starts one watcher per inbox (cancelled with `parent`), replacing any earlier ones.
    pub(super) fn start_watchers(&mut self, tx: &mpsc::Sender<WatchEvent>, parent: &CancellationToken) {
        self.watchers.cancel.cancel();
        let config = self.ctx.config();
        let cancel = parent.child_token();
        let mut by_inbox = HashMap::new();
        for w in &config.watches {
            let own = cancel.child_token();
            by_inbox.insert(w.inbox.clone(), own.clone());
            tokio::spawn(watch::run(w.clone(), tx.clone(), Arc::clone(&self.board), self.once, own));
        }
        self.watchers = Watchers { cancel, by_inbox, count: config.watches.len(), scanned: 0, drained: 0 };
    }

    /// Queues exactly these files (inbox, path below it) instead of watching (`retouchd process`).
    pub(super) fn take_files(&mut self, files: Vec<(PathBuf, PathBuf)>) {
        self.once = true;
        // One run, one batch: shown as the folder the files share.
        if let Some(first) = files.first().map(|(inbox, _)| inbox.clone()) {
            let shared = files.iter().fold(first, |common, (inbox, _)| {
                common.ancestors().find(|a| inbox.starts_with(a)).map(Path::to_path_buf).unwrap_or_default()
            });
            self.batches.whole_run(shared);
        }
        for (inbox, rel) in files {
            match crate::beneath::Dir::root(&inbox).and_then(|dir| dir.metadata(&rel)) {
                Ok(meta) if meta.is_file() => {
                    self.batches.arrived(&(inbox.clone(), rel.clone()), crate::vocab::now_ms());
                    self.queue.push_back(Queued { inbox, rel, stamp: Stamp::of(&meta), reject: None, cancelled: false })
                }
                _ => warn!(file = %inbox.join(&rel).display(), "not a regular file; skipped"),
            }
        }
    }

    /// Starts jobs for queued files while there are free slots.
    pub(super) fn fill_slots(&mut self) {
        while self.jobs.len() < self.ctx.config().server.max_in_flight
            && let Some(item) = self.queue.pop_front()
        {
            self.admit_now(item);
        }
    }

    /// Starts the job for `item` now (deferred if its file's job still runs).
    fn admit_now(&mut self, item: Queued) {
        let key = item.key();
        if !self.active.insert(key.clone()) {
            self.deferred.insert(key, item);
            return;
        }
        let (ctx, again) = (self.ctx.clone(), self.again);
        self.spawn_job(key, async move {
            match admission::admit(&ctx, item, again).await {
                Ok(Admission::Job(job, watch)) => {
                    ran(&ctx, Runner::new(&ctx, job, watch).cancellable().run().await).await
                }
                Ok(Admission::Before(job)) => Ok(Ended::Before(job)),
                Ok(Admission::Nothing) => Ok(Ended::Nothing),
                Err(e) => Err(e),
            }
        });
    }

    /// Runs one file's task. A panic in it (a bug) ends that task alone: its file's key is given
    /// back, so the file is looked at again, and the daemon goes on.
    fn spawn_job(&mut self, key: JobKey, work: impl Future<Output = Result<Ended, JournalError>> + Send + 'static) {
        self.jobs.spawn(guarded(key, work));
    }

    /// True once, when every watcher has made its first scan: time to tell systemd we are ready.
    pub(super) fn becomes_ready(&mut self) -> bool {
        if self.ready_announced || self.watchers.scanned < self.watchers.count {
            return false;
        }
        self.ready_announced = true;
        info!("ready: journal recovered and inboxes scanned");
        true
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready_announced
    }

    /// With `once`: everything found has been handed on and every job has ended.
    pub(super) fn is_finished(&self) -> bool {
        self.once && self.watchers.drained >= self.watchers.count && self.queue.is_empty() && self.jobs.is_empty()
    }

    pub(super) fn summary(&self) -> Summary {
        self.summary.clone()
    }

    pub(super) fn on_watch_event(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Ready { inbox, rel, stamp } => {
                self.enqueue(Queued { inbox, rel, stamp, reject: None, cancelled: false })
            }
            WatchEvent::Incomplete { inbox, rel, stamp, waited } => {
                let reject = Some(admission::incomplete_reason(stamp, waited));
                self.enqueue(Queued { inbox, rel, stamp, reject, cancelled: false });
            }
            WatchEvent::Scanned { .. } => self.watchers.scanned += 1,
            WatchEvent::Drained { .. } => self.watchers.drained += 1,
            WatchEvent::Paused { inbox, reason } => {
                warn!(inbox = %inbox.display(), reason, "watch paused");
                self.unavailable.insert(inbox);
            }
            WatchEvent::Resumed { inbox } => {
                info!(inbox = %inbox.display(), "watch resumed");
                self.unavailable.remove(&inbox);
            }
            WatchEvent::Gone { inbox, rel } => {
                let key = (inbox, rel);
                if !self.active.contains(&key) {
                    self.batches.forget(&key);
                }
                self.kept.remove(&key);
            }
        }
    }

    /// Queues a ready file for a slot; a file already refused (incomplete) needs no server and
    /// goes to failed/ at once, whatever waits in the queue (a pause, busy slots).
    fn enqueue(&mut self, item: Queued) {
        let key = item.key();
        self.kept.remove(&key);
        self.batches.arrived(&key, crate::vocab::now_ms());
        if self.active.contains(&key) {
            self.deferred.insert(key, item);
        } else if item.reject.is_some() {
            self.admit_now(item);
        } else {
            self.queue.push_back(item);
        }
    }

    /// Waits for the next job task to end (pending forever when none runs).
    pub(super) async fn next_finished(&mut self) -> Result<JobOutcome, JoinError> {
        match self.jobs.join_next().await {
            Some(joined) => joined,
            None => std::future::pending().await,
        }
    }

    /// A job task ended: count it, and look at the file again if it was seen meanwhile. A
    /// journal that cannot be written stops the daemon.
    pub(super) fn on_job_finished(&mut self, joined: Result<JobOutcome, JoinError>) -> Result<(), DaemonError> {
        let (key, outcome) = match joined {
            Ok(joined) => joined,
            Err(e) if e.is_panic() => {
                error!(error = %e, "a job task panicked; its job resumes at the next start");
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        self.active.remove(&key);
        if let Some(item) = self.deferred.remove(&key) {
            self.queue.push_back(item);
        }
        let outcome = match outcome {
            Err(JournalError::LostLease { id }) => {
                warn!(job = id, file = %key.1.display(), "another node took this job over (this node's lease on it ran out); leaving it to that node");
                self.batches.forget(&key);
                return Ok(());
            }
            other => other?,
        };
        if !matches!(outcome, Ended::Ran(..)) {
            self.batches.forget(&key);
        }
        match outcome {
            Ended::Ran(job, charged) => {
                // How it ended, and what went wrong (told as a `failed` event).
                let (settled, miss) = match &job.state {
                    JobState::Done { .. } => {
                        self.summary.done += 1;
                        (Some(Settled::Delivered { charged }), None)
                    }
                    JobState::Failed { reason, .. } => {
                        self.summary.failed += 1;
                        (Some(Settled::Failed { charged, reason: reason.clone() }), Some(("failed", reason)))
                    }
                    JobState::Rejected { reason, .. } => {
                        self.summary.rejected += 1;
                        (Some(Settled::Refused { reason: reason.clone() }), Some(("refused", reason)))
                    }
                    _ => (None, None),
                };
                if let Some((outcome, reason)) = miss {
                    self.ctx.notifier.emit(crate::notify::Event::Failed {
                        file: job.source.path().display().to_string(),
                        job: job.id,
                        outcome: outcome.to_string(),
                        reason: reason.clone(),
                    });
                }
                match settled {
                    Some(settled) => self.batches.settled(&key, settled),
                    None => self.batches.forget(&key),
                }
                self.close_batches();
            }
            // Only a run to the end reports these (a daemon sees kept files again and again).
            Ended::Before(job) if self.once => {
                self.summary.before.push(Before { file: job.source.path(), job: job.id, state: job.state })
            }
            // Kept in the inbox, and said so in `status` until it changes or leaves.
            Ended::Before(job) => {
                self.kept.insert(key, (job.source.stamp, job.id, job.state.name()));
            }
            Ended::Nothing => {}
        }
        Ok(())
    }

    /// Tells about the batches that are done (`batch_done`). With `once`, at the end of the run,
    /// every batch closes without waiting for its quiet period.
    pub(super) fn close_batches(&mut self) {
        let config = self.ctx.config();
        let quiet = if self.is_finished() { std::time::Duration::ZERO } else { config.batch_quiet };
        let outbox_of = |inbox: &std::path::Path| admission::watch_for(&config, inbox).map(|w| w.outbox.clone());
        for report in self.batches.close_done(quiet, outbox_of) {
            info!(folder = %report.folder, delivered = report.delivered, failed = report.failed,
                refused = report.refused, credits = report.credits, "batch_done");
            self.ctx.notifier.emit(crate::notify::Event::BatchDone(report));
        }
    }

    /// When a batch may close next (its quiet period ends).
    pub(super) fn next_batch_close(&self) -> Option<tokio::time::Instant> {
        self.batches.next_close(self.ctx.config().batch_quiet)
    }

    /// Counts the jobs that have ended but were not looked at yet (at shutdown).
    pub(super) fn collect_finished(&mut self) -> Result<(), DaemonError> {
        while let Some(joined) = self.jobs.try_join_next() {
            self.on_job_finished(joined)?;
        }
        Ok(())
    }

    /// Switches to `new`; restarts the watchers when the watches changed (files already queued
    /// are dropped: the new watchers find them again). A new inbox that another daemon owns
    /// keeps the old configuration. Says what happened, or why the new one was refused.
    pub(super) fn on_reload(
        &mut self,
        new: Config,
        tx: &mpsc::Sender<WatchEvent>,
        parent: &CancellationToken,
    ) -> Result<String, String> {
        if let Some(claims) = self.claims.as_mut() {
            let old = self.ctx.config();
            for w in new.watches.iter().filter(|w| !old.watches.iter().any(|o| o.inbox == w.inbox)) {
                if let Err(owned) = claims.claim(&w.inbox, &self.ctx.journal) {
                    error!("the new configuration is refused; the old one keeps running. {owned}");
                    return Err(format!("the new configuration is refused; the old one keeps running. {owned}"));
                }
            }
        }
        match self.ctx.reload(new) {
            Ok(true) => {
                self.start_watchers(tx, parent);
                self.unavailable.clear();
                // Dropped from the queue, they leave their batches; the new watchers find those
                // still there, and they arrive again.
                for item in self.queue.drain(..) {
                    self.batches.forget(&item.key());
                }
                self.deferred.clear();
                self.kept.clear();
                self.board.clear();
                Ok("configuration reloaded; the watches changed and their folders are scanned again".into())
            }
            Ok(false) => Ok("configuration reloaded; the watches are unchanged".into()),
            Err(e) => Err(e),
        }
    }

    /// Answers a request from outside (the dashboard).
    pub(super) fn on_request(&mut self, request: Request, tx: &mpsc::Sender<WatchEvent>, parent: &CancellationToken) {
        match request {
            Request::Status(reply) => {
                let _ = reply.send(self.live_status());
            }
            Request::Waiting { offset, limit, name, reply } => {
                let _ = reply.send(self.waiting_page(name.as_deref(), offset, limit));
            }
            Request::CancelWaiting { file, reply } => {
                let found = self.queue.iter().position(|q| q.inbox.join(&q.rel) == file);
                let answer = match found.and_then(|i| self.queue.remove(i)) {
                    Some(mut item) => {
                        item.cancelled = true;
                        self.admit_now(item);
                        Ok(format!("{} will not be sent; it goes to the failed folder", file.display()))
                    }
                    None => Err(format!("{} is not waiting for a slot (any more)", file.display())),
                };
                let _ = reply.send(answer);
            }
            Request::Reload { config, reply } => {
                let _ = reply.send(self.on_reload(*config, tx, parent));
            }
        }
    }

    /// The pulse: renews the claims on the inboxes (stopping the watch of one another daemon
    /// has taken), writes the live status for `retouchd status` and returns it.
    pub(super) fn on_tick(&mut self) -> LiveStatus {
        if let Some(claims) = self.claims.as_mut() {
            for owned in claims.renew(&self.ctx.config(), &self.ctx.journal) {
                if let Some(cancel) = self.watchers.by_inbox.remove(&owned.inbox) {
                    cancel.cancel();
                }
                self.unavailable.insert(owned.inbox);
            }
        }
        self.write_status()
    }

    /// Writes the live status for `retouchd status` (also at once when a pause starts or ends).
    pub(super) fn write_status(&self) -> LiveStatus {
        let status = self.live_status();
        status.write(&self.ctx.config().state_dir);
        status
    }

    /// The files seen and not jobs (yet) whose path contains `name` (any case), with why they
    /// wait, from `offset`: the queue in the order it goes, then the files behind an earlier
    /// version, the unsettled ones, and those kept as done before. Only the page is built.
    pub(super) fn waiting_page(&self, name: Option<&str>, offset: usize, limit: usize) -> WaitingPage {
        /// Where a file waits; turned into a [`Why`] only for the files shown.
        enum Place {
            Queued,
            Behind,
            Unsettled(Option<std::time::SystemTime>),
            Kept(i64, StateName),
        }
        let config = self.ctx.config();
        let queued = self.queue.iter().map(|q| (&q.inbox, &q.rel, q.stamp, Place::Queued));
        let mut behind: Vec<_> = self.deferred.values().map(|q| (&q.inbox, &q.rel, q.stamp, Place::Behind)).collect();
        behind.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let boards = self.board.unsettled();
        let unsettled = boards.iter().flat_map(|(inbox, files)| {
            files.iter().map(move |u| (inbox, &u.rel, u.stamp, Place::Unsettled(u.gives_up_at)))
        });
        let mut kept: Vec<_> = self
            .kept
            .iter()
            .map(|((inbox, rel), (stamp, job, state))| (inbox, rel, *stamp, Place::Kept(*job, *state)))
            .collect();
        kept.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let all = queued.chain(behind).chain(unsettled).chain(kept);
        let name = name.map(str::to_lowercase);
        let matches = |inbox: &std::path::Path, rel: &std::path::Path| {
            name.as_ref().is_none_or(|n| inbox.join(rel).to_string_lossy().to_lowercase().contains(n))
        };
        let (mut total, mut files) = (0, Vec::new());
        let now = crate::vocab::now_secs();
        for (inbox, rel, stamp, place) in all {
            if !matches(inbox, rel) {
                continue;
            }
            total += 1;
            if total <= offset || files.len() >= limit {
                continue;
            }
            let why = match place {
                Place::Queued => match (
                    self.ctx.gate.why_held(inbox).or_else(|| window_closed(&config, inbox)),
                    self.ctx.folder_problem(inbox),
                ) {
                    (Some(reason), _) => Why::Paused { reason },
                    (None, Some(problem)) => Why::FoldersUnwritable { problem },
                    (None, None) => {
                        Why::Slot { in_flight: self.jobs.len(), max_in_flight: config.server.max_in_flight }
                    }
                },
                Place::Behind => Why::BehindEarlierVersion,
                Place::Unsettled(Some(at)) => {
                    Why::Incomplete { fails_at: at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) }
                }
                Place::Unsettled(None) => Why::Settling {
                    settle_secs: admission::watch_for(&config, inbox).map_or(0, |w| w.settle.as_secs()),
                },
                Place::Kept(job, state) => Why::DoneBefore { job, state },
            };
            let changed_secs_ago = waiting::secs_since(stamp.mtime_ns, now);
            files.push(WaitingFile { file: inbox.join(rel), inbox: inbox.clone(), changed_secs_ago, why });
        }
        WaitingPage { total, files }
    }

    pub(super) fn live_status(&self) -> LiveStatus {
        let paused = match self.ctx.gate.held_all() {
            Some(hold) => Some((USER_PAUSE.to_string(), super::gate::hold_words(None, hold))),
            None => self.ctx.gate.paused().map(|(r, m)| (r.as_str().to_string(), m)),
        };
        let waiting = self.waiting_page(None, 0, super::live_status::WAITING_SHOWN);
        LiveStatus {
            waiting_files: waiting.files,
            job_waits: self.ctx.all_job_waits(),
            pid: std::process::id(),
            updated_at: (crate::vocab::now_ms() / 1000).max(0) as u64,
            paused: paused.as_ref().map(|(r, _)| r.clone()),
            pause_detail: paused.map(|(_, m)| m).filter(|m| !m.is_empty()),
            uploading: self.ctx.metrics.uploading(),
            in_flight: self.jobs.len(),
            waiting: waiting.total,
            done: self.summary.done,
            failed: self.summary.failed,
            refused: self.summary.rejected,
            quota_left: self.ctx.metrics.quota_left(),
            inboxes_unavailable: self
                .unavailable
                .iter()
                .map(|p| p.display().to_string())
                .chain(
                    self.ctx.config().watches.iter().filter_map(|w| {
                        crate::share::hung_for(&w.inbox).map(|d| crate::share::not_answering(&w.inbox, d))
                    }),
                )
                .collect(),
            disk_full: self.ctx.disk_full().map(|p| p.display().to_string()),
            dashboard: self.ctx.dashboard.get().cloned(),
            log_command: LiveStatus::log_command_of_this_process(),
            node: self.ctx.journal.node().map(str::to_string),
            database_unreachable: self.ctx.health.problem(),
            batches: self.batches.views(),
        }
    }

    /// Stops the watchers and every job task (their state is in the journal), and gives the
    /// inboxes up.
    pub(super) async fn shutdown(mut self) {
        self.watchers.cancel.cancel();
        self.jobs.shutdown().await;
        if let Some(claims) = &self.claims {
            claims.release_all(&self.ctx.config());
        }
        // A node's jobs in flight need not wait out the lease to be taken over.
        let journal = Arc::clone(&self.ctx.journal);
        let _ = tokio::task::spawn_blocking(move || journal.leave()).await;
    }
}
/// A job's run, with whether the server charged for it (its history has a Processing step).
async fn ran(ctx: &Arc<Ctx>, run: Result<JobRecord, JournalError>) -> Result<Ended, JournalError> {
    let job = run?;
    let (journal, id) = (Arc::clone(&ctx.journal), job.id);
    let steps = tokio::task::spawn_blocking(move || journal.timeline(id)).await;
    let charged = matches!(steps, Ok(Ok(steps)) if crate::journal::charged(&steps));
    Ok(Ended::Ran(job, charged))
}

/// A file's task with its key: a panic in `work` becomes "nothing happened" (logged), so the
/// key always comes back.
async fn guarded(key: JobKey, work: impl Future<Output = Result<Ended, JournalError>>) -> JobOutcome {
    use futures_util::FutureExt;
    let outcome = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            error!(file = %key.1.display(), what = super::runner::panic_message(panic.as_ref()),
                "internal error (a bug in retouchd) in a job task; the daemon goes on");
            Ok(Ended::Nothing)
        }
    };
    (key, outcome)
}

/// Why `inbox`'s files wait for their upload window now, if they do.
fn window_closed(config: &crate::config::Config, inbox: &std::path::Path) -> Option<String> {
    let watch = admission::watch_for(config, inbox)?;
    watch.schedule.as_ref()?.closed_words(jiff::Timestamp::now())
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_gives_its_key_back_and_ends_as_nothing() {
        let key: JobKey = ("/in".into(), "a.jpg".into());
        let work = async { panic!("a bug") };
        let (back, outcome) = guarded(key.clone(), work).await;
        assert_eq!(back, key);
        assert!(matches!(outcome, Ok(Ended::Nothing)));
    }
}
