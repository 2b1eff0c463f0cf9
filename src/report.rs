//! The status report (`retouchd status`, the dashboard's API): what the journal says, for people
//! (a short report) and scripts (`--json`).
//! Reads the journal without writing, so it works while the daemon runs. Files are counted by
//! their newest job, failures are shown where the file is now, and an inbox that cannot be
//! read is reported rather than stopping the report.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::daemon::LiveStatus;
use crate::daemon::waiting::Why;
use crate::job::{JobState, StateName};
use crate::journal::{JobRecord, Journal, JournalError, NodeInfo};
use crate::logging::printable;

/// One job, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub id: i64,
    /// Where the file is now (failed/ or done/ once moved there; else where it was found).
    pub file: String,
    /// Where it was found.
    pub source: String,
    pub state: StateName,
    pub age_secs: u64,
    pub progress: Option<f64>,
    pub reason: Option<String>,
    /// Delivered without a finished photo: why.
    pub render_error: Option<String>,
    pub task_id: Option<String>,
    /// Why it is held up now (a retry, a pause), as the running daemon says.
    pub waiting: Option<String>,
    /// Faces found, as the result's result.json says (once delivered, when it came).
    pub faces: Option<u32>,
    /// Face-aware plugins ran and found no face: the credit bought little.
    pub no_face: bool,
    /// The plugins result.json says ran (once delivered, when it came).
    pub plugins_run: Vec<String>,
}

/// A file seen but not a job (yet), with why, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitingView {
    pub file: String,
    pub inbox: String,
    pub changed_secs_ago: u64,
    pub why: Why,
    /// `why` in words.
    pub says: String,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The running daemon's own view (pause, credits), when one runs.
    pub daemon: Option<LiveStatus>,
    pub journal: String,
    /// Files by the state of their newest job.
    pub counts: BTreeMap<StateName, u64>,
    pub in_flight: Vec<JobView>,
    /// Files seen and not jobs yet, each with why it waits (from the running daemon; the first
    /// of them when there are very many: `waiting_total` says how many in all).
    pub waiting: Vec<WaitingView>,
    pub waiting_total: usize,
    pub recent_failures: Vec<JobView>,
    /// Recent deliveries whose finished photo could not be made (the layers were delivered).
    pub recent_render_errors: Vec<JobView>,
    /// Recent deliveries where face-aware plugins ran and found no face.
    pub recent_no_face: Vec<JobView>,
    /// Inboxes that cannot be read now (an unmounted share), with why.
    pub unavailable_inboxes: Vec<String>,
    /// The pauses people set that hold now (`retouchd pause`, the dashboard), from the journal:
    /// shown whether or not the daemon runs.
    pub pauses: Vec<PauseView>,
    /// Credits spent today and this month (local) against each budget (`[budget]` first, then
    /// the watches' own), counted from the journal's charged starts.
    pub budgets: Vec<BudgetView>,
    /// A shared journal's nodes, each with its last heartbeat and the jobs it holds.
    pub nodes: Vec<NodeView>,
    /// Notifications not yet taken by their receivers, per channel (`[[notify]]`).
    pub notices: Vec<crate::journal::NoticeBacklog>,
}

/// A credit budget and what is spent of it, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetView {
    /// The inbox it covers; `None`: every inbox.
    pub inbox: Option<String>,
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
    pub today: u64,
    pub this_month: u64,
}

/// A person's pause, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PauseView {
    /// The inbox it holds; `None`: every inbox.
    pub inbox: Option<String>,
    /// When it ends by itself (Unix seconds); `None`: when resumed.
    pub until: Option<i64>,
    pub says: String,
}

/// One node of a shared journal, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: NodeInfo,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: u64,
    /// Whether it renewed within its lease (it may still hold jobs).
    pub alive: bool,
}

