//! The dashboard's pages, rendered on the server from [`super::views`] (the same data the JSON
//! API returns): overview, queue, job, config and login. Each page's live part is `<main>`;
//! the page script fetches it again (`?fragment=main`) when the events say something changed,
//! so there is one renderer. The pages are maud templates: every value is escaped unless it is
//! markup made by a template, so text from a file name, a reason or the config cannot become
//! markup by accident.

use maud::{DOCTYPE, Markup, html};

use crate::job::StateName;
use crate::journal::Step;

use super::views::{JobDetail, JobPage, JobRow, Overview, StateFilter};

/// `text` as a query-string value.
fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// What every page shares: the page's name (for the nav), its CSRF token, whether a logout
/// button is shown, and where its live part is fetched from.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: &'a str,
    pub csrf: &'a str,
    pub logged_in: bool,
    pub refresh: &'a str,
}

/// The head every page shares.
fn head(title: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            (extra)
            title { (title) " · retouchd" }
            link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/assets/app.css";
        }
    }
}

/// A whole page around `main`.
pub fn page(frame: &Frame, main: Markup) -> Markup {
    let nav = [("overview", "/", "Overview"), ("queue", "/queue", "Queue"), ("config", "/config", "Config")];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(frame.title, html! {
                meta name="csrf" content=(frame.csrf);
                script src="/assets/app.js" defer {}
            }))
            body {
                header {
                    span.brand { "retouchd" }
                    nav {
                        @for (key, href, label) in nav {
                            a href=(href) aria-current=[(key == frame.nav).then_some("page")] { (label) }
                        }
                    }
                    @if frame.logged_in {
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                    span #live .live title="live updates" { "connecting…" }
                }
                main #main data-refresh=(frame.refresh) { (main) }
                div #toast role="status" aria-live="polite" {}
            }
        }
    }
}

/// A button that POSTs to `action` through the page script (which shows the answer).
fn button(action: &str, label: &str, class: &str) -> Markup {
    html! { button type="button" class=(class) data-action=(action) { (label) } }
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d", secs / 86400),
    }
}

fn state_badge(state: StateName) -> Markup {
    html! { span class={ "badge s-" (state.as_str()) } { (state.as_str()) } }
}

