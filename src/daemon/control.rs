//! What the outside (the web dashboard) may ask of the running daemon, through a [`Handle`]:
//! its live status, the files waiting for a slot, and the actions a person takes (pause and
//! resume uploads, cancel a job that waits, retry failed files, reload the configuration).
//!
//! The coordinator owns the queue, so questions about it travel as a [`Request`] to its loop;
//! everything else is read from the shared context and the journal.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::JobUpdate;
use super::context::Ctx;
use super::live_status::LiveStatus;
pub use super::waiting::WaitingFile;
use crate::config::Config;
use crate::job::{JobState, StateName};
use crate::journal::{JobId, JournalError};
use crate::retry::{self, Retried, Which};

/// Reads the configuration file again (the same loader SIGHUP uses).
pub type ReloadSource = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A question for the coordinator's loop.
pub(super) enum Request {
    Status(oneshot::Sender<LiveStatus>),
    Waiting { offset: usize, limit: usize, name: Option<String>, reply: oneshot::Sender<WaitingPage> },
    CancelWaiting { file: PathBuf, reply: oneshot::Sender<Result<String, String>> },
    Reload { config: Box<Config>, reply: oneshot::Sender<Result<String, String>> },
}

/// One page of the files waiting (with why), and how many match in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaitingPage {
    pub total: usize,
    pub files: Vec<WaitingFile>,
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    NotFound(String),
    /// The thing is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// The daemon is stopping, or cannot do it now.
    #[error("{0}")]
    Unavailable(String),
}

/// The running daemon, as the dashboard sees it.
#[derive(Clone)]
pub struct Handle {
    ctx: Arc<Ctx>,
    requests: mpsc::Sender<Request>,
    reload_source: Option<ReloadSource>,
}

const STOPPING: &str = "the daemon is stopping";

impl Handle {
    pub(super) fn new(ctx: Arc<Ctx>, requests: mpsc::Sender<Request>, reload_source: Option<ReloadSource>) -> Self {
        Handle { ctx, requests, reload_source }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.ctx.config()
    }

    /// Every job's news from now on.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<JobUpdate>> {
        self.ctx.subscribe()
    }

    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Refused> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(request(tx)).await.map_err(|_| Refused::Unavailable(STOPPING.into()))?;
        rx.await.map_err(|_| Refused::Unavailable(STOPPING.into()))
    }

    /// What `retouchd status` shows of the running daemon, as of now.
    pub async fn status(&self) -> Result<LiveStatus, Refused> {
        self.ask(Request::Status).await
    }

    /// Files waiting for a slot, in the order they will go, whose path contains `name`.
    pub async fn waiting(&self, offset: usize, limit: usize, name: Option<String>) -> Result<WaitingPage, Refused> {
        self.ask(|reply| Request::Waiting { offset, limit, name, reply }).await
    }

    /// Takes a file out of the queue: it goes to failed/ unsent, where Retry finds it.
    pub async fn cancel_waiting_file(&self, file: PathBuf) -> Result<String, Refused> {
        self.ask(|reply| Request::CancelWaiting { file, reply }).await?.map_err(Refused::Conflict)
    }

    /// Cancels a job that has not been uploaded yet (it goes to failed/, nothing charged).
    pub fn cancel_job(&self, id: JobId) -> Result<String, Refused> {
        if self.ctx.cancel_waiting(id) {
            return Ok(format!("job #{id} is cancelled; its file goes to the failed folder (nothing was charged)"));
        }
        let job = self.ctx.journal.get(id).map_err(|e| Refused::Unavailable(e.to_string()))?;
        let Some(job) = job else { return Err(Refused::NotFound(format!("there is no job #{id}"))) };
        Err(Refused::Conflict(match job.state.name() {
            s if s.is_terminal() => format!("job #{id} is already {s}"),
            StateName::Submitting => format!(
                "job #{id} is being uploaded, or was sent before the daemon restarted: the server may have it \
                 already, so it goes on (cancelling could waste its credit)"
            ),
            s => format!("job #{id} is {s}: the server has it (the credit is spent), so it goes on to delivery"),
        }))
    }

    /// Pauses (true) or resumes (false) uploads from every inbox, until resumed; kept in the
    /// journal across restarts (as `retouchd pause` does). Jobs at the server go on while paused.
    pub async fn hold(&self, held: bool) -> Result<String, Refused> {
        let ctx = self.ctx.clone();
        let hold = held.then_some(crate::journal::Hold { until_ms: None });
        let holds = tokio::task::spawn_blocking(move || {
            ctx.journal.set_pause(None, hold)?;
            ctx.journal.pauses()
        })
        .await
        .map_err(|e| Refused::Unavailable(e.to_string()))?
        .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let changed = self.ctx.gate.set_holds(holds);
        Ok(match (held, changed) {
            (true, true) => "uploads paused; jobs already at the server go on".into(),
            (true, false) => "uploads were already paused".into(),
            (false, true) => "uploads resumed".into(),
            (false, false) => "uploads were not paused by you".into(),
        })
    }

    /// Sends failed files back to their inbox (`retouchd retry`'s rules).
    pub async fn retry(&self, which: Which) -> Result<Vec<Retried>, JournalError> {
        let (ctx, config) = (self.ctx.clone(), self.config());
        tokio::task::spawn_blocking(move || retry::retry(&config, &ctx.journal, which))
            .await
            .unwrap_or_else(|e| Ok(vec![Retried::Skipped { id: 0, why: retry::Skip::CannotMove(e.to_string()) }]))
    }

    /// Reads the configuration file again and switches to it, as SIGHUP does.
    pub async fn reload(&self) -> Result<String, Refused> {
        let Some(source) = self.reload_source.clone() else {
            return Err(Refused::Unavailable("this daemon was not started from a config file".into()));
        };
        let config = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(|e| Refused::Unavailable(e.to_string()))?
            .map_err(|e| {
                Refused::Conflict(format!("the new configuration is refused; the old one keeps running. {e}"))
            })?;
        self.ask(|reply| Request::Reload { config: Box::new(config), reply }).await?.map_err(Refused::Conflict)
    }

    /// Whether a job is waiting for its first upload (and so may be cancelled).
    pub fn is_waiting(&self, id: JobId, state: &JobState) -> bool {
        matches!(state, JobState::Submitting { .. }) && self.ctx.is_cancellable(id)
    }

    /// The completion hook was called with `token`: wakes its job's poller (false when no job
    /// waits for it).
    pub fn hook_called(&self, token: &str) -> bool {
        self.ctx.hooks.called(token)
    }

    /// Why a job is held up now (a retry, a pause), in words.
    pub fn job_wait(&self, id: JobId) -> Option<String> {
        self.ctx.job_wait(id).map(|w| w.describe(crate::vocab::now_secs()))
    }
}
