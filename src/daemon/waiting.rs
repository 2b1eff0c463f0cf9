//! Every file the daemon has seen but not made a job of, with why it waits ([`Why`]), for
//! `status`, `status --json` and the dashboard: settling, incomplete (and when it fails), in the
//! queue for a slot, held by a pause or an outbox that cannot be written, behind an earlier
//! version of itself, or done before and unchanged. A file is never left waiting with no word.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::job::StateName;

/// A file waiting, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingFile {
    #[serde(with = "crate::lossless::path")]
    pub file: PathBuf,
    #[serde(with = "crate::lossless::path")]
    pub inbox: PathBuf,
    /// Since the file last changed (about when it arrived).
    pub changed_secs_ago: u64,
    pub why: Why,
}

/// Why a file waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Still changing, or not unchanged for the watch's `settle` time yet.
    Settling { settle_secs: u64 },
    /// Unchanged but incomplete (being copied, or truncated): fails at this Unix time unless
    /// the rest arrives.
    Incomplete { fails_at: u64 },
    /// Ready, in the queue for one of the `max_in_flight` job slots.
    Slot { in_flight: usize, max_in_flight: usize },
    /// Ready, but uploads are paused (by a person, or by the server's answer).
    Paused { reason: String },
    /// Ready, but its watch's outbox, done or failed folder cannot be written (no credit is
    /// spent on a result that could not be delivered).
    FoldersUnwritable { problem: String },
    /// An earlier version of the same file is still a job; this one goes when it ends.
    BehindEarlierVersion,
    /// This very version was delivered (or refused) by an earlier job and is still in the inbox:
    /// it is not sent again (that would pay twice).
    DoneBefore { job: i64, state: StateName },
}

impl Why {
    /// Whether the file is in the queue for a slot (and so may be taken out of it).
    pub fn is_queued(&self) -> bool {
        matches!(self, Why::Slot { .. } | Why::Paused { .. } | Why::FoldersUnwritable { .. })
    }

    /// In words, seen at Unix time `now`.
    pub fn describe(&self, now: u64) -> String {
        match self {
            Why::Settling { settle_secs } => {
                format!("arriving: sent once it has not changed for {settle_secs} s and is complete")
            }
            Why::Incomplete { fails_at } => format!(
                "incomplete (still being copied, or truncated): it fails in {} unless the rest arrives",
                humantime::format_duration(std::time::Duration::from_secs(fails_at.saturating_sub(now)))
            ),
            Why::Slot { in_flight, max_in_flight } => {
                format!("in the queue: {in_flight} of {max_in_flight} job slots (max_in_flight) are busy")
            }
            Why::Paused { reason } => format!("uploads are paused: {reason}"),
            Why::FoldersUnwritable { problem } => {
                format!("held: a result could not be delivered ({problem}); no credit is spent until it can")
            }
            Why::BehindEarlierVersion => {
                "behind an earlier version of the same file, whose job still runs; it goes next".into()
            }
            Why::DoneBefore { job, state } => {
                let what = if *state == StateName::Done { "delivered" } else { "refused" };
                format!(
                    "unchanged since job #{job} {what} it, so it is not sent again (that would pay twice): \
                     remove it, or `retouchd process --again FILE` to pay for it again"
                )
            }
        }
    }
}

/// Why a job is not moving on now (a step that failed and is retried, a pause), for `status`
/// and `process`: never an endless "submitting" with no word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWait {
    pub why: String,
    /// When it is tried again (Unix seconds), if that is known.
    pub retry_at: Option<u64>,
}

impl JobWait {
    /// In words, seen at Unix time `now`.
    pub fn describe(&self, now: u64) -> String {
        match self.retry_at {
            Some(at) if at > now => format!(
                "{}; retrying in {}",
                self.why,
                humantime::format_duration(std::time::Duration::from_secs(at - now))
            ),
            Some(_) => format!("{}; retrying now", self.why),
            None => self.why.clone(),
        }
    }
}

/// Seconds from a file's modification time to the Unix time `now` (seconds).
pub(super) fn secs_since(mtime_ns: i64, now: u64) -> u64 {
    now.saturating_sub(u64::try_from(mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_says_what_happens_next() {
        let now = 1_000;
        let said = [
            Why::Settling { settle_secs: 5 },
            Why::Incomplete { fails_at: now + 90 },
            Why::Slot { in_flight: 8, max_in_flight: 8 },
            Why::Paused { reason: "quota: no credits left".into() },
            Why::FoldersUnwritable { problem: "/out: Permission denied".into() },
            Why::BehindEarlierVersion,
            Why::DoneBefore { job: 7, state: StateName::Done },
        ]
        .map(|w| w.describe(now));
        assert!(said[1].contains("fails in 1m 30s"), "{}", said[1]);
        assert!(said[3].contains("quota: no credits left"), "{}", said[3]);
        assert!(said[4].contains("/out: Permission denied") && said[4].contains("no credit"), "{}", said[4]);
        assert!(said[6].contains("job #7 delivered") && said[6].contains("--again"), "{}", said[6]);
        let wait =
            JobWait { why: "uploading failed: server unreachable: connection refused".into(), retry_at: Some(now + 8) };
        assert_eq!(wait.describe(now), "uploading failed: server unreachable: connection refused; retrying in 8s");
        assert_eq!(wait.describe(now + 9), "uploading failed: server unreachable: connection refused; retrying now");
        let json = serde_json::to_value(Why::Incomplete { fails_at: 5 }).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "incomplete", "fails_at": 5}));
    }
}
