//! The dashboard's pages, rendered on the server from [`super::views`] (the same data the JSON
//! API returns): overview, queue, job, config and login. Each page's live part is `<main>`;
//! the page script fetches it again (`?fragment=main`) when the events say something changed,
//! so there is one renderer. Every text from a file name, a reason or the config is escaped.

use std::fmt::Write;

use crate::job::StateName;
use crate::journal::Step;

use super::views::{JobDetail, JobPage, JobRow, Overview, StateFilter};

/// `text` safe inside HTML text and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

/// A whole page around `main`.
pub fn page(frame: &Frame, main: &str) -> String {
    let nav = [("overview", "/", "Overview"), ("queue", "/queue", "Queue"), ("config", "/config", "Config")]
        .iter()
        .map(|(key, href, label)| {
            let current = if *key == frame.nav { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"{href}\"{current}>{label}</a>")
        })
        .collect::<String>();
    let logout = if frame.logged_in {
        format!(
            "<form method=\"post\" action=\"/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            escape(frame.csrf)
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\"><title>{title} · retouchd</title>\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\"><script src=\"/assets/app.js\" defer></script></head>\
         <body><header><span class=\"brand\">retouchd</span><nav>{nav}</nav>{logout}\
         <span id=\"live\" class=\"live\" title=\"live updates\">connecting…</span></header>\
         <main id=\"main\" data-refresh=\"{refresh}\">{main}</main>\
         <div id=\"toast\" role=\"status\" aria-live=\"polite\"></div></body></html>\n",
        csrf = escape(frame.csrf),
        title = escape(frame.title),
        refresh = escape(frame.refresh),
    )
}

/// A button that POSTs to `action` through the page script (which shows the answer).
fn button(action: &str, label: &str, class: &str) -> String {
    format!("<button type=\"button\" class=\"{class}\" data-action=\"{}\">{}</button>", escape(action), escape(label))
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d", secs / 86400),
    }
}

fn state_badge(state: StateName) -> String {
    format!("<span class=\"badge s-{0}\">{0}</span>", state.as_str())
}

