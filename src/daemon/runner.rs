//! Drives one job from its journaled state to the end. Each turn takes the step its state calls
//! for ([`JobState::on_restart`]: the same rule for a resumed job and a running one), performs
//! the call or the file work, asks [`crate::job`]'s pure decisions what the answer means, and
//! commits the resulting event (through [`Ctx::advance`]) before the next step's side effect.
//! So the task can be cancelled at any await point and resumed from the journal.
//!
//! Passing problems are retried with the backoff of [`crate::api::policy`] and never fail a file
//! on their own; only `max_job_age` gives up. Account and setup problems pause every upload
//! through the [`super::gate`]. File work (staging, publishing, moving sources) is
//! [`crate::deliver`]'s, run on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::admission::new_key;
use super::context::Ctx;
use super::gate::Pass;
use super::poll_plan::{JobClass, Sighting};
use super::waiting::JobWait;
use crate::api::policy::{LOCAL_CAP, NETWORK_CAP, backoff};
use crate::api::{ErrorKind, PauseReason};
use crate::beneath::Dir;
use crate::config::{OnSuccess, POLL_FLOOR, WatchConfig};
use crate::deliver::{self, DeliverError, Layout, Placement, Target};
use crate::formats::FileKind;
use crate::job::{self, Event, JobState, Next, Resume};
use crate::journal::{JobRecord, JournalError};
use crate::render::{self, Failure, RenderInput};
use crate::source::SourceCheck;

/// Progress figures are journaled at most this often per job (status shows them; losing one
/// costs nothing).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// With the completion hook, polls come this many times further apart (the fallback).
const HOOK_FALLBACK_FACTOR: u32 = 4;
/// getFile may answer 404 for a moment after completion; this many tries (see
/// `not_stored_wait`) before asking whether the task still exists.
const NOT_STORED_TRIES: u32 = 10;

/// The wait before getFile's try `tries + 1` after a "not stored yet" 404: the result is
/// usually there within a moment, so one second, then the poll floor.
fn not_stored_wait(tries: u32) -> Duration {
    if tries == 0 { Duration::from_secs(1) } else { POLL_FLOOR }
}

pub(super) struct Runner<'a> {
    ctx: &'a Ctx,
    job: JobRecord,
    watch: Arc<WatchConfig>,
    /// The job's names and places in its outbox.
    layout: Layout,
    /// Retries of the current step so far.
    attempt: u32,
    /// When this process uploaded the job (not known for jobs resumed after a restart).
    submitted_at: Option<Instant>,
    /// When this job's last retried request failed.
    last_failure: Option<Instant>,
    /// The job's age when this runner took it, and when that was: the age follows the runtime's
    /// clock from here (so a paused test clock ages jobs too).
    age_at_start: Duration,
    started: Instant,
    /// The last progress figure journaled, and when.
    progress_written: Option<(Instant, f64)>,
    /// A job of this run not yet uploaded: a person may cancel it while it waits.
    cancellable: bool,
    /// The key of the source's bytes and the payload in the result cache, once computed.
    content_key: Option<String>,
    /// Keeps the job among those whose lease this node renews, while the runner lives.
    _running: super::cluster::RunningGuard,
    /// A credit of a budget held until this job's start is journaled.
    charge_hold: Option<super::context::ChargeHold>,
}

impl<'a> Runner<'a> {
    pub(super) fn new(ctx: &'a Ctx, job: JobRecord, watch: Arc<WatchConfig>) -> Self {
        let age_at_start = Duration::from_millis((crate::vocab::now_ms() - job.created_at).max(0) as u64);
        let _running = ctx.running.enter(job.id);
        let watch_name = watch.inbox.file_name().unwrap_or_default();
        let layout =
            Layout::new(&watch.outbox, &job.source.rel_path, job.id, job.generation, watch_name, &watch.output_name);
        Runner {
            _running,
            ctx,
            job,
            watch,
            layout,
            attempt: 0,
            submitted_at: None,
            last_failure: None,
            age_at_start,
            started: Instant::now(),
            progress_written: None,
            cancellable: false,
            content_key: None,
            charge_hold: None,
        }
    }

    /// Lets a person cancel the job while it waits for its first upload (only for jobs this
    /// run created: a job resumed in `Submitting` may have reached the server before).
    pub(super) fn cancellable(mut self) -> Self {
        self.cancellable = matches!(self.job.state, JobState::Submitting { .. });
        self
    }

    fn age(&self) -> Duration {
        self.age_at_start + self.started.elapsed()
    }

