//! Live updates for open pages (`GET /api/events`, server-sent events). One task gathers the
//! daemon's job news and sends it in batches, at most [`BATCH`] apart, to every open page at
//! once: `jobs` (the jobs that changed, newest state each) and `overview` (the overview, when it
//! changed; looked at every [`OVERVIEW_EVERY`] or after job news). A page that falls behind
//! gets `resync` (reload what you show). With no page open the task only drops the news, so
//! idle pages cost a keep-alive comment every [`KEEP_ALIVE`] each and nothing more.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::daemon::{Handle, JobUpdate};
use crate::job::StateName;

/// Batches of news are sent at most this often.
pub const BATCH: Duration = Duration::from_millis(250);
/// The overview is looked at this often while pages are open (pauses and counts change
/// without job news too).
pub const OVERVIEW_EVERY: Duration = Duration::from_secs(2);
/// An idle connection hears a comment this often (so proxies keep it open).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event, serialized once for every page.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: &'static str,
    pub data: Arc<str>,
}

/// A job's news as pages receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobNews {
    pub id: i64,
    pub file: String,
    pub state: StateName,
    pub progress: Option<f64>,
    pub reason: Option<String>,
}

impl From<JobUpdate> for JobNews {
    fn from(u: JobUpdate) -> Self {
        JobNews { id: u.id, file: u.file.display().to_string(), state: u.state, progress: u.progress, reason: u.reason }
    }
}

/// Where pages subscribe.
pub struct Hub {
    tx: broadcast::Sender<Frame>,
    /// The daemon stops: every stream ends (so the server can close its connections).
    stopping: CancellationToken,
}

impl Hub {
    /// Starts the gathering task (stopped by `cancel`).
    pub fn start(handle: Handle, reader: super::views::Reader, cancel: CancellationToken) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(64);
        let hub = Arc::new(Hub { tx, stopping: cancel.clone() });
        tokio::spawn(gather(handle, reader, hub.clone(), cancel));
        hub
    }

    /// How many pages are connected.
    pub fn pages(&self) -> usize {
        self.tx.receiver_count()
    }

    fn send(&self, event: &'static str, data: &impl Serialize) {
        if let Ok(json) = serde_json::to_string(data) {
            let _ = self.tx.send(Frame { event, data: json.into() });
        }
    }

    /// A page's stream of events.
    pub fn stream(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let rx = self.tx.subscribe();
        let events = futures_util::stream::unfold((rx, self.stopping.clone()), |(mut rx, stopping)| async move {
            let received = tokio::select! {
                () = stopping.cancelled() => return None,
                received = rx.recv() => received,
            };
            let event = match received {
                Ok(frame) => Event::default().event(frame.event).data(&*frame.data),
                Err(broadcast::error::RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (rx, stopping)))
        });
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
    }
}

async fn gather(handle: Handle, reader: super::views::Reader, hub: Arc<Hub>, cancel: CancellationToken) {
    let mut updates = handle.subscribe();
    let mut changed: BTreeMap<i64, JobNews> = BTreeMap::new();
    let mut lagged = false;
    let mut tick = tokio::time::interval(BATCH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_overview: Option<super::views::Overview> = None;
    let mut overview_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            news = async { match updates.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match news {
                    Ok(update) => { changed.insert(update.id, update.into()); }
                    Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
                    Err(broadcast::error::RecvError::Closed) => updates = None,
                }
            }
            _ = tick.tick() => {
                if hub.pages() == 0 {
                    changed.clear();
                    lagged = false;
                    last_overview = None;
                    continue;
                }
                let had_news = !changed.is_empty() || lagged;
                if lagged {
                    hub.send("resync", &serde_json::json!({}));
                    lagged = false;
                }
                if !changed.is_empty() {
                    let news: Vec<JobNews> = std::mem::take(&mut changed).into_values().collect();
                    hub.send("jobs", &news);
                }
                if had_news || tokio::time::Instant::now() >= overview_due {
                    overview_due = tokio::time::Instant::now() + OVERVIEW_EVERY;
                    // The status's own timestamp alone is no news.
                    if let Ok(mut overview) = super::views::overview(&handle, &reader).await {
                        let stamp = std::mem::take(&mut overview.daemon.updated_at);
                        if last_overview.as_ref() != Some(&overview) {
                            last_overview = Some(overview.clone());
                            overview.daemon.updated_at = stamp;
                            hub.send("overview", &overview);
                        }
                    }
                }
            }
        }
    }
}
