//! The job state machine, pure: no I/O, so every transition is unit-tested on its own.
//!
//! A job is one source file on its way through the server. Files that are still settling or
//! waiting for a slot live only in the watcher's memory; a job enters the journal when it is
//! about to cost something (the Idempotency-Key is committed before the POST).
//!
//! ```text
//! Submitting{key} ─started─▶ Processing{task,host} ─completed─▶ Fetching ─staged─▶ Rendering
//!      │ ▲                          │ failed / gave up                                  │ rendered
//!      │ └────────expired (resubmit)┘                                                   ▼
//!                                                                                   Delivering
//!                                                                                       │ renamed
//!                                                                                       ▼
//!      │                                                                    Delivered{outputs}
//!      ▼ refused / failed                                                               │ source moved
//!   Failing{reason} ─source moved─▶ Failed{reason}                                      ▼
//!   (Rejecting{reason} ─source moved─▶ Rejected{reason}: never sent)                  Done
//! ```
//!
//! What each state means after a restart ([`JobState::on_restart`], which is also the step the
//! runner takes next in that state, so a resumed job and a running one follow one rule):
//! - `Submitting`: the POST may or may not have reached the server. Send it again with the same
//!   key; the server returns the same id and charges nothing.
//! - `Processing`: the server has the task. Poll it on the host that created it.
//! - `Fetching`: the result was ready. Download it again (the staging copy is discarded).
//! - `Rendering`: the result is staged. Make the finished photo and PSD again from it (outputs
//!   half made before the crash are discarded). A render problem never fails the job: the
//!   layers are delivered with the reason.
//! - `Delivering`: the result and the finished outputs are staged. Publish each staged copy; one
//!   that is gone was published.
//! - `Delivered`: the outputs are in place. Finish moving the source.
//! - `Failing`/`Rejecting`: the verdict is in. Finish moving the source to failed/.
//! - `Done`, `Failed`, `Rejected`: nothing to do.

mod decide;

pub use decide::{Next, after_get_file, after_start, after_status, expired, given_up};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::api::result_json::Findings;
use crate::deliver::{Placement, Target};

/// The name of a state: the journal's `state` column, log fields, status and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Submitting,
    Processing,
    Fetching,
    Rendering,
    Delivering,
    Delivered,
    Done,
    Failing,
    Failed,
    Rejecting,
    Rejected,
}

impl StateName {
    pub const ALL: [StateName; 11] = [
        StateName::Submitting,
        StateName::Processing,
        StateName::Fetching,
        StateName::Rendering,
        StateName::Delivering,
        StateName::Delivered,
        StateName::Done,
        StateName::Failing,
        StateName::Failed,
        StateName::Rejecting,
        StateName::Rejected,
    ];