    /// Runs the job until it is finished (or the task is cancelled).
    /// A step that panics (a bug) fails this job alone, as an internal error; where failing is
    /// no longer possible (the result is delivered, or the source is being settled) the job is
    /// left for the next start instead.
    pub async fn run(mut self) -> Result<JobRecord, JournalError> {
        use futures_util::FutureExt;
        loop {
            let resume = self.job.state.on_restart();
            if resume == Resume::Nothing {
                return Ok(self.job);
            }
            let may_fail = matches!(resume, Resume::Submit { .. } | Resume::Poll { .. } | Resume::Fetch { .. });
            let event = match std::panic::AssertUnwindSafe(self.step(resume)).catch_unwind().await {
                Ok(event) => event?,
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    tracing::error!(job = self.job.id, file = %self.job.source.rel_path.display(), what,
                        "internal error (a bug in retouchd) while working on this job; it stops alone");
                    if !may_fail {
                        return Ok(self.job);
                    }
                    Event::Fail {
                        reason: format!(
                            "internal error in retouchd ({what}); please report it. `retouchd retry` sends the file again"
                        ),
                    }
                }
            };
            self.attempt = 0;
            self.ctx.advance(&mut self.job, event).await?;
            // The start (or its failure) is journaled: the charge counts from the journal now.
            self.charge_hold = None;
            if self.job.state.is_terminal() {
                self.ctx.hooks.forget(self.job.id);
                self.ctx.metrics.finished(self.age());
                self.run_hook().await;
            }
        }
    }

    /// Takes the step `resume` calls for and returns the event it ends in.
    async fn step(&mut self, resume: Resume) -> Result<Event, JournalError> {
        Ok(match resume {
            Resume::Submit { key } => self.submit(&key).await,
            Resume::Poll { task_id, host } => self.poll(&task_id, &host).await,
            Resume::Fetch { task_id, host } => self.fetch(&task_id, &host).await,
            Resume::Render { staged, target } => self.render(staged, target).await,
            Resume::Publish { placements } => self.publish(placements).await?,
            Resume::SettleDone => self.settle_done().await,
            Resume::SettleFailed { reason } => self.settle_failed(&reason).await,
            Resume::Nothing => unreachable!("run returns before a job with nothing to do"),
        })
    }

    /// Fencing before publishing: in a shared journal, only while this node still holds the job
    /// (same generation) with at least half a lease to go, so that no node that lost the job can
    /// publish it. Waits while the database cannot be reached.
    async fn fence(&self) -> Result<(), JournalError> {
        let Some(lease) = self.ctx.config().cluster.as_ref().map(|c| c.lease) else { return Ok(()) };
        let (job, margin) = (self.job.clone(), (lease.as_millis() / 2) as i64);
        let holds =
            super::cluster::patiently(&self.ctx.health, &self.ctx.journal, move |j| j.holds(&job, margin)).await?;
        if holds { Ok(()) } else { Err(JournalError::LostLease { id: self.job.id }) }
    }

    /// Sleeps before retrying a step, or says why the job should give up (`max_job_age`).
    async fn retry_later(
        &mut self,
        what: &'static str,
        err: &(impl std::fmt::Display + Sync),
        retry_after: Option<Duration>,
        cap: Duration,
    ) -> Option<String> {
        let given_up = job::given_up(
            self.age(),
            self.ctx.config().server.max_job_age,
            format_args!("last problem while {what}: {err}"),
        );
        if given_up.is_some() {
            return given_up;
        }
        self.wait_to_retry(what, err, retry_after, cap).await;
        None
    }

    /// Sleeps before retrying a step that never gives up: a paid result is only ever delivered
    /// or kept for the next try, whatever the job's age.
    async fn wait_to_retry(
        &mut self,
        what: &'static str,
        err: &(impl std::fmt::Display + Sync),
        retry_after: Option<Duration>,
        cap: Duration,
    ) {
        // If the server answered someone since this job's last failure, it is up again and this
        // failure is sporadic: start the backoff afresh instead of waiting out an outage's growth.
        if cap == NETWORK_CAP && self.last_failure.is_some_and(|at| self.ctx.server_answered_since(at)) {
            self.attempt = 0;
        }
        self.last_failure = Some(Instant::now());
        let delay = backoff(self.attempt, retry_after, cap);
        self.attempt += 1;
        warn!(job = self.job.id, file = %self.job.source.rel_path.display(), error = %err, retry_in = ?delay, "{what} failed; will retry");
        self.ctx.metrics.retry(if cap == LOCAL_CAP { "local" } else { what });
        let retry_at = Some(crate::vocab::now_secs() + delay.as_secs_f64().ceil() as u64);
        self.ctx.job_waits(&self.job, Some(JobWait { why: format!("{what} failed: {err}"), retry_at }));
        tokio::time::sleep(delay).await;
    }

    /// A request to the server failed in a way that passes.
    async fn retry_request(&mut self, what: &'static str, err: &crate::api::ApiError) -> Option<String> {
        if err.kind == ErrorKind::Local {
            self.warn_if_disk_full(err.os_error);
            return self.retry_later(what, err, None, LOCAL_CAP).await;
        }
        self.retry_later(what, err, err.retry_after, NETWORK_CAP).await
    }

    fn warn_if_disk_full(&self, os_error: Option<i32>) {
        if deliver::is_disk_full_code(os_error) {
            self.ctx.set_disk_full(Some(self.watch.outbox.clone()));
            warn!(outbox = %self.watch.outbox.display(), "the outbox's disk is full; the job waits and the source stays");
        }
    }

    /// The watch's hook for how the job ended, if one is configured.
    async fn run_hook(&self) {
        let (event, argv, source_now, outputs) = match &self.job.state {
            JobState::Done { outputs, moved_to, .. } => {
                ("delivered", &self.watch.on_delivered, moved_to, outputs.clone())
            }
            JobState::Failed { moved_to, .. } | JobState::Rejected { moved_to, .. } => {
                ("failed", &self.watch.on_failed, moved_to, Vec::new())
            }
            _ => return,
        };
        if argv.is_empty() {
            return;
        }
        let context = crate::hooks::HookContext {
            event,
            job: self.job.id,
            source: self.job.source.path(),
            source_now: source_now.clone(),
            outputs,
            reason: self.job.state.reason().map(str::to_string),
            render_error: self.job.state.render_error().map(str::to_string),
        };
        crate::hooks::run(argv, self.watch.hook_timeout, &context).await;
    }

    /// Stages the result of an earlier job that retouched the same bytes with the same payload,
    /// if the result cache has it: `None` when there is none (or reusing is off), and the photo
    /// is sent.
    async fn reuse(&mut self) -> Option<Event> {
        if !self.ctx.results.enabled() || self.watch.resend_identical {
            return None;
        }
        let (source, marked, payload) = (self.job.source.clone(), self.ctx.marks_inboxes, self.watch.payload.clone());
        let cache = self.ctx.results.clone();
        let layout = self.layout.clone();
        let found = tokio::task::spawn_blocking(move || {
            let file = source.open_same(marked).ok()?;
            let key = crate::result_cache::ResultCache::key(&file, &payload).ok()?;
            let Some(cached) = cache.lookup(&key) else { return Some((key, None)) };
            let staging = layout.open_staging().ok()?;
            let target = layout.result_target(cached.kind());
            let name = layout.staged_result_name(&target);
            cache.restore(&cached, &staging, &name).ok()?;
            let target = target.placing(&staging, &name);
            Some((key, Some((cached.job, staging.path().join(name), target))))
        })
        .await
        .ok()
        .flatten()?;
        let (key, reused) = found;
        self.content_key = Some(key);
        let (from_job, staged, target) = reused?;
        info!(job = self.job.id, file = %self.job.source.rel_path.display(), from_job,
            "same photo as job #{from_job}: its result is reused, no credit spent");
        Some(Event::Reused { from_job, staged, target, render: self.renders() })
    }

    async fn submit(&mut self, key: &str) -> Event {
        if let Some(reused) = self.reuse().await {
            return reused;
        }
        let name = self.job.source.file_name();
        let cancelled = || Event::Fail { reason: super::admission::CANCELLED.to_string() };
        loop {
            // Until its first upload, a job of this run waits where a person may cancel it.
            let cancel = self.cancellable.then(|| self.ctx.waiting_to_send(self.job.id));
            let cancelled_now = async {
                match &cancel {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(cancelled_now);
            // Nothing is sent while this watch's results could not be delivered.
            let pass = tokio::select! {
                pass = async {
                    self.ctx.until_deliverable(&self.watch, &self.job).await;
                    self.until_window().await;
                    self.until_within_budget().await;
                    if let Some(why) = self.ctx.gate.why_held(&self.watch.inbox) {
                        let why = format!("uploads are paused: {why}");
                        self.ctx.job_waits(&self.job, Some(JobWait { why, retry_at: None }));
                    }
                    self.ctx.gate.pass(&self.watch.inbox).await
                } => pass,
                () = &mut cancelled_now => return cancelled(),
            };
            let release_probe = |ctx: &Ctx| {
                if pass == Pass::Probe {
                    ctx.gate.release_probe();
                }
            };
            let permit = tokio::select! {
                permit = self.ctx.uploads.acquire() => permit.expect("upload semaphore is never closed"),
                () = &mut cancelled_now => {
                    release_probe(self.ctx);
                    return cancelled();
                }
            };
            if self.cancellable {
                self.cancellable = false;
                if !self.ctx.sending(self.job.id) {
                    release_probe(self.ctx);
                    return cancelled();
                }
            }
            // Checked at the last moment: the file must still be the one that was inspected. It
            // is opened beneath its inbox and checked through the opened file, which is what is sent.
            let (source, marked) = (self.job.source.clone(), self.ctx.marks_inboxes);
            let opened = tokio::task::spawn_blocking(move || source.open_same(marked))
                .await
                .unwrap_or_else(|e| Err(SourceCheck::Unreadable(std::io::Error::other(e))));
            let file = match opened {
                Ok(file) => file,
                Err(SourceCheck::Changed(_)) => {
                    release_probe(self.ctx);
                    return Event::Fail {
                        reason: "the file changed before it was sent; the new version is taken as a new job".into(),
                    };
                }
                Err(SourceCheck::Gone) => {
                    release_probe(self.ctx);
                    return Event::Fail {
                        reason: "the file was removed or renamed in the inbox before it was sent".into(),
                    };
                }
                Err(SourceCheck::Unreadable(e)) => {
                    drop(permit);
                    release_probe(self.ctx);
                    if let Some(reason) = self.retry_later("reading the file", &e, None, LOCAL_CAP).await {
                        return Event::Fail { reason };
                    }
                    continue;
                }
                Err(SourceCheck::Same) => unreachable!("open_same gives the file when it is the same"),
            };
            let (file, name) = match self.sendable(file, &name).await {
                Ok(sendable) => sendable,
                Err(crate::proxy::ProxyError::Refused(reason)) => {
                    release_probe(self.ctx);
                    return Event::Fail { reason: format!("no 8-bit proxy could be made to send: {reason}") };
                }
                Err(crate::proxy::ProxyError::Io(e)) => {
                    drop(permit);
                    release_probe(self.ctx);
                    if let Some(reason) = self.retry_later("making the 8-bit proxy", &e, None, LOCAL_CAP).await {
                        return Event::Fail { reason };
                    }
                    continue;
                }
            };
            self.ctx.job_waits(&self.job, None);
            self.ctx.metrics.upload_started(1);
            // One client for the call and the host recorded with it (a reload may swap clients).
            let client = self.ctx.client();
            let hook = self.ctx.hooks.url_for(self.job.id);
            // Listening before the upload: a call that comes before polling starts is kept.
            let _ = self.ctx.hooks.expect(self.job.id);
            let answer = client.start_file(file, &name, &self.watch.payload, key, hook.as_deref()).await;
            self.ctx.metrics.upload_started(-1);
            drop(permit);
            match job::after_start(answer.as_ref(), client.base_url()) {
                Next::Advance(event @ Event::Started { .. }) => {
                    let quota = answer.as_ref().ok().and_then(|s| s.quota);
                    self.ctx.gate.report_ok();
                    self.ctx.server_answered();
                    let config = self.ctx.config();
                    let threshold = config.server.low_quota_warning;
                    if let Some(left) = self.ctx.metrics.submitted(self.job.source.stamp.size, quota, threshold) {
                        self.ctx.notifier.emit(crate::notify::Event::LowCredits { left, threshold });
                    }
                    if let Event::Started { task_id, .. } = &event {
                        info!(job = self.job.id, file = %self.job.source.rel_path.display(), task_id = %task_id, "submitted");
                    }
                    self.submitted_at = Some(Instant::now());
                    return event;
                }
                Next::Advance(event) => {
                    release_probe(self.ctx);
                    return event;
                }
                Next::Pause { reason, message } => {
                    let server = &self.ctx.config().server;
                    let retry_every =
                        if reason == PauseReason::Quota { server.quota_retry } else { server.token_retry };
                    self.ctx.gate.report_pause(reason, message, retry_every);
                }
                // A failed call that passes (an accepted one is always `Advance`).
                _ => {
                    release_probe(self.ctx);
                    if let Err(err) = &answer
                        && let Some(reason) = self.retry_request("uploading", err).await
                    {
                        return Event::Fail { reason };
                    }
                }
            }
        }
    }

    /// Waits while the watch's upload windows are closed (`[schedule]`), saying until when. The
    /// wait is the time to the next opening as the wall clock says; after it the job goes on.
    async fn until_window(&self) {
        let Some(windows) = &self.watch.schedule else { return };
        let now = jiff::Timestamp::now();
        let (Some(why), Some(next)) = (windows.closed_words(now), windows.next_open(now)) else { return };
        let wait = next.duration_since(now).unsigned_abs();
        info!(job = self.job.id, file = %self.job.source.rel_path.display(), %why, "waiting for the upload window");
        let retry_at = Some(next.as_second().max(0) as u64);
        self.ctx.job_waits(&self.job, Some(JobWait { why, retry_at }));
        tokio::time::sleep(wait).await;
        self.ctx.job_waits(&self.job, None);
    }

    /// Waits while a credit budget that covers this job is spent (`[budget]`, the watch's own
    /// `[watch.budget]`), saying until when; then holds one credit of it until the start is
    /// journaled. The count is the journal's charged starts (every node, every restart) plus
    /// the starts held by other jobs now, and it is counted again after every wait: when a
    /// period ends, the files that waited for it take its credits one by one, never all at once.
    async fn until_within_budget(&mut self) {
        let config = self.ctx.config();
        let inbox = self.watch.inbox.clone();
        let budgets: Vec<(&str, crate::budget::Budget, bool)> =
            [("the", config.budget.clone(), false), ("this inbox's", self.watch.budget.clone(), true)]
                .into_iter()
                .filter_map(|(whose, budget, own)| budget.map(|b| (whose, b, own)))
                .collect();
        if budgets.is_empty() {
            return;
        }
        let pending = Arc::clone(&self.ctx.pending_charges);
        loop {
            let seen = pending.lock().unwrap_or_else(|p| p.into_inner()).released;
            let now = jiff::Timestamp::now();
            let since = budgets.iter().map(|(_, b, _)| b.month_start_ms(now)).min().unwrap_or(0);
            let journal = Arc::clone(&self.ctx.journal);
            let read = tokio::task::spawn_blocking(move || crate::journal::charges_since(&**journal, since)).await;
            let charges = match read {
                Ok(Ok(charges)) => charges,
                Ok(Err(e)) => {
                    warn!(job = self.job.id, error = %e,
                        "the credits spent could not be counted; the budget is not checked for this upload");
                    break;
                }
                Err(_) => break,
            };
            let checked = {
                let mut guard = pending.lock().unwrap_or_else(|p| p.into_inner());
                // A start journaled after the count was read: count again.
                (guard.released == seen).then(|| {
                    let reached = budgets.iter().find_map(|(whose, budget, own)| {
                        let times: Vec<i64> =
                            charges.iter().filter(|(i, _)| !own || *i == inbox).map(|(_, at)| *at).collect();
                        let held =
                            if *own { guard.held.get(&inbox).copied().unwrap_or(0) } else { guard.held.values().sum() };
                        budget.reached(&times, held, now).map(|r| (r.words(whose), r.resumes, *own))
                    });
                    if reached.is_none() {
                        self.charge_hold = Some(super::context::ChargeHold::new(&pending, &mut guard, &inbox));
                    }
                    reached
                })
            };
            let Some(reached) = checked else { continue };
            let Some((why, resumes, own)) = reached else { break };
            warn!(job = self.job.id, file = %self.job.source.rel_path.display(), %why, "budget_reached: the file waits");
            self.announce_budget(&why, resumes, own);
            let retry_at = Some(resumes.as_second().max(0) as u64);
            self.ctx.job_waits(&self.job, Some(JobWait { why, retry_at }));
            tokio::time::sleep(until(now, resumes)).await;
        }
        self.ctx.job_waits(&self.job, None);
    }

    /// Tells about a spent budget once per budget and period (not once per waiting file).
    fn announce_budget(&self, why: &str, resumes: jiff::Timestamp, own: bool) {
        let whose = if own { self.watch.inbox.display().to_string() } else { String::new() };
        let first = self
            .ctx
            .budgets_announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((whose.clone(), resumes.as_millisecond()));
        if first {
            self.ctx.notifier.emit(crate::notify::Event::BudgetReached {
                budget: if whose.is_empty() { "all inboxes".to_string() } else { whose },
                words: why.to_string(),
                resumes_at: crate::notify::rfc3339(resumes.as_millisecond()),
            });
        }
    }

    /// What goes to the server for the opened source, under what name: a TIFF goes as its 8-bit
    /// proxy ([`crate::proxy`]), written to an unnamed file in the staging folder (nothing is
    /// left behind by a crash); other files go as they are.
    async fn sendable(
        &self,
        file: std::fs::File,
        name: &str,
    ) -> Result<(std::fs::File, String), crate::proxy::ProxyError> {
        use crate::proxy::ProxyError;
        // Its first bytes are read off the async workers too (a share that stops answering
        // holds up this job alone).
        let (file, kind) = tokio::task::spawn_blocking(move || {
            let mut head = [0u8; 8];
            let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
            (file, crate::formats::sniff(&head[..n]))
        })
        .await
        .map_err(|e| ProxyError::Io(std::io::Error::other(e)))?;
        if kind != FileKind::Tiff {
            return Ok((file, name.to_string()));
        }
        let (layout, max_bytes) = (self.layout.clone(), self.ctx.limits.max_file_bytes());
        let started = Instant::now();
        let made = tokio::task::spawn_blocking(move || {
            let staging = layout.open_staging().map_err(ProxyError::Io)?;
            let mut out = staging.create_unnamed().map_err(ProxyError::Io)?;
            crate::proxy::make(&file, &mut out, max_bytes).map(|proxy| (out, proxy))
        })
        .await
        .unwrap_or_else(|e| Err(ProxyError::Io(std::io::Error::other(e))))?;
        let (out, proxy) = made;
        let sent_name = Path::new(name).with_extension(proxy.kind.extension()).to_string_lossy().into_owned();
        info!(job = self.job.id, file = %self.job.source.rel_path.display(), proxy = %proxy.kind, bytes = proxy.bytes,
            took = ?started.elapsed(), "sending an 8-bit proxy of the TIFF");
        Ok((out, sent_name))
    }

    /// Journals the server's progress figure, at most every [`PROGRESS_EVERY`].
    fn record_progress(&mut self, progress: f64) {
        self.job.progress = Some(progress);
        self.ctx.announce(&self.job);
        let due = match self.progress_written {
            None => true,
            Some((at, written)) => written != progress && at.elapsed() >= PROGRESS_EVERY,
        };
        if due {
            self.ctx.commits.progress(self.job.id, progress);
            self.progress_written = Some((Instant::now(), progress));
        }
    }

    /// Polls the task until it is done, woken early by the completion hook when one is set.
    async fn poll(&mut self, task_id: &str, host: &str) -> Event {
        let hook = self.ctx.hooks.expect(self.job.id);
        let event = self.poll_until_done(task_id, host, hook).await;
        self.ctx.hooks.forget(self.job.id);
        event
    }

    async fn poll_until_done(&mut self, task_id: &str, host: &str, hook: Option<Arc<tokio::sync::Notify>>) -> Event {
        let client = self.ctx.client_for_host(host);
        let interval = self.ctx.config().server.poll_interval.max(POLL_FLOOR);
        // Timing is learned only from jobs whose upload time is known (not resumed ones).
        let class = self.submitted_at.map(|_| JobClass::new(&self.watch.payload, self.job.source.stamp.size));
        let since = self.submitted_at.unwrap_or_else(Instant::now);
        let mut polls = 0;
        let mut sightings: Vec<Sighting> = Vec::new();
        // With the completion hook, the server's call wakes this poller at once; polling goes on
        // as a slower fallback (a lost call costs a later poll, never the job).
        loop {
            let planned = self.ctx.poll_plan.next_wait(class, since.elapsed(), &sightings, interval);
            match &hook {
                Some(called) => {
                    let fallback = (planned * HOOK_FALLBACK_FACTOR).max(interval);
                    tokio::select! {
                        () = tokio::time::sleep(fallback) => {}
                        () = called.notified() => debug!(job = self.job.id, task_id, "completion hook called: asking the server"),
                    }
                }
                None => tokio::time::sleep(planned).await,
            }
            polls += 1;
            let answer = client.status(task_id).await;
            if answer.is_ok() {
                // A good answer ends a run of errors: the next error starts the backoff afresh.
                self.attempt = 0;
                self.ctx.server_answered();
            }
            match job::after_status(answer.as_ref()) {
                Next::Advance(event) => {
                    if event == Event::Completed {
                        debug!(job = self.job.id, task_id, polls, "completed on the server");
                        if let Some(class) = class {
                            self.ctx.poll_plan.record_completion(class, since.elapsed(), &sightings, interval);
                        }
                    }
                    return event;
                }
                Next::KeepPolling { progress, active } => {
                    sightings.push(Sighting { at: since.elapsed(), progress: progress.filter(|_| active) });
                    if let Some(p) = progress {
                        self.record_progress(p);
                    }
                    let state = answer.map(|s| s.state.as_str().to_string()).unwrap_or_default();
                    let max_age = self.ctx.config().server.max_job_age;
                    if let Some(reason) =
                        job::given_up(self.age(), max_age, format_args!("the server's last state: `{state}`"))
                    {
                        return Event::Fail { reason };
                    }
                }
                Next::Expired => return self.expired(task_id),
                // A failed call that passes (an answer is always `Advance` or `KeepPolling`).
                _ => {
                    if let Err(err) = &answer
                        && let Some(reason) = self.retry_request("polling", err).await
                    {
                        return Event::Fail { reason };
                    }
                }
            }
        }
    }

    fn expired(&self, task_id: &str) -> Event {
        let policy = self.ctx.config().server.on_expired;
        let event = job::expired(task_id, policy, new_key);
        if matches!(event, Event::Resubmit { .. }) {
            warn!(job = self.job.id, task_id, "the server no longer knows the task; submitting the file again");
        }
        event
    }

    async fn fetch(&mut self, task_id: &str, host: &str) -> Event {
        let client = self.ctx.client_for_host(host);
        let mut not_stored_yet = 0;
        loop {
            let layout = self.layout.clone();
            let staging = match on_blocking_thread(move || layout.open_staging()).await {
                Ok(staging) => staging,
                Err(e) => {
                    let e = std::io::Error::new(e.kind(), format!("{}: {e}", self.layout.staging_path().display()));
                    if let Some(reason) = self.retry_later("preparing the outbox", &e, None, LOCAL_CAP).await {
                        return Event::Fail { reason };
                    }
                    continue;
                }
            };
            let err = match client.get_file(task_id, &staging).await {
                Ok(download) => match self.stage(staging, download.path.clone(), download.kind).await {
                    Ok(event) => {
                        self.ctx.metrics.downloaded(download.bytes);
                        self.ctx.server_answered();
                        return event;
                    }
                    Err(DeliverError::Unsafe(reason)) => return Event::Fail { reason },
                    Err(DeliverError::Io(e)) => {
                        self.warn_if_disk_full(e.raw_os_error());
                        if let Some(reason) = self.retry_later("writing the result", &e, None, LOCAL_CAP).await {
                            return Event::Fail { reason };
                        }
                        continue;
                    }
                },
                Err(e) => e,
            };
            match job::after_get_file(&err) {
                Next::NotStoredYet if not_stored_yet < NOT_STORED_TRIES => {
                    tokio::time::sleep(not_stored_wait(not_stored_yet)).await;
                    not_stored_yet += 1;
                }
                Next::NotStoredYet => {
                    // Still missing: does the server know the task at all?
                    if job::after_status(client.status(task_id).await.as_ref()) == Next::Expired {
                        return self.expired(task_id);
                    }
                    not_stored_yet = 0;
                    if let Some(reason) = self.retry_later("downloading", &err, None, NETWORK_CAP).await {
                        return Event::Fail { reason };
                    }
                }
                Next::Advance(event) => return event,
                _ => {
                    if let Some(reason) = self.retry_request("downloading", &err).await {
                        return Event::Fail { reason };
                    }
                }
            }
        }
    }

    /// Turns a download into a staged result beside the outbox, on a blocking thread
    /// (extraction writes and syncs files).
    async fn stage(&self, staging: Dir, download: PathBuf, kind: FileKind) -> Result<Event, DeliverError> {
        let target = self.layout.result_target(kind);
        let (stem, max_bytes) = (self.layout.stem().to_string(), self.ctx.config().server.max_result_bytes);
        let render = self.renders();
        let (cache, key, job) = (self.ctx.results.clone(), self.content_key.clone(), self.job.id);
        let (source, marked, payload) = (self.job.source.clone(), self.ctx.marks_inboxes, self.watch.payload.clone());
        on_blocking_thread(move || {
            let name = PathBuf::from(download.file_name().unwrap_or_default());
            let staged = deliver::stage_download(&staging, &name, kind, &target, &stem, max_bytes);
            if staged.is_err() {
                let _ = staging.remove_file(&name);
            }
            let staged = staged?;
            let target = target.placing(&staging, Path::new(staged.file_name().unwrap_or_default()));
            // Kept by content, so the same photo dropped again costs nothing (a help: a copy
            // that cannot be kept is only logged).
            if cache.enabled() {
                let key = key.or_else(|| {
                    let file = source.open_same(marked).ok()?;
                    crate::result_cache::ResultCache::key(&file, &payload).ok()
                });
                if let Some(key) = key
                    && let Err(e) = cache.store(&key, &staging, Path::new(staged.file_name().unwrap_or_default()), job)
                {
                    warn!(job, error = %e, "cannot keep a copy of the result in the state folder");
                }
            }
            Ok(Event::Staged { staged, target, render })
        })
        .await
    }

    /// Makes the finished photo (and PSD) from the staged result on a blocking thread, at most
    /// `render.max_renders` at once. A problem with the inputs never fails the job: the layers
    /// are delivered with the reason beside them. A problem writing (a full disk) waits.
    async fn render(&mut self, staged: PathBuf, target: Target) -> Event {
        let settings = self.watch.output.clone();
        let layers = Placement { staged: staged.clone(), target: target.clone() };
        if !self.renders() {
            return Event::Rendered { main: layers, extras: Vec::new(), render_error: None };
        }
        let _permit = self.ctx.renders.acquire().await.expect("render semaphore is never closed");
        let work_dir = self.layout.render_dir(&staged);
        loop {
            let outcome = self.render_once(&staged, &work_dir, &settings).await;
            let (made, render_error) = match outcome {
                Ok(made) => (made, None),
                Err(Failure::Bad(reason)) => (Vec::new(), Some(reason)),
                Err(Failure::Io(e)) => {
                    self.warn_if_disk_full(e.raw_os_error());
                    match self.retry_later("making the finished photo", &e, None, LOCAL_CAP).await {
                        None => continue,
                        Some(gave_up) => (Vec::new(), Some(gave_up)),
                    }
                }
            };
            let to_target = |ext: &str| self.layout.output_target(&target, ext);
            let mut extras: Vec<Placement> =
                made.into_iter().map(|m| Placement { staged: m.path, target: to_target(m.ext) }).collect();
            if let Some(reason) = &render_error {
                warn!(job = self.job.id, file = %self.job.source.rel_path.display(), reason = %reason,
                    "no finished photo; the layers are delivered with the reason");
                let (layout, work, reason) = (self.layout.clone(), work_dir.clone(), reason.clone());
                let note = on_blocking_thread(move || {
                    let staging = layout.open_staging()?;
                    let name = work.file_name().unwrap_or_default();
                    let note = deliver::write_render_note(&staging.anchored().join(name), &reason)?;
                    Ok::<_, std::io::Error>(unanchor(&staging, note))
                })
                .await;
                match note {
                    Ok(note) => extras.push(Placement { staged: note, target: to_target(deliver::RENDER_NOTE_EXT) }),
                    Err(e) => warn!(job = self.job.id, error = %e, "cannot write the render-error note"),
                }
            }
            let mut extras = self.identify(extras).await;
            // The layers lead unless they are not wanted and a finished photo replaces them.
            let main =
                if settings.layers || render_error.is_some() || extras.is_empty() { layers } else { extras.remove(0) };
            return Event::Rendered { main, extras, render_error };
        }
    }

    /// The placements with what each staged entry is on disk (see [`Target::placed`]); as they
    /// are when the staging folder cannot be read (the name then falls back to the plain one).
    async fn identify(&self, placements: Vec<Placement>) -> Vec<Placement> {
        let layout = self.layout.clone();
        let fallback = placements.clone();
        on_blocking_thread(move || {
            let staging = layout.open_staging()?;
            let identified = placements.into_iter().map(|p| match p.staged.strip_prefix(staging.path()) {
                Ok(rel) => Placement { target: p.target.clone().placing(&staging, rel), ..p },
                Err(_) => p,
            });
            Ok::<_, std::io::Error>(identified.collect())
        })
        .await
        .unwrap_or(fallback)
    }

    /// One try at the finished outputs: the source opened beneath its inbox (and still the
    /// version sent), the staged result and the work folder reached through the staging folder's
    /// handle, so nothing swapped in meanwhile is read or written.
    async fn render_once(
        &self,
        staged: &std::path::Path,
        work_dir: &std::path::Path,
        settings: &render::OutputSettings,
    ) -> Result<Vec<render::Made>, Failure> {
        let (source, marked, layout) = (self.job.source.clone(), self.ctx.marks_inboxes, self.layout.clone());
        let names =
            (staged.file_name().unwrap_or_default().to_owned(), work_dir.file_name().unwrap_or_default().to_owned());
        let settings = settings.clone();
        let started = Instant::now();
        let made = tokio::task::spawn_blocking(move || {
            let file = match source.open_same(marked) {
                Ok(file) => file,
                Err(SourceCheck::Unreadable(e)) => return Err(Failure::Io(e)),
                Err(_) => {
                    return Err(Failure::Bad(
                        "the source changed or left the inbox after it was sent, so its pixels are not the ones \
                         retouched"
                            .into(),
                    ));
                }
            };
            let staging = layout.open_staging().map_err(Failure::Io)?;
            let (result, work) = (staging.anchored().join(&names.0), staging.anchored().join(&names.1));
            let made = render::render(&RenderInput {
                source: &crate::beneath::anchored(&file),
                result: &result,
                settings: &settings,
                work_dir: &work,
            })?;
            Ok(made.into_iter().map(|m| render::Made { path: unanchor(&staging, m.path), ..m }).collect())
        })
        .await
        .unwrap_or_else(|e| Err(Failure::Bad(format!("the renderer stopped unexpectedly ({e})"))));
        debug!(job = self.job.id, elapsed = ?started.elapsed(), "rendered");
        made
    }

    /// Whether this job's result gets a finished photo: the watch asks for one, and the source
    /// is a photo (an archive's results are delivered as the server sent them).
    fn renders(&self) -> bool {
        let from_archive = self.job.source.rel_path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        self.watch.output.renders() && !from_archive
    }

    /// Publishes every placement; before each attempt, checks that this node still holds the
    /// job (a shared journal: a node that lost it publishes nothing).
    async fn publish(&mut self, placements: Vec<Placement>) -> Result<Event, JournalError> {
        // What result.json says, read while it is staged (a layers folder not kept is not
        // published), else where it was published before a restart.
        let outbox = self.watch.outbox.clone();
        let mut folders: Vec<PathBuf> = placements.iter().map(|p| p.staged.clone()).collect();
        folders.push(self.layout.staged_folder());
        let staged_findings = {
            let (outbox, folders) = (outbox.clone(), folders);
            tokio::task::spawn_blocking(move || deliver::findings_in(&outbox, &folders)).await.ok().flatten()
        };
        let mut outputs = Vec::new();
        for placement in &placements {
            loop {
                self.fence().await?;
                let (outbox, from, to) =
                    (self.watch.outbox.clone(), placement.staged.clone(), placement.target.clone());
                // A rename and folder syncs: on a blocking thread.
                match on_blocking_thread(move || deliver::publish(&outbox, &from, &to)).await {
                    Ok(deliver::Published::Now(final_path)) => {
                        info!(job = self.job.id, file = %self.job.source.rel_path.display(), output = %final_path.display(), "delivered");
                        outputs.push(final_path);
                        break;
                    }
                    // Published before a restart: the staged copy is gone.
                    Ok(deliver::Published::Before(final_path)) => {
                        outputs.push(final_path);
                        break;
                    }
                    // Paid for: kept staged and tried again until it is delivered.
                    Err(e) => {
                        self.warn_if_disk_full(e.raw_os_error());
                        self.wait_to_retry("publishing the result", &e, None, LOCAL_CAP).await;
                    }
                }
            }
        }
        let findings = match staged_findings {
            Some(found) => Some(found),
            None => {
                let (outbox, folders) = (outbox.clone(), outputs.clone());
                tokio::task::spawn_blocking(move || deliver::findings_in(&outbox, &folders)).await.ok().flatten()
            }
        };
        if let Some(found) = findings.as_ref().filter(|f| f.no_face) {
            warn!(job = self.job.id, file = %self.job.source.rel_path.display(), plugins = ?found.plugins,
                "face-aware plugins ran but found no face: the credit bought little");
        }
        // What was staged for this job and not published (layers not kept, the work folder).
        let layout = self.layout.clone();
        let _ = on_blocking_thread(move || layout.discard_staging()).await;
        Ok(Event::Published { outputs, findings })
    }

    /// Whether the inbox still holds this job's file unchanged; `Err` when that cannot be told
    /// (an unmounted share must not count as "gone").
    fn source_still_there(&self) -> std::io::Result<bool> {
        let file = self.job.source.rel_path.display();
        let checked = crate::share::blocking(&self.job.source.inbox, || self.job.source.check(self.ctx.marks_inboxes));
        match checked {
            SourceCheck::Same => Ok(true),
            SourceCheck::Changed(stamp) => {
                info!(job = self.job.id, %file, ?stamp, was = ?self.job.source.stamp,
                    "the source changed since it was sent; the new version is left for its own job");
                Ok(false)
            }
            SourceCheck::Gone => {
                info!(job = self.job.id, %file, "the source is no longer in the inbox");
                Ok(false)
            }
            SourceCheck::Unreadable(e) => Err(e),
        }
    }

    async fn settle_done(&mut self) -> Event {
        loop {
            let result = match self.source_still_there() {
                Ok(true) => match (self.watch.on_success, &self.watch.done_dir) {
                    (OnSuccess::Move, Some(done)) => {
                        let (inbox, rel, done) =
                            (self.job.source.inbox.clone(), self.job.source.rel_path.clone(), done.clone());
                        // A rename and folder syncs: on a blocking thread.
                        on_blocking_thread(move || deliver::move_source(&inbox, &rel, &done).map(Some)).await
                    }
                    (OnSuccess::Delete, _) => {
                        let (inbox, rel) = (self.job.source.inbox.clone(), self.job.source.rel_path.clone());
                        on_blocking_thread(move || deliver::remove_source(&inbox, &rel).map(|()| None)).await
                    }
                    (OnSuccess::Keep, _) | (OnSuccess::Move, None) => Ok(None),
                },
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match result {
                Ok(moved_to) => return Event::SourceSettled { moved_to },
                // The result is delivered; a source that cannot be moved only waits.
                Err(e) => self.wait_to_retry("moving the source to done", &e, None, LOCAL_CAP).await,
            }
        }
    }

    async fn settle_failed(&mut self, reason: &str) -> Event {
        let moved_to = loop {
            let result = match self.source_still_there() {
                // No failed folder (`retouchd process`): the file stays where the user put it.
                Ok(true) if self.watch.failed_dir.is_some() => {
                    let (inbox, rel) = (self.job.source.inbox.clone(), self.job.source.rel_path.clone());
                    let failed_dir = self.watch.failed_dir.clone().unwrap_or_default();
                    on_blocking_thread(move || deliver::move_source(&inbox, &rel, &failed_dir).map(Some)).await
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            match result {
                Ok(moved_to) => break moved_to,
                Err(e) => self.wait_to_retry("moving the source to failed", &e, None, LOCAL_CAP).await,
            }
        };
        // Every failed file says why: the note is written until it is there (a full disk or
        // no file descriptors left pass), apart from the move.
        if let (Some(moved), Some(failed_dir)) = (moved_to.clone(), self.watch.failed_dir.clone()) {
            loop {
                let (failed_dir, moved, source, why) =
                    (failed_dir.clone(), moved.clone(), self.job.source.path(), reason.to_string());
                let written =
                    on_blocking_thread(move || deliver::write_error_note(&failed_dir, &moved, &source, &why)).await;
                match written {
                    Ok(_) => break,
                    Err(e) => {
                        if self.retry_later("writing the failure note", &e, None, LOCAL_CAP).await.is_some() {
                            warn!(job = self.job.id, file = %self.job.source.rel_path.display(), error = %e,
                                "gave up writing the failure note");
                            break;
                        }
                    }
                }
            }
        }
        warn!(job = self.job.id, file = %self.job.source.rel_path.display(), reason, "failed");
        Event::SourceSettled { moved_to }
    }
}

/// A panic's message, for the log and the job's reason.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// How long to wait from `now` until the wall clock reads `then`: at least a second, so a wait
/// that ends at the edge of a period never spins.
fn until(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
    then.duration_since(now).unsigned_abs().max(Duration::from_secs(1))
}

/// The real path of something made through the staging folder's anchored path.
fn unanchor(staging: &Dir, path: PathBuf) -> PathBuf {
    match path.strip_prefix(staging.anchored()) {
        Ok(rest) => staging.path().join(rest),
        Err(_) => path,
    }
}

/// Runs file work (writes, syncs, renames) on a blocking thread, so no async worker waits on
/// the disk; a panic there comes back as an I/O error.
async fn on_blocking_thread<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<std::io::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(std::io::Error::other(e).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{cluster, commits, context, notices, recovery};
    use crate::job::StateName;
    use crate::sim::{SimConfig, Simulator};

    const TOKEN: &str = "runner-test-token-0123456789";

    /// One runner's world: a simulated server, a state folder and one watch, and the context
    /// the daemon would give its jobs.
    struct World {
        sim: Simulator,
        dir: tempfile::TempDir,
        ctx: Ctx,
    }

    impl World {
        async fn new(sim: SimConfig) -> World {
            let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig { token: TOKEN.into(), ..sim })
                .await
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let text = format!(
                "[server]\nurl = \"{url}\"\nbalance_url = \"{balance}\"\ntoken = \"{TOKEN}\"\npoll_interval = \"2s\"\n\
                 [state]\ndir = \"state\"\n\
                 [[watch]]\ninbox = \"inbox\"\noutbox = \"outbox\"\ndone_dir = \"done\"\nfailed_dir = \"failed\"\n\
                 [watch.payload]\nmode = \"professional\"\n\
                 [[watch.payload.tasks]]\nPlugin = \"Heal\"\nLayer = 1\n",
                url = sim.base_url(),
                balance = sim.balance_url(),
            );
            for folder in ["inbox", "outbox", "done", "failed", "state"] {
                std::fs::create_dir(dir.path().join(folder)).unwrap();
            }
            std::fs::write(dir.path().join("config.toml"), text).unwrap();
            let config =
                crate::config::load(&dir.path().join("config.toml"), &crate::config::Environment::default()).unwrap();
            let client = crate::api::Client::new(config.server.client_options()).unwrap();
            let recovered = recovery::recover(&config, &client, false).await.unwrap();
            let health = Arc::new(cluster::Health::default());
            let commits = commits::Committer::start(Arc::clone(&recovered.journal), Arc::clone(&health));
            let notifier = notices::Notifier::start(
                Vec::new(),
                Arc::clone(&recovered.journal),
                crate::notify::real_transport(),
                tokio_util::sync::CancellationToken::new(),
            );
            let news = context::News { updates: None, notifier };
            let ctx = Ctx::new(config, &recovered, commits, health, client, news, false);
            World { sim, dir, ctx }
        }

        /// Drops `name` into the inbox and journals a new job for it, as admission does.
        async fn job_for(&self, name: &str, bytes: &[u8]) -> (JobRecord, Arc<WatchConfig>) {
            let inbox = self.dir.path().join("inbox");
            std::fs::write(inbox.join(name), bytes).unwrap();
            let stamp = crate::source::Stamp::of(&std::fs::metadata(inbox.join(name)).unwrap());
            let source = crate::source::Source { inbox, rel_path: name.into(), stamp };
            let state = JobState::new(super::super::admission::new_key());
            let id = self.ctx.commits.insert(source.clone(), state.clone()).await.unwrap();
            let now = crate::vocab::now_ms();
            let generation = crate::vocab::FIRST_GENERATION;
            let job = JobRecord { id, source, state, created_at: now, updated_at: now, progress: None, generation };
            (job, Arc::new(self.ctx.config().watches[0].clone()))
        }

        fn states(&self, job: &JobRecord) -> Vec<StateName> {
            self.ctx.journal.timeline(job.id).unwrap().into_iter().map(|step| step.state).collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_job_is_interpreted_state_by_state_to_done_and_charged_once() {
        let world = World::new(SimConfig { processing_ms: 3000, ..SimConfig::default() }).await;
        let (job, watch) = world.job_for("a.jpg", &crate::imagegen::jpeg_bytes(64, 48, [180, 140, 120])).await;
        let done = Runner::new(&world.ctx, job, watch).run().await.unwrap();
        let JobState::Done { outputs, moved_to, .. } = &done.state else { panic!("{:?}", done.state) };
        use StateName::*;
        let states = world.states(&done);
        assert_eq!(states, [Submitting, Processing, Fetching, Rendering, Delivering, Delivered, Done]);
        assert!(outputs.iter().all(|o| o.starts_with(world.dir.path().join("outbox"))), "{outputs:?}");
        assert!(outputs[0].join("result.json").exists(), "the layers are in the outbox: {outputs:?}");
        assert!(
            outputs.iter().any(|o| o.extension().is_some_and(|e| e == "jpg")),
            "and the finished photo: {outputs:?}"
        );
        assert_eq!(moved_to.as_deref(), Some(world.dir.path().join("done/a.jpg").as_path()));
        assert_eq!(world.sim.stats().charged_starts, 1);
    }

    /// The restart rule for a job the server has: it is asked about and fetched, never sent again.
    #[tokio::test(start_paused = true)]
    async fn a_job_resumed_at_the_server_is_polled_and_fetched_and_never_sent_again() {
        let world = World::new(SimConfig { processing_ms: 3000, ..SimConfig::default() }).await;
        let (mut job, watch) = world.job_for("r.jpg", &crate::imagegen::jpeg_bytes(64, 48, [90, 80, 70])).await;
        // Sent by an earlier run, which stopped once the start was journaled.
        let JobState::Submitting { key } = job.state.clone() else { unreachable!() };
        let client = world.ctx.client();
        let path = job.source.path();
        let started = client.start(&path, "r.jpg", &watch.payload, &key).await.unwrap();
        let event = Event::Started { task_id: started.id, host: client.base_url().to_string() };
        world.ctx.advance(&mut job, event).await.unwrap();
        assert_eq!(job.state.name(), StateName::Processing);
        let done = Runner::new(&world.ctx, job, watch).run().await.unwrap();
        assert_eq!(done.state.name(), StateName::Done, "{:?}", done.state);
        let stats = world.sim.stats();
        assert_eq!((stats.start_requests, stats.charged_starts), (1, 1), "the runner sent nothing more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_whose_file_left_before_its_upload_fails_alone_and_charges_nothing() {
        let world = World::new(SimConfig::default()).await;
        let (job, watch) = world.job_for("gone.jpg", &crate::imagegen::jpeg_bytes(32, 32, [1, 2, 3])).await;
        std::fs::remove_file(world.dir.path().join("inbox/gone.jpg")).unwrap();
        let ended = Runner::new(&world.ctx, job, watch).run().await.unwrap();
        assert_eq!(ended.state.name(), StateName::Failed, "{:?}", ended.state);
        assert!(ended.state.reason().unwrap_or_default().contains("removed or renamed"), "{:?}", ended.state);
        assert_eq!(world.sim.stats().start_requests, 0, "nothing was sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_the_server_fails_ends_failed_with_the_servers_words_and_its_file_in_failed() {
        let fail_reason = "no face could be read".to_string();
        let world =
            World::new(SimConfig { fail_rate: 1.0, fail_reason: fail_reason.clone(), ..SimConfig::default() }).await;
        let (job, watch) = world.job_for("b.jpg", &crate::imagegen::jpeg_bytes(32, 32, [9, 9, 9])).await;
        let ended = Runner::new(&world.ctx, job, watch).run().await.unwrap();
        let JobState::Failed { reason, moved_to } = &ended.state else { panic!("{:?}", ended.state) };
        assert_eq!(reason, &format!("the server could not retouch it: {fail_reason}"));
        assert_eq!(moved_to.as_deref(), Some(world.dir.path().join("failed/b.jpg").as_path()));
        assert!(world.dir.path().join("failed/b.jpg.error.txt").exists(), "the reason is beside it");
    }

    #[test]
    fn a_result_not_stored_yet_is_asked_for_again_soon_then_a_poll_floor_apart() {
        let waits: Vec<_> = (0..5).map(not_stored_wait).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [ms(1000), POLL_FLOOR, POLL_FLOOR, POLL_FLOOR, POLL_FLOOR]);
        assert_eq!(not_stored_wait(u32::MAX), POLL_FLOOR);
    }
}
