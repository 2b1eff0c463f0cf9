//! The decisions "server answer → what the job does next", pure, so each is tested on its own:
//! the runner performs the call, hands the answer here, and carries out the [`Next`] it gets.
//! Which error class means what comes from one table, [`crate::api::policy::action`].

use crate::api::{Action, ApiError, PauseReason, Route, Started, TaskState, TaskStatus};
use crate::config::OnExpired;

use super::Event;

/// What the runner does after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Move the job on.
    Advance(Event),
    /// The task runs at the server: ask again later. `progress` when the answer had one;
    /// `active` when the server works on it now (its progress can give a rate).
    KeepPolling { progress: Option<f64>, active: bool },
    /// A passing problem: the same call again after a backoff.
    Retry,
    /// Pause every upload for `reason`; this file waits.
    Pause { reason: PauseReason, message: String },
    /// The server no longer knows the task (see [`expired`]).
    Expired,
    /// getFile answered 404 right after completion: the result may not be stored yet.
    NotStoredYet,
}

/// Maps a failed call to the next step by the policy table; `fail` words the reason.
fn after_error(route: Route, e: &ApiError, fail: impl FnOnce(&ApiError) -> String) -> Next {
    match crate::api::policy::action(route, e.kind) {
        Action::Retry => Next::Retry,
        Action::Pause(reason) => Next::Pause { reason, message: e.message.clone() },
        Action::Fail => Next::Advance(Event::Fail { reason: fail(e) }),
        Action::Expired => Next::Expired,
        Action::NotStoredYet => Next::NotStoredYet,
    }
}

/// Whether a job of `age` has outlived `server.max_job_age`: then the reason it fails with,
/// `last` saying what went wrong last (a retried error, or the server's last state). The one
/// rule for giving up by age, whether the job was retrying a step or waiting for the server.
pub fn given_up(
    age: std::time::Duration,
    max_age: std::time::Duration,
    last: std::fmt::Arguments<'_>,
) -> Option<String> {
    (age > max_age).then(|| {
        let max_age = std::time::Duration::from_secs(max_age.as_secs());
        format!("gave up: the job is older than server.max_job_age ({}); {last}", humantime::format_duration(max_age))
    })
}

/// After `start` on `host`.
pub fn after_start(answer: Result<&Started, &ApiError>, host: &str) -> Next {
    match answer {
        Ok(started) => Next::Advance(Event::Started { task_id: started.id.clone(), host: host.to_string() }),
        Err(e) => after_error(Route::Start, e, refusal_reason),
    }
}

/// After `status`.
pub fn after_status(answer: Result<&TaskStatus, &ApiError>) -> Next {
    match answer {
        Ok(status) => match &status.state {
            TaskState::Completed => Next::Advance(Event::Completed),
            TaskState::Failed => {
                let reason = status.reason.as_deref().unwrap_or("no reason given");
                Next::Advance(Event::Fail { reason: format!("the server could not retouch it: {reason}") })
            }
            state => Next::KeepPolling { progress: status.progress, active: *state == TaskState::Active },
        },
        Err(e) => after_error(Route::Status, e, |e| format!("polling the task failed: {e}")),
    }
}

/// After a failed `getFile` (a successful one is staged by the runner).
pub fn after_get_file(e: &ApiError) -> Next {
    after_error(Route::GetFile, e, |e| format!("the result could not be downloaded: {e}"))
}

/// What an expired task becomes: sent again with a fresh key, or failed, as configured.
pub fn expired(task_id: &str, policy: OnExpired, new_key: impl FnOnce() -> String) -> Event {
    match policy {
        OnExpired::Resubmit => Event::Resubmit { key: new_key() },
        OnExpired::Fail => Event::Fail {
            reason: format!(
                "the server no longer knows task {task_id} (results are kept for 24 hours, or the job was lost); \
                 set server.on_expired = \"resubmit\" to send such files again automatically"
            ),
        },
    }
}

