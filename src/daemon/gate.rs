//! The submission gate: account and setup problems (bad token, quota reached, no start route)
//! pause every upload instead of failing files. While paused, one "probe" upload is let through
//! every retry interval; the first success reopens the gate for all. A config reload reopens it
//! at once. A person may also hold it, for every inbox or one (`retouchd pause`, Pause on the
//! dashboard; kept in the journal): nothing it holds passes, not even a probe, until they
//! release it or the time they gave ends.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{error, info};

pub use crate::api::PauseReason;
use crate::journal::{Hold, Holds};
use crate::notify::Event;

#[derive(Debug)]
struct Paused {
    reason: PauseReason,
    message: String,
    retry_at: Instant,
    retry_every: Duration,
    probing: bool,
}

#[derive(Debug, Default)]
pub struct Gate {
    paused: Mutex<Option<Paused>>,
    /// Held by people (for all inboxes or some): no upload they hold starts.
    holds: Mutex<Holds>,
    changed: Notify,
    /// Wakes whoever shows the pause (the live status) when it starts, changes or ends.
    shown: Notify,
    /// Where `paused` and `resumed` events go.
    notifier: super::notices::Notifier,
    /// The people's pauses in force when last looked at (all: `None`), to announce changes.
    announced: Mutex<Vec<Option<std::path::PathBuf>>>,
}

/// Whether the caller passed as a normal upload or as the probe of a paused gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Open,
    Probe,
}

