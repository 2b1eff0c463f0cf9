//! What the dashboard shows, as data: one home for the pages (HTML) and the API (JSON), so both
//! always say the same thing. Everything here is read from the running daemon's handle and the
//! dashboard's own read-only connection to the journal ([`Reader`]), on a blocking thread, so a
//! slow query (a name search on a huge journal) holds up neither the daemon's async workers nor
//! its own journal reads; nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::daemon::control::{Refused, WaitingPage};
use crate::daemon::{Handle, LiveStatus, USER_PAUSE};
use crate::job::{JobState, StateName};
use crate::journal::{JobId, JobQuery, JobRecord, Journal, JournalError, Step};
use crate::report::JobView;

/// The dashboard's own read-only connection to the journal.
#[derive(Clone)]
pub struct Reader(Arc<Journal>);

impl Reader {
    /// The journal `config` names, read only (its own connection).
    pub fn open(config: &crate::config::Config) -> Result<Reader, JournalError> {
        Journal::for_config(config, false).map(|j| Reader(Arc::new(j)))
    }

    /// Runs `read` on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, Refused> {
        let journal = self.0.clone();
        match tokio::task::spawn_blocking(move || read(&journal)).await {
            Ok(result) => result.map_err(journal_error),
            Err(e) => Err(Refused::Unavailable(format!("reading the journal stopped: {e}"))),
        }
    }
}

/// Jobs on one page, unless asked for fewer.
pub const PAGE: usize = 50;
/// The most jobs one page may ask for.
pub const MAX_PAGE: usize = 500;

/// One watch on the overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchView {
    pub inbox: String,
    pub outbox: String,
    /// Why its inbox cannot be read now (an unmounted share), if so.
    pub unavailable: Option<String>,
    /// Files by the state of their newest job.
    pub counts: BTreeMap<StateName, u64>,
}

/// The overview: the daemon's state, its watches and the journal's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub daemon: LiveStatus,
    /// `running`, `paused…` (in words; `daemon.paused` has the reason code), `disk full` or
    /// `inbox unavailable`.
    pub state: String,
    /// What to do about it, in plain words (empty while running).
    pub advice: String,
    pub counts: BTreeMap<StateName, u64>,
    pub watches: Vec<WatchView>,
    pub delivered_last_hour: u64,
    /// The nodes of a shared journal (empty for a daemon on its own).
    pub nodes: Vec<crate::report::NodeView>,
    /// The pauses people set that hold now (for every inbox or one).
    pub pauses: Vec<crate::report::PauseView>,
    /// Credits spent today and this month against each budget.
    pub budgets: Vec<crate::report::BudgetView>,
    /// Notifications not yet taken by their receivers, per channel.
    pub notices: Vec<crate::journal::NoticeBacklog>,
}

/// A job in a list (the JSON API's and the pages' rows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    #[serde(flatten)]
    pub view: JobView,
    pub inbox: String,
    /// The file's path below its inbox.
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// A person may cancel it now (it waits for its first upload).
    pub cancellable: bool,
    /// Retry would send its file again (failed or refused, its file in the failed folder).
    pub retryable: bool,
}

/// A page of jobs, newest first; `next_before` asks for the next page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPage {
    pub jobs: Vec<JobRow>,
    pub next_before: Option<JobId>,
    /// With `state=waiting`: the files seen and not jobs yet, with why they wait.
    pub waiting: Option<WaitingPage>,
}

/// One job, whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub row: JobRow,
    pub timeline: Vec<Step>,
    pub outputs: Vec<String>,
    /// Thumbnail addresses, when there is a picture to show.
    pub before_thumbnail: Option<String>,
    pub after_thumbnail: Option<String>,
}

/// Which jobs a list asks for, as the page's and the API's `state` parameter says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    All,
    /// Every unfinished job.
    Active,
    /// Files seen and not jobs yet (with why they wait).
    Waiting,
    One(StateName),
}

