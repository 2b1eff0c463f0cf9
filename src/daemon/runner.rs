//! Drives one job from its journaled state to the end: submit, poll, fetch, publish, settle the
//! source. Each step's outcome is committed to the journal (through [`Ctx::advance`]) before the
//! next step's side effect, so the task can be cancelled at any await point and resumed from
//! the journal. Transient errors retry with capped, jittered exponential backoff (honouring
//! `Retry-After`) and never fail a file on their own; only `max_job_age` gives up.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Ctx;
use super::gate::{Pass, PauseReason};
use super::poll_plan::{JobClass, Sighting};
use crate::api::{ApiError, Client, ErrorKind, TaskState};
use crate::config::{OnExpired, OnSuccess, POLL_FLOOR, WatchConfig};
use crate::deliver::{self, DeliverError, STAGING_DIR};
use crate::formats::FileKind;
use crate::job::{Event, JobState};
use crate::journal::JobRecord;

/// Why a job task stopped before its job was finished.
#[derive(Debug)]
pub enum Halt {
    /// The journal could not be written: the daemon must stop.
    Journal(crate::journal::JournalError),
}

/// Longest wait between retries of a request to the server.
const NETWORK_CAP: Duration = Duration::from_secs(300);
/// Longest wait between retries of a local step (full disk, unmounted share): these are fixed by
/// a person, and the job should notice soon after.
const LOCAL_CAP: Duration = Duration::from_secs(30);

/// How long to wait before retry number `attempt` (0-based): exponential from 1 s, capped at
/// `cap`, with jitter, and never less than the server's `Retry-After`.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, cap: Duration) -> Duration {
    let exp = Duration::from_secs(1).saturating_mul(1u32 << attempt.min(9)).min(cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(ra) => jittered.max(ra.min(Duration::from_secs(3600))),
        None => jittered,
    }
}