/// Plain words for a refusal the server gave at upload.
fn refusal_reason(e: &ApiError) -> String {
    use crate::api::ErrorKind;
    match e.kind {
        ErrorKind::InvalidTask => {
            format!("the server refused the task description ({}); check [watch.payload] in the config", e.message)
        }
        ErrorKind::NoFile => "the server received no file (the file was empty or unreadable)".into(),
        _ => format!("the server refused the upload: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorKind;

    fn err(kind: ErrorKind, message: &str) -> ApiError {
        ApiError::new(kind, "test", message)
    }

    fn status(state: TaskState, progress: Option<f64>, reason: Option<&str>) -> TaskStatus {
        TaskStatus {
            state,
            progress,
            reason: reason.map(str::to_string),
            attempt: None,
            max_attempts: None,
            current_step: None,
            plugin_name: None,
            expire_date: None,
        }
    }

    fn fails(next: &Next, words: &str) -> bool {
        matches!(next, Next::Advance(Event::Fail { reason }) if reason.contains(words))
    }

    #[test]
    fn a_job_older_than_max_job_age_gives_up_with_what_went_wrong_last() {
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(given_up(hour, hour, format_args!("x")), None, "at the limit it goes on");
        let reason =
            given_up(hour * 2, hour + std::time::Duration::from_millis(400), format_args!("last problem: timeout"));
        assert_eq!(
            reason.as_deref(),
            Some("gave up: the job is older than server.max_job_age (1h); last problem: timeout")
        );
    }

    #[test]
    fn start_answers() {
        let ok = Started { id: "t1".into(), quota: Some(5) };
        assert_eq!(
            after_start(Ok(&ok), "https://h/api/v1"),
            Next::Advance(Event::Started { task_id: "t1".into(), host: "https://h/api/v1".into() })
        );
        type Expect<'a> = &'a dyn Fn(&Next) -> bool;
        let table: [(ErrorKind, Expect); 10] = [
            (
                ErrorKind::BadToken,
                &|n| matches!(n, Next::Pause { reason: PauseReason::Token, message } if message == "m"),
            ),
            (ErrorKind::QuotaReached, &|n| matches!(n, Next::Pause { reason: PauseReason::Quota, .. })),
            (ErrorKind::NotFound, &|n| matches!(n, Next::Pause { reason: PauseReason::Route, .. })),
            (ErrorKind::InvalidTask, &|n| fails(n, "check [watch.payload]")),
            (ErrorKind::NoFile, &|n| fails(n, "received no file")),
            (ErrorKind::Client, &|n| fails(n, "refused the upload")),
            (ErrorKind::Server, &|n| *n == Next::Retry),
            (ErrorKind::Transport, &|n| *n == Next::Retry),
            (ErrorKind::RateLimited, &|n| *n == Next::Retry),
            (ErrorKind::Local, &|n| *n == Next::Retry),
        ];
        for (kind, expect) in table {
            let next = after_start(Err(&err(kind, "m")), "h");
            assert!(expect(&next), "start {kind}: {next:?}");
        }
    }

    #[test]
    fn status_answers() {
        let cases: [(TaskStatus, Next); 5] = [
            (status(TaskState::Completed, Some(100.0), None), Next::Advance(Event::Completed)),
            // progress 100 is not completion
            (status(TaskState::Active, Some(100.0), None), Next::KeepPolling { progress: Some(100.0), active: true }),
            (status(TaskState::Waiting, None, None), Next::KeepPolling { progress: None, active: false }),
            (status(TaskState::Delayed, Some(3.0), None), Next::KeepPolling { progress: Some(3.0), active: false }),
            (
                status(TaskState::Other("paused".into()), None, None),
                Next::KeepPolling { progress: None, active: false },
            ),
        ];
        for (answer, expected) in cases {
            assert_eq!(after_status(Ok(&answer)), expected, "{answer:?}");
        }
        let failed = after_status(Ok(&status(TaskState::Failed, None, Some("no face found"))));
        assert!(fails(&failed, "could not retouch it: no face found"), "{failed:?}");
        let silent = after_status(Ok(&status(TaskState::Failed, None, None)));
        assert!(fails(&silent, "no reason given"), "{silent:?}");

        assert_eq!(after_status(Err(&err(ErrorKind::NotFound, "gone"))), Next::Expired);
        for kind in [ErrorKind::Server, ErrorKind::Transport, ErrorKind::Protocol, ErrorKind::BadToken] {
            assert_eq!(after_status(Err(&err(kind, "x"))), Next::Retry, "{kind}");
        }
        assert!(fails(&after_status(Err(&err(ErrorKind::Client, "bad"))), "polling the task failed"));
    }

    #[test]
    fn get_file_answers() {
        assert_eq!(after_get_file(&err(ErrorKind::NotFound, "x")), Next::NotStoredYet);
        assert_eq!(after_get_file(&err(ErrorKind::Local, "disk full")), Next::Retry);
        assert_eq!(after_get_file(&err(ErrorKind::Server, "x")), Next::Retry);
        assert!(fails(&after_get_file(&err(ErrorKind::Client, "x")), "could not be downloaded"));
    }

    #[test]
    fn an_expired_task_is_failed_or_sent_again_as_configured() {
        let failed = expired("t9", OnExpired::Fail, || unreachable!("no new key when failing"));
        assert!(matches!(&failed, Event::Fail { reason } if reason.contains("t9") && reason.contains("on_expired")));
        assert_eq!(expired("t9", OnExpired::Resubmit, || "k2".into()), Event::Resubmit { key: "k2".into() });
    }
}
