//! The durable job journal: what every job went through, committed before the side effect that
//! depends on it, so after a crash the journal says exactly what may have happened (see
//! [`crate::job`] for the restart rules).
//!
//! One trait ([`Store`]) with two backends: the embedded default, one SQLite file in the state
//! folder ([`sqlite`]), and a PostgreSQL database that several daemons share ([`pg`]), where
//! each node holds a lease on the jobs it works on ([`Store::renew`], [`Store::take_over`]) and
//! every state change is fenced by the job's claim generation. Both pass one conformance suite
//! (`conformance.rs`).

use std::collections::BTreeMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::job::{JobState, StateName};
pub use crate::source::Source;

#[cfg(test)]
mod conformance;
pub mod migrate;
pub mod pg;
pub mod sqlite;

pub use sqlite::FILE_NAME;

/// A job's row id.
pub type JobId = i64;

/// One job as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub source: Source,
    pub state: JobState,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// The server's progress figure (0..100) as last recorded, while the job is at the server.
    pub progress: Option<f64>,
    /// The claim generation the job is held under: 1 for its first claim; in a shared journal it
    /// grows with every takeover, and a write under an older one is refused
    /// ([`JournalError::LostLease`]).
    pub generation: i64,
}

/// A job state as the journal stores it (JSON; paths that are not UTF-8 as their bytes, see
/// [`crate::lossless`]). Never a panic: a state that cannot be written is that write's error.
pub fn state_data(state: &JobState) -> std::result::Result<String, serde_json::Error> {
    serde_json::to_string(state)
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal {path} is damaged ({detail}). It was left untouched. Move it aside to keep it for \
         inspection, then start again (jobs in flight will be forgotten and their files processed anew)"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the journal {path} cannot be written ({detail}); check that the state folder is writable by retouchd's user"
    )]
    NotWritable { path: PathBuf, detail: String },
    #[error("the journal {path} was written by a newer retouchd (schema {found}, this one knows {knows})")]
    TooNew { path: PathBuf, found: i64, knows: i64 },
    #[error(
        "the journal {path} is from an older retouchd (schema {found}); start `retouchd run` once (or restart the \
         service), which upgrades it, then ask again"
    )]
    Outdated { path: PathBuf, found: i64 },
    /// The journal's database refused a statement (not a lost connection).
    #[error("journal error on {path}: {detail}")]
    Database { path: PathBuf, detail: String },
    /// The shared journal's database has no tables yet (no node has started on it).
    #[error("the shared journal {path} has no tables yet; start `retouchd run` on a node first (it makes them)")]
    NotSetUp { path: PathBuf },
    /// The shared journal's database cannot be reached now: retry later.
    #[error("the journal database {path} cannot be reached ({detail}); retrying")]
    Unreachable { path: PathBuf, detail: String },
    #[error("journal entry {id} cannot be read: {detail}")]
    BadRow { id: JobId, detail: String },
    /// A batch this write was part of failed (the first write of the batch has the full error).
    #[error("journal error on {path}: {detail}")]
    Batch { path: PathBuf, detail: String },
    /// Another node took the job over (this node's lease ran out): it must do nothing more with it.
    #[error("job {id} was taken over by another node (this node's lease on it ran out); it leaves the job alone")]
    LostLease { id: JobId },
    /// Another node claimed this version of the file first.
    #[error("{file} is already being handled by another node")]
    Taken { file: PathBuf },
}

impl JournalError {
    /// Whether waiting and trying again may help (a database that is restarting or cut off).
    pub fn is_transient(&self) -> bool {
        matches!(self, JournalError::Unreachable { .. })
    }
}

pub type Result<T> = std::result::Result<T, JournalError>;

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn path_of(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// One entry of a job's history: a state it entered, and when (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub state: StateName,
    pub at: i64,
}

/// A state's one-letter code in the `history` column (`a` for the first of [`StateName::ALL`]).
/// The column is a list of `<code><milliseconds since creation>;`, about 7 bytes a step.
fn step_code(state: StateName) -> String {
    let index = StateName::ALL.iter().position(|s| *s == state).unwrap_or(0);
    char::from(b'a' + index as u8).to_string()
}

/// The step that means a credit was charged: the server took the job.
pub const CHARGED_AT: StateName = StateName::Processing;

/// Whether a job's steps show a credit charged for it.
pub fn charged(steps: &[Step]) -> bool {
    steps.iter().any(|step| step.state == CHARGED_AT)
}

