//! The running daemon's own view for `retouchd status`: a small JSON file ([`LiveStatus`]) in
//! the state folder, rewritten on every pulse (temp file, then rename) and removed on exit, and
//! the one-line status for systemd and logs. The journal says what happened to each job; this
//! says what only the running process knows (pauses, credits, unavailable inboxes).

use std::path::Path;

use tracing::debug;

use super::waiting::{JobWait, WaitingFile};

/// What `retouchd status` shows of a running daemon.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveStatus {
    pub pid: u32,
    /// Unix seconds.
    pub updated_at: u64,
    pub paused: Option<String>,
    pub pause_detail: Option<String>,
    pub uploading: i64,
    pub in_flight: usize,
    pub waiting: usize,
    pub done: u64,
    pub failed: u64,
    pub refused: u64,
    pub quota_left: Option<i64>,
    pub inboxes_unavailable: Vec<String>,
    /// An outbox whose disk is full (jobs wait, sources stay), until a delivery succeeds again.
    #[serde(default)]
    pub disk_full: Option<String>,
    /// The dashboard's address, when `[web]` is on.
    #[serde(default)]
    pub dashboard: Option<String>,
    /// How to read the daemon's log, when systemd runs it (its journal); `None` when it logs to
    /// a terminal or a file of its own.
    #[serde(default)]
    pub log_command: Option<String>,
    /// This daemon's name as a node of a shared journal.
    #[serde(default)]
    pub node: Option<String>,
    /// Why the shared journal's database cannot be reached, while it cannot (nothing new is
    /// claimed meanwhile).
    #[serde(default)]
    pub database_unreachable: Option<String>,
    /// The first [`WAITING_SHOWN`] of the `waiting` files, each with why it waits.
    #[serde(default)]
    pub waiting_files: Vec<WaitingFile>,
    /// Why each held-up job waits (a retry, a pause), by job id.
    #[serde(default)]
    pub job_waits: std::collections::BTreeMap<i64, JobWait>,
    /// The batches still open (files dropped together, not all settled or not quiet yet).
    #[serde(default)]
    pub batches: Vec<super::batches::BatchView>,
}

/// How many waiting files the status file lists (the dashboard pages through all of them).
pub const WAITING_SHOWN: usize = 200;

/// [`LiveStatus::paused`] while a person holds uploads (Pause on the dashboard).
pub const USER_PAUSE: &str = "user";

/// A daemon that has not rewritten its status for this long is not well (it writes it every
/// pulse, 10 s or systemd's watchdog half-period).
pub const HEALTHY_WITHIN_SECS: u64 = 60;

/// Its file name in the state folder.
pub const LIVE_STATUS_FILE: &str = "daemon.json";

