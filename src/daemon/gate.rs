//! The submission gate: account and setup problems (bad token, quota reached, no start route)
//! pause every upload instead of failing files. While paused, one "probe" upload is let through
//! every retry interval; the first success reopens the gate for all. A config reload reopens it
//! at once. A person may also hold it (Pause on the dashboard): nothing passes, not even a
//! probe, until they release it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{error, info};

pub use crate::api::PauseReason;

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
    /// Held by a person: no upload starts.
    held: AtomicBool,
    changed: Notify,
    /// Wakes whoever shows the pause (the live status) when it starts, changes or ends.
    shown: Notify,
}

/// Whether the caller passed as a normal upload or as the probe of a paused gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Open,
    Probe,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Paused>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until an upload may go.
    pub async fn pass(&self) -> Pass {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.held.load(Ordering::SeqCst) {
                notified.await;
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

    /// Holds (true) or releases (false) every upload not yet started; returns whether that
    /// changed anything.
    pub fn hold(&self, held: bool) -> bool {
        let changed = self.held.swap(held, Ordering::SeqCst) != held;
        if changed {
            info!(held, "uploads {} by a person", if held { "paused" } else { "resumed" });
            self.changed.notify_waiters();
            self.shown.notify_one();
        }
        changed
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until a pause starts, changes its reason, or ends.
    pub async fn pause_changed(&self) {
        self.shown.notified().await;
    }

    /// Why uploads do not go now, in words, if they do not.
    pub fn why_held(&self) -> Option<String> {
        if self.is_held() {
            return Some("paused by a person (Resume on the dashboard)".into());
        }
        self.paused().map(|(reason, message)| format!("{}: {message} ({})", reason.as_str(), reason.advice()))
    }

    /// The current pause, if any: (reason, server message).
    pub fn paused(&self) -> Option<(PauseReason, String)> {
        self.lock().as_ref().map(|p| (p.reason, p.message.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_gate_lets_one_probe_through_per_interval_and_reopens_on_success() {
        let gate = std::sync::Arc::new(Gate::default());
        assert_eq!(gate.pass().await, Pass::Open);
        gate.report_pause(PauseReason::Token, "Token issue".into(), Duration::from_secs(60));
        assert_eq!(gate.paused().unwrap().0, PauseReason::Token);

        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!waiter.is_finished(), "nothing passes before the retry interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(waiter.await.unwrap(), Pass::Probe);

        let second = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
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
        assert!(gate.hold(true));
        assert!(!gate.hold(true), "holding twice changes nothing");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass().await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "nothing passes while held");
        assert!(gate.hold(false));
        assert_eq!(waiter.await.unwrap(), Pass::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_now_skips_the_wait() {
        let gate = Gate::default();
        gate.report_pause(PauseReason::Quota, "limit".into(), Duration::from_secs(900));
        gate.retry_now();
        assert_eq!(gate.pass().await, Pass::Probe);
    }
}