/// The code of [`CHARGED_AT`] in the `history` column.
fn charge_code() -> String {
    step_code(CHARGED_AT)
}

/// The credits charged since `since_ms`, each as (inbox, when): a job's first Processing step,
/// which the server's acceptance of its start is journaled as. Every node of a shared journal
/// sees the same charges, and a restart forgets none.
pub fn charges_since(journal: &dyn JobQueries, since_ms: i64) -> Result<Vec<(PathBuf, i64)>> {
    let code = charge_code();
    Ok(journal
        .charge_rows(since_ms)?
        .into_iter()
        .filter_map(|(inbox, history, created_at)| {
            let step = history.split(';').find(|entry| entry.starts_with(code.as_str()))?;
            let at = created_at + step[code.len()..].parse::<i64>().ok()?;
            (at >= since_ms).then_some((inbox, at))
        })
        .collect())
}

/// Reads a `history` column back; an entry this version cannot read is skipped. An empty one
/// (a job from before histories were kept) shows its creation and its last change.
fn timeline_of(history: &str, state: &str, created_at: i64, updated_at: i64) -> Vec<Step> {
    let steps: Vec<Step> = history
        .split(';')
        .filter_map(|entry| {
            let mut chars = entry.chars();
            let code = chars.next()?;
            let index = (code as u32).checked_sub(u32::from(b'a'))? as usize;
            let state = *StateName::ALL.get(index)?;
            let offset: i64 = chars.as_str().parse().ok()?;
            Some(Step { state, at: created_at + offset })
        })
        .collect();
    if !steps.is_empty() {
        return steps;
    }
    let state = StateName::parse(state).unwrap_or(StateName::Submitting);
    let mut steps = vec![Step { state: StateName::Submitting, at: created_at }];
    if state != StateName::Submitting {
        steps.push(Step { state, at: updated_at });
    }
    steps
}

/// Which jobs a page of the dashboard lists (see [`Store::page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in these states (all when empty).
    pub states: Vec<StateName>,
    /// Only files whose path below the inbox contains this (ASCII letters in either case).
    pub name: Option<String>,
    /// Only jobs older than this one (the previous page's last id).
    pub before: Option<JobId>,
    pub limit: usize,
}

/// One write of a batch (see [`Store::write_batch`]).
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// A new job: in a shared journal, a claim on this version of the file that fails with
    /// [`JournalError::Taken`] when another node's job has it.
    Insert(&'a Source, &'a JobState),
    /// A job's new state, written only while the job is still held under `generation`.
    Update { id: JobId, generation: i64, state: &'a JobState },
    /// The server's progress figure for a job at the server (losing it costs nothing).
    Progress(JobId, f64),
}

/// What one write of a batch came to: the job's id, or why this write (alone) was refused.
pub type WriteOutcome = Result<JobId>;

/// A job with its history as stored, for copying it into another journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub job: JobRecord,
    /// The `history` column (see [`Step`]).
    pub history: String,
}

/// One daemon of a shared journal, as `status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub host: String,
    pub pid: i64,
    /// Unix milliseconds of its start and of its last heartbeat.
    pub started_at: i64,
    pub heartbeat: i64,
    /// Unfinished jobs it holds a lease on.
    pub jobs: u64,
}

/// A state name read from the `state` column; one this version does not know is a bad row.
fn stored_state(name: &str) -> Result<StateName> {
    StateName::parse(name).ok_or_else(|| JournalError::BadRow { id: 0, detail: format!("unknown state `{name}`") })
}

/// `text` as a LIKE pattern that matches it anywhere, with `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Everything the delivered jobs among `jobs` put out.
fn delivered_outputs(jobs: Vec<JobRecord>) -> Vec<PathBuf> {
    jobs.into_iter()
        .flat_map(|j| match j.state {
            JobState::Done { outputs, .. } => outputs,
            _ => Vec::new(),
        })
        .collect()
}

/// How a delivered job's state names `output` in its JSON (to narrow a search before
/// [`first_with_output`] checks).
fn output_needle(output: &Path) -> Result<String> {
    serde_json::to_string(output).map_err(|e| JournalError::BadRow { id: 0, detail: e.to_string() })
}

/// The first of `jobs` that delivered `output`.
fn first_with_output(jobs: Vec<JobRecord>, output: &Path) -> Option<JobRecord> {
    jobs.into_iter().find(|j| matches!(&j.state, JobState::Done { outputs, .. } if outputs.iter().any(|o| o == output)))
}