/// A job as `status` shows it.
pub fn view(job: &JobRecord, now_ms: i64) -> JobView {
    let moved_to = match &job.state {
        JobState::Failed { moved_to, .. } | JobState::Rejected { moved_to, .. } | JobState::Done { moved_to, .. } => {
            moved_to.as_ref()
        }
        _ => None,
    };
    JobView {
        id: job.id,
        file: moved_to.cloned().unwrap_or_else(|| job.source.path()).display().to_string(),
        source: job.source.path().display().to_string(),
        state: job.state.name(),
        age_secs: ((now_ms - job.created_at).max(0) / 1000) as u64,
        progress: job.progress,
        reason: job.state.reason().map(str::to_string),
        render_error: job.state.render_error().map(str::to_string),
        task_id: job.state.task().map(|(t, _)| t.to_string()),
        waiting: None,
        faces: job.state.findings().map(|f| f.faces),
        no_face: job.state.findings().is_some_and(|f| f.no_face),
        plugins_run: job.state.findings().map(|f| f.plugins.clone()).unwrap_or_default(),
    }
}

/// The report for the journal and live status in `config`'s state folder.
pub fn report(journal: &Journal, config: &Config) -> Result<Report, JournalError> {
    report_with(journal, config, LiveStatus::read(&config.state_dir))
}

/// The report with the running daemon's own view `daemon` (the dashboard asks it directly).
pub fn report_with(journal: &Journal, config: &Config, daemon: Option<LiveStatus>) -> Result<Report, JournalError> {
    let now = crate::vocab::now_ms();
    let mut failures: Vec<JobRecord> = journal.recent_latest(StateName::Failed, 10)?;
    failures.extend(journal.recent_latest(StateName::Rejected, 10)?);
    failures.sort_by_key(|j| std::cmp::Reverse(j.updated_at));
    failures.truncate(10);
    let now_secs = crate::vocab::now_secs();
    let job_waits = daemon.as_ref().map(|d| d.job_waits.clone()).unwrap_or_default();
    let in_flight = journal
        .unfinished()?
        .iter()
        .map(|j| JobView { waiting: job_waits.get(&j.id).map(|w| w.describe(now_secs)), ..view(j, now) })
        .collect();
    let (waiting, waiting_total) = match &daemon {
        Some(d) => (
            d.waiting_files
                .iter()
                .map(|w| WaitingView {
                    file: w.file.display().to_string(),
                    inbox: w.inbox.display().to_string(),
                    changed_secs_ago: w.changed_secs_ago,
                    says: w.why.describe(now_secs),
                    why: w.why.clone(),
                })
                .collect(),
            d.waiting,
        ),
        None => (Vec::new(), 0),
    };
    let pauses = pause_views(journal, now)?;
    let budgets = budget_views(journal, config)?;
    Ok(Report {
        daemon,
        pauses,
        budgets,
        journal: journal.path().display().to_string(),
        counts: journal.file_counts()?,
        in_flight,
        waiting,
        waiting_total,
        recent_failures: failures.iter().map(|j| view(j, now)).collect(),
        recent_render_errors: journal.recent_render_errors(10)?.iter().map(|j| view(j, now)).collect(),
        recent_no_face: journal
            .recent_latest(StateName::Done, 50)?
            .iter()
            .filter(|j| j.state.findings().is_some_and(|f| f.no_face))
            .take(10)
            .map(|j| view(j, now))
            .collect(),
        unavailable_inboxes: config.unavailable_inboxes.clone(),
        nodes: node_views(journal, config, now)?,
        notices: journal.notice_backlog()?,
    })
}

/// "… and N more" under a list of `total` shown up to `shown`.
fn more(out: &mut String, total: usize, shown: usize) {
    if total > shown {
        out.push_str(&format!(
            "  … and {} more (`retouchd status --json` or the dashboard lists them)\n",
            total - shown
        ));
    }
}

/// The nodes of a shared journal (none for a local one), seen at `now`.
pub fn node_views(journal: &Journal, config: &Config, now: i64) -> Result<Vec<NodeView>, JournalError> {
    let lease = config.cluster.as_ref().map_or(30_000, |c| c.lease.as_millis() as i64);
    Ok(journal
        .nodes()?
        .into_iter()
        .map(|node| {
            let age = (now - node.heartbeat).max(0);
            NodeView { heartbeat_age_secs: (age / 1000) as u64, alive: age <= lease, node }
        })
        .collect())
}

