//! Notifications: what happened ([`Event`]), in an envelope with an id ([`Notice`]), sent to the
//! channels people configured (`[[notify]]`, [`Channel`]): a signed webhook ([`webhook`]), an
//! ntfy topic ([`ntfy`]) or e-mail ([`email`]). Each notice waits in the journal until its
//! receiver took it (the daemon's `notices`), so an outage or a restart loses none; a receiver that sees one
//! twice (a crash between its answer and our record of it) knows it by its id.

pub mod email;
pub mod ntfy;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Token;

/// What a channel can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    BatchDone,
    Failed,
    Paused,
    Resumed,
    LowCredits,
    BudgetReached,
    /// `retouchd notify-test`: sent to every channel, whatever it asks for.
    Test,
}

impl EventKind {
    /// The kinds a channel may ask for (`events = [...]`).
    pub const CHOICES: [EventKind; 6] = [
        EventKind::BatchDone,
        EventKind::Failed,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::LowCredits,
        EventKind::BudgetReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BatchDone => "batch_done",
            EventKind::Failed => "failed",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::LowCredits => "low_credits",
            EventKind::BudgetReached => "budget_reached",
            EventKind::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::CHOICES.into_iter().find(|k| k.as_str() == text)
    }
}

/// A file of a batch that did not come back retouched, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Miss {
    pub file: String,
    pub reason: String,
}

/// A batch whose every file has settled (see `crate::daemon`'s batches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The folder the batch was dropped into (an inbox, or a top-level folder of one).
    pub folder: String,
    pub inbox: String,
    pub delivered: u64,
    pub failed: u64,
    pub refused: u64,
    /// Credits the server charged for the batch's files.
    pub credits: u64,
    /// The first drop and the last result (RFC 3339, UTC), and the seconds between.
    pub first_drop_at: String,
    pub last_result_at: String,
    pub seconds: u64,
    /// Where the results are.
    pub outbox: String,
    /// The files that failed or were refused (the first [`MISSES_LISTED`]).
    pub misses: Vec<Miss>,
}