/// A job's state as stored (`data`), read back.
fn parse_state(id: JobId, data: &str) -> Result<JobState> {
    serde_json::from_str(data).map_err(|e| JournalError::BadRow { id, detail: format!("state `{data}`: {e}") })
}

/// What every journal backend is: all the roles below, and where it is. Methods block (a backend
/// may wait on disk or network): async code calls the slow ones on blocking threads.
pub trait Store:
    JobWrites + JobQueries + InboxMarks + Notices + Copying + Leases + Send + Sync + std::fmt::Debug
{
    /// Where the journal is (a file, or a database address without its password), for messages.
    fn path(&self) -> &Path;
}

/// The daemon's writes: new jobs and their transitions, committed before each returns.
pub trait JobWrites {
    /// Applies `writes` in order in one transaction. Returns, for each write, the job's id (new
    /// for an insert) or why that write alone was refused (taken, lease lost); `Err` when the
    /// whole batch failed and nothing was written.
    fn write_batch(&self, writes: &[Write<'_>]) -> Result<Vec<WriteOutcome>>;

    /// Records a new job; the state is committed before this returns.
    fn insert(&self, source: &Source, state: &JobState) -> Result<JobId> {
        self.write_batch(&[Write::Insert(source, state)])?.pop().unwrap_or(Ok(0))
    }

    /// Records many jobs in one transaction (the conformance suite, and benchmarks that need a
    /// big journal); not in the shipped library.
    #[cfg(any(test, feature = "testkit"))]
    fn insert_batch(&self, jobs: &[(Source, JobState)]) -> Result<()> {
        let writes: Vec<Write<'_>> = jobs.iter().map(|(source, state)| Write::Insert(source, state)).collect();
        self.write_batch(&writes)?.into_iter().try_for_each(|outcome| outcome.map(drop))
    }

    /// Records a job's new state; committed before this returns.
    fn update(&self, job: &JobRecord, state: &JobState) -> Result<()> {
        let write = Write::Update { id: job.id, generation: job.generation, state };
        self.write_batch(&[write])?.pop().unwrap_or(Ok(0)).map(drop)
    }
}

/// What status, the dashboard and the daemon read of jobs.
pub trait JobQueries {
    /// Jobs not yet done, failed or rejected, oldest first (every node's, in a shared journal).
    fn unfinished(&self) -> Result<Vec<JobRecord>>;

    /// The newest job for a source path, if any.
    fn latest_for(&self, inbox: &Path, rel_path: &Path) -> Result<Option<JobRecord>>;

    fn get(&self, id: JobId) -> Result<Option<JobRecord>>;

    /// The newest jobs in one state that are also the newest job of their file (a failure whose
    /// file was retried and delivered since is not listed), most recently changed first.
    fn recent_latest(&self, state: StateName, limit: usize) -> Result<Vec<JobRecord>>;

    /// How many files are in each state, by their newest job (a file that failed, was retried
    /// and was delivered counts once, as done).
    fn file_counts(&self) -> Result<BTreeMap<StateName, u64>>;

    /// How many files each inbox has in each state, by their newest job.
    fn file_counts_by_inbox(&self) -> Result<BTreeMap<PathBuf, BTreeMap<StateName, u64>>>;

    /// How many jobs are in each state.
    fn counts(&self) -> Result<BTreeMap<StateName, u64>>;

    /// Everything delivered for sources in `inbox` (result files and folders).
    fn outputs_in(&self, inbox: &Path) -> Result<Vec<PathBuf>>;

    /// The newest delivered jobs that came without a finished photo (a render problem), among
    /// the last 10,000 deliveries.
    fn recent_render_errors(&self, limit: usize) -> Result<Vec<JobRecord>>;

    /// A page of files by their newest job, newest job first: at most `query.limit` jobs.
    fn page(&self, query: &JobQuery) -> Result<Vec<JobRecord>>;

    /// The states a job went through, with their times.
    fn timeline(&self, id: JobId) -> Result<Vec<Step>>;

    /// How many files were delivered since `since_ms` (Unix milliseconds), by their newest job.
    fn delivered_since(&self, since_ms: i64) -> Result<u64>;

    /// The rows that may hold a credit charged since `since_ms`: (inbox, history, created_at)
    /// of jobs that reached Processing and changed since then. See [`charges_since`].
    fn charge_rows(&self, since_ms: i64) -> Result<Vec<(PathBuf, String, i64)>>;

    /// The newest delivered job with `output` among its outputs (a scan: for commands).
    fn job_with_output(&self, output: &Path) -> Result<Option<JobRecord>>;
}

/// Inboxes that carry retouchd's marker file, and the pause a person set (kept across restarts).
pub trait InboxMarks {
    /// Whether retouchd has put its marker file in this inbox before.
    fn is_marked(&self, inbox: &Path) -> Result<bool>;

    /// Remembers that this inbox carries retouchd's marker file.
    fn mark(&self, inbox: &Path) -> Result<()>;

    /// The inboxes that have carried retouchd's marker file.
    fn marked_inboxes(&self) -> Result<Vec<PathBuf>>;

    /// The pauses people set, as stored: (`held` for every inbox or `held:<inbox>` for one, its
    /// value: 1 until resumed, else the time it ends in Unix milliseconds).
    fn pause_rows(&self) -> Result<Vec<(String, i64)>>;

    /// Stores (`Some`) or removes (`None`) one pause row.
    fn put_pause_row(&self, key: &str, value: Option<i64>) -> Result<()>;

    /// The pauses people set (kept across restarts; for every node of a cluster), ended ones
    /// included (see [`Hold::active`]).
    fn pauses(&self) -> Result<Holds> {
        let mut holds = Holds::default();
        for (key, value) in self.pause_rows()? {
            // 0: a release written by an older retouchd.
            let hold = match value {
                0 => continue,
                1 => Hold { until_ms: None },
                until => Hold { until_ms: Some(until) },
            };
            match key.strip_prefix(HOLD_KEY).and_then(|rest| rest.strip_prefix(':')) {
                Some(inbox) => holds.watches.push((PathBuf::from(inbox), hold)),
                None if key == HOLD_KEY => holds.all = Some(hold),
                None => {}
            }
        }
        holds.watches.sort();
        Ok(holds)
    }

    /// Pauses uploads (`Some`) from every inbox (`watch: None`) or one, or ends that pause.
    fn set_pause(&self, watch: Option<&Path>, hold: Option<Hold>) -> Result<()> {
        let key = match watch {
            Some(inbox) => format!("{HOLD_KEY}:{}", inbox.display()),
            None => HOLD_KEY.to_string(),
        };
        // 1 stands for "until resumed"; an end time is always far above it.
        self.put_pause_row(&key, hold.map(|h| h.until_ms.map_or(1, |until| until.max(2))))
    }
}

const HOLD_KEY: &str = "held";

/// A pause a person set (`retouchd pause`, the dashboard's Pause): until when, if it ends by
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hold {
    pub until_ms: Option<i64>,
}

impl Hold {
    /// Whether it still holds at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

/// Every pause people set: for all inboxes, and per inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    pub all: Option<Hold>,
    pub watches: Vec<(PathBuf, Hold)>,
}

impl Holds {
    /// The pause that holds `inbox` at `now_ms`, if any: the one for all inboxes first.
    pub fn holding(&self, inbox: &Path, now_ms: i64) -> Option<(Option<&Path>, Hold)> {
        if let Some(all) = self.all.filter(|h| h.active(now_ms)) {
            return Some((None, all));
        }
        self.watches.iter().find(|(w, h)| w == inbox && h.active(now_ms)).map(|(w, h)| (Some(w.as_path()), *h))
    }
}

/// A notification waiting to be sent (see [`Notices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub id: i64,
    pub channel: String,
    /// The event as sent (JSON, see [`crate::notify::Notice`]).
    pub body: String,
    /// How many tries failed so far.
    pub attempts: i64,
}

/// What a channel's queue has for its sender now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeClaim {
    /// Nothing waits.
    Empty,
    /// The oldest waits until this time (Unix milliseconds): a retry's backoff, or another
    /// node sending it now.
    Later(i64),
    /// The oldest, now this sender's until the lease given ends.
    Due(QueuedNotice),
}

