//! Counters for status lines, and the optional Prometheus endpoint (`[metrics] listen`, off by
//! default, loopback unless told otherwise): jobs by state, submissions, retries by class, bytes
//! up and down, job durations, pause state and remaining quota.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Ctx;

/// Upper bounds (seconds) of the job duration histogram's buckets.
const DURATION_BUCKETS: [f64; 10] = [5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0];

#[derive(Debug)]
pub struct Metrics {
    uploading: AtomicI64,
    submissions: AtomicU64,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Retouches left today as the server last said; `i64::MIN` until it says.
    quota_left: AtomicI64,
    low_quota_warned: AtomicBool,
    /// Count of finished jobs per bucket of `DURATION_BUCKETS` (plus +Inf), their sum and count.
    durations: Mutex<([u64; DURATION_BUCKETS.len() + 1], f64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            uploading: AtomicI64::new(0),
            submissions: AtomicU64::new(0),
            retries: Mutex::new(BTreeMap::new()),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            quota_left: AtomicI64::new(i64::MIN),
            low_quota_warned: AtomicBool::new(false),
            durations: Mutex::new(([0; DURATION_BUCKETS.len() + 1], 0.0, 0)),
        }
    }
}

impl Metrics {
    pub(super) fn quota_left(&self) -> Option<i64> {
        Some(self.quota_left.load(Ordering::Relaxed)).filter(|&q| q != i64::MIN)
    }

    pub(super) fn uploading(&self) -> i64 {
        self.uploading.load(Ordering::Relaxed).max(0)
    }

    pub(super) fn upload_started(&self, delta: i64) {
        self.uploading.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a retry of a step of class `class` (uploading, polling, downloading, local).
    pub(super) fn retry(&self, class: &'static str) {
        *self.retries.lock().unwrap_or_else(|p| p.into_inner()).entry(class).or_default() += 1;
    }

    pub(super) fn submitted(&self, bytes: u64, quota: Option<i64>, warn_below: i64) {
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
        if let Some(q) = quota {
            self.quota_left.store(q, Ordering::Relaxed);
            let low = q < warn_below;
            if low && !self.low_quota_warned.swap(true, Ordering::Relaxed) {
                warn!(left = q, "only {q} retouches left today (server.low_quota_warning = {warn_below})");
            } else if !low {
                self.low_quota_warned.store(false, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn downloaded(&self, bytes: u64) {
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records how long a finished job took from detection to its end.
    pub(super) fn finished(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut d = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = DURATION_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(DURATION_BUCKETS.len());
        d.0[bucket] += 1;
        d.1 += secs;
        d.2 += 1;
    }
}

/// The metrics in Prometheus' text format.
pub(super) fn render(ctx: &Ctx) -> String {
    let m = &ctx.metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let counts = ctx.journal.counts().unwrap_or_default();
    let states: Vec<(String, String)> =
        counts.iter().map(|(state, n)| (format!("{{state=\"{state}\"}}"), n.to_string())).collect();
    metric("retouchd_jobs", "gauge", "Jobs in the journal by state.", &states);
    metric("retouchd_uploading", "gauge", "Uploads in progress.", &[(String::new(), m.uploading().to_string())]);
    let submissions = m.submissions.load(Ordering::Relaxed).to_string();
    metric("retouchd_submissions_total", "counter", "Uploads the server accepted.", &[(String::new(), submissions)]);
    let retries: Vec<(String, String)> = m
        .retries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(class, n)| (format!("{{class=\"{class}\"}}"), n.to_string()))
        .collect();
    metric("retouchd_retries_total", "counter", "Retried steps by class.", &retries);
    let up = m.bytes_up.load(Ordering::Relaxed).to_string();
    metric("retouchd_upload_bytes_total", "counter", "Bytes uploaded.", &[(String::new(), up)]);
    let down = m.bytes_down.load(Ordering::Relaxed).to_string();
    metric("retouchd_download_bytes_total", "counter", "Result bytes downloaded.", &[(String::new(), down)]);
    let paused = ctx.gate.paused().map(|(r, _)| r);
    let pause_samples: Vec<(String, String)> = [super::PauseReason::Token, super::PauseReason::Quota]
        .iter()
        .map(|r| (format!("{{reason=\"{}\"}}", r.as_str()), u8::from(paused == Some(*r)).to_string()))
        .collect();
    metric("retouchd_paused", "gauge", "1 while uploads are paused for this reason.", &pause_samples);
    if let Some(q) = m.quota_left() {
        metric(
            "retouchd_quota_left",
            "gauge",
            "Retouches left today, as the server last said.",
            &[(String::new(), q.to_string())],
        );
    }
    let (buckets, sum, count) = *m.durations.lock().unwrap_or_else(|p| p.into_inner());
    let mut samples = Vec::new();
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = DURATION_BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        samples.push((format!("_bucket{{le=\"{le}\"}}"), cumulative.to_string()));
    }
    samples.push(("_sum".into(), sum.to_string()));
    samples.push(("_count".into(), count.to_string()));
    metric("retouchd_job_duration_seconds", "histogram", "Time from a job's creation to its end.", &samples);
    out
}

/// Serves `GET /metrics` on `listen` until `stop`.
pub(super) async fn serve(ctx: Arc<Ctx>, listen: SocketAddr, stop: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(%listen, error = %e, "cannot serve metrics; check [metrics] listen");
            return;
        }
    };
    info!(%listen, "serving Prometheus metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let ctx = ctx.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], render(&ctx)) }
        }),
    );
    let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
}