impl LiveStatus {
    /// Writes it to `state_dir` (a failure is logged at debug level: status is a hint).
    pub fn write(&self, state_dir: &Path) {
        let written = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::beneath::Dir::root(state_dir)?.write_replace(Path::new(LIVE_STATUS_FILE), &bytes));
        if let Err(e) = written {
            debug!(error = %e, "cannot write the live status file");
        }
    }

    /// The status a running daemon left in `state_dir`, if that daemon is still alive.
    pub fn read(state_dir: &Path) -> Option<LiveStatus> {
        let text = std::fs::read(state_dir.join(LIVE_STATUS_FILE)).ok()?;
        let status: LiveStatus = serde_json::from_slice(&text).ok()?;
        crate::lock::is_running(status.pid).then_some(status)
    }

    /// How to read this process's log: `journalctl` for its systemd invocation, when systemd
    /// started it.
    pub fn log_command_of_this_process() -> Option<String> {
        std::env::var("INVOCATION_ID")
            .ok()
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
            .map(|id| format!("journalctl _SYSTEMD_INVOCATION_ID={id}"))
    }

    /// Removes the file (the daemon stops).
    pub fn remove(state_dir: &Path) {
        let _ = std::fs::remove_file(state_dir.join(LIVE_STATUS_FILE));
    }

    /// What a person should do about the pause, if uploads are paused.
    pub fn pause_advice(&self) -> Option<&'static str> {
        let reason = self.paused.as_deref()?;
        Some(match crate::api::PauseReason::ALL.into_iter().find(|r| r.as_str() == reason) {
            Some(r) => r.advice(),
            None if reason == USER_PAUSE => {
                "uploads were paused by a person (the dashboard or `retouchd pause`); press Resume, or run \
                 `retouchd resume` (jobs already at the server go on)"
            }
            None => "see the daemon's log",
        })
    }

    /// Whether the daemon is well at `now_secs` (`retouchd status --health`, a container's
    /// HEALTHCHECK): it wrote this within [`HEALTHY_WITHIN_SECS`], no outbox disk is full, the
    /// shared journal answers, and uploads are not stopped by a problem only a person can fix
    /// (the token, the start route). A person's pause, a quota wait or a closed upload window is
    /// well. `Err` says what is wrong.
    pub fn health(&self, now_secs: u64) -> Result<(), String> {
        let age = now_secs.saturating_sub(self.updated_at);
        if age > HEALTHY_WITHIN_SECS {
            return Err(format!("the daemon has not reported for {age}s (it may hang)"));
        }
        if let Some(outbox) = &self.disk_full {
            return Err(format!("the disk of {outbox} is full"));
        }
        if let Some(problem) = &self.database_unreachable {
            return Err(format!("the journal database cannot be reached: {problem}"));
        }
        let needs_a_person = [crate::api::PauseReason::Token, crate::api::PauseReason::Route];
        if let Some(reason) = self.paused.as_deref().filter(|r| needs_a_person.iter().any(|p| p.as_str() == *r)) {
            return Err(format!("uploads paused: {reason}: {}", self.pause_advice().unwrap_or_default()));
        }
        Ok(())
    }

    /// The one-line status for systemd's STATUS= and logs.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} uploading, {} in flight, {} waiting, {} done, {} failed, {} refused",
            self.uploading,
            self.in_flight.saturating_sub(self.uploading.max(0) as usize),
            self.waiting,
            self.done,
            self.failed,
            self.refused
        );
        if let Some(reason) = &self.paused {
            line.push_str(&format!(", paused: {reason}"));
        }
        if self.database_unreachable.is_some() {
            line.push_str(", journal database unreachable: claiming nothing, retrying");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::ffi::OsStrExt;

    fn sample() -> LiveStatus {
        LiveStatus {
            pid: std::process::id(),
            updated_at: 1,
            paused: Some("token".into()),
            pause_detail: Some("Token issue".into()),
            uploading: 1,
            in_flight: 3,
            waiting: 4,
            done: 5,
            failed: 6,
            refused: 7,
            quota_left: Some(8),
            inboxes_unavailable: vec![],
            disk_full: None,
            dashboard: None,
            log_command: None,
            node: None,
            database_unreachable: None,
            waiting_files: vec![WaitingFile {
                file: std::ffi::OsStr::from_bytes(b"/in/caf\xe9.jpg").into(),
                inbox: "/in".into(),
                changed_secs_ago: 3,
                why: super::super::waiting::Why::Settling { settle_secs: 5 },
            }],
            job_waits: [(2, JobWait { why: "uploading failed".into(), retry_at: Some(9) })].into(),
            batches: vec![super::super::batches::BatchView {
                folder: "/in/shoot".into(),
                files: 3,
                settled: 1,
                delivered: 1,
                failed: 0,
                refused: 0,
                since: 1,
            }],
        }
    }

    #[test]
    fn health_is_a_fresh_report_without_a_problem_only_a_person_can_fix() {
        let now = 1_000;
        let well = LiveStatus { updated_at: now - 20, paused: None, ..sample() };
        assert_eq!(well.health(now), Ok(()));
        let stale = LiveStatus { updated_at: now - HEALTHY_WITHIN_SECS - 1, ..well.clone() };
        assert!(stale.health(now).unwrap_err().contains("has not reported"));
        assert!(LiveStatus { disk_full: Some("/out".into()), ..well.clone() }.health(now).is_err());
        let token = LiveStatus { paused: Some("token".into()), ..well.clone() };
        assert!(token.health(now).unwrap_err().starts_with("uploads paused: token"));
        for fine in ["quota", USER_PAUSE] {
            assert_eq!(LiveStatus { paused: Some(fine.into()), ..well.clone() }.health(now), Ok(()), "{fine}");
        }
    }

    #[test]
    fn it_round_trips_only_while_its_process_lives() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path());
        assert_eq!(LiveStatus::read(dir.path()), Some(sample()));
        let dead = LiveStatus { pid: i32::MAX as u32, ..sample() };
        dead.write(dir.path());
        assert_eq!(LiveStatus::read(dir.path()), None, "a status left by a dead process is not shown");
        LiveStatus::remove(dir.path());
        assert!(!dir.path().join(LIVE_STATUS_FILE).exists());
    }

    #[test]
    fn the_status_line_counts_uploads_apart_from_jobs_at_the_server() {
        assert_eq!(sample().line(), "1 uploading, 2 in flight, 4 waiting, 5 done, 6 failed, 7 refused, paused: token");
        let cut_off = LiveStatus { paused: None, database_unreachable: Some("refused".into()), ..sample() };
        assert!(cut_off.line().ends_with("7 refused, journal database unreachable: claiming nothing, retrying"));
    }
}