/// What waits to be sent on one channel, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NoticeBacklog {
    pub channel: String,
    pub waiting: u64,
    /// When the oldest was queued (Unix milliseconds).
    pub oldest_at: i64,
    /// Why its last try failed.
    pub last_error: Option<String>,
}

/// The notifications' outbox: each event, for each channel that wants it, is kept until its
/// receiver took it, so an outage or a restart loses none. Each channel sends in order: only
/// its oldest notice is ever handed out, and while one sender has it (a lease) no other node
/// sends it.
pub trait Notices {
    /// Queues `(channel, body)` pairs, in order, in one transaction.
    fn queue_notices(&self, notices: &[(String, String)]) -> Result<()>;

    /// The oldest notice of `channel`, claimed until `now_ms + lease_ms` if it is due at `now_ms`.
    fn claim_notice(&self, channel: &str, now_ms: i64, lease_ms: i64) -> Result<NoticeClaim>;

    /// The receiver took it: it leaves the queue.
    fn notice_sent(&self, id: i64) -> Result<()>;

    /// A try failed: count it and try again at `retry_at` (Unix milliseconds).
    fn notice_failed(&self, id: i64, retry_at: i64, error: &str) -> Result<()>;

    /// What waits, per channel.
    fn notice_backlog(&self) -> Result<Vec<NoticeBacklog>>;
}

