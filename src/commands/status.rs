//! `retouchd status`: what the journal says, for people (a short report) and scripts (`--json`).
//! Reads the journal without writing, so it works while the daemon runs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::daemon::LiveStatus;
use crate::job::StateName;
use crate::journal::{JobRecord, Journal, JournalError};

/// One job, as shown.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: i64,
    pub file: String,
    pub state: StateName,
    pub age_secs: u64,
    pub progress: Option<f64>,
    pub reason: Option<String>,
    pub task_id: Option<String>,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The running daemon's own view (pause, credits), when one runs.
    pub daemon: Option<LiveStatus>,
    pub journal: String,
    pub counts: BTreeMap<StateName, u64>,
    pub in_flight: Vec<JobView>,
    pub recent_failures: Vec<JobView>,
}

fn view(job: &JobRecord, now_ms: i64) -> JobView {
    JobView {
        id: job.id,
        file: job.source.path().display().to_string(),
        state: job.state.name(),
        age_secs: ((now_ms - job.created_at).max(0) / 1000) as u64,
        progress: job.progress,
        reason: job.state.reason().map(str::to_string),
        task_id: job.state.task().map(|(t, _)| t.to_string()),
    }
}

pub fn report(journal: &Journal, state_dir: &std::path::Path) -> Result<Report, JournalError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut failures: Vec<JobRecord> = journal.recent(StateName::Failed, 10)?;
    failures.extend(journal.recent(StateName::Rejected, 10)?);
    failures.sort_by_key(|j| std::cmp::Reverse(j.updated_at));
    failures.truncate(10);
    Ok(Report {
        daemon: LiveStatus::read(state_dir),
        journal: journal.path().display().to_string(),
        counts: journal.counts()?,
        in_flight: journal.unfinished()?.iter().map(|j| view(j, now)).collect(),
        recent_failures: failures.iter().map(|j| view(j, now)).collect(),
    })
}

/// The report as text for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = match &report.daemon {
        Some(d) => {
            let mut text = format!(
                "daemon: running (pid {}): {} uploading, {} in flight, {} waiting; since start {} done, {} failed, {} refused\n",
                d.pid, d.uploading, d.in_flight, d.waiting, d.done, d.failed, d.refused
            );
            if let Some(reason) = &d.paused {
                text.push_str(&format!(
                    "PAUSED ({reason}): {} — see `journalctl -u retouchd` for what to do\n",
                    d.pause_detail.as_deref().unwrap_or("")
                ));
            }
            if let Some(q) = d.quota_left {
                text.push_str(&format!("retouches left today: {q}\n"));
            }
            for inbox in &d.inboxes_unavailable {
                text.push_str(&format!("inbox unavailable (unmounted?): {inbox}\n"));
            }
            text
        }
        None => "daemon: not running\n".to_string(),
    };
    out.push_str(&format!("journal: {}\n", report.journal));
    if report.counts.is_empty() {
        out.push_str("no jobs yet\n");
    } else {
        let counts: Vec<String> = report.counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        out.push_str(&format!("jobs: {}\n", counts.join(", ")));
    }
    if !report.in_flight.is_empty() {
        out.push_str(&format!("in flight ({}):\n", report.in_flight.len()));
        for j in report.in_flight.iter().take(50) {
            let progress = j.progress.map(|p| format!(" {p:.0}%")).unwrap_or_default();
            let age = humantime::format_duration(Duration::from_secs(j.age_secs));
            out.push_str(&format!("  #{} {} — {}{progress}, {age}\n", j.id, j.file, j.state));
        }
    }
    if !report.recent_failures.is_empty() {
        out.push_str("recent failures:\n");
        for j in &report.recent_failures {
            out.push_str(&format!("  #{} {} — {}\n", j.id, j.file, j.reason.as_deref().unwrap_or("")));
        }
    }
    out
}