/// How many failures a batch report lists by name.
pub const MISSES_LISTED: usize = 20;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    BatchDone(BatchReport),
    /// One file failed (`outcome = "failed"`) or was refused before any credit (`"refused"`).
    Failed {
        file: String,
        job: i64,
        outcome: String,
        reason: String,
    },
    /// Uploads stopped: the account (token, quota), or a person (`retouchd pause`).
    Paused {
        reason: String,
        detail: String,
    },
    Resumed {
        reason: String,
    },
    LowCredits {
        left: i64,
        threshold: i64,
    },
    /// A credit budget is spent; uploads wait until `resumes_at` (RFC 3339, UTC).
    BudgetReached {
        budget: String,
        words: String,
        resumes_at: String,
    },
    Test {
        note: String,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::BatchDone(_) => EventKind::BatchDone,
            Event::Failed { .. } => EventKind::Failed,
            Event::Paused { .. } => EventKind::Paused,
            Event::Resumed { .. } => EventKind::Resumed,
            Event::LowCredits { .. } => EventKind::LowCredits,
            Event::BudgetReached { .. } => EventKind::BudgetReached,
            Event::Test { .. } => EventKind::Test,
        }
    }

    /// A one-line title, as a phone shows it.
    pub fn title(&self) -> String {
        match self {
            Event::BatchDone(b) => {
                let name = b.folder.rsplit('/').next().unwrap_or(&b.folder);
                let mut title = format!("{name}: {} delivered", b.delivered);
                if b.failed > 0 {
                    title.push_str(&format!(", {} failed", b.failed));
                }
                if b.refused > 0 {
                    title.push_str(&format!(", {} refused", b.refused));
                }
                title
            }
            Event::Failed { file, outcome, .. } => {
                let name = file.rsplit('/').next().unwrap_or(file);
                format!("{name} {outcome}")
            }
            Event::Paused { .. } => "retouchd paused uploads".into(),
            Event::Resumed { .. } => "retouchd resumed uploads".into(),
            Event::LowCredits { left, .. } => format!("Only {left} credits left"),
            Event::BudgetReached { .. } => "Credit budget reached".into(),
            Event::Test { .. } => "retouchd test notification".into(),
        }
    }

    /// What happened, in a few plain lines.
    pub fn message(&self) -> String {
        match self {
            Event::BatchDone(b) => {
                let mut text = format!(
                    "{} delivered, {} failed, {} refused in {}; {} credit(s) spent; {} from the first drop to the \
                     last result. Results in {}.",
                    b.delivered,
                    b.failed,
                    b.refused,
                    b.folder,
                    b.credits,
                    humantime::format_duration(Duration::from_secs(b.seconds)),
                    b.outbox
                );
                for miss in &b.misses {
                    text.push_str(&format!("\n- {}: {}", miss.file, miss.reason));
                }
                let unlisted = (b.failed + b.refused).saturating_sub(b.misses.len() as u64);
                if unlisted > 0 {
                    text.push_str(&format!("\n- and {unlisted} more (see `retouchd status`)"));
                }
                text
            }
            Event::Failed { file, reason, job, .. } => format!("{file} (job {job}): {reason}"),
            Event::Paused { reason, detail } => format!("{reason}: {detail}"),
            Event::Resumed { reason } => format!("uploads go again ({reason} is over)"),
            Event::LowCredits { left, threshold } => format!(
                "The account has {left} retouching credit(s) left (server.low_quota_warning = {threshold}); top it \
                 up before uploads stop."
            ),
            Event::BudgetReached { words, .. } => words.clone(),
            Event::Test { note } => note.clone(),
        }
    }

    /// How urgent it is, as ntfy's priorities go (1 lowest, 3 default, 5 highest).
    pub fn priority(&self) -> u8 {
        match self {
            Event::Paused { .. } | Event::BudgetReached { .. } | Event::Failed { .. } => 4,
            Event::LowCredits { .. } => 4,
            Event::BatchDone(b) if b.failed + b.refused > 0 => 4,
            Event::Resumed { .. } => 2,
            _ => 3,
        }
    }

    /// Short tags (ntfy shows those that name an emoji as that emoji).
    pub fn tags(&self) -> Vec<&'static str> {
        match self {
            Event::BatchDone(b) if b.failed + b.refused > 0 => vec!["warning", "retouchd", "batch_done"],
            Event::BatchDone(_) => vec!["white_check_mark", "retouchd", "batch_done"],
            Event::Failed { .. } => vec!["x", "retouchd", "failed"],
            Event::Paused { .. } => vec!["pause_button", "retouchd", "paused"],
            Event::Resumed { .. } => vec!["arrow_forward", "retouchd", "resumed"],
            Event::LowCredits { .. } => vec!["moneybag", "retouchd", "low_credits"],
            Event::BudgetReached { .. } => vec!["money_with_wings", "retouchd", "budget_reached"],
            Event::Test { .. } => vec!["test_tube", "retouchd", "test"],
        }
    }
}

/// An event as sent: with its id (the same on every channel and every retry), when it
/// happened, where, and its words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub host: String,
    #[serde(flatten)]
    pub event: Event,
    pub title: String,
    pub message: String,
}

impl Notice {
    /// A new notice of `event`, now, with a fresh id.
    pub fn new(event: Event) -> Notice {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            id = fastrand::u128(..).to_le_bytes();
        }
        Notice {
            id: format!("evt_{}", hex::encode(id)),
            at: rfc3339(crate::vocab::now_ms()),
            host: crate::vocab::host_name(),
            title: event.title(),
            message: event.message(),
            event,
        }
    }
}

/// Unix milliseconds as RFC 3339 in UTC, to the second.
pub fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One `[[notify]]` section, validated.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Names its queue in the journal (`name`, or `<kind>-<n>`).
    pub name: String,
    pub events: BTreeSet<EventKind>,
    pub target: Target,
}

impl Channel {
    pub fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::Test || self.events.contains(&kind)
    }

    /// `name (kind), for event, event…`, as `check` says it.
    pub fn describe(&self) -> String {
        let events: Vec<&str> = self.events.iter().map(|k| k.as_str()).collect();
        format!("{} ({}), for {}", self.name, self.target.kind(), events.join(", "))
    }

    /// Whether `a` and `b` are the same channels (secrets aside: they are never compared).
    pub fn same(a: &[Channel], b: &[Channel]) -> bool {
        let seen = |cs: &[Channel]| cs.iter().map(|c| format!("{} {:?}", c.describe(), c.target)).collect::<Vec<_>>();
        seen(a) == seen(b)
    }
}

