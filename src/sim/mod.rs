//! A faithful local stand-in for the retoucher server, for tests, the demo, and people who want
//! to rehearse a setup without a token or credits.
//!
//! It serves every route of the API document with the documented quirks (progress reaching 100
//! before `completed`, getFile answering 404 until the result is stored, results expiring, limits
//! answering 404 as in production), charges one credit per accepted start unless the
//! `Idempotency-Key` was seen before, and has knobs ([`SimConfig`]) for processing time and fault
//! injection. What it received is counted in [`SimStats`], readable in process through
//! [`Simulator::stats`] or over HTTP at `GET /sim/stats`; knobs change at `POST /sim/config`.
//!
//! Its clock is the async runtime's: run in-process under a paused test clock, a job's
//! processing time passes as fast as the test lets time advance.

mod results;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::formats::FileKind;

/// The simulator's knobs. Every field has a default; JSON given to `POST /sim/config` replaces
/// them all (fields left out take their defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The one token it accepts, as the `token` field or the `X-Retouch-Token` header.
    pub token: String,
    /// Accepted starts allowed before it answers 461; `None` for no limit.
    pub quota: Option<u64>,
    /// Credits the balance route reports before any start.
    pub credits: i64,
    /// Time from start to `completed` (or `failed`).
    pub processing_ms: u64,
    /// A random extra 0..this added to each job's processing time.
    pub processing_jitter_ms: u64,
    /// Extra processing time per task in the payload (more plugins take longer).
    pub processing_ms_per_task: u64,
    /// Extra processing time per megabyte (10^6 bytes) of upload (bigger files take longer).
    pub processing_ms_per_mb: u64,
    /// `progress` reaches 100 this long before `completed`.
    pub completion_lag_ms: u64,
    /// getFile answers 404 this long after `completed` (the result is not stored yet).
    pub store_lag_ms: u64,
    /// Results (and statuses) are gone this long after completion.
    pub retention_ms: u64,
    /// Whether `/info/limits` answers; production answers 404.
    pub limits_enabled: bool,
    /// Limits reported when enabled, and enforced on upload size.
    pub max_file_size_mb: u64,
    pub max_megapixels: u64,
    /// Share of jobs that end `failed`, with `fail_reason`.
    pub fail_rate: f64,
    pub fail_reason: String,
    /// Share of requests per route answered with HTTP 500.
    pub start_error_rate: f64,
    pub status_error_rate: f64,
    pub get_file_error_rate: f64,
    /// Share of requests (any route) whose connection is dropped mid-answer.
    pub drop_rate: f64,
    /// Delay before every answer.
    pub delay_ms: u64,
    /// `Retry-After` seconds sent with injected 5xx answers.
    pub retry_after_secs: Option<u64>,
    /// When true every API route answers 503, as a server that went away.
    pub down: bool,
    /// Send 460/461/462 as HTTP 200 with the code in the body's `status` instead of as HTTP status.
    pub codes_in_body: bool,
    /// Misbehave on purpose: broken or malicious answers (see [`Hostile`]).
    pub hostile: Option<Hostile>,
    /// Answer a wrong token with HTTP 401 and a message (an expired token, as the fuller API
    /// document describes) instead of 460 "Token issue".
    pub token_401: bool,
    /// Find no face in any photo (result.json says so): face-aware plugins then buy little.
    pub no_faces: bool,
    /// Share of completion hook calls that never arrive (a start may carry a `hook` URL).
    pub hook_drop_rate: f64,
    /// Serve only the older multipart balance route (the newer `POST /api/v1/balance` answers
    /// 404), as a server that does not have it yet.
    pub old_balance_only: bool,
}

/// Ways a broken or malicious server can answer, for tests of the client's defences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// getFile: a zip with an entry `../escaped.png`.
    TraversalZip,
    /// getFile: a zip with an entry `/tmp/retouchd-escaped.png`.
    AbsoluteZip,
    /// getFile: a zip with a symlink entry pointing at `/etc/passwd`.
    SymlinkZip,
    /// getFile: a zip with the same entry name twice.
    DuplicateZip,
    /// getFile: a small zip expanding to 256 MiB of zeros.
    ZipBomb,
    /// getFile: the first half of a real result zip.
    TruncatedZip,
    /// status: an HTML error page under HTTP 200.
    HtmlStatus,
    /// status: 8 MiB of JSON.
    HugeJson,
    /// status: text that is not JSON.
    InvalidJson,
    /// getFile: a Content-Length larger than what is sent.
    LyingLength,
    /// getFile: a few bytes, then nothing, forever.
    Stall,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: "demo-token".into(),
            quota: None,
            credits: 1000,
            processing_ms: 3000,
            processing_jitter_ms: 0,
            processing_ms_per_task: 0,
            processing_ms_per_mb: 0,
            completion_lag_ms: 500,
            store_lag_ms: 300,
            retention_ms: 24 * 3600 * 1000,
            limits_enabled: false,
            max_file_size_mb: 100,
            max_megapixels: 250,
            fail_rate: 0.0,
            fail_reason: "retouching failed: no face found".into(),
            start_error_rate: 0.0,
            status_error_rate: 0.0,
            get_file_error_rate: 0.0,
            drop_rate: 0.0,
            delay_ms: 0,
            retry_after_secs: None,
            down: false,
            codes_in_body: false,
            hostile: None,
            token_401: false,
            old_balance_only: false,
            no_faces: false,
            hook_drop_rate: 0.0,
        }
    }
}