/// The pauses people set that hold at `now_ms`, the one for every inbox first.
pub fn pause_views(journal: &Journal, now_ms: i64) -> Result<Vec<PauseView>, JournalError> {
    let pauses = journal.pauses()?;
    let all = pauses.all.filter(|h| h.active(now_ms)).map(|h| (None, h));
    Ok(all
        .into_iter()
        .chain(pauses.watches.iter().filter(|(_, h)| h.active(now_ms)).map(|(w, h)| (Some(w.as_path()), *h)))
        .map(|(inbox, hold)| PauseView {
            inbox: inbox.map(|i| i.display().to_string()),
            until: hold.until_ms.map(|ms| ms / 1000),
            says: crate::daemon::hold_words(inbox, hold),
        })
        .collect())
}

/// Each budget with what the journal says is spent of it.
pub fn budget_views(journal: &Journal, config: &Config) -> Result<Vec<BudgetView>, JournalError> {
    let budgets: Vec<(Option<&std::path::Path>, &crate::budget::Budget)> = config
        .budget
        .iter()
        .map(|b| (None, b))
        .chain(config.watches.iter().filter_map(|w| w.budget.as_ref().map(|b| (Some(w.inbox.as_path()), b))))
        .collect();
    let now = jiff::Timestamp::now();
    let Some(since) = budgets.iter().map(|(_, b)| b.month_start_ms(now)).min() else { return Ok(Vec::new()) };
    let charges = crate::journal::charges_since(&**journal, since)?;
    Ok(budgets
        .into_iter()
        .map(|(inbox, budget)| {
            let times: Vec<i64> =
                charges.iter().filter(|(i, _)| inbox.is_none_or(|own| i == own)).map(|(_, at)| *at).collect();
            let spent = budget.spent(&times, now);
            BudgetView {
                inbox: inbox.map(|i| i.display().to_string()),
                per_day: budget.per_day,
                per_month: budget.per_month,
                today: spent.today,
                this_month: spent.this_month,
            }
        })
        .collect())
}

