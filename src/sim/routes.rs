//! The simulator's HTTP routes: the API document's routes, the balance route, and `/sim/*` for
//! tests (stats and knobs). Faults are injected here, per route, from the current knobs.

use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Hostile, Job, JobTimes, Shared, SimConfig, results, unix_us};
use crate::formats::{self, FileKind};

/// Uploads are accepted up to this size (the documented limit is 100 MB); larger ones are cut off.
const BODY_LIMIT: usize = 512 * 1024 * 1024;

pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/api/v1/retoucher/start", post(start))
        .route("/api/v1/retoucher/status/{id}", get(status))
        .route("/api/v1/retoucher/getFile/{id}", get(get_file))
        .route("/api/v1/info/limits", get(limits))
        .route("/api/retouch/v1/balance", post(balance))
        .route("/api/v1/balance", post(api_balance))
        .route("/sim/stats", get(stats))
        .route("/sim/config", get(get_config).post(set_config))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Route not found") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"status": code.as_u16(), "message": message}))).into_response()
}

/// An API error with one of the custom codes: as HTTP status, or in the body under HTTP 200.
fn coded_error(config: &SimConfig, code: u16, message: &str) -> Response {
    let http = if config.codes_in_body {
        StatusCode::OK
    } else {
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
    };
    (http, Json(json!({"status": code, "message": message}))).into_response()
}

/// An answer cut off halfway: the headers promise `bytes.len()`, the connection breaks first.
fn dropped(bytes: Vec<u8>) -> Response {
    let len = bytes.len();
    let half = bytes[..len / 2].to_vec();
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(bytes::Bytes::from(half)),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated drop")),
    ]);
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len.max(2)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn chance(rate: f64) -> bool {
    rate > 0.0 && fastrand::f64() < rate
}

/// Delay, outage, dropped connection or a 500, per the knobs; `None` means answer normally.
/// `drop_here` is false for start, which drops after creating the job instead.
async fn fault(shared: &Shared, config: &SimConfig, error_rate: f64, drop_here: bool) -> Option<Response> {
    if config.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.delay_ms)).await;
    }
    let response = if config.down {
        error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
    } else if drop_here && chance(config.drop_rate) {
        dropped(br#"{"status":200,"message":"simulated dropped connection"}"#.to_vec())
    } else if chance(error_rate) {
        error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error (simulated)")
    } else {
        return None;
    };
    shared.lock().stats.injected_faults += 1;
    let mut response = response;
    if let Some(secs) = config.retry_after_secs {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(response)
}

/// What a start request carried.
#[derive(Default)]
struct StartForm {
    token: Option<String>,
    payload: Option<String>,
    /// The URL to call when the job finishes.
    hook: Option<String>,
    file: Option<Upload>,
}

struct Upload {
    path: std::path::PathBuf,
    name: String,
    hash: String,
    size: u64,
    kind: FileKind,
}

async fn read_form(shared: &Shared, multipart: &mut Multipart) -> Result<StartForm, Response> {
    let bad = |e: axum::extract::multipart::MultipartError| error(e.status(), &e.body_text());
    let mut form = StartForm::default();
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "token" => form.token = Some(field.text().await.map_err(bad)?),
            "payload" => form.payload = Some(field.text().await.map_err(bad)?),
            "hook" => form.hook = Some(field.text().await.map_err(bad)?),
            "file" => {
                let name = field.file_name().unwrap_or("upload").to_string();
                let path = shared.uploads.path().join(format!("{:016x}", fastrand::u64(..)));
                let io = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
                let mut out = tokio::fs::File::create(&path).await.map_err(io)?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut head = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    if head.len() < 8 {
                        head.extend_from_slice(&chunk[..chunk.len().min(8)]);
                    }
                    out.write_all(&chunk).await.map_err(io)?;
                }
                out.flush().await.map_err(io)?;
                let hash = hex::encode(&hasher.finalize()[..]);
                if size > 0 {
                    form.file = Some(Upload { path, name, hash, size, kind: formats::sniff(&head) });
                } else {
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
            _ => {} // `hook` and anything newer: accepted, ignored
        }
    }
    Ok(form)
}

/// How long a job takes: the base time, more per task and per megabyte, plus jitter.
fn processing_time(config: &SimConfig, payload: &Value, size: u64) -> Duration {
    let tasks = payload.get("tasks").and_then(Value::as_array).map_or(0, Vec::len) as u64;
    let jitter = if config.processing_jitter_ms > 0 { fastrand::u64(..=config.processing_jitter_ms) } else { 0 };
    let per_mb = config.processing_ms_per_mb as f64 * size as f64 / 1e6;
    Duration::from_millis(config.processing_ms + config.processing_ms_per_task * tasks + jitter)
        + Duration::from_secs_f64(per_mb / 1000.0)
}