/// What the simulator received, for tests to check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    /// Every POST to start, charged or not.
    pub start_requests: u64,
    /// The file names of start requests whose upload was read, in that order (before any
    /// delay or fault, charged or not).
    #[serde(default)]
    pub uploads_read: Vec<String>,
    /// Balance requests by route: `api` (`POST /api/v1/balance`) and `older` (the multipart one).
    #[serde(default)]
    pub balance_requests: BTreeMap<String, u64>,
    /// Completion hook calls by how they ended: the HTTP status answered, `unreachable`, or
    /// `lost` (dropped on purpose, `hook_drop_rate`).
    #[serde(default)]
    pub hooks: BTreeMap<String, u64>,
    /// The completion hook URLs starts asked for, by job id.
    #[serde(default)]
    pub hook_urls: BTreeMap<String, String>,
    /// Starts that created a job and cost a credit.
    pub charged_starts: u64,
    /// Charged starts per kind of uploaded file (`PNG`, `JPEG`, `ZIP`).
    #[serde(default)]
    pub charged_by_kind: BTreeMap<String, u64>,
    /// Charged starts per SHA-256 of the uploaded file.
    pub charged_by_hash: BTreeMap<String, u64>,
    /// Start requests per Idempotency-Key (including repeats).
    pub requests_by_key: BTreeMap<String, u64>,
    /// Status requests per job id.
    pub polls_by_job: BTreeMap<String, u64>,
    /// getFile requests per job id.
    pub downloads_by_job: BTreeMap<String, u64>,
    /// Payloads of charged starts, in order.
    pub payloads: Vec<serde_json::Value>,
    /// Start requests refused (bad token, quota, bad payload, no file, too large).
    pub refused_starts: u64,
    /// Answers replaced by an injected fault.
    pub injected_faults: u64,
    /// When things happened to each charged job, by job id.
    pub timeline: BTreeMap<String, JobTimes>,
}

/// When things happened to one job, in Unix microseconds, for latency and freshness figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobTimes {
    /// The uploaded file's name.
    pub file_name: String,
    /// The start request arrived (its head; the body streams in after).
    pub upload_started_us: u64,
    /// The upload was read and the job created.
    pub created_us: u64,
    /// How long the job takes on the simulated server.
    pub processing_ms: u64,
    /// The job turned `completed`: created + processing.
    pub completed_us: u64,
    /// The first getFile request for the job, whatever its answer.
    pub first_get_file_us: Option<u64>,
    /// The first getFile request that was answered with the result.
    pub first_served_us: Option<u64>,
}

/// Now, in Unix microseconds.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// One job the simulator knows.
#[derive(Debug)]
struct Job {
    created: Instant,
    processing: Duration,
    fails: bool,
    input: PathBuf,
    input_kind: FileKind,
    file_name: String,
    payload: serde_json::Value,
}

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    stats: SimStats,
    jobs: HashMap<String, Job>,
    ids_by_key: HashMap<String, String>,
}

/// State shared by the route handlers.
#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    uploads: Arc<tempfile::TempDir>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in a handler cannot leave the maps half-updated in a way that matters for a
        // simulator; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Binds `listen` (use port 0 for any free port) and serves until stopped or dropped.
    pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let uploads = tempfile::Builder::new().prefix("retouchd-sim-").tempdir()?;
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                config,
                stats: SimStats::default(),
                jobs: HashMap::new(),
                ids_by_key: HashMap::new(),
            })),
            uploads: Arc::new(uploads),
        };
        let app = routes::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator stopped with an error");
            }
        });
        Ok(Simulator { addr, shared, stop: Some(stop), task: Some(task) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client uses, including `/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// The URL of the simulated balance route.
    pub fn balance_url(&self) -> String {
        format!("http://{}/api/retouch/v1/balance", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    pub fn config(&self) -> SimConfig {
        self.shared.config()
    }

    /// Changes the knobs; jobs already started keep their processing time.
    pub fn set_config(&self, config: SimConfig) {
        self.shared.lock().config = config;
    }

    /// Changes some knobs.
    pub fn update(&self, change: impl FnOnce(&mut SimConfig)) {
        change(&mut self.shared.lock().config);
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