/// The report as text for a terminal. Names and reasons come from the inbox and the server:
/// their control characters are shown escaped, so they can neither forge a line nor drive the
/// terminal.
pub fn render(report: &Report) -> String {
    let mut out = match &report.daemon {
        Some(d) => {
            // The counts of jobs and waiting files are the lists' own (below), read in one go.
            let mut text = format!(
                "daemon: running (pid {}); since start {} done, {} failed, {} refused\n",
                d.pid, d.done, d.failed, d.refused
            );
            // A person's pause is shown from the journal, below.
            if let Some(reason) = d.paused.as_ref().filter(|r| *r != crate::daemon::USER_PAUSE) {
                text.push_str(&format!(
                    "PAUSED ({reason}): {} — {}\n",
                    printable(d.pause_detail.as_deref().unwrap_or("")),
                    d.pause_advice().unwrap_or_default()
                ));
                if let Some(log) = &d.log_command {
                    text.push_str(&format!("  its log: `{log}`\n"));
                }
            }
            if let Some(url) = &d.dashboard {
                text.push_str(&format!("dashboard: {url}\n"));
            }
            if let Some(node) = &d.node {
                text.push_str(&format!("node: {node} (shared journal)\n"));
            }
            if let Some(problem) = &d.database_unreachable {
                text.push_str(&format!(
                    "JOURNAL DATABASE UNREACHABLE: {problem} — this node claims nothing new and retries; \
                     other nodes take its jobs over after the lease\n"
                ));
            }
            if let Some(outbox) = &d.disk_full {
                text.push_str(&format!("DISK FULL: {outbox} — jobs wait and sources stay; free some space\n"));
            }
            if let Some(q) = d.quota_left {
                text.push_str(&format!("credits left: {q} (as the server said at the last upload)\n"));
            }
            for inbox in &d.inboxes_unavailable {
                text.push_str(&format!("inbox unavailable (unmounted?): {}\n", printable(inbox)));
            }
            text
        }
        None => "daemon: not running\n".to_string(),
    };
    for b in &report.budgets {
        let of = |limit: Option<u64>| limit.map(|l| format!(" of {l}")).unwrap_or_default();
        let whose = b.inbox.as_deref().map(|i| format!(" from {}", printable(i))).unwrap_or_default();
        out.push_str(&format!(
            "credits spent{whose}: {}{} today, {}{} this month (budget)\n",
            b.today,
            of(b.per_day),
            b.this_month,
            of(b.per_month)
        ));
    }
    for pause in &report.pauses {
        out.push_str(&format!("PAUSED: {}\n", printable(&pause.says)));
    }
    for b in report.daemon.iter().flat_map(|d| &d.batches) {
        out.push_str(&format!(
            "batch {}: {} of {} file(s) settled ({} delivered, {} failed, {} refused)\n",
            printable(&b.folder),
            b.settled,
            b.files,
            b.delivered,
            b.failed,
            b.refused
        ));
    }
    for n in &report.notices {
        let error = n.last_error.as_deref().map(|e| format!("; last try: {}", printable(e))).unwrap_or_default();
        out.push_str(&format!(
            "notifications waiting for {}: {} (oldest since {}){error}\n",
            n.channel,
            n.waiting,
            crate::notify::rfc3339(n.oldest_at)
        ));
    }
    for inbox in &report.unavailable_inboxes {
        out.push_str(&format!("inbox cannot be read: {}\n", printable(inbox)));
    }
    out.push_str(&format!("journal: {}\n", report.journal));
    if !report.nodes.is_empty() {
        out.push_str(&format!("nodes ({}):\n", report.nodes.len()));
        for n in &report.nodes {
            let life = if n.alive { "alive" } else { "silent" };
            out.push_str(&format!(
                "  {} on {} (pid {}): {life}, heartbeat {}s ago, {} job(s)\n",
                n.node.name, n.node.host, n.node.pid, n.heartbeat_age_secs, n.node.jobs
            ));
        }
    }
    if report.counts.is_empty() {
        out.push_str("no jobs yet\n");
    } else {
        let counts: Vec<String> = report.counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        out.push_str(&format!("files (by their newest job): {}\n", counts.join(", ")));
    }
    if !report.in_flight.is_empty() {
        out.push_str(&format!("in flight ({}):\n", report.in_flight.len()));
        for j in report.in_flight.iter().take(50) {
            let progress = j.progress.map(|p| format!(" {p:.0}%")).unwrap_or_default();
            let age = humantime::format_duration(Duration::from_secs(j.age_secs));
            let held = j.waiting.as_deref().map(|w| format!(" — {}", printable(w))).unwrap_or_default();
            out.push_str(&format!("  #{} {} — {}{progress}, {age}{held}\n", j.id, printable(&j.file), j.state));
        }
        more(&mut out, report.in_flight.len(), 50);
    }
    if !report.waiting.is_empty() {
        out.push_str(&format!("waiting, not sent yet ({}):\n", report.waiting_total));
        for w in report.waiting.iter().take(50) {
            out.push_str(&format!("  {} — {}\n", printable(&w.file), printable(&w.says)));
        }
        more(&mut out, report.waiting_total, 50);
    }
    if !report.recent_failures.is_empty() {
        out.push_str("recent failures:\n");
        for j in &report.recent_failures {
            out.push_str(&format!(
                "  #{} {} — {}\n",
                j.id,
                printable(&j.file),
                printable(j.reason.as_deref().unwrap_or(""))
            ));
        }
    }
    if !report.recent_no_face.is_empty() {
        out.push_str("delivered, but face-aware plugins found no face (the credit bought little):\n");
        for j in &report.recent_no_face {
            out.push_str(&format!("  #{} {}\n", j.id, printable(&j.file)));
        }
    }
    if !report.recent_render_errors.is_empty() {
        out.push_str("delivered without a finished photo (layers only; `retouchd render` retries locally):\n");
        for j in &report.recent_render_errors {
            out.push_str(&format!(
                "  #{} {} — {}\n",
                j.id,
                printable(&j.file),
                printable(j.render_error.as_deref().unwrap_or(""))
            ));
        }
    }
    out
}