/// A payload the simulator accepts: JSON with `mode` and a non-empty `tasks` list.
fn valid_payload(text: Option<&str>) -> Option<Value> {
    let value: Value = serde_json::from_str(text?).ok()?;
    let mode_ok = value.get("mode").and_then(Value::as_str).is_some_and(|m| !m.is_empty());
    let tasks_ok = value.get("tasks").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    (mode_ok && tasks_ok).then_some(value)
}

async fn start(State(shared): State<Shared>, headers: HeaderMap, mut multipart: Multipart) -> Response {
    let started_us = unix_us();
    let config = shared.config();
    let key = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()).map(str::to_string);
    {
        let mut inner = shared.lock();
        inner.stats.start_requests += 1;
        if let Some(key) = &key {
            *inner.stats.requests_by_key.entry(key.clone()).or_default() += 1;
        }
    }
    let form = match read_form(&shared, &mut multipart).await {
        Ok(form) => form,
        Err(response) => {
            shared.lock().stats.refused_starts += 1;
            return response;
        }
    };
    if let Some(file) = &form.file {
        shared.lock().stats.uploads_read.push(file.name.clone());
    }
    // Faults come after the body is read, so the client sees the answer rather than a broken pipe.
    if let Some(response) = fault(&shared, &config, config.start_error_rate, false).await {
        if let Some(file) = &form.file {
            let _ = tokio::fs::remove_file(&file.path).await;
        }
        return response;
    }
    let header_token = headers.get("X-Retouch-Token").and_then(|v| v.to_str().ok());
    let response = decide_start(&shared, &config, key, header_token, form, started_us);
    if response.status() != StatusCode::OK {
        shared.lock().stats.refused_starts += 1;
    }
    response
}

/// Checks a start in the documented order and, when it passes, creates and charges the job.
fn decide_start(
    shared: &Shared,
    config: &SimConfig,
    key: Option<String>,
    header_token: Option<&str>,
    form: StartForm,
    started_us: u64,
) -> Response {
    let mut inner = shared.lock();
    // One figure: the quota when one is set, else the credits the balance route reports.
    let remaining = |charged: u64| match config.quota {
        Some(q) => q.saturating_sub(charged) as i64,
        None => config.credits - charged as i64,
    };
    if let Some(id) = key.as_ref().and_then(|k| inner.ids_by_key.get(k)).cloned() {
        if let Some(file) = &form.file {
            let _ = std::fs::remove_file(&file.path);
        }
        let left = remaining(inner.stats.charged_starts);
        return Json(json!({"status": 200, "id": id, "retouchQuota": left})).into_response();
    }
    let Some(file) = form.file else {
        return error(StatusCode::BAD_REQUEST, "No file uploaded");
    };
    let refuse = |response: Response| {
        let _ = std::fs::remove_file(&file.path);
        response
    };
    let tokens: Vec<&str> = [header_token, form.token.as_deref()].into_iter().flatten().collect();
    if tokens.is_empty() || tokens.iter().any(|t| t.trim() != config.token) {
        return refuse(bad_token(config));
    }
    if config.quota.is_some_and(|q| inner.stats.charged_starts >= q) {
        return refuse(coded_error(config, 461, "Processing limit reached"));
    }
    let Some(payload) = valid_payload(form.payload.as_deref()) else {
        return refuse(coded_error(config, 462, "Invalid task"));
    };
    if file.size > config.max_file_size_mb * 1024 * 1024 {
        return refuse(error(StatusCode::BAD_REQUEST, "File is too large"));
    }
    // The limits route names the formats taken (png, jpg, jpeg and zip); what the real server
    // answers to another is not documented: refused here, before any charge.
    if !file.kind.is_image() && file.kind != FileKind::Zip {
        return refuse(error(StatusCode::BAD_REQUEST, "Unsupported file format"));
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let processing = processing_time(config, &payload, file.size);
    let created_us = unix_us();
    inner.stats.timeline.insert(
        id.clone(),
        JobTimes {
            file_name: file.name.clone(),
            upload_started_us: started_us,
            created_us,
            processing_ms: processing.as_millis() as u64,
            completed_us: created_us + processing.as_micros() as u64,
            first_get_file_us: None,
            first_served_us: None,
        },
    );
    inner.jobs.insert(
        id.clone(),
        Job {
            created: Instant::now(),
            processing,
            fails: chance(config.fail_rate),
            input: file.path,
            input_kind: file.kind,
            file_name: file.name,
            payload: payload.clone(),
        },
    );
    if let Some(key) = key {
        inner.ids_by_key.insert(key, id.clone());
    }
    if let Some(url) = form.hook.filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        inner.stats.hook_urls.insert(id.clone(), url.clone());
        let ready = processing + Duration::from_millis(config.store_lag_ms);
        tokio::spawn(call_hook(shared.clone(), url, id.clone(), ready, chance(config.hook_drop_rate)));
    }
    inner.stats.charged_starts += 1;
    *inner.stats.charged_by_kind.entry(file.kind.to_string()).or_default() += 1;
    *inner.stats.charged_by_hash.entry(file.hash).or_default() += 1;
    inner.stats.payloads.push(payload);
    let left = remaining(inner.stats.charged_starts);
    let body = json!({"status": 200, "id": id, "retouchQuota": left});
    drop(inner);
    // A drop after the job exists is the case the Idempotency-Key is for.
    if chance(config.drop_rate) {
        shared.lock().stats.injected_faults += 1;
        return dropped(body.to_string().into_bytes());
    }
    Json(body).into_response()
}