impl StateFilter {
    pub fn parse(text: Option<&str>) -> Result<StateFilter, String> {
        match text.unwrap_or("") {
            "" | "all" => Ok(StateFilter::All),
            "active" => Ok(StateFilter::Active),
            "waiting" => Ok(StateFilter::Waiting),
            other => StateName::parse(other).map(StateFilter::One).ok_or_else(|| {
                format!("unknown state `{other}`; use all, active, waiting or a job state such as failed")
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::All => "all",
            StateFilter::Active => "active",
            StateFilter::Waiting => "waiting",
            StateFilter::One(s) => s.as_str(),
        }
    }

    fn states(self) -> Vec<StateName> {
        match self {
            StateFilter::All | StateFilter::Waiting => Vec::new(),
            StateFilter::Active => StateName::ALL.into_iter().filter(|s| !s.is_terminal()).collect(),
            StateFilter::One(s) => vec![s],
        }
    }
}

fn journal_error(e: impl std::fmt::Display) -> Refused {
    Refused::Unavailable(format!("the journal cannot be read: {e}"))
}

/// The overview, as of now.
pub async fn overview(handle: &Handle, reader: &Reader) -> Result<Overview, Refused> {
    let daemon = handle.status().await?;
    let hour_ago = crate::vocab::now_ms() - 3_600_000;
    let config = handle.config();
    let for_nodes = Arc::clone(&config);
    let read = reader
        .read(move |journal| {
            let now = crate::vocab::now_ms();
            Ok((
                journal.file_counts()?,
                journal.file_counts_by_inbox()?,
                journal.delivered_since(hour_ago)?,
                crate::report::node_views(journal, &for_nodes, now)?,
                (
                    crate::report::pause_views(journal, now)?,
                    crate::report::budget_views(journal, &for_nodes)?,
                    journal.notice_backlog()?,
                ),
            ))
        })
        .await;
    // While a shared journal's database is away the page still says what the daemon does.
    let (counts, by_inbox, delivered_last_hour, nodes, (pauses, budgets, notices)) = match read {
        Err(_) if daemon.database_unreachable.is_some() => Default::default(),
        other => other?,
    };
    let watches = config
        .watches
        .iter()
        .map(|w| {
            let inbox = w.inbox.display().to_string();
            WatchView {
                unavailable: daemon
                    .inboxes_unavailable
                    .contains(&inbox)
                    .then(|| "it cannot be read now (an unmounted share?)".to_string()),
                counts: by_inbox.get(&w.inbox).cloned().unwrap_or_default(),
                outbox: w.outbox.display().to_string(),
                inbox,
            }
        })
        .collect();
    let (state, advice) = describe(&daemon);
    Ok(Overview { daemon, state, advice, counts, watches, delivered_last_hour, nodes, pauses, budgets, notices })
}

/// The daemon's state in a word or two, and what to do about it.
fn describe(daemon: &LiveStatus) -> (String, String) {
    if let (Some(reason), Some(advice)) = (&daemon.paused, daemon.pause_advice()) {
        let state = match crate::api::PauseReason::ALL.into_iter().find(|r| r.as_str() == reason) {
            Some(r) => format!("paused: {}", pause_words(r)),
            None if reason == USER_PAUSE => daemon.pause_detail.clone().unwrap_or_else(|| "paused by a person".into()),
            None => format!("paused: {reason}"),
        };
        return (state, advice.to_string());
    }
    if let Some(problem) = &daemon.database_unreachable {
        return (
            "journal database unreachable".into(),
            format!(
                "{problem}. This node claims nothing new and publishes nothing until the database answers; \
                 the other nodes take its jobs over after the lease"
            ),
        );
    }
    if let Some(outbox) = &daemon.disk_full {
        return (
            "disk full".into(),
            format!("the disk of {outbox} is full: jobs wait and sources stay; free some space and they go on"),
        );
    }
    if !daemon.inboxes_unavailable.is_empty() {
        return (
            "inbox unavailable".into(),
            format!(
                "cannot read {}: mount the share again; it is watched again by itself",
                daemon.inboxes_unavailable.join(", ")
            ),
        );
    }
    ("running".into(), String::new())
}

/// A pause reason in a few words, for the overview's heading.
fn pause_words(reason: crate::api::PauseReason) -> &'static str {
    use crate::api::PauseReason;
    match reason {
        PauseReason::Token => "the server refuses the token",
        PauseReason::Quota => "the processing limit is reached",
        PauseReason::Route => "wrong server address",
    }
}

/// A job as a list row; `cancellable`: whether the daemon would cancel it now.
pub fn row(job: &JobRecord, now_ms: i64, cancellable: bool) -> JobRow {
    let retryable = match &job.state {
        JobState::Failed { moved_to, .. } | JobState::Rejected { moved_to, .. } => {
            moved_to.as_ref().is_some_and(|p| p.exists())
        }
        _ => false,
    };
    JobRow {
        view: crate::report::view(job, now_ms),
        inbox: job.source.inbox.display().to_string(),
        name: job.source.rel_path.display().to_string(),
        created_at: job.created_at,
        updated_at: job.updated_at,
        cancellable,
        retryable,
    }
}

/// A job's row with what the running daemon knows of it: whether it may be cancelled, and why
/// it is held up.
fn held_row(handle: &Handle, job: &JobRecord, now_ms: i64) -> JobRow {
    let mut row = row(job, now_ms, handle.is_waiting(job.id, &job.state));
    row.view.waiting = handle.job_wait(job.id);
    row
}

/// A page of jobs (or, with [`StateFilter::Waiting`], of waiting files from `offset`).
pub async fn jobs(
    handle: &Handle,
    reader: &Reader,
    filter: StateFilter,
    name: Option<String>,
    before: Option<JobId>,
    limit: usize,
    offset: usize,
) -> Result<JobPage, Refused> {
    let name = name.filter(|n| !n.is_empty());
    let limit = limit.clamp(1, MAX_PAGE);
    if filter == StateFilter::Waiting {
        let waiting = handle.waiting(offset, limit, name).await?;
        return Ok(JobPage { jobs: Vec::new(), next_before: None, waiting: Some(waiting) });
    }
    let query = JobQuery { states: filter.states(), name, before, limit: limit + 1 };
    let mut found = reader.read(move |journal| journal.page(&query)).await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let now = crate::vocab::now_ms();
    let next_before = if more { found.last().map(|j| j.id) } else { None };
    let jobs = found.iter().map(|j| held_row(handle, j, now)).collect();
    Ok(JobPage { jobs, next_before, waiting: None })
}

/// The outputs of a delivered job.
fn outputs(state: &JobState) -> &[PathBuf] {
    match state {
        JobState::Done { outputs, .. } | JobState::Delivered { outputs, .. } => outputs,
        _ => &[],
    }
}

/// The finished photo among a job's outputs (a JPEG, PNG or TIFF file), for the "after" preview.
pub fn finished_photo(state: &JobState) -> Option<&Path> {
    outputs(state).iter().map(PathBuf::as_path).find(|p| {
        let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "tif" | "tiff") && p.is_file()
    })
}