/// Copying a journal into another (`migrate-journal`).
pub trait Copying {
    /// Up to `limit` jobs with ids above `after`, in id order, with their histories (a copy).
    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<Exported>>;

    /// Writes copied jobs as they were (times, history; new ids, in order), in one transaction.
    /// Unfinished ones belong to no node (the first to look takes them over).
    fn import(&self, jobs: &[Exported]) -> Result<()>;
}

/// A node of a shared journal: its claims, leases and takeovers (nothing for a local journal).
pub trait Leases: JobQueries {
    /// This node's name in a shared journal.
    fn node(&self) -> Option<&str> {
        None
    }

    /// The unfinished jobs this daemon resumes at start: all of them for a local journal; in a
    /// shared one, those this node held when it stopped, claimed anew (a new generation).
    fn resume_mine(&self) -> Result<Vec<JobRecord>> {
        self.unfinished()
    }

    /// Renews this node's lease on the jobs it runs (`running`), and its heartbeat.
    fn renew(&self, _running: &[JobId]) -> Result<()> {
        Ok(())
    }

    /// Claims up to `limit` unfinished jobs whose lease ran out (their node died or lost the
    /// database), other than those in `running`; they are this node's from now on.
    fn take_over(&self, _running: &[JobId], _limit: usize) -> Result<Vec<JobRecord>> {
        Ok(Vec::new())
    }

    /// Whether this node still holds `job` under its generation, with its lease valid for at
    /// least `margin_ms` more: checked before publishing a result (fencing).
    fn holds(&self, _job: &JobRecord, _margin_ms: i64) -> Result<bool> {
        Ok(true)
    }

    /// Every node of a shared journal with its heartbeat and jobs.
    fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(Vec::new())
    }

    /// Says this node stopped (a clean stop), so that its jobs need not wait out the lease.
    fn leave(&self) {}
}

/// A journal of either backend.
#[derive(Debug)]
pub struct Journal {
    store: Box<dyn Store>,
}

impl std::ops::Deref for Journal {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.store.as_ref()
    }
}

impl Journal {
    /// Opens (creating if needed) the SQLite journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Journal> {
        Ok(Journal { store: Box::new(sqlite::Sqlite::open(state_dir)?) })
    }

    /// Opens an existing SQLite journal for reading only.
    pub fn open_read_only(state_dir: &Path) -> Result<Journal> {
        Ok(Journal { store: Box::new(sqlite::Sqlite::open_read_only(state_dir)?) })
    }

    /// The journal `config` names: its shared database when `[state] database` is set, else
    /// the SQLite file in its state folder. `writable`: for the daemon (creates or migrates the
    /// schema; joins the cluster as its node).
    pub fn for_config(config: &crate::config::Config, writable: bool) -> Result<Journal> {
        match (&config.cluster, writable) {
            (Some(cluster), _) => Journal::for_cluster(cluster, writable),
            (None, true) => Journal::open(&config.state_dir),
            (None, false) => Journal::open_read_only(&config.state_dir),
        }
    }

    /// The journal `config` names, for a command that writes without being the daemon
    /// (`retouchd pause`): the shared database as no node, or the SQLite file (made if needed,
    /// so a pause can be set before the daemon first starts).
    pub fn for_command(config: &crate::config::Config) -> Result<Journal> {
        match &config.cluster {
            Some(cluster) => Ok(Journal { store: Box::new(pg::Postgres::connect(cluster, pg::Role::Admin)?) }),
            None => Journal::open(&config.state_dir),
        }
    }

    /// The shared journal of `cluster` (as its node when `writable`).
    pub fn for_cluster(cluster: &crate::config::ClusterConfig, writable: bool) -> Result<Journal> {
        let role = if writable { pg::Role::Node } else { pg::Role::Reader };
        Ok(Journal { store: Box::new(pg::Postgres::connect(cluster, role)?) })
    }

    /// Wraps a backend.
    pub fn from_store(store: Box<dyn Store>) -> Journal {
        Journal { store }
    }
}