/// Calls a job's completion hook once its result can be fetched (`ready` after the start), as
/// the real server does (a POST with the job's id and state); `lost`: the call never arrives.
async fn call_hook(shared: Shared, url: String, id: String, ready: Duration, lost: bool) {
    tokio::time::sleep(ready).await;
    if lost {
        *shared.lock().stats.hooks.entry("lost".into()).or_default() += 1;
        return;
    }
    // Without a CA store (a minimal container), a plain-HTTP hook is still called.
    let client = reqwest::Client::builder()
        .build()
        .or_else(|_| reqwest::Client::builder().tls_certs_only(std::iter::empty()).build());
    let Ok(client) = client else {
        *shared.lock().stats.hooks.entry("unreachable".into()).or_default() += 1;
        return;
    };
    let answered = client
        .post(&url)
        .json(&json!({"id": id, "state": "completed"}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16().to_string())
        .unwrap_or_else(|_| "unreachable".into());
    *shared.lock().stats.hooks.entry(answered).or_default() += 1;
}

/// Where a job is at `now`, under the current knobs.
#[derive(Debug, PartialEq)]
enum Phase {
    Waiting,
    Active(f64),
    Completed { stored: bool },
    Failed,
    Expired,
}

fn phase(job: &Job, config: &SimConfig, now: Instant) -> Phase {
    let elapsed = now.duration_since(job.created);
    let retention = Duration::from_millis(config.retention_ms);
    if elapsed >= job.processing + retention {
        return Phase::Expired;
    }
    if elapsed >= job.processing {
        if job.fails {
            return Phase::Failed;
        }
        let stored = elapsed >= job.processing + Duration::from_millis(config.store_lag_ms);
        return Phase::Completed { stored };
    }
    let queued = job.processing / 5;
    if elapsed < queued {
        return Phase::Waiting;
    }
    let full_at = job.processing.saturating_sub(Duration::from_millis(config.completion_lag_ms)).max(queued);
    let span = (full_at - queued).as_secs_f64();
    let progress = if span <= 0.0 { 100.0 } else { ((elapsed - queued).as_secs_f64() / span * 100.0).min(100.0) };
    Phase::Active(progress.floor())
}

async fn status(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let config = shared.config();
    if let Some(response) = fault(&shared, &config, config.status_error_rate, true).await {
        return response;
    }
    // Every status request that gets an answer counts, broken answers included.
    *shared.lock().stats.polls_by_job.entry(id.clone()).or_default() += 1;
    match config.hostile {
        Some(Hostile::HtmlStatus) => {
            return axum::response::Html("<html><body><h1>502 Bad Gateway</h1></body></html>").into_response();
        }
        Some(Hostile::HugeJson) => {
            return format!("{{\"status\":200,\"state\":\"active\",\"pad\":\"{}\"}}", "x".repeat(8 << 20))
                .into_response();
        }
        Some(Hostile::InvalidJson) => return "{\"status\": 200, \"state\": acti".into_response(),
        _ => {}
    }
    let inner = shared.lock();
    let Some(job) = inner.jobs.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Task not found");
    };
    let expire_date = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now()
            + (job.processing + Duration::from_millis(config.retention_ms)).saturating_sub(job.created.elapsed()),
    )
    .to_string();
    let plugin = job.payload["tasks"][0]["Plugin"].as_str().unwrap_or("").to_string();
    let (state, progress, reason) = match phase(job, &config, Instant::now()) {
        Phase::Expired => return error(StatusCode::NOT_FOUND, "Task not found"),
        Phase::Waiting => ("waiting", 0.0, ""),
        Phase::Active(p) => ("active", p, ""),
        Phase::Completed { .. } => ("completed", 100.0, ""),
        Phase::Failed => ("failed", 100.0, config.fail_reason.as_str()),
    };
    Json(json!({
        "status": 200, "state": state, "progress": progress as u64, "reason": reason,
        "attempt": 1, "maxAttempts": 1, "currentStep": plugin, "pluginName": plugin,
        "expireDate": expire_date,
    }))
    .into_response()
}