/// The overview's live part.
pub fn overview(o: &Overview) -> String {
    let d = &o.daemon;
    let mut html = String::new();
    let class = if o.state == "running" { "ok" } else { "warn" };
    let _ = write!(
        html,
        "<section class=\"card status {class}\"><h1 id=\"daemon-state\">{}</h1>",
        escape(&capitalised(&o.state))
    );
    if !o.advice.is_empty() {
        let _ = write!(html, "<p class=\"advice\">{}</p>", escape(&o.advice));
    }
    if let Some(detail) = d.pause_detail.as_deref().filter(|s| !s.is_empty()) {
        let _ = write!(html, "<p class=\"detail\">{}</p>", escape(detail));
    }
    let credits = d.quota_left.map_or("not known yet".to_string(), |q| q.to_string());
    let at_server = d.in_flight.saturating_sub(d.uploading.max(0) as usize);
    let _ = write!(
        html,
        "<dl class=\"figures\"><div><dt>Retouches left</dt><dd id=\"credits\">{credits}</dd></div>\
         <div><dt>Uploading</dt><dd>{}</dd></div><div><dt>Other jobs in flight</dt><dd>{at_server}</dd></div>\
         <div><dt>Waiting, not sent yet</dt><dd>{}</dd></div>\
         <div><dt>Delivered in the last hour</dt><dd id=\"last-hour\">{}</dd></div></dl><div class=\"actions\">",
        d.uploading, d.waiting, o.delivered_last_hour
    );
    if d.paused.as_deref() == Some(crate::daemon::USER_PAUSE) {
        html.push_str(&button("/api/resume", "Resume uploads", "primary"));
    } else {
        html.push_str(&button("/api/pause", "Pause uploads", ""));
    }
    html.push_str(&button("/api/reload", "Reload config", ""));
    let failed = o.counts.get(&StateName::Failed).copied().unwrap_or(0);
    if failed > 0 {
        html.push_str(&button("/api/retry-failed", &format!("Retry all failed ({failed})"), "primary"));
    }
    html.push_str("</div></section>");

    if !o.nodes.is_empty() {
        html.push_str("<section class=\"card\"><h2>Nodes</h2><ul class=\"nodes\">");
        for n in &o.nodes {
            let life = if n.alive { "alive" } else { "silent" };
            let _ = write!(
                html,
                "<li class=\"{life}\"><strong>{}</strong> on {} — {life}, heartbeat {} s ago, {} job(s)</li>",
                escape(&n.node.name),
                escape(&n.node.host),
                n.heartbeat_age_secs,
                n.node.jobs
            );
        }
        html.push_str("</ul></section>");
    }
    html.push_str("<section class=\"card\"><h2>Files by state</h2><ul class=\"counts\">");
    if o.counts.is_empty() {
        html.push_str("<li>No jobs yet: drop a photo into an inbox.</li>");
    }
    for (state, n) in &o.counts {
        let _ = write!(
            html,
            "<li><a href=\"/queue?state={0}\">{1} <b id=\"count-{0}\">{n}</b></a></li>",
            state.as_str(),
            state_badge(*state)
        );
    }
    html.push_str("</ul></section><section class=\"card\"><h2>Watches</h2>");
    if o.watches.is_empty() {
        html.push_str("<p>No watch is configured: add a [[watch]] section (or run <code>retouchd init</code>), then Reload config.</p>");
    } else {
        html.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Inbox</th><th>Outbox</th><th>Health</th>\
             <th>Done</th><th>Failed</th><th>In flight</th></tr></thead><tbody>",
        );
        for w in &o.watches {
            let count = |s: StateName| w.counts.get(&s).copied().unwrap_or(0);
            let in_flight: u64 = w.counts.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum();
            let health = match &w.unavailable {
                Some(why) => format!("<span class=\"badge s-failed\">unavailable</span> {}", escape(why)),
                None => "<span class=\"badge s-done\">ok</span>".to_string(),
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{health}</td><td>{}</td><td>{}</td><td>{in_flight}</td></tr>",
                escape(&w.inbox),
                escape(&w.outbox),
                count(StateName::Done),
                count(StateName::Failed) + count(StateName::Rejected),
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str("</section>");
    html
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// One job as a table row.
fn job_row(j: &JobRow) -> String {
    let v = &j.view;
    let progress = match v.progress {
        Some(p) if v.state == StateName::Processing => {
            format!(" <progress max=\"100\" value=\"{p:.0}\" title=\"{p:.0} % at the server\"></progress> {p:.0} %")
        }
        _ => String::new(),
    };
    let reason = v
        .reason
        .as_deref()
        .or(v.waiting.as_deref())
        .map(|r| format!("<div class=\"reason\">{}</div>", escape(r)))
        .unwrap_or_default();
    let mut actions = String::new();
    if j.retryable {
        actions.push_str(&button(&format!("/api/jobs/{}/retry", v.id), "Retry", "primary"));
    }
    if j.cancellable {
        actions.push_str(&button(&format!("/api/jobs/{}/cancel", v.id), "Cancel", ""));
    }
    format!(
        "<tr id=\"job-{id}\" data-state=\"{state}\"><td><a href=\"/jobs/{id}\">#{id}</a></td>\
         <td class=\"file\"><a href=\"/jobs/{id}\">{name}</a>{reason}</td><td><code>{inbox}</code></td>\
         <td class=\"state\">{badge}{progress}</td><td>{age}</td><td class=\"row-actions\">{actions}</td></tr>",
        id = v.id,
        state = v.state.as_str(),
        name = escape(&j.name),
        inbox = escape(&j.inbox),
        badge = state_badge(v.state),
        age = ago(v.age_secs),
    )
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
pub fn queue(filter: StateFilter, name: &str, page: &JobPage, offset: usize, in_flight_note: Option<&str>) -> String {
    let mut html =
        String::from("<form class=\"filter\" method=\"get\" action=\"/queue\"><label>State <select name=\"state\">");
    for f in FILTERS {
        let selected = if f == filter.as_str() { " selected" } else { "" };
        let _ = write!(html, "<option value=\"{f}\"{selected}>{f}</option>");
    }
    let _ = write!(
        html,
        "</select></label> <label>Name <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"part of a file name\"></label> \
         <button type=\"submit\">Filter</button></form>",
        escape(name)
    );
    if let Some(note) = in_flight_note {
        let _ = write!(html, "<p class=\"note\">{}</p>", escape(note));
    }
    let q = query_value(name);
    if let Some(waiting) = &page.waiting {
        let _ = write!(html, "<h2>Waiting, not sent yet ({})</h2>", waiting.total);
        if waiting.files.is_empty() {
            html.push_str("<p>No file is waiting.</p>");
        } else {
            html.push_str(
                "<div class=\"scroll\"><table id=\"waiting\"><thead><tr><th>File</th><th>Inbox</th><th>Changed</th>\
                 <th>Why it waits</th><th></th></tr></thead><tbody>",
            );
            let now = crate::vocab::now_secs();
            for f in &waiting.files {
                let file = f.file.display().to_string();
                // Only a file in the queue can be taken out of it.
                let cancel = match f.why.is_queued() {
                    true => format!(
                        "<button type=\"button\" data-action=\"/api/waiting/cancel\" data-file=\"{}\">Cancel</button>",
                        escape(&file)
                    ),
                    false => String::new(),
                };
                let _ = write!(
                    html,
                    "<tr><td class=\"file\">{}</td><td><code>{}</code></td><td>{} ago</td><td class=\"reason\">{}</td>\
                     <td>{cancel}</td></tr>",
                    escape(&file),
                    escape(&f.inbox.display().to_string()),
                    ago(f.changed_secs_ago),
                    escape(&f.why.describe(now)),
                );
            }
            html.push_str("</tbody></table></div>");
        }
        let shown = offset + waiting.files.len();
        if shown < waiting.total {
            let _ = write!(
                html,
                "<p class=\"pager\"><a href=\"/queue?state=waiting&amp;q={q}&amp;offset={shown}\">Next →</a></p>"
            );
        }
        return html;
    }
    if page.jobs.is_empty() {
        html.push_str("<p id=\"no-jobs\">No job matches.</p>");
    } else {
        html.push_str(
            "<div class=\"scroll\"><table id=\"jobs\"><thead><tr><th>Job</th><th>File</th><th>Inbox</th><th>State</th>\
             <th>Age</th><th></th></tr></thead><tbody>",
        );
        for j in &page.jobs {
            html.push_str(&job_row(j));
        }
        html.push_str("</tbody></table></div>");
    }
    if let Some(before) = page.next_before {
        let _ = write!(
            html,
            "<p class=\"pager\"><a href=\"/queue?state={}&amp;q={q}&amp;before={before}\">Older →</a></p>",
            filter.as_str()
        );
    }
    html
}

fn timeline(steps: &[Step]) -> String {
    let Some(first) = steps.first() else { return String::new() };
    let mut html = String::from("<ol class=\"timeline\">");
    for s in steps {
        let after = (s.at - first.at).max(0) as u64 / 1000;
        let _ = write!(
            html,
            "<li>{} <time datetime=\"{}\">{}</time> <span class=\"after\">+{}</span></li>",
            state_badge(s.state),
            s.at,
            escape(&utc(s.at)),
            ago(after)
        );
    }
    html.push_str("</ol>");
    html
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
pub fn job(d: &JobDetail) -> String {
    let v = &d.row.view;
    let mut html = format!("<h1>#{} {} {}</h1>", v.id, escape(&d.row.name), state_badge(v.state));
    let mut facts = vec![
        ("Watch (inbox)", format!("<code>{}</code>", escape(&d.row.inbox))),
        ("The file is now", format!("<code>{}</code>", escape(&v.file))),
    ];
    if let Some(task) = &v.task_id {
        facts.push(("Server task", format!("<code>{}</code>", escape(task))));
    }
    if let Some(p) = v.progress {
        facts.push(("Server progress", format!("<progress max=\"100\" value=\"{p:.0}\"></progress> {p:.0} %")));
    }
    if let Some(reason) = &v.reason {
        facts.push(("Why it failed", format!("<span class=\"reason\">{}</span>", escape(reason))));
    }
    if let Some(e) = &v.render_error {
        facts.push(("No finished photo", format!("<span class=\"reason\">{}</span>", escape(e))));
    }
    if let Some(faces) = v.faces {
        let flag = match v.no_face {
            true => {
                " <span class=\"reason\" id=\"no-face\">face-aware plugins ran but found no face: the credit bought little</span>"
            }
            false => "",
        };
        facts.push(("Faces found", format!("{faces}{flag}")));
    }
    if !v.plugins_run.is_empty() {
        facts.push(("Plugins run", escape(&v.plugins_run.join(", "))));
    }
    html.push_str("<dl class=\"facts\">");
    for (k, val) in facts {
        let _ = write!(html, "<dt>{k}</dt><dd>{val}</dd>");
    }
    html.push_str("</dl><div class=\"actions\">");
    if d.row.retryable {
        html.push_str(&button(&format!("/api/jobs/{}/retry", v.id), "Retry", "primary"));
    }
    if d.row.cancellable {
        html.push_str(&button(&format!("/api/jobs/{}/cancel", v.id), "Cancel", ""));
    }
    html.push_str("</div><section class=\"card\"><h2>Timeline</h2>");
    html.push_str(&timeline(&d.timeline));
    html.push_str("</section>");
    if d.before_thumbnail.is_some() || d.after_thumbnail.is_some() {
        html.push_str("<section class=\"card\"><h2>Before and after</h2><div class=\"compare\">");
        for (label, src) in [("Before", &d.before_thumbnail), ("After", &d.after_thumbnail)] {
            if let Some(src) = src {
                let _ = write!(
                    html,
                    "<figure><img src=\"{}\" alt=\"{label}\"><figcaption>{label}</figcaption></figure>",
                    escape(src)
                );
            }
        }
        html.push_str("</div></section>");
    }
    if !d.outputs.is_empty() {
        html.push_str("<section class=\"card\"><h2>Outputs</h2><ul class=\"outputs\">");
        for o in &d.outputs {
            let _ = write!(html, "<li><code>{}</code></li>", escape(o));
        }
        html.push_str("</ul></section>");
    }
    html
}

/// The config page's live part: the file with its secrets redacted, and where they come from.
pub fn config(file: &str, text: &str, sources: &[(&str, String)]) -> String {
    let mut html = format!(
        "<h1>Configuration</h1><p>From <code>{}</code>, secrets redacted.</p><dl class=\"facts\">",
        escape(file)
    );
    for (k, v) in sources {
        let _ = write!(html, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    }
    let _ = write!(html, "</dl><pre class=\"config\">{}</pre>", escape(text));
    html.push_str(&button("/api/reload", "Reload config", ""));
    html
}

/// The login page.
pub fn login(next: &str, message: Option<&str>) -> String {
    let message = message.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Log in · retouchd</title>\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body class=\"login\"><main>\
         <h1>retouchd</h1>{message}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\"><label>Password \
         <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus></label>\
         <button type=\"submit\" class=\"primary\">Log in</button></form></main></body></html>\n",
        escape(next)
    )
}

/// A page for a problem (no such job, journal unreadable).
pub fn problem(frame: &Frame, message: &str) -> String {
    page(frame, &format!("<p class=\"error\">{}</p>", escape(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_files_cannot_become_markup() {
        assert_eq!(escape("<img src=x onerror='a'>&\""), "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;");
        assert_eq!(query_value("a b&c"), "a+b%26c");
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