/// The overview's live part.
pub fn overview(o: &Overview) -> Markup {
    let d = &o.daemon;
    let class = if o.state == "running" { "ok" } else { "warn" };
    let credits = d.quota_left.map_or("not known yet".to_string(), |q| q.to_string());
    let at_server = d.in_flight.saturating_sub(d.uploading.max(0) as usize);
    let failed = o.counts.get(&StateName::Failed).copied().unwrap_or(0);
    html! {
        section class={ "card status " (class) } {
            h1 #daemon-state { (capitalised(&o.state)) }
            @if !o.advice.is_empty() { p.advice { (o.advice) } }
            @if let Some(detail) = d.pause_detail.as_deref().filter(|s| !s.is_empty()) { p.detail { (detail) } }
            dl.figures {
                div { dt { "Retouches left" } dd #credits { (credits) } }
                div { dt { "Uploading" } dd { (d.uploading) } }
                div { dt { "Other jobs in flight" } dd { (at_server) } }
                div { dt { "Waiting, not sent yet" } dd { (d.waiting) } }
                div { dt { "Delivered in the last hour" } dd #last-hour { (o.delivered_last_hour) } }
            }
            div.actions {
                @if d.paused.as_deref() == Some(crate::daemon::USER_PAUSE) {
                    (button("/api/resume", "Resume uploads", "primary"))
                } @else {
                    (button("/api/pause", "Pause uploads", ""))
                }
                (button("/api/reload", "Reload config", ""))
                @if failed > 0 { (button("/api/retry-failed", &format!("Retry all failed ({failed})"), "primary")) }
            }
        }
        @if !o.pauses.is_empty() || !o.budgets.is_empty() || !o.notices.is_empty() {
            section.card #controls {
                h2 { "Pauses, budgets and notifications" }
                ul {
                    @for p in &o.pauses { li.warn { (p.says) } }
                    @for n in &o.notices {
                        li.warn {
                            (n.waiting) " notification(s) waiting for " (n.channel)
                            @if let Some(e) = &n.last_error { " (last try: " (e) ")" }
                        }
                    }
                    @for b in &o.budgets {
                        li {
                            "Credits spent" @if let Some(inbox) = &b.inbox { " from " (inbox) } ": "
                            (b.today) @if let Some(l) = b.per_day { " of " (l) } " today, "
                            (b.this_month) @if let Some(l) = b.per_month { " of " (l) } " this month"
                        }
                    }
                }
            }
        }
        @if !d.batches.is_empty() {
            section.card #batches {
                h2 { "Open batches" }
                ul {
                    @for b in &d.batches {
                        li {
                            (b.folder) ": " (b.settled) " of " (b.files) " settled"
                            " (" (b.delivered) " delivered"
                            @if b.failed > 0 { ", " (b.failed) " failed" }
                            @if b.refused > 0 { ", " (b.refused) " refused" } ") "
                            progress max=(b.files) value=(b.settled) {}
                        }
                    }
                }
            }
        }
        @if !o.nodes.is_empty() {
            section.card {
                h2 { "Nodes" }
                ul.nodes {
                    @for n in &o.nodes {
                        @let life = if n.alive { "alive" } else { "silent" };
                        li class=(life) {
                            strong { (n.node.name) } " on " (n.node.host) " — " (life) ", heartbeat "
                            (n.heartbeat_age_secs) " s ago, " (n.node.jobs) " job(s)"
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Files by state" }
            ul.counts {
                @if o.counts.is_empty() { li { "No jobs yet: drop a photo into an inbox." } }
                @for (state, n) in &o.counts {
                    li { a href={ "/queue?state=" (state.as_str()) } { (state_badge(*state)) " " b id={ "count-" (state.as_str()) } { (n) } } }
                }
            }
        }
        section.card {
            h2 { "Watches" }
            @if o.watches.is_empty() {
                p { "No watch is configured: add a [[watch]] section (or run " code { "retouchd init" } "), then Reload config." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Inbox" } th { "Outbox" } th { "Health" } th { "Done" } th { "Failed" } th { "In flight" } } }
                    tbody {
                        @for w in &o.watches {
                            @let count = |s: StateName| w.counts.get(&s).copied().unwrap_or(0);
                            @let in_flight: u64 = w.counts.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum();
                            tr {
                                td { code { (w.inbox) } }
                                td { code { (w.outbox) } }
                                td {
                                    @match &w.unavailable {
                                        Some(why) => { span class="badge s-failed" { "unavailable" } " " (why) }
                                        None => { span class="badge s-done" { "ok" } }
                                    }
                                }
                                td { (count(StateName::Done)) }
                                td { (count(StateName::Failed) + count(StateName::Rejected)) }
                                td { (in_flight) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// One job as a table row.
fn job_row(j: &JobRow) -> Markup {
    let v = &j.view;
    let reason = v.reason.as_deref().or(v.waiting.as_deref());
    html! {
        tr id={ "job-" (v.id) } data-state=(v.state.as_str()) {
            td { a href={ "/jobs/" (v.id) } { "#" (v.id) } }
            td.file {
                a href={ "/jobs/" (v.id) } { (j.name) }
                @if let Some(r) = reason { div.reason { (r) } }
            }
            td { code { (j.inbox) } }
            td.state {
                (state_badge(v.state))
                @if let (Some(p), StateName::Processing) = (v.progress, v.state) {
                    " " progress max="100" value=(format!("{p:.0}")) title=(format!("{p:.0} % at the server")) {} " " (format!("{p:.0}")) " %"
                }
            }
            td { (ago(v.age_secs)) }
            td.row-actions {
                @if j.retryable { (button(&format!("/api/jobs/{}/retry", v.id), "Retry", "primary")) }
                @if j.cancellable { (button(&format!("/api/jobs/{}/cancel", v.id), "Cancel", "")) }
            }
        }
    }
}

const FILTERS: [&str; 14] = [
    "active",
    "waiting",
    "all",
    "submitting",
    "processing",
    "fetching",
    "rendering",
    "delivering",
    "delivered",
    "done",
    "failing",
    "failed",
    "rejecting",
    "rejected",
];

/// The queue page's live part: the filter, then the jobs (or waiting files) and the pager.
pub fn queue(filter: StateFilter, name: &str, page: &JobPage, offset: usize, in_flight_note: Option<&str>) -> Markup {
    let q = query_value(name);
    let now = crate::vocab::now_secs();
    html! {
        form.filter method="get" action="/queue" {
            label { "State " select name="state" {
                @for f in FILTERS { option value=(f) selected[f == filter.as_str()] { (f) } }
            } }
            " "
            label { "Name " input type="search" name="q" value=(name) placeholder="part of a file name"; }
            " "
            button type="submit" { "Filter" }
        }
        @if let Some(note) = in_flight_note { p.note { (note) } }
        @if let Some(waiting) = &page.waiting {
            h2 { "Waiting, not sent yet (" (waiting.total) ")" }
            @if waiting.files.is_empty() {
                p { "No file is waiting." }
            } @else {
                div.scroll { table #waiting {
                    thead { tr { th { "File" } th { "Inbox" } th { "Changed" } th { "Why it waits" } th {} } }
                    tbody {
                        @for f in &waiting.files {
                            @let file = f.file.display().to_string();
                            tr {
                                td.file { (file) }
                                td { code { (f.inbox.display().to_string()) } }
                                td { (ago(f.changed_secs_ago)) " ago" }
                                td.reason { (f.why.describe(now)) }
                                // Only a file in the queue can be taken out of it.
                                td { @if f.why.is_queued() {
                                    button type="button" data-action="/api/waiting/cancel" data-file=(file) { "Cancel" }
                                } }
                            }
                        }
                    }
                } }
            }
            @let shown = offset + waiting.files.len();
            @if shown < waiting.total {
                p.pager { a href={ "/queue?state=waiting&q=" (q) "&offset=" (shown) } { "Next →" } }
            }
        } @else {
            @if page.jobs.is_empty() {
                p #no-jobs { "No job matches." }
            } @else {
                div.scroll { table #jobs {
                    thead { tr { th { "Job" } th { "File" } th { "Inbox" } th { "State" } th { "Age" } th {} } }
                    tbody { @for j in &page.jobs { (job_row(j)) } }
                } }
            }
            @if let Some(before) = page.next_before {
                p.pager { a href={ "/queue?state=" (filter.as_str()) "&q=" (q) "&before=" (before) } { "Older →" } }
            }
        }
    }
}

fn timeline(steps: &[Step]) -> Markup {
    let Some(first) = steps.first() else { return html! {} };
    html! {
        ol.timeline {
            @for s in steps {
                li {
                    (state_badge(s.state)) " " time datetime=(s.at) { (utc(s.at)) } " "
                    span.after { "+" (ago((s.at - first.at).max(0) as u64 / 1000)) }
                }
            }
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The job page's live part.
pub fn job(d: &JobDetail) -> Markup {
    let v = &d.row.view;
    html! {
        h1 { "#" (v.id) " " (d.row.name) " " (state_badge(v.state)) }
        dl.facts {
            dt { "Watch (inbox)" } dd { code { (d.row.inbox) } }
            dt { "The file is now" } dd { code { (v.file) } }
            @if let Some(task) = &v.task_id { dt { "Server task" } dd { code { (task) } } }
            @if let Some(p) = v.progress {
                dt { "Server progress" } dd { progress max="100" value=(format!("{p:.0}")) {} " " (format!("{p:.0}")) " %" }
            }
            @if let Some(reason) = &v.reason { dt { "Why it failed" } dd { span.reason { (reason) } } }
            @if let Some(e) = &v.render_error { dt { "No finished photo" } dd { span.reason { (e) } } }
            @if let Some(faces) = v.faces {
                dt { "Faces found" }
                dd {
                    (faces)
                    @if v.no_face {
                        " " span.reason #no-face { "face-aware plugins ran but found no face: the credit bought little" }
                    }
                }
            }
            @if !v.plugins_run.is_empty() { dt { "Plugins run" } dd { (v.plugins_run.join(", ")) } }
        }
        div.actions {
            @if d.row.retryable { (button(&format!("/api/jobs/{}/retry", v.id), "Retry", "primary")) }
            @if d.row.cancellable { (button(&format!("/api/jobs/{}/cancel", v.id), "Cancel", "")) }
        }
        section.card { h2 { "Timeline" } (timeline(&d.timeline)) }
        @if d.before_thumbnail.is_some() || d.after_thumbnail.is_some() {
            section.card {
                h2 { "Before and after" }
                div.compare {
                    @for (label, src) in [("Before", &d.before_thumbnail), ("After", &d.after_thumbnail)] {
                        @if let Some(src) = src { figure { img src=(src) alt=(label); figcaption { (label) } } }
                    }
                }
            }
        }
        @if !d.outputs.is_empty() {
            section.card { h2 { "Outputs" } ul.outputs { @for o in &d.outputs { li { code { (o) } } } } }
        }
    }
}

/// The config page's live part: the file with its secrets redacted, and where they come from.
pub fn config(file: &str, text: &str, sources: &[(&str, String)]) -> Markup {
    html! {
        h1 { "Configuration" }
        p { "From " code { (file) } ", secrets redacted." }
        dl.facts { @for (k, v) in sources { dt { (k) } dd { (v) } } }
        pre.config { (text) }
        (button("/api/reload", "Reload config", ""))
    }
}

/// The login page.
pub fn login(next: &str, message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in", html! {}))
            body.login { main {
                h1 { "retouchd" }
                @if let Some(m) = message { p.error role="alert" { (m) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label { "Password " input type="password" name="password" autocomplete="current-password" required autofocus; }
                    button type="submit" .primary { "Log in" }
                }
            } }
        }
    }
}

/// A page for a problem (no such job, journal unreadable).
pub fn problem(frame: &Frame, message: &str) -> Markup {
    page(frame, html! { p.error { (message) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_files_cannot_become_markup() {
        let evil = "<img src=x onerror='a'>&\"";
        let shown = config(evil, evil, &[(evil, evil.to_string())]).into_string();
        assert!(!shown.contains("<img"), "{shown}");
        assert!(shown.contains("&lt;img src=x onerror='a'&gt;&amp;&quot;"), "{shown}");
        let login = login("\"><script>", Some("<b>")).into_string();
        assert!(!login.contains("<script>") && !login.contains("<b>"), "{login}");
        assert_eq!(query_value("a b&c"), "a+b%26c");
    }

    #[test]
    fn the_overview_shows_open_batches_pauses_budgets_and_waiting_notifications_escaped() {
        let evil = "/in/<b>shoot</b>";
        let daemon: crate::daemon::LiveStatus = serde_json::from_value(serde_json::json!({
            "pid": 1, "updated_at": 1, "paused": null, "pause_detail": null, "uploading": 0, "in_flight": 2,
            "waiting": 0, "done": 1, "failed": 0, "refused": 0, "quota_left": 40, "inboxes_unavailable": [],
            "batches": [{ "folder": evil, "files": 5, "settled": 3, "delivered": 2, "failed": 1, "refused": 0, "since": 1 }],
        }))
        .unwrap();
        let shown = Overview {
            daemon,
            state: "running".into(),
            advice: String::new(),
            counts: std::collections::BTreeMap::new(),
            watches: Vec::new(),
            delivered_last_hour: 0,
            nodes: Vec::new(),
            pauses: vec![crate::report::PauseView { inbox: None, until: None, says: "paused by a person".into() }],
            budgets: vec![crate::report::BudgetView {
                inbox: None,
                per_day: Some(200),
                per_month: None,
                today: 37,
                this_month: 90,
            }],
            notices: vec![crate::journal::NoticeBacklog {
                channel: "webhook-1".into(),
                waiting: 3,
                oldest_at: 0,
                last_error: Some("answered <503>".into()),
            }],
        };
        let page = overview(&shown).into_string();
        assert!(page.contains("&lt;b&gt;shoot&lt;/b&gt;: 3 of 5 settled (2 delivered, 1 failed)"), "{page}");
        assert!(page.contains(r#"<progress max="5" value="3">"#), "{page}");
        assert!(page.contains("37 of 200 today, 90 this month") && page.contains("paused by a person"), "{page}");
        assert!(page.contains("3 notification(s) waiting for webhook-1 (last try: answered &lt;503&gt;)"), "{page}");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_000_000_123), "2026-11-30 00:53:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(
            (ago(5), ago(125), ago(7260), ago(200_000)),
            ("5 s".into(), "2 min".into(), "2 h 1 min".into(), "2 d".into())
        );
    }
}
