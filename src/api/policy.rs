//! What to do about a failed call: one table from (route, [`ErrorKind`]) to an [`Action`], and
//! the backoff between retries. Every step of a job consults this table, so "which errors are
//! worth retrying" has one answer (as vector keeps retry logic beside its error types).

use std::time::Duration;

use super::ErrorKind;

/// The call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Start,
    Status,
    GetFile,
}

/// Why uploads are paused for everyone (a problem of the account or the setup, not of a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The server refused the token.
    Token,
    /// The processing limit is reached.
    Quota,
    /// The server has no start route at the configured URL (usually `/api/v1` is missing).
    Route,
}

impl PauseReason {
    pub const ALL: [PauseReason; 3] = [PauseReason::Token, PauseReason::Quota, PauseReason::Route];

    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Token => "token",
            PauseReason::Quota => "quota",
            PauseReason::Route => "route",
        }
    }

    /// What a person should do about it.
    pub fn advice(self) -> &'static str {
        match self {
            PauseReason::Token => {
                "the server refused the token. Check server.token (or token_file / the systemd credential); \
                 uploads resume by themselves once it works, and at once on reload (SIGHUP)"
            }
            PauseReason::Quota => {
                "the processing limit is reached. Uploads resume by themselves when it resets or credits \
                 are added; files stay where they are"
            }
            PauseReason::Route => {
                "the server has no start route at server.url (it should end in /api/v1). Fix server.url and \
                 reload (SIGHUP); files stay where they are"
            }
        }
    }
}

/// What a job does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A passing problem: the same call again after a backoff (honouring `Retry-After`).
    Retry,
    /// Not this file's fault: pause every upload, keep the file, try again later.
    Pause(PauseReason),
    /// This job cannot succeed: fail it with a reason.
    Fail,
    /// The server no longer knows the task.
    Expired,
    /// getFile right after completion: the result may not be stored yet.
    NotStoredYet,
}

/// The table: what to do when `route` failed with `kind`.
pub fn action(route: Route, kind: ErrorKind) -> Action {
    use Action::*;
    use ErrorKind as K;
    match (route, kind) {
        (Route::Start, K::BadToken) => Pause(PauseReason::Token),
        (Route::Start, K::QuotaReached) => Pause(PauseReason::Quota),
        (Route::Start, K::NotFound) => Pause(PauseReason::Route),
        (Route::Status, K::NotFound) => Expired,
        (Route::GetFile, K::NotFound) => NotStoredYet,
        // status and getFile need no token by the docs; a token answer there passes.
        (Route::Status | Route::GetFile, K::BadToken | K::QuotaReached) => Retry,
        (_, K::Server | K::Transport | K::Protocol | K::RateLimited | K::Local) => Retry,
        (_, K::InvalidTask | K::NoFile | K::Client) => Fail,
    }
}

/// Longest wait between retries of a request to the server.
pub const NETWORK_CAP: Duration = Duration::from_secs(300);
/// Longest wait between retries of a local step (full disk, unmounted share): these are fixed by
/// a person, and the job should notice soon after.
pub const LOCAL_CAP: Duration = Duration::from_secs(30);

/// `first` doubled `attempt` times, at most `cap`: the one growth rule of every backoff (the
/// server's retries below, the shared journal's database in `daemon::cluster`, the
/// notifications in `daemon::notices`).
pub fn doubling(first: Duration, attempt: u32, cap: Duration) -> Duration {
    first.saturating_mul(1u32 << attempt.min(16)).min(cap)
}

/// How long to wait before retry number `attempt` (0-based): exponential from 1 s, capped at
/// `cap`, with jitter, and never less than the server's `Retry-After` (itself capped at an hour).
pub fn backoff(attempt: u32, retry_after: Option<Duration>, cap: Duration) -> Duration {
    let exp = doubling(Duration::from_secs(1), attempt, cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(ra) => jittered.max(ra.min(Duration::from_secs(3600))),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_error_class_its_action_per_route() {
        use Action::*;
        use ErrorKind as K;
        #[rustfmt::skip]
        let table = [
            // kind,              start,                       status,   getFile
            (K::BadToken,      Pause(PauseReason::Token), Retry,    Retry),
            (K::QuotaReached,  Pause(PauseReason::Quota), Retry,    Retry),
            (K::NotFound,      Pause(PauseReason::Route), Expired,  NotStoredYet),
            (K::InvalidTask,   Fail,                      Fail,     Fail),
            (K::NoFile,        Fail,                      Fail,     Fail),
            (K::Client,        Fail,                      Fail,     Fail),
            (K::RateLimited,   Retry,                     Retry,    Retry),
            (K::Server,        Retry,                     Retry,    Retry),
            (K::Transport,     Retry,                     Retry,    Retry),
            (K::Protocol,      Retry,                     Retry,    Retry),
            (K::Local,         Retry,                     Retry,    Retry),
        ];
        for (kind, start, status, get_file) in table {
            assert_eq!(action(Route::Start, kind), start, "start {kind}");
            assert_eq!(action(Route::Status, kind), status, "status {kind}");
            assert_eq!(action(Route::GetFile, kind), get_file, "getFile {kind}");
        }
    }

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