impl Gate {
    /// A gate that tells `notifier` when uploads pause and resume.
    pub fn with_notifier(notifier: super::notices::Notifier) -> Gate {
        Gate { notifier, ..Gate::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Paused>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until an upload from `inbox` may go.
    pub async fn pass(&self, inbox: &Path) -> Pass {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((_, hold)) = self.holding(inbox) {
                match hold.until_ms {
                    // Held until a time: wait for it (at least a second, so a clock that does
                    // not move cannot spin this loop), or for a change.
                    Some(until) => {
                        let left = (until - crate::vocab::now_ms()).max(1000) as u64;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(left)) => {}
                            _ = notified => {}
                        }
                    }
                    None => notified.await,
                }
                continue;
            }
            let wait = {
                let mut guard = self.lock();
                match guard.as_mut() {
                    None => return Pass::Open,
                    Some(p) if !p.probing && Instant::now() >= p.retry_at => {
                        p.probing = true;
                        return Pass::Probe;
                    }
                    Some(p) if p.probing => None,
                    Some(p) => Some(p.retry_at),
                }
            };
            match wait {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// An upload went through: reopen for everyone.
    pub fn report_ok(&self) {
        let was = self.lock().take();
        if let Some(p) = was {
            info!(reason = p.reason.as_str(), "the server accepts uploads again; resuming");
            self.notifier.emit(Event::Resumed { reason: p.reason.as_str().to_string() });
            self.changed.notify_waiters();
            self.shown.notify_one();
        }
    }

    /// The server refused for an account reason: pause, and probe again after `retry_every`.
    pub fn report_pause(&self, reason: PauseReason, message: String, retry_every: Duration) {
        let mut guard = self.lock();
        let first = guard.as_ref().is_none_or(|p| p.reason != reason);
        if first {
            let advice = reason.advice();
            error!(reason = reason.as_str(), detail = %message, retry_every = %humantime::format_duration(retry_every), "{advice}");
            self.notifier
                .emit(Event::Paused { reason: reason.as_str().to_string(), detail: format!("{message} ({advice})") });
            self.shown.notify_one();
        }
        *guard = Some(Paused { reason, message, retry_at: Instant::now() + retry_every, retry_every, probing: false });
        drop(guard);
        self.changed.notify_waiters();
    }

    /// The probe ended without telling anything about the account (e.g. a network error).
    pub fn release_probe(&self) {
        if let Some(p) = self.lock().as_mut()
            && p.probing
        {
            p.probing = false;
            p.retry_at = Instant::now() + p.retry_every.min(Duration::from_secs(30));
        }
        self.changed.notify_waiters();
    }

    /// Probe again right away (the config was reloaded).
    pub fn retry_now(&self) {
        if let Some(p) = self.lock().as_mut() {
            p.retry_at = Instant::now();
            p.probing = false;
        }
        self.changed.notify_waiters();
    }

    /// Takes the pauses people set as the journal has them at start (nothing is announced).
    pub fn load_holds(&self, holds: Holds) {
        *self.announced.lock().unwrap_or_else(|p| p.into_inner()) =
            in_force(&holds).into_iter().map(|(w, _)| w).collect();
        *self.holds() = holds;
    }

    /// Takes the pauses people set (as the journal holds them now); returns whether that
    /// changed anything. A pause that starts is announced as `paused`, one that ends (released,
    /// or its time up) as `resumed`.
    pub fn set_holds(&self, holds: Holds) -> bool {
        let now_in_force = in_force(&holds);
        {
            let mut announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            for (watch, hold) in now_in_force.iter().filter(|(w, _)| !announced.contains(w)) {
                let detail = hold_words(watch.as_deref(), *hold);
                self.notifier.emit(Event::Paused { reason: super::live_status::USER_PAUSE.to_string(), detail });
            }
            for watch in announced.iter().filter(|w| !now_in_force.iter().any(|(a, _)| a == *w)) {
                let reason = match watch {
                    Some(inbox) => format!("the pause of {}", inbox.display()),
                    None => "the pause of every inbox".to_string(),
                };
                self.notifier.emit(Event::Resumed { reason });
            }
            *announced = now_in_force.into_iter().map(|(w, _)| w).collect();
        }
        let mut current = self.holds();
        if *current == holds {
            return false;
        }
        info!(all = ?holds.all, inboxes = holds.watches.len(), "uploads paused or resumed by a person");
        *current = holds;
        drop(current);
        self.changed.notify_waiters();
        self.shown.notify_one();
        true
    }

    /// The pause a person set that holds `inbox` now, if any (`None` as its inbox: all).
    pub fn holding(&self, inbox: &Path) -> Option<(Option<std::path::PathBuf>, Hold)> {
        let holds = self.holds();
        holds.holding(inbox, crate::vocab::now_ms()).map(|(w, h)| (w.map(Path::to_path_buf), h))
    }

    /// The pause a person set for every inbox, while it holds.
    pub fn held_all(&self) -> Option<Hold> {
        self.holds().all.filter(|h| h.active(crate::vocab::now_ms()))
    }

    /// Waits until a pause starts, changes its reason, or ends.
    pub async fn pause_changed(&self) {
        self.shown.notified().await;
    }

    /// Why uploads from `inbox` do not go now, in words, if they do not.
    pub fn why_held(&self, inbox: &Path) -> Option<String> {
        if let Some((watch, hold)) = self.holding(inbox) {
            return Some(hold_words(watch.as_deref(), hold));
        }
        self.paused().map(|(reason, message)| format!("{}: {message} ({})", reason.as_str(), reason.advice()))
    }

    /// The current pause, if any: (reason, server message).
    pub fn paused(&self) -> Option<(PauseReason, String)> {
        self.lock().as_ref().map(|p| (p.reason, p.message.clone()))
    }
}

/// The people's pauses that hold now: (`None` for every inbox, or the inbox; the pause).
fn in_force(holds: &Holds) -> Vec<(Option<std::path::PathBuf>, Hold)> {
    let now = crate::vocab::now_ms();
    let all = holds.all.filter(|a| a.active(now)).map(|a| (None, a));
    let watches = holds.watches.iter().filter(|(_, w)| w.active(now)).map(|(p, w)| (Some(p.clone()), *w));
    all.into_iter().chain(watches).collect()
}

/// A person's pause in words: what it holds, until when, and how to end it.
pub fn hold_words(watch: Option<&Path>, hold: Hold) -> String {
    let what = match watch {
        Some(inbox) => {
            format!("uploads from {} paused by a person", crate::logging::printable(&inbox.display().to_string()))
        }
        None => "paused by a person".to_string(),
    };
    let resume = match watch {
        Some(inbox) => format!("`retouchd resume --watch {}`", inbox.display()),
        None => "`retouchd resume`, or Resume on the dashboard".to_string(),
    };
    match hold.until_ms {
        Some(until) => format!("{what} until {} ({resume} ends it sooner)", until_words(until)),
        None => format!("{what} ({resume})"),
    }
}

/// A pause's end as people read it: UTC, to the minute.
pub fn until_words(until_ms: i64) -> String {
    let text = crate::notify::rfc3339(until_ms); // 2026-12-06T20:15:00Z
    format!("{} {} UTC", &text[..10], &text[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_gate_lets_one_probe_through_per_interval_and_reopens_on_success() {
        let gate = std::sync::Arc::new(Gate::default());
        assert_eq!(gate.pass(Path::new("/in")).await, Pass::Open);
        gate.report_pause(PauseReason::Token, "Token issue".into(), Duration::from_secs(60));
        assert_eq!(gate.paused().unwrap().0, PauseReason::Token);

        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(Path::new("/in")).await }
        });
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!waiter.is_finished(), "nothing passes before the retry interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(waiter.await.unwrap(), Pass::Probe);

        let second = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(Path::new("/in")).await }
        });
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!second.is_finished(), "only one probe at a time");
        gate.report_ok();
        assert_eq!(second.await.unwrap(), Pass::Open);
        assert_eq!(gate.paused(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_gate_lets_nothing_through_until_released() {
        let gate = std::sync::Arc::new(Gate::default());
        let all = Holds { all: Some(Hold { until_ms: None }), watches: vec![] };
        assert!(gate.set_holds(all.clone()));
        assert!(!gate.set_holds(all), "holding twice changes nothing");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(Path::new("/in")).await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "nothing passes while held");
        assert!(gate.why_held(Path::new("/in")).unwrap().contains("retouchd resume"));
        assert!(gate.set_holds(Holds::default()));
        assert_eq!(waiter.await.unwrap(), Pass::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_of_one_inbox_holds_only_it() {
        let gate = std::sync::Arc::new(Gate::default());
        gate.set_holds(Holds { all: None, watches: vec![("/a".into(), Hold { until_ms: None })] });
        let held = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(Path::new("/a")).await }
        });
        assert_eq!(gate.pass(Path::new("/b")).await, Pass::Open, "another inbox goes on");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!held.is_finished());
        let why = gate.why_held(Path::new("/a")).unwrap();
        assert!(why.contains("uploads from /a") && why.contains("--watch /a"), "{why}");
        // A pause whose end has passed holds nothing.
        gate.set_holds(Holds { all: None, watches: vec![("/a".into(), Hold { until_ms: Some(1_000) })] });
        assert_eq!(held.await.unwrap(), Pass::Open);
        assert_eq!(until_words(1_765_052_100_000), "2025-12-06 20:15 UTC");
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_and_their_ends_are_announced_once_each() {
        use super::super::notices::Notifier;
        use crate::notify::Transport;
        let dir = tempfile::tempdir().unwrap();
        let journal = std::sync::Arc::new(crate::journal::Journal::open(dir.path()).unwrap());
        let heard: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let transport: Transport = {
            let heard = std::sync::Arc::clone(&heard);
            std::sync::Arc::new(move |_, notice: crate::notify::Notice, _| {
                let heard = std::sync::Arc::clone(&heard);
                Box::pin(async move {
                    heard.lock().unwrap().push(format!("{}: {}", notice.event.kind().as_str(), notice.message));
                    Ok(())
                })
            })
        };
        let channel = crate::notify::Channel {
            name: "hook".into(),
            events: [crate::notify::EventKind::Paused, crate::notify::EventKind::Resumed].into(),
            target: crate::notify::Target::Ntfy { url: "http://127.0.0.1:9/t".into(), token: None },
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let gate = Gate::with_notifier(Notifier::start(vec![channel], journal, transport, cancel.clone()));
        gate.load_holds(Holds { all: Some(Hold { until_ms: None }), watches: vec![] });
        gate.set_holds(Holds { all: Some(Hold { until_ms: None }), watches: vec![] });
        gate.set_holds(Holds::default());
        gate.report_pause(PauseReason::Token, "Token issue".into(), Duration::from_secs(60));
        gate.report_pause(PauseReason::Token, "Token issue".into(), Duration::from_secs(60));
        gate.report_ok();
        gate.set_holds(Holds {
            all: None,
            watches: vec![("/a".into(), Hold { until_ms: Some(crate::vocab::now_ms() - 1) })],
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let heard = heard.lock().unwrap().clone();
        let kinds: Vec<&str> = heard.iter().map(|h| h.split(':').next().unwrap()).collect();
        assert_eq!(
            kinds,
            ["resumed", "paused", "resumed"],
            "a pause kept from before the start is not news; {heard:?}"
        );
        assert!(heard[1].starts_with("paused: token: Token issue"), "{heard:?}");
        cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn retry_now_skips_the_wait() {
        let gate = Gate::default();
        gate.report_pause(PauseReason::Quota, "limit".into(), Duration::from_secs(900));
        gate.retry_now();
        assert_eq!(gate.pass(Path::new("/in")).await, Pass::Probe);
    }
}
