//! Getting notices out: [`Notifier::emit`] hands an event to one writer task, which keeps it in
//! the journal for each channel that wants it (in the order emitted); one sender task per
//! channel then sends that channel's oldest notice, and the next only once it was taken (2xx,
//! or the SMTP server's yes). A failed try is retried with a growing pause (5 s doubling to
//! 5 min), for as long as it takes: the queue is in the journal, so neither a receiver that is
//! down for hours nor a restart loses a notice. While a sender holds a notice (a lease of a
//! minute) no other node of a shared journal sends it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::journal::{Journal, NoticeClaim};
use crate::notify::{Channel, Event, Notice, Transport};

/// How long a sender holds the notice it sends before another may.
const LEASE_MS: i64 = 60_000;
/// The first retry's pause, doubled for each further one up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often an idle sender looks for notices queued by another process (`retouchd process`,
/// another node).
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// The pause before try number `attempts + 1` (`attempts` tries failed).
pub fn backoff(attempts: i64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 16) as u32;
    crate::api::policy::doubling(FIRST_BACKOFF, doublings, MAX_BACKOFF)
}

/// Wall-clock milliseconds that move with tokio's clock (so a paused test clock moves them).
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall_ms: i64,
    at: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock { wall_ms: crate::vocab::now_ms(), at: Instant::now() }
    }

    fn now_ms(&self) -> i64 {
        self.wall_ms + self.at.elapsed().as_millis() as i64
    }
}

enum ToWriter {
    Event(Event),
    /// Answered once every event before it is in the journal.
    Barrier(oneshot::Sender<()>),
}

/// Where the daemon's events go: the notifications' writer (or nowhere, without channels).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    tx: Option<mpsc::UnboundedSender<ToWriter>>,
    channels: Vec<String>,
    journal: Option<Arc<Journal>>,
}

impl std::fmt::Debug for ToWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToWriter")
    }
}