/// A fresh Idempotency-Key.
pub(super) fn new_key() -> String {
    format!("retouchd-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

pub(super) struct Runner<'a> {
    ctx: &'a Ctx,
    job: JobRecord,
    watch: std::sync::Arc<WatchConfig>,
    /// Retries of the current step so far.
    attempt: u32,
    /// When this process uploaded the job (not known for jobs resumed after a restart).
    submitted_at: Option<tokio::time::Instant>,
    /// When this job's last retried request failed (Unix ms).
    last_failure_ms: i64,
}

impl<'a> Runner<'a> {
    pub(super) fn new(ctx: &'a Ctx, job: JobRecord, watch: std::sync::Arc<WatchConfig>) -> Self {
        Runner { ctx, job, watch, attempt: 0, submitted_at: None, last_failure_ms: 0 }
    }

    fn source_path(&self) -> PathBuf {
        self.job.source.path()
    }

    fn age(&self) -> Duration {
        Duration::from_millis((crate::journal::now_ms() - self.job.created_at).max(0) as u64)
    }

    /// Sleeps before retrying a request to the server, or says why the job should give up.
    async fn retry_later(
        &mut self,
        what: &'static str,
        err: &(impl std::fmt::Display + Sync),
        retry_after: Option<Duration>,
    ) -> Option<String> {
        self.retry_with_cap(what, err, retry_after, NETWORK_CAP).await
    }

    /// Sleeps before retrying a local step, or says why the job should give up.
    async fn retry_local(&mut self, what: &'static str, err: &(impl std::fmt::Display + Sync)) -> Option<String> {
        self.retry_with_cap(what, err, None, LOCAL_CAP).await
    }

    async fn retry_with_cap(
        &mut self,
        what: &'static str,
        err: &(impl std::fmt::Display + Sync),
        retry_after: Option<Duration>,
        cap: Duration,
    ) -> Option<String> {
        let max_age = self.ctx.config().server.max_job_age;
        if self.age() > max_age {
            return Some(format!(
                "gave up after {} of retrying; last problem while {what}: {err}",
                humantime::format_duration(Duration::from_secs(max_age.as_secs()))
            ));
        }
        // If the server answered someone since this job's last failure, it is up again and this
        // failure is sporadic: start the backoff afresh instead of waiting out an outage's growth.
        let now = crate::journal::now_ms();
        if cap == NETWORK_CAP && self.ctx.last_server_success.load(Ordering::Relaxed) > self.last_failure_ms {
            self.attempt = 0;
        }
        self.last_failure_ms = now;
        let delay = backoff(self.attempt, retry_after, cap);
        self.attempt += 1;
        warn!(job = self.job.id, file = %self.job.source.rel_path.display(), error = %err, retry_in = ?delay, "{what} failed; will retry");
        self.ctx.metrics.retry(if cap == LOCAL_CAP { "local" } else { what });
        tokio::time::sleep(delay).await;
        None
    }

    /// Runs the job until it is finished (or the task is cancelled).
    pub async fn run(mut self) -> Result<JobRecord, Halt> {
        while !self.job.state.is_terminal() {
            let event = match self.job.state.clone() {
                JobState::Submitting { key } => self.submit(&key).await,
                JobState::Processing { task_id, host } => self.poll(&task_id, &host).await,
                JobState::Fetching { task_id, host } => self.fetch(&task_id, &host).await,
                JobState::Delivering { staged, target, .. } => self.publish(&staged, &target).await,
                JobState::Delivered { .. } => self.settle_done().await,
                JobState::Failing { reason } | JobState::Rejecting { reason } => self.settle_failed(&reason).await,
                JobState::Done { .. } | JobState::Failed { .. } | JobState::Rejected { .. } => break,
            };
            self.attempt = 0;
            self.ctx.advance(&mut self.job, event).await.map_err(Halt::Journal)?;
            if self.job.state.is_terminal() {
                self.ctx.metrics.finished(self.age());
                self.run_hook().await;
            }
        }
        Ok(self.job)
    }

    /// The watch's hook for how the job ended, if one is configured.
    async fn run_hook(&self) {
        let (event, argv, source_now, outputs) = match &self.job.state {
            JobState::Done { outputs, moved_to } => ("delivered", &self.watch.on_delivered, moved_to, outputs.clone()),
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
            source: self.source_path(),
            source_now: source_now.clone(),
            outputs,
            reason: self.job.state.reason().map(str::to_string),
        };
        crate::hooks::run(argv, self.watch.hook_timeout, &context).await;
    }

    async fn submit(&mut self, key: &str) -> Event {
        let path = self.source_path();
        let name = self.job.source.rel_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        loop {
            let pass = self.ctx.gate.pass().await;
            let permit = self.ctx.uploads.acquire().await.expect("upload semaphore is never closed");
            // Checked at the last moment: the file must still be the one that was inspected.
            if let Some(verdict) = self.source_changed(&path) {
                drop(permit);
                if pass == Pass::Probe {
                    self.ctx.gate.release_probe();
                }
                match verdict {
                    Ok(reason) => return Event::Fail { reason },
                    Err(e) => {
                        if let Some(reason) = self.retry_local("reading the file", &e).await {
                            return Event::Fail { reason };
                        }
                        continue;
                    }
                }
            }
            self.ctx.metrics.upload_started(1);
            // One client for the call and the host recorded with it (a reload may swap clients).
            let client = self.ctx.client();
            let result = client.start(&path, &name, &self.watch.payload, key).await;
            self.ctx.metrics.upload_started(-1);
            drop(permit);
            match result {
                Ok(started) => {
                    self.ctx.gate.report_ok();
                    self.ctx.server_answered();
                    self.ctx.metrics.submitted(
                        self.job.source.size,
                        started.quota,
                        self.ctx.config().server.low_quota_warning,
                    );
                    info!(job = self.job.id, file = %self.job.source.rel_path.display(), task_id = %started.id, "submitted");
                    self.submitted_at = Some(tokio::time::Instant::now());
                    return Event::Started { task_id: started.id, host: client.base_url().to_string() };
                }
                Err(e) if e.kind == ErrorKind::BadToken => self.ctx.gate.report_pause(
                    PauseReason::Token,
                    e.message.clone(),
                    self.ctx.config().server.token_retry,
                ),
                Err(e) if e.kind == ErrorKind::QuotaReached => self.ctx.gate.report_pause(
                    PauseReason::Quota,
                    e.message.clone(),
                    self.ctx.config().server.quota_retry,
                ),
                Err(e) => {
                    if pass == Pass::Probe {
                        self.ctx.gate.release_probe();
                    }
                    if !e.is_retryable() {
                        return Event::Fail { reason: refusal_reason(&e) };
                    }
                    if let Some(reason) = self.retry_later("uploading", &e, e.retry_after).await {
                        return Event::Fail { reason };
                    }
                }
            }
        }
    }

    /// `None` when the file is still as inspected; else the reason to give up on this job
    /// (`Ok`), or an error that may pass (`Err`, e.g. an unreadable share).
    fn source_changed(&self, path: &Path) -> Option<std::io::Result<String>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => (crate::watch::stamp_of(&meta) != self.job.source.stamp())
                .then(|| Ok("the file changed before it was sent; the new version is taken as a new job".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.inbox_ready().is_ok() => {
                Some(Ok("the file was removed or renamed in the inbox before it was sent".into()))
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn client_for(&self, host: &str) -> Client {
        self.ctx.client_for_host(host)
    }

    fn expired(&self, task_id: &str) -> Event {
        match self.ctx.config().server.on_expired {
            OnExpired::Resubmit => {
                warn!(job = self.job.id, task_id, "the server no longer knows the task; submitting the file again");
                Event::Resubmit { key: new_key() }
            }
            OnExpired::Fail => Event::Fail {
                reason: format!(
                    "the server no longer knows task {task_id} (results are kept for 24 hours, or the job was lost); \
                     set server.on_expired = \"resubmit\" to send such files again automatically"
                ),
            },
        }
    }

    async fn poll(&mut self, task_id: &str, host: &str) -> Event {
        let client = self.client_for(host);
        let interval = self.ctx.config().server.poll_interval.max(POLL_FLOOR);
        // Timing is learned only from jobs whose upload time is known (not resumed ones).
        let class = self.submitted_at.map(|_| JobClass::new(&self.watch.payload, self.job.source.size));
        let since = self.submitted_at.unwrap_or_else(tokio::time::Instant::now);
        let mut polls = 0;
        let mut sightings: Vec<Sighting> = Vec::new();
        loop {
            tokio::time::sleep(self.ctx.poll_plan.next_wait(class, since.elapsed(), &sightings, interval)).await;
            polls += 1;
            let answer = client.status(task_id).await;
            if answer.is_ok() {
                // A good answer ends a run of errors: the next error starts the backoff afresh.
                self.attempt = 0;
                self.ctx.server_answered();
            }
            match answer {
                Ok(status) => match status.state {
                    TaskState::Completed => {
                        debug!(job = self.job.id, task_id, polls, "completed on the server");
                        if let Some(class) = class {
                            self.ctx.poll_plan.record_completion(class, since.elapsed(), &sightings, interval);
                        }
                        return Event::Completed;
                    }
                    TaskState::Failed => {
                        let reason = status.reason.unwrap_or_else(|| "no reason given".into());
                        return Event::Fail { reason: format!("the server could not retouch it: {reason}") };
                    }
                    ref state => {
                        let progress = if *state == TaskState::Active { status.progress } else { None };
                        sightings.push(Sighting { at: since.elapsed(), progress });
                        if let Some(p) = status.progress {
                            self.job.progress = Some(p);
                            self.ctx.progress(&self.job);
                        }
                        if self.age() > self.ctx.config().server.max_job_age {
                            return Event::Fail {
                                reason: format!(
                                    "the server did not finish within server.max_job_age ({}); last state `{}`",
                                    humantime::format_duration(self.ctx.config().server.max_job_age),
                                    status.state.as_str()
                                ),
                            };
                        }
                    }
                },
                Err(e) if e.kind == ErrorKind::NotFound => return self.expired(task_id),
                Err(e) if e.is_retryable() || e.kind == ErrorKind::BadToken => {
                    if let Some(reason) = self.retry_later("polling", &e, e.retry_after).await {
                        return Event::Fail { reason };
                    }
                }
                Err(e) => return Event::Fail { reason: format!("polling the task failed: {e}") },
            }
        }
    }

    async fn fetch(&mut self, task_id: &str, host: &str) -> Event {
        let client = self.client_for(host);
        let staging = self.watch.outbox.join(STAGING_DIR);
        let mut not_stored_yet = 0;
        loop {
            if let Err(e) = std::fs::create_dir_all(&staging) {
                if let Some(reason) = self.retry_local("preparing the outbox", &e).await {
                    return Event::Fail { reason };
                }
                continue;
            }
            let err = match client.get_file(task_id, &staging).await {
                Ok(download) => match self.stage(download.path.clone(), download.kind).await {
                    Ok(event) => {
                        self.ctx.metrics.downloaded(download.bytes);
                        self.ctx.server_answered();
                        return event;
                    }
                    Err(DeliverError::Unsafe(reason)) => return Event::Fail { reason },
                    Err(DeliverError::Io(e)) => {
                        let _ = std::fs::remove_file(&download.path);
                        if deliver::is_disk_full(&e) {
                            warn!(outbox = %self.watch.outbox.display(), "the outbox's disk is full; the job waits and the source stays");
                        }
                        if let Some(reason) = self.retry_local("writing the result", &e).await {
                            return Event::Fail { reason };
                        }
                        continue;
                    }
                },
                Err(e) => e,
            };
            match err.kind {
                // Right after completion the result may not be stored yet.
                ErrorKind::NotFound if not_stored_yet < 10 => {
                    not_stored_yet += 1;
                    tokio::time::sleep(POLL_FLOOR).await;
                }
                ErrorKind::NotFound => {
                    return match client.status(task_id).await {
                        Err(e) if e.kind == ErrorKind::NotFound => self.expired(task_id),
                        _ => {
                            not_stored_yet = 0;
                            if let Some(reason) = self.retry_later("downloading", &err, None).await {
                                return Event::Fail { reason };
                            }
                            continue;
                        }
                    };
                }
                ErrorKind::Local => {
                    if matches!(err.os_error, Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                        warn!(outbox = %self.watch.outbox.display(), "the outbox's disk is full; the job waits and the source stays");
                    }
                    if let Some(reason) = self.retry_local("writing the download", &err).await {
                        return Event::Fail { reason };
                    }
                }
                _ if err.is_retryable() => {
                    if let Some(reason) = self.retry_later("downloading", &err, err.retry_after).await {
                        return Event::Fail { reason };
                    }
                }
                _ => return Event::Fail { reason: format!("the result could not be downloaded: {err}") },
            }
        }
    }

    /// Turns a download into a staged result (extracted folder or image file) beside the outbox,
    /// on a blocking thread (extraction writes and syncs files).
    async fn stage(&self, download: PathBuf, kind: FileKind) -> Result<Event, DeliverError> {
        let outbox = self.watch.outbox.clone();
        let rel = self.job.source.rel_path.clone();
        let (id, max_bytes) = (self.job.id, self.ctx.config().server.max_result_bytes);
        on_blocking_thread(move || stage_download(download, kind, &outbox, &rel, id, max_bytes)).await
    }

    async fn publish(&mut self, staged: &Path, target: &Path) -> Event {
        loop {
            if staged.symlink_metadata().is_err() {
                // Published before a restart: the staged copy is gone.
                return Event::Published { outputs: vec![target.to_path_buf()] };
            }
            let dir = target.parent().unwrap_or(Path::new("."));
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (stem, ext) = if staged.is_dir() { (name.as_str(), None) } else { deliver::split_name(&name) };
            let (from, dir, stem, ext) =
                (staged.to_path_buf(), dir.to_path_buf(), stem.to_string(), ext.map(str::to_string));
            // A rename and folder syncs: on a blocking thread.
            let placed = on_blocking_thread(move || deliver::place(&from, &dir, &stem, ext.as_deref())).await;
            match placed {
                Ok(final_path) => {
                    info!(job = self.job.id, file = %self.job.source.rel_path.display(), output = %final_path.display(), "delivered");
                    return Event::Published { outputs: vec![final_path] };
                }
                Err(e) => {
                    if let Some(reason) = self.retry_local("publishing the result", &e).await {
                        return Event::Fail { reason };
                    }
                }
            }
        }
    }

    /// Whether the inbox can be trusted to show what is in it: readable, and carrying its marker
    /// where the daemon places one (not for `retouchd process`).
    fn inbox_ready(&self) -> std::io::Result<()> {
        if self.ctx.marks_inboxes {
            crate::watch::inbox_available(&self.watch.inbox)
        } else {
            std::fs::read_dir(&self.watch.inbox).map(drop)
        }
    }

    /// Whether the inbox still holds this job's file, unchanged. `Err` when that cannot be told
    /// (the inbox itself is unreadable: an unmounted share must not count as "gone").
    fn source_present(&self) -> std::io::Result<bool> {
        self.inbox_ready()?;
        match std::fs::symlink_metadata(self.source_path()) {
            Ok(meta) => {
                let stamp = crate::watch::stamp_of(&meta);
                let same = stamp == self.job.source.stamp();
                if !same {
                    info!(job = self.job.id, file = %self.job.source.rel_path.display(), ?stamp,
                        was_size = self.job.source.size, was_mtime_ns = self.job.source.mtime_ns,
                        "the source changed since it was sent; the new version is left for its own job");
                }
                Ok(same)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!(job = self.job.id, file = %self.job.source.rel_path.display(), "the source is no longer in the inbox");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn settle_done(&mut self) -> Event {
        loop {
            let result = match self.source_present() {
                Ok(true) => match self.watch.on_success {
                    OnSuccess::Move => {
                        let (src, done, rel) =
                            (self.source_path(), self.watch.done_dir.clone(), self.job.source.rel_path.clone());
                        // A rename and folder syncs: on a blocking thread.
                        on_blocking_thread(move || deliver::move_source(&src, &done, &rel).map(Some)).await
                    }
                    OnSuccess::Delete => std::fs::remove_file(self.source_path()).map(|()| None),
                    OnSuccess::Keep => Ok(None),
                },
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match result {
                Ok(moved_to) => return Event::SourceSettled { moved_to },
                Err(e) => {
                    // The result is delivered; a source that cannot be moved only waits.
                    let _ = self.retry_local("moving the source to done", &e).await;
                }
            }
        }
    }

    async fn settle_failed(&mut self, reason: &str) -> Event {
        loop {
            let result = self.source_present().and_then(|present| {
                // No failed folder (`retouchd process`): the file stays where the user put it.
                if !present || self.watch.failed_dir.as_os_str().is_empty() {
                    return Ok(None);
                }
                let moved =
                    deliver::move_source(&self.source_path(), &self.watch.failed_dir, &self.job.source.rel_path)?;
                deliver::write_error_note(&moved, &self.source_path(), reason)?;
                Ok(Some(moved))
            });
            match result {
                Ok(moved_to) => {
                    warn!(job = self.job.id, file = %self.job.source.rel_path.display(), reason, "failed");
                    return Event::SourceSettled { moved_to };
                }
                Err(e) => {
                    let _ = self.retry_local("moving the source to failed", &e).await;
                }
            }
        }
    }
}

/// Plain words for a refusal the server gave at upload.
fn refusal_reason(e: &ApiError) -> String {
    match e.kind {
        ErrorKind::InvalidTask => {
            format!("the server refused the task description ({}); check [watch.payload] in the config", e.message)
        }
        ErrorKind::NoFile => "the server received no file (the file was empty or unreadable)".into(),
        _ => format!("the server refused the upload: {e}"),
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

/// Turns a download into a staged result for job `id`: a zip is extracted (at most `max_bytes`)
/// into a folder, an image renamed; both beside the outbox, named after the job.
fn stage_download(
    download: PathBuf,
    kind: FileKind,
    outbox: &Path,
    rel: &Path,
    id: crate::journal::JobId,
    max_bytes: u64,
) -> Result<Event, DeliverError> {
    let staging = download.parent().map(Path::to_path_buf).unwrap_or_default();
    let (dir, stem, ext) = deliver::result_target(outbox, rel, kind);
    let staged = staging.join(format!("job-{id}{}", ext.map(|e| format!(".{e}")).unwrap_or_default()));
    if staged.is_dir() {
        std::fs::remove_dir_all(&staged)?;
    } else if staged.exists() {
        std::fs::remove_file(&staged)?;
    }
    match kind {
        FileKind::Zip => {
            let result = deliver::extract_zip(&download, &staged, max_bytes);
            let _ = std::fs::remove_file(&download);
            if result.is_err() && staged.exists() {
                let _ = std::fs::remove_dir_all(&staged);
            }
            result?;
            deliver::sync_dir(&staged);
        }
        FileKind::Png | FileKind::Jpeg => std::fs::rename(&download, &staged)?,
        FileKind::Unknown => {
            let _ = std::fs::remove_file(&download);
            return Err(DeliverError::Unsafe(
                "the server sent something that is neither a ZIP archive nor an image".into(),
            ));
        }
    }
    let target = match ext {
        Some(ext) => dir.join(format!("{stem}.{ext}")),
        None => dir.join(stem),
    };
    Ok(Event::Staged { staged, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for attempt in 0..20 {
            let d = backoff(attempt, None, NETWORK_CAP);
            let exp = Duration::from_secs(1 << attempt.min(9)).min(Duration::from_secs(300));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(0, Some(Duration::from_secs(30)), NETWORK_CAP) >= Duration::from_secs(30));
        assert!(backoff(0, Some(Duration::from_secs(99_999)), NETWORK_CAP) <= Duration::from_secs(3600));
        assert!(backoff(30, None, LOCAL_CAP) <= LOCAL_CAP);
    }
}