/// Where the job's source photo is now (done/, failed/, or still the inbox), if it is a photo.
pub fn source_photo(job: &JobRecord) -> Option<PathBuf> {
    let moved = match &job.state {
        JobState::Done { moved_to, .. } | JobState::Failed { moved_to, .. } | JobState::Rejected { moved_to, .. } => {
            moved_to.clone()
        }
        _ => None,
    };
    let path = moved.unwrap_or_else(|| job.source.path());
    crate::render::can_render(&path).then_some(path).filter(|p| p.is_file())
}

/// One job, whole; `None` if there is no such job.
pub async fn job(handle: &Handle, reader: &Reader, id: JobId) -> Result<Option<JobDetail>, Refused> {
    let found = reader
        .read(move |journal| match journal.get(id)? {
            Some(job) => Ok(Some((journal.timeline(id)?, source_photo(&job), job))),
            None => Ok(None),
        })
        .await?;
    let Some((timeline, source, job)) = found else { return Ok(None) };
    let now = crate::vocab::now_ms();
    Ok(Some(JobDetail {
        before_thumbnail: source.map(|_| format!("/jobs/{id}/thumbnail/before")),
        after_thumbnail: finished_photo(&job.state).map(|_| format!("/jobs/{id}/thumbnail/after")),
        outputs: outputs(&job.state).iter().map(|p| p.display().to_string()).collect(),
        row: held_row(handle, &job, now),
        timeline,
    }))
}
