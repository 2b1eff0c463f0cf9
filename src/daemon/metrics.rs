//! Counters for status lines and the Prometheus endpoint (see `metrics_endpoint`): jobs by
//! state, submissions, retries by class, bytes up and down, job durations, pause state and
//! remaining quota, in a `prometheus-client` registry.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::{error, warn};

use crate::api::PauseReason;
use crate::job::StateName;

/// Upper bounds (seconds) of the job duration histogram's buckets.
const DURATION_BUCKETS: [f64; 10] = [5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0];

/// One label, e.g. `state="done"`.
type Label = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Filled from the journal at each scrape.
    jobs: Family<Label, Gauge>,
    uploading: Gauge,
    submissions: Counter,
    retries: Family<Label, Counter>,
    bytes_up: Counter,
    bytes_down: Counter,
    /// Filled from the gate at each scrape.
    paused: Family<Label, Gauge>,
    /// Present once the server has said (no labels).
    quota_gauge: Family<Vec<(String, String)>, Gauge>,
    /// Retouches left today as the server last said; `i64::MIN` until it says.
    quota_left: AtomicI64,
    low_quota_warned: AtomicBool,
    durations: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("retouchd");
        let jobs = Family::<Label, Gauge>::default();
        registry.register("jobs", "Jobs in the journal by state", jobs.clone());
        let uploading = Gauge::default();
        registry.register("uploading", "Uploads in progress", uploading.clone());
        let submissions = Counter::default();
        registry.register("submissions", "Uploads the server accepted", submissions.clone());
        let retries = Family::<Label, Counter>::default();
        registry.register("retries", "Retried steps by class", retries.clone());
        let bytes_up = Counter::default();
        registry.register("upload_bytes", "Bytes uploaded", bytes_up.clone());
        let bytes_down = Counter::default();
        registry.register("download_bytes", "Result bytes downloaded", bytes_down.clone());
        let paused = Family::<Label, Gauge>::default();
        registry.register("paused", "1 while uploads are paused for this reason", paused.clone());
        let quota_gauge = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register("quota_left", "Credits left, as the server last said", quota_gauge.clone());
        let durations = Histogram::new(DURATION_BUCKETS);
        registry.register("job_duration_seconds", "Time from a job's creation to its end", durations.clone());
        Metrics {
            registry,
            jobs,
            uploading,
            submissions,
            retries,
            bytes_up,
            bytes_down,
            paused,
            quota_gauge,
            quota_left: AtomicI64::new(i64::MIN),
            low_quota_warned: AtomicBool::new(false),
            durations,
        }
    }
}

impl Metrics {
    pub(super) fn quota_left(&self) -> Option<i64> {
        Some(self.quota_left.load(Ordering::Relaxed)).filter(|&q| q != i64::MIN)
    }

    pub(super) fn uploading(&self) -> i64 {
        self.uploading.get().max(0)
    }

    pub(super) fn upload_started(&self, delta: i64) {
        self.uploading.inc_by(delta);
    }

    /// Counts a retry of a step of class `class` (uploading, polling, downloading, local).
    pub(super) fn retry(&self, class: &'static str) {
        self.retries.get_or_create(&[("class", class)]).inc();
    }

    /// Counts an upload; returns the credits left when they just fell below `warn_below` (once,
    /// until they are topped up again).
    pub(super) fn submitted(&self, bytes: u64, quota: Option<i64>, warn_below: i64) -> Option<i64> {
        self.submissions.inc();
        self.bytes_up.inc_by(bytes);
        let q = quota?;
        self.quota_left.store(q, Ordering::Relaxed);
        self.quota_gauge.get_or_create(&Vec::new()).set(q);
        let low = q < warn_below;
        if low && !self.low_quota_warned.swap(true, Ordering::Relaxed) {
            warn!(left = q, "only {q} credits left (server.low_quota_warning = {warn_below})");
            return Some(q);
        } else if !low {
            self.low_quota_warned.store(false, Ordering::Relaxed);
        }
        None
    }

    pub(super) fn downloaded(&self, bytes: u64) {
        self.bytes_down.inc_by(bytes);
    }

    /// Records how long a finished job took from detection to its end.
    pub(super) fn finished(&self, took: Duration) {
        self.durations.observe(took.as_secs_f64());
    }

    /// The metrics in the OpenMetrics text format, with the journal's job counts (when read)
    /// and the pause reason given.
    pub(super) fn encode(
        &self,
        counts: Option<std::collections::BTreeMap<StateName, u64>>,
        paused: Option<PauseReason>,
    ) -> String {
        if let Some(counts) = counts {
            self.jobs.clear();
            for (state, n) in counts {
                self.jobs.get_or_create(&[("state", state.as_str())]).set(n as i64);
            }
        }
        for reason in PauseReason::ALL {
            self.paused.get_or_create(&[("reason", reason.as_str())]).set(i64::from(paused == Some(reason)));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}