/// Where a channel sends.
#[derive(Debug, Clone)]
pub enum Target {
    /// A JSON POST signed with HMAC-SHA256 (see [`webhook`]).
    Webhook {
        url: String,
        secret: Token,
    },
    /// An ntfy topic URL, with an access token if the server asks for one.
    Ntfy {
        url: String,
        token: Option<Token>,
    },
    Email(email::Smtp),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Ntfy { .. } => "ntfy",
            Target::Email(_) => "email",
        }
    }
}

/// Why a send failed, in words (kept in the journal with the notice).
pub type SendError = String;

/// How long one try may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP client for webhooks and ntfy; without a CA store (a minimal container) one that can
/// still reach plain-HTTP receivers.
pub fn http_client() -> reqwest::Client {
    let builder = || {
        reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("retouchd/", env!("CARGO_PKG_VERSION")))
    };
    builder()
        .build()
        .or_else(|_| builder().tls_certs_only(std::iter::empty()).build())
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends `notice` (its JSON as stored: `body`) on `channel` once.
pub async fn send(http: &reqwest::Client, channel: &Channel, notice: &Notice, body: &str) -> Result<(), SendError> {
    match &channel.target {
        Target::Webhook { url, secret } => webhook::send(http, url, secret, notice, body).await,
        Target::Ntfy { url, token } => ntfy::send(http, url, token.as_ref(), notice).await,
        Target::Email(mailbox) => email::send(mailbox, notice).await,
    }
}

/// Sends one notice on one channel (the real one is [`real_transport`]; tests give their own).
pub type Transport = Arc<
    dyn Fn(
            Channel,
            Notice,
            String,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SendError>> + Send>>
        + Send
        + Sync,
>;

/// Webhooks and ntfy over one HTTP client, e-mail over SMTP.
pub fn real_transport() -> Transport {
    let http = http_client();
    Arc::new(move |channel, notice, body| {
        let http = http.clone();
        Box::pin(async move { send(&http, &channel, &notice, &body).await })
    })
}

/// A transport error in words: what failed, without the request's URL query.
pub fn transport_words(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{what}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_round_trips_through_its_json_with_the_event_beside_its_words() {
        let notice = Notice::new(Event::LowCredits { left: 3, threshold: 10 });
        let json = serde_json::to_string(&notice).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event"], "low_credits");
        assert_eq!(value["data"]["left"], 3);
        assert_eq!(value["title"], "Only 3 credits left");
        assert!(value["id"].as_str().unwrap().starts_with("evt_") && value["id"].as_str().unwrap().len() == 36);
        let back: Notice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, notice);
        assert_ne!(Notice::new(Event::Test { note: "x".into() }).id, Notice::new(Event::Test { note: "x".into() }).id);
    }

    #[test]
    fn a_batch_report_says_what_came_back_and_names_the_misses() {
        let batch = Event::BatchDone(BatchReport {
            folder: "/photos/inbox/smith-wedding".into(),
            inbox: "/photos/inbox".into(),
            delivered: 48,
            failed: 1,
            refused: 1,
            credits: 49,
            first_drop_at: "2026-12-06T20:00:00Z".into(),
            last_result_at: "2026-12-06T20:12:00Z".into(),
            seconds: 720,
            outbox: "/photos/outbox/smith-wedding".into(),
            misses: vec![Miss { file: "a.jpg".into(), reason: "no face".into() }],
        });
        assert_eq!(batch.title(), "smith-wedding: 48 delivered, 1 failed, 1 refused");
        let message = batch.message();
        assert!(message.contains("49 credit(s) spent; 12m from the first drop"), "{message}");
        assert!(message.contains("- a.jpg: no face\n- and 1 more"), "{message}");
        assert_eq!(batch.priority(), 4);
        assert_eq!(EventKind::parse("budget_reached"), Some(EventKind::BudgetReached));
        assert_eq!(EventKind::parse("test"), None, "not a choice for a channel");
    }
}