impl Notifier {
    /// Starts the writer and one sender per channel (stopped with `cancel`); nothing without
    /// channels.
    pub fn start(
        channels: Vec<Channel>,
        journal: Arc<Journal>,
        transport: Transport,
        cancel: CancellationToken,
    ) -> Notifier {
        if channels.is_empty() {
            return Notifier::default();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        let clock = Clock::new();
        tokio::spawn(write_events(rx, channels.clone(), Arc::clone(&journal), Arc::clone(&wake)));
        for channel in &channels {
            tokio::spawn(send_channel(
                channel.clone(),
                Arc::clone(&journal),
                Arc::clone(&transport),
                Arc::clone(&wake),
                clock,
                cancel.clone(),
            ));
        }
        Notifier { tx: Some(tx), channels: channels.into_iter().map(|c| c.name).collect(), journal: Some(journal) }
    }

    /// Queues `event` for every channel that wants it.
    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(ToWriter::Event(event));
        }
    }

    /// Waits (at most `within`) until what was emitted is in the journal and every channel's
    /// queue is empty: `retouchd process` gives its batch's notice a chance before it exits
    /// (what is left is sent by the daemon, or the next run).
    pub async fn flush(&self, within: Duration) {
        let (Some(tx), Some(journal)) = (&self.tx, &self.journal) else { return };
        let deadline = Instant::now() + within;
        let (done_tx, done_rx) = oneshot::channel();
        if tx.send(ToWriter::Barrier(done_tx)).is_err() {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, done_rx).await;
        while Instant::now() < deadline {
            let journal = Arc::clone(journal);
            let backlog = tokio::task::spawn_blocking(move || journal.notice_backlog()).await;
            let waiting = match backlog {
                Ok(Ok(backlog)) => backlog.iter().any(|b| self.channels.contains(&b.channel)),
                _ => false,
            };
            if !waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Keeps each event in the journal for the channels that want it, in the order emitted.
async fn write_events(
    mut rx: mpsc::UnboundedReceiver<ToWriter>,
    channels: Vec<Channel>,
    journal: Arc<Journal>,
    wake: Arc<Notify>,
) {
    while let Some(message) = rx.recv().await {
        let event = match message {
            ToWriter::Event(event) => event,
            ToWriter::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let kind = event.kind();
        let notice = Notice::new(event);
        let body = match serde_json::to_string(&notice) {
            Ok(body) => body,
            Err(e) => {
                warn!(event = kind.as_str(), error = %e, "a notification could not be written; it is not sent");
                continue;
            }
        };
        let rows: Vec<(String, String)> =
            channels.iter().filter(|c| c.wants(kind)).map(|c| (c.name.clone(), body.clone())).collect();
        if rows.is_empty() {
            continue;
        }
        let journal = Arc::clone(&journal);
        // A journal that cannot be written now is tried again a few times; the event is only
        // lost if it stays so (and that is said).
        let mut tries = 0;
        loop {
            let (journal, rows) = (Arc::clone(&journal), rows.clone());
            match tokio::task::spawn_blocking(move || journal.queue_notices(&rows)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) if tries < 5 => {
                    tries += 1;
                    warn!(event = kind.as_str(), error = %e, "a notification could not be queued; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Ok(Err(e)) => {
                    warn!(event = kind.as_str(), id = %notice.id, error = %e, "a notification could not be queued and is lost");
                    break;
                }
                Err(_) => break,
            }
        }
        wake.notify_waiters();
    }
}

/// Sends `channel`'s notices, oldest first, each until it is taken.
async fn send_channel(
    channel: Channel,
    journal: Arc<Journal>,
    transport: Transport,
    wake: Arc<Notify>,
    clock: Clock,
    cancel: CancellationToken,
) {
    let name = channel.name.clone();
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = clock.now_ms();
        let claimed = {
            let (journal, name) = (Arc::clone(&journal), name.clone());
            tokio::task::spawn_blocking(move || journal.claim_notice(&name, now, LEASE_MS)).await
        };
        let wait = match claimed {
            Ok(Ok(NoticeClaim::Due(queued))) => {
                deliver(&channel, &journal, &transport, queued, clock).await;
                continue;
            }
            Ok(Ok(NoticeClaim::Later(at))) => {
                Duration::from_millis((at - now).clamp(0, IDLE_LOOK.as_millis() as i64) as u64)
            }
            Ok(Ok(NoticeClaim::Empty)) => IDLE_LOOK,
            Ok(Err(e)) => {
                warn!(channel = %name, error = %e, "the notifications' queue cannot be read; trying again");
                Duration::from_secs(10)
            }
            Err(_) => return,
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = &mut woken => {}
        }
    }
}

/// One try of one notice: taken (it leaves the queue) or failed (retried later).
async fn deliver(
    channel: &Channel,
    journal: &Arc<Journal>,
    transport: &Transport,
    queued: crate::journal::QueuedNotice,
    clock: Clock,
) {
    let id = queued.id;
    let notice: Notice = match serde_json::from_str(&queued.body) {
        Ok(notice) => notice,
        Err(e) => {
            // Written by another version: dropped, and said so, rather than blocking the queue.
            warn!(channel = %channel.name, error = %e, "a queued notification cannot be read; it is dropped");
            let journal = Arc::clone(journal);
            let _ = tokio::task::spawn_blocking(move || journal.notice_sent(id)).await;
            return;
        }
    };
    let sent = transport(channel.clone(), notice.clone(), queued.body).await;
    let journal = Arc::clone(journal);
    let recorded = match &sent {
        Ok(()) => {
            info!(channel = %channel.name, event = notice.event.kind().as_str(), id = %notice.id,
                tries = queued.attempts + 1, "notification sent");
            tokio::task::spawn_blocking(move || journal.notice_sent(id)).await
        }
        Err(why) => {
            let attempts = queued.attempts + 1;
            let pause = backoff(attempts);
            warn!(channel = %channel.name, event = notice.event.kind().as_str(), id = %notice.id, tries = attempts,
                retry_in = %humantime::format_duration(pause), error = %why,
                "a notification was not taken; it waits in the journal and is tried again");
            let (retry_at, why) = (clock.now_ms() + pause.as_millis() as i64, why.clone());
            tokio::task::spawn_blocking(move || journal.notice_failed(id, retry_at, &why)).await
        }
    };
    if let Ok(Err(e)) = recorded {
        warn!(channel = %channel.name, error = %e, "the notification's outcome could not be recorded; it may be sent again (same id)");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::notify::{EventKind, Target};

    fn channel(name: &str, events: &[EventKind]) -> Channel {
        Channel {
            name: name.into(),
            events: events.iter().copied().collect::<BTreeSet<_>>(),
            target: Target::Webhook { url: "http://127.0.0.1:9/".into(), secret: crate::api::Token::new("s") },
        }
    }

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        let pauses: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    /// A receiver that is down for ten minutes, then back: every event arrives once, in the
    /// order it happened, and a channel that did not ask for an event never gets it.
    #[tokio::test(start_paused = true)]
    async fn a_receiver_down_for_ten_minutes_gets_every_event_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let tries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let down_until = Instant::now() + Duration::from_secs(600);
        let transport: Transport = {
            let (received, tries) = (Arc::clone(&received), Arc::clone(&tries));
            Arc::new(move |channel: Channel, notice: Notice, _body: String| {
                let (received, tries) = (Arc::clone(&received), Arc::clone(&tries));
                Box::pin(async move {
                    tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if Instant::now() < down_until {
                        return Err("cannot connect: connection refused".to_string());
                    }
                    received.lock().unwrap().push((channel.name, notice.title));
                    Ok(())
                })
            })
        };
        let cancel = CancellationToken::new();
        let channels =
            vec![channel("hook", &[EventKind::LowCredits, EventKind::Paused]), channel("other", &[EventKind::Resumed])];
        let notifier = Notifier::start(channels, Arc::clone(&journal), transport, cancel.clone());
        for left in [9, 8, 7] {
            notifier.emit(Event::LowCredits { left, threshold: 10 });
            tokio::time::sleep(Duration::from_secs(100)).await;
        }
        notifier.emit(Event::Paused { reason: "token".into(), detail: "Token issue".into() });
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert!(received.lock().unwrap().is_empty(), "down for ten minutes");
        tokio::time::sleep(Duration::from_secs(600)).await;
        let got = received.lock().unwrap().clone();
        let titles: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            titles,
            ["Only 9 credits left", "Only 8 credits left", "Only 7 credits left", "retouchd paused uploads"]
        );
        assert!(got.iter().all(|(c, _)| c == "hook"), "`other` asked for none of these");
        assert!(journal.notice_backlog().unwrap().is_empty(), "nothing left in the queue");
        let tries = tries.load(std::sync::atomic::Ordering::Relaxed);
        assert!((5..40).contains(&tries), "retried with a backoff, not hammered: {tries} tries");
        cancel.cancel();
    }

    /// Notices queued before a restart (the receiver was down) are sent by the next start.
    #[tokio::test(start_paused = true)]
    async fn notices_left_at_a_stop_are_sent_after_the_restart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let refusing: Transport = Arc::new(|_, _, _| Box::pin(async { Err("answered 503".to_string()) }));
        let cancel = CancellationToken::new();
        let first = Notifier::start(
            vec![channel("hook", &[EventKind::Failed])],
            Arc::clone(&journal),
            refusing,
            cancel.clone(),
        );
        first.emit(Event::Failed { file: "a.jpg".into(), job: 1, outcome: "failed".into(), reason: "x".into() });
        first.flush(Duration::from_secs(3)).await;
        cancel.cancel();
        assert_eq!(journal.notice_backlog().unwrap()[0].last_error.as_deref(), Some("answered 503"));
        drop(journal);

        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let taking: Transport = {
            let received = Arc::clone(&received);
            Arc::new(move |_, notice: Notice, _| {
                let received = Arc::clone(&received);
                Box::pin(async move {
                    received.lock().unwrap().push(notice.title);
                    Ok(())
                })
            })
        };
        let cancel = CancellationToken::new();
        let _second =
            Notifier::start(vec![channel("hook", &[EventKind::Failed])], Arc::clone(&journal), taking, cancel.clone());
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(*received.lock().unwrap(), ["a.jpg failed"]);
        cancel.cancel();
    }
}