    /// The states in which nothing more happens to a job.
    pub const TERMINAL: [StateName; 3] = [StateName::Done, StateName::Failed, StateName::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Submitting => "submitting",
            StateName::Processing => "processing",
            StateName::Fetching => "fetching",
            StateName::Rendering => "rendering",
            StateName::Delivering => "delivering",
            StateName::Delivered => "delivered",
            StateName::Done => "done",
            StateName::Failing => "failing",
            StateName::Failed => "failed",
            StateName::Rejecting => "rejecting",
            StateName::Rejected => "rejected",
        }
    }

    /// The name as stored; `None` for a name this version does not know.
    pub fn parse(text: &str) -> Option<StateName> {
        StateName::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        StateName::TERMINAL.contains(&self)
    }

    /// The terminal states as an SQL list, `'done', 'failed', 'rejected'`.
    pub fn terminal_sql_list() -> String {
        StateName::TERMINAL.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is. Each state carries what is needed to continue from it after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Submitting {
        key: String,
    },
    Processing {
        task_id: String,
        host: String,
    },
    Fetching {
        task_id: String,
        host: String,
    },
    /// The server's result is staged; the finished photo is to be made from it.
    Rendering {
        task_id: String,
        host: String,
        #[serde(with = "crate::lossless::path")]
        staged: PathBuf,
        target: Target,
    },
    /// `staged` → `target` is the main result (the layers, or the finished photo alone);
    /// `extras` the other finished outputs. `render_error`: why no finished photo was made.
    Delivering {
        task_id: String,
        host: String,
        #[serde(with = "crate::lossless::path")]
        staged: PathBuf,
        target: Target,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        extras: Vec<Placement>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        render_error: Option<String>,
    },
    Delivered {
        #[serde(with = "crate::lossless::paths")]
        outputs: Vec<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        render_error: Option<String>,
        /// What result.json says (faces found, plugins run), when it came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        findings: Option<Findings>,
    },
    /// `moved_to`: where the source went (done/), if it was moved.
    Done {
        #[serde(with = "crate::lossless::paths")]
        outputs: Vec<PathBuf>,
        #[serde(default, with = "crate::lossless::opt_path")]
        moved_to: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        render_error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        findings: Option<Findings>,
    },
    Failing {
        reason: String,
    },
    /// `moved_to`: where the source went (failed/), if it was still there to move.
    Failed {
        reason: String,
        #[serde(default, with = "crate::lossless::opt_path")]
        moved_to: Option<PathBuf>,
    },
    Rejecting {
        reason: String,
    },
    Rejected {
        reason: String,
        #[serde(default, with = "crate::lossless::opt_path")]
        moved_to: Option<PathBuf>,
    },
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted the upload.
    Started { task_id: String, host: String },
    /// The server says `completed`.
    Completed,
    /// The result is downloaded (and extracted) into `staged`, to be published as `target`;
    /// `render`: whether a finished photo is to be made from it (else it is delivered as it is).
    Staged { staged: PathBuf, target: Target, render: bool },
    /// The same photo was retouched with the same payload by job `from_job`: its result, kept in
    /// the state folder, is staged without the server (no credit spent); then as [`Event::Staged`].
    Reused { from_job: i64, staged: PathBuf, target: Target, render: bool },
    /// The finished outputs are made (or could not be, and why): `main` is what to publish
    /// first (the layers, or the finished photo when the layers are not kept).
    Rendered { main: Placement, extras: Vec<Placement>, render_error: Option<String> },
    /// The staged result is in the outbox; `findings`: what its result.json says.
    Published { outputs: Vec<PathBuf>, findings: Option<Findings> },
    /// The source was moved (to `moved_to`), deleted or kept as configured.
    SourceSettled { moved_to: Option<PathBuf> },
    /// The task must be sent again (result expired); `key` is a fresh Idempotency-Key.
    Resubmit { key: String },
    /// The job cannot succeed: the server failed it, or retries ran out.
    Fail { reason: String },
}

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job in state `{from}` cannot take `{event}`")]
pub struct InvalidTransition {
    pub from: StateName,
    pub event: String,
}

/// The step a job in a given state takes next: after a restart, and while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Send the file with this Idempotency-Key.
    Submit {
        key: String,
    },
    /// Ask the server about the task, on the host that created it.
    Poll {
        task_id: String,
        host: String,
    },
    /// Download the result.
    Fetch {
        task_id: String,
        host: String,
    },
    /// Make the finished outputs from the staged result.
    Render {
        staged: PathBuf,
        target: Target,
    },
    /// Rename the staged results into the outbox, the main one first.
    Publish {
        placements: Vec<Placement>,
    },
    /// Move the source to done/ (or delete or keep it, as configured).
    SettleDone,
    /// Move the source to failed/ with this reason beside it.
    SettleFailed {
        reason: String,
    },
    Nothing,
}

impl JobState {
    /// A new job about to be uploaded with `key`.
    pub fn new(key: String) -> JobState {
        JobState::Submitting { key }
    }

    /// A file refused before anything was sent.
    pub fn rejected(reason: String) -> JobState {
        JobState::Rejecting { reason }
    }

    /// The state's name (the journal's `state` column).
    pub fn name(&self) -> StateName {
        match self {
            JobState::Submitting { .. } => StateName::Submitting,
            JobState::Processing { .. } => StateName::Processing,
            JobState::Fetching { .. } => StateName::Fetching,
            JobState::Rendering { .. } => StateName::Rendering,
            JobState::Delivering { .. } => StateName::Delivering,
            JobState::Delivered { .. } => StateName::Delivered,
            JobState::Done { .. } => StateName::Done,
            JobState::Failing { .. } => StateName::Failing,
            JobState::Failed { .. } => StateName::Failed,
            JobState::Rejecting { .. } => StateName::Rejecting,
            JobState::Rejected { .. } => StateName::Rejected,
        }
    }

    /// Done, failed or rejected: nothing more will happen.
    pub fn is_terminal(&self) -> bool {
        self.name().is_terminal()
    }