async fn get_file(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let config = shared.config();
    if let Some(response) = fault(&shared, &config, config.get_file_error_rate, true).await {
        return response;
    }
    let (input, input_kind, file_name, payload) = {
        let mut inner = shared.lock();
        *inner.stats.downloads_by_job.entry(id.clone()).or_default() += 1;
        let now_us = unix_us();
        let Some(job) = inner.jobs.get(&id) else {
            return error(StatusCode::NOT_FOUND, "Task not found");
        };
        let stored = phase(job, &config, Instant::now()) == (Phase::Completed { stored: true });
        let found = (job.input.clone(), job.input_kind, job.file_name.clone(), job.payload.clone());
        if let Some(times) = inner.stats.timeline.get_mut(&id) {
            times.first_get_file_us.get_or_insert(now_us);
            if stored {
                times.first_served_us.get_or_insert(now_us);
            }
        }
        if !stored {
            return error(StatusCode::NOT_FOUND, "File not found");
        }
        found
    };
    if let Some(response) = config.hostile.and_then(results::hostile) {
        return response;
    }
    let body = match results::render(&input, input_kind, &payload, !config.no_faces).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot render result: {e}")),
    };
    let disposition = format!("attachment; filename=\"{}\"", file_name.replace(['"', '\\', '\r', '\n'], "_"));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("binary/octet-stream"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn limits(State(shared): State<Shared>) -> Response {
    let config = shared.config();
    if let Some(response) = fault(&shared, &config, 0.0, true).await {
        return response;
    }
    if !config.limits_enabled {
        return error(StatusCode::NOT_FOUND, "Route not found");
    }
    Json(json!({
        "image": {"formats": ["png", "jpg", "jpeg"], "maxFileSizeInMB": config.max_file_size_mb,
                  "maxMegapixels": config.max_megapixels},
        "archive": {"formats": ["zip"]}
    }))
    .into_response()
}

/// A wrong or missing token: 460 "Token issue", or (`token_401`) 401 with what the server says
/// of an expired token.
fn bad_token(config: &SimConfig) -> Response {
    if config.token_401 {
        return error(StatusCode::UNAUTHORIZED, "Token is invalid or expired");
    }
    let http = if config.codes_in_body { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    (http, Json(json!({"status": 460, "message": "Token issue"}))).into_response()
}

/// `POST /api/v1/balance` (the fuller API document): the token in `X-Retouch-Token`, the modes
/// in a JSON body.
async fn api_balance(State(shared): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let config = shared.config();
    if let Some(response) = fault(&shared, &config, 0.0, true).await {
        return response;
    }
    if config.old_balance_only {
        return error(StatusCode::NOT_FOUND, "Route not found");
    }
    *shared.lock().stats.balance_requests.entry("api".into()).or_default() += 1;
    let modes = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("modes").cloned());
    if !modes.as_ref().and_then(Value::as_array).is_some_and(|m| m.iter().any(|m| m == "professional")) {
        return error(StatusCode::BAD_REQUEST, "Bad request: modes must list \"professional\"");
    }
    let token = headers.get("X-Retouch-Token").and_then(|v| v.to_str().ok()).map(str::trim);
    if token != Some(config.token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "Token is invalid or expired");
    }
    let charged = shared.lock().stats.charged_starts as i64;
    Json(json!({"status": 200, "remaining": {"professional": config.credits - charged}})).into_response()
}

async fn balance(State(shared): State<Shared>, mut multipart: Multipart) -> Response {
    let config = shared.config();
    if let Some(response) = fault(&shared, &config, 0.0, true).await {
        return response;
    }
    *shared.lock().stats.balance_requests.entry("older".into()).or_default() += 1;
    let mut token = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("retouchtoken") {
            token = field.text().await.ok();
        }
    }
    if token.as_deref().map(str::trim) != Some(config.token.as_str()) {
        return bad_token(&config);
    }
    let charged = shared.lock().stats.charged_starts as i64;
    Json(json!({"remaining": {"professional": config.credits - charged}})).into_response()
}

async fn stats(State(shared): State<Shared>) -> Response {
    Json(shared.lock().stats.clone()).into_response()
}

async fn get_config(State(shared): State<Shared>) -> Response {
    Json(shared.config()).into_response()
}

async fn set_config(State(shared): State<Shared>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<SimConfig>(&body) {
        Ok(config) => {
            shared.lock().config = config.clone();
            Json(config).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &format!("bad simulator config: {e}")),
    }
}