    /// What this job has staged and still needs: the server's result and the finished outputs.
    pub fn staged_paths(&self) -> Vec<&std::path::Path> {
        match self {
            JobState::Rendering { staged, .. } => vec![staged.as_path()],
            JobState::Delivering { staged, extras, .. } => {
                std::iter::once(staged.as_path()).chain(extras.iter().map(|p| p.staged.as_path())).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Why no finished photo was made, for a delivered job.
    pub fn render_error(&self) -> Option<&str> {
        match self {
            JobState::Delivering { render_error, .. }
            | JobState::Delivered { render_error, .. }
            | JobState::Done { render_error, .. } => render_error.as_deref(),
            _ => None,
        }
    }

    /// The reason, for failing and failed jobs.
    pub fn reason(&self) -> Option<&str> {
        match self {
            JobState::Failing { reason }
            | JobState::Failed { reason, .. }
            | JobState::Rejecting { reason }
            | JobState::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The task id and host, once the server has the job.
    pub fn task(&self) -> Option<(&str, &str)> {
        match self {
            JobState::Processing { task_id, host }
            | JobState::Fetching { task_id, host }
            | JobState::Rendering { task_id, host, .. }
            | JobState::Delivering { task_id, host, .. } => Some((task_id, host)),
            _ => None,
        }
    }

    /// The rule for a job found in this state after a restart (see the module docs); the runner
    /// takes the same step for a job that reached the state while running.
    pub fn on_restart(&self) -> Resume {
        match self {
            JobState::Submitting { key } => Resume::Submit { key: key.clone() },
            JobState::Processing { task_id, host } => Resume::Poll { task_id: task_id.clone(), host: host.clone() },
            JobState::Fetching { task_id, host } => Resume::Fetch { task_id: task_id.clone(), host: host.clone() },
            JobState::Rendering { staged, target, .. } => {
                Resume::Render { staged: staged.clone(), target: target.clone() }
            }
            JobState::Delivering { staged, target, extras, .. } => {
                let main = Placement { staged: staged.clone(), target: target.clone() };
                Resume::Publish { placements: std::iter::once(main).chain(extras.iter().cloned()).collect() }
            }
            JobState::Delivered { .. } => Resume::SettleDone,
            JobState::Failing { reason } | JobState::Rejecting { reason } => {
                Resume::SettleFailed { reason: reason.clone() }
            }
            JobState::Done { .. } | JobState::Failed { .. } | JobState::Rejected { .. } => Resume::Nothing,
        }
    }

    /// What the result's result.json said, once delivered.
    pub fn findings(&self) -> Option<&Findings> {
        match self {
            JobState::Delivered { findings, .. } | JobState::Done { findings, .. } => findings.as_ref(),
            _ => None,
        }
    }

    /// The state after `event`, or why it cannot happen.
    pub fn apply(&self, event: Event) -> Result<JobState, InvalidTransition> {
        use Event as E;
        use JobState as S;
        let next = match (self, event) {
            (S::Submitting { .. }, E::Started { task_id, host }) => S::Processing { task_id, host },
            (S::Processing { task_id, host }, E::Completed) => {
                S::Fetching { task_id: task_id.clone(), host: host.clone() }
            }
            (S::Fetching { task_id, host }, E::Staged { staged, target, render: true }) => {
                S::Rendering { task_id: task_id.clone(), host: host.clone(), staged, target }
            }
            (S::Fetching { task_id, host }, E::Staged { staged, target, render: false }) => S::Delivering {
                task_id: task_id.clone(),
                host: host.clone(),
                staged,
                target,
                extras: Vec::new(),
                render_error: None,
            },
            (S::Submitting { .. }, E::Reused { from_job, staged, target, render }) => {
                let (task_id, host) = (format!("(the result of job {from_job})"), String::new());
                if render {
                    S::Rendering { task_id, host, staged, target }
                } else {
                    S::Delivering { task_id, host, staged, target, extras: Vec::new(), render_error: None }
                }
            }
            (S::Rendering { task_id, host, .. }, E::Rendered { main, extras, render_error }) => S::Delivering {
                task_id: task_id.clone(),
                host: host.clone(),
                staged: main.staged,
                target: main.target,
                extras,
                render_error,
            },
            (S::Delivering { render_error, .. }, E::Published { outputs, findings }) => {
                S::Delivered { outputs, render_error: render_error.clone(), findings }
            }
            (S::Delivered { outputs, render_error, findings }, E::SourceSettled { moved_to }) => S::Done {
                outputs: outputs.clone(),
                moved_to,
                render_error: render_error.clone(),
                findings: findings.clone(),
            },
            (S::Processing { .. } | S::Fetching { .. }, E::Resubmit { key }) => S::Submitting { key },
            (S::Submitting { .. } | S::Processing { .. } | S::Fetching { .. }, E::Fail { reason }) => {
                S::Failing { reason }
            }
            (S::Failing { reason }, E::SourceSettled { moved_to }) => S::Failed { reason: reason.clone(), moved_to },
            (S::Rejecting { reason }, E::SourceSettled { moved_to }) => {
                S::Rejected { reason: reason.clone(), moved_to }
            }
            (from, event) => {
                return Err(InvalidTransition { from: from.name(), event: format!("{event:?}") });
            }
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Event {
        Event::Started { task_id: "t1".into(), host: "https://h/api/v1".into() }
    }

    fn target() -> Target {
        Target { dir: "/out".into(), stem: "a".into(), ext: None, placed: None }
    }

    fn staged() -> Event {
        Event::Staged { staged: "/out/.staging/1".into(), target: target(), render: true }
    }

    #[test]
    fn a_reused_result_goes_from_submitting_to_rendering_or_delivering_without_the_server() {
        let reused =
            |render| Event::Reused { from_job: 7, staged: "/out/.staging/job-9".into(), target: target(), render };
        let s = JobState::new("k".into()).apply(reused(true)).unwrap();
        assert!(matches!(&s, JobState::Rendering { task_id, .. } if task_id.contains("job 7")), "{s:?}");
        let s = JobState::new("k".into()).apply(reused(false)).unwrap();
        assert_eq!(s.name(), StateName::Delivering);
        assert!(JobState::Processing { task_id: "t".into(), host: "h".into() }.apply(reused(true)).is_err());
    }

    #[test]
    fn the_happy_path_runs_from_submitting_to_done() {
        let s = JobState::new("k".into());
        let s = s.apply(started()).unwrap();
        assert_eq!(s.task(), Some(("t1", "https://h/api/v1")));
        let s = s.apply(Event::Completed).unwrap();
        assert_eq!(s.name(), StateName::Fetching);
        let s = s.apply(staged()).unwrap();
        assert_eq!(s.name(), StateName::Rendering);
        assert_eq!(s.staged_paths(), [std::path::Path::new("/out/.staging/1")]);
        let flat = Placement {
            staged: "/out/.staging/1.render/flat.jpg".into(),
            target: Target { ext: Some("jpg".into()), ..target() },
        };
        let layers = Placement { staged: "/out/.staging/1".into(), target: target() };
        let s =
            s.apply(Event::Rendered { main: layers.clone(), extras: vec![flat.clone()], render_error: None }).unwrap();
        assert_eq!(s.name(), StateName::Delivering);
        assert_eq!(s.on_restart(), Resume::Publish { placements: vec![layers, flat] });
        let s =
            s.apply(Event::Published { outputs: vec!["/out/a".into(), "/out/a.jpg".into()], findings: None }).unwrap();
        let s = s.apply(Event::SourceSettled { moved_to: Some("/done/a.jpg".into()) }).unwrap();
        assert_eq!(
            s,
            JobState::Done {
                outputs: vec!["/out/a".into(), "/out/a.jpg".into()],
                moved_to: Some("/done/a.jpg".into()),
                render_error: None,
                findings: None
            }
        );
        assert!(s.is_terminal());
    }

    #[test]
    fn a_render_problem_is_carried_to_the_end_without_failing_the_job() {
        let s = JobState::Fetching { task_id: "t".into(), host: "h".into() }.apply(staged()).unwrap();
        let main = Placement { staged: "/out/.staging/1".into(), target: target() };
        let why = Some("a CMYK JPEG".to_string());
        let s = s.apply(Event::Rendered { main, extras: vec![], render_error: why.clone() }).unwrap();
        let s = s.apply(Event::Published { outputs: vec!["/out/a".into()], findings: None }).unwrap();
        let s = s.apply(Event::SourceSettled { moved_to: None }).unwrap();
        assert_eq!(s.render_error(), why.as_deref());
        assert_eq!(s.reason(), None, "not a failure");
        assert!(
            JobState::Processing { task_id: "t".into(), host: "h".into() }
                .apply(Event::Rendered {
                    main: Placement { staged: "s".into(), target: target() },
                    extras: vec![],
                    render_error: None
                })
                .is_err()
        );
    }

    #[test]
    fn a_result_with_nothing_to_render_goes_straight_to_delivering() {
        let fetching = JobState::Fetching { task_id: "t".into(), host: "h".into() };
        let s = fetching.apply(Event::Staged { staged: "/s/job-1".into(), target: target(), render: false }).unwrap();
        assert_eq!(
            s.on_restart(),
            Resume::Publish { placements: vec![Placement { staged: "/s/job-1".into(), target: target() }] }
        );
    }

    #[test]
    fn failures_pass_through_failing_before_the_source_moves() {
        let s = JobState::new("k".into()).apply(started()).unwrap();
        let s = s.apply(Event::Fail { reason: "no face".into() }).unwrap();
        assert_eq!(s.name(), StateName::Failing);
        assert!(!s.is_terminal());
        assert_eq!(s.on_restart(), Resume::SettleFailed { reason: "no face".into() });
        let s = s.apply(Event::SourceSettled { moved_to: None }).unwrap();
        assert_eq!(s, JobState::Failed { reason: "no face".into(), moved_to: None });
    }

    #[test]
    fn rejected_files_never_reach_the_server() {
        let s = JobState::rejected("not an image".into());
        assert!(s.apply(started()).is_err());
        let settled = s.apply(Event::SourceSettled { moved_to: Some("/failed/x".into()) }).unwrap();
        assert_eq!(settled, JobState::Rejected { reason: "not an image".into(), moved_to: Some("/failed/x".into()) });
    }

    #[test]
    fn an_expired_task_goes_back_to_submitting_with_a_new_key() {
        let s = JobState::new("k1".into()).apply(started()).unwrap();
        let s = s.apply(Event::Resubmit { key: "k2".into() }).unwrap();
        assert_eq!(s, JobState::Submitting { key: "k2".into() });
    }

    #[test]
    fn out_of_order_events_are_refused() {
        let s = JobState::new("k".into());
        assert!(s.apply(Event::Completed).is_err());
        assert!(s.apply(Event::SourceSettled { moved_to: None }).is_err());
        let done = JobState::Done { outputs: vec![], moved_to: None, render_error: None, findings: None };
        assert!(done.apply(Event::Fail { reason: "x".into() }).is_err());
        let delivered = JobState::Delivered { outputs: vec![], render_error: None, findings: None };
        assert!(delivered.apply(Event::Fail { reason: "x".into() }).is_err(), "a delivered job cannot fail");
    }

    #[test]
    fn every_state_has_a_restart_rule() {
        let (t, h) = (String::from("t"), String::from("h"));
        let states = [
            (JobState::new("k".into()), Resume::Submit { key: "k".into() }),
            (
                JobState::Processing { task_id: t.clone(), host: h.clone() },
                Resume::Poll { task_id: t.clone(), host: h.clone() },
            ),
            (
                JobState::Fetching { task_id: t.clone(), host: h.clone() },
                Resume::Fetch { task_id: t.clone(), host: h.clone() },
            ),
            (
                JobState::Rendering { task_id: t.clone(), host: h.clone(), staged: "s".into(), target: target() },
                Resume::Render { staged: "s".into(), target: target() },
            ),
            (
                JobState::Delivering {
                    task_id: t.clone(),
                    host: h.clone(),
                    staged: "s".into(),
                    target: target(),
                    extras: vec![],
                    render_error: None,
                },
                Resume::Publish { placements: vec![Placement { staged: "s".into(), target: target() }] },
            ),
            (JobState::Delivered { outputs: vec![], render_error: None, findings: None }, Resume::SettleDone),
            (JobState::Failing { reason: "r".into() }, Resume::SettleFailed { reason: "r".into() }),
            (JobState::Rejecting { reason: "r".into() }, Resume::SettleFailed { reason: "r".into() }),
            (JobState::Done { outputs: vec![], moved_to: None, render_error: None, findings: None }, Resume::Nothing),
            (JobState::Failed { reason: "r".into(), moved_to: None }, Resume::Nothing),
            (JobState::Rejected { reason: "r".into(), moved_to: None }, Resume::Nothing),
        ];
        assert_eq!(states.len(), StateName::ALL.len(), "one row per state");
        for (state, rule) in states {
            assert_eq!(state.on_restart(), rule, "{}", state.name());
            assert_eq!(StateName::parse(state.name().as_str()), Some(state.name()));
            assert_eq!(state.is_terminal(), rule == Resume::Nothing);
        }
        assert_eq!(StateName::terminal_sql_list(), "'done', 'failed', 'rejected'");
    }

    #[test]
    fn states_round_trip_through_json() {
        let s = JobState::Delivering {
            task_id: "t".into(),
            host: "h".into(),
            staged: "s".into(),
            target: target(),
            extras: vec![Placement { staged: "s.render/flat.jpg".into(), target: target() }],
            render_error: Some("why".into()),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s);
    }

    #[test]
    fn a_journal_written_before_targets_had_parts_still_reads() {
        let old = r#"{"state":"delivering","task_id":"t","host":"h","staged":"/o/.retouchd-staging/job-1.jpg","target":"/o/sub/a.jpg"}"#;
        let JobState::Delivering { target, .. } = serde_json::from_str::<JobState>(old).unwrap() else { panic!() };
        assert_eq!(target, Target { dir: "/o/sub".into(), stem: "a.jpg".into(), ext: None, placed: None });
    }
}
