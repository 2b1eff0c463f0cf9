//! The JSON API (`/api/...`), documented in `docs/openapi.yaml`: the pages' data, and for
//! automation. Every answer is JSON; every error is `{"error": "..."}` with a status that says
//! what kind (400 bad input, 404 no such thing, 409 not in a state that allows it, 503 the
//! daemon cannot now).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use super::App;
use super::auth::Caller;
use super::views::{self, PAGE, StateFilter};
use crate::daemon::control::Refused;
use crate::journal::JobId;
use crate::retry::{Retried, Which};

/// An error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// A request that cannot be answered as asked: its status and why.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
}

impl Problem {
    fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem { status, message: message.into() }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn refused(r: Refused) -> Response {
    let status = match r {
        Refused::NotFound(_) => StatusCode::NOT_FOUND,
        Refused::Conflict(_) => StatusCode::CONFLICT,
        Refused::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, r.to_string())
}

/// What an action did.
#[derive(Debug, Serialize)]
struct Done {
    message: String,
}

fn done(message: String) -> Response {
    Json(Done { message }).into_response()
}

/// A job id from the path: a positive number.
pub fn job_id(text: &str) -> Result<JobId, Problem> {
    text.parse::<JobId>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, format!("there is no job `{text}`: job ids are positive numbers"))
    })
}

/// A count from the query string (one too large to hold means "as many as there are").
fn count(params: &BTreeMap<String, String>, key: &str, default: usize) -> Result<usize, Problem> {
    match params.get(key).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(text.parse().unwrap_or(usize::MAX))
        }
        Some(text) => Err(Problem::new(StatusCode::BAD_REQUEST, format!("{key} must be a whole number, not `{text}`"))),
    }
}

/// `GET /api/session`: the CSRF token a browser (or a script on a dashboard without a password)
/// sends with its POSTs.
pub async fn session(caller: axum::Extension<Caller>) -> Response {
    let csrf = match &caller.0 {
        Caller::Browser { csrf } => Some(csrf.clone()),
        _ => None,
    };
    Json(serde_json::json!({ "csrf": csrf })).into_response()
}

/// `GET /api/status`: what `retouchd status --json` prints, from the running daemon.
pub async fn status(State(app): State<Arc<App>>) -> Response {
    let daemon = match app.handle.status().await {
        Ok(d) => d,
        Err(r) => return refused(r),
    };
    let config = app.handle.config();
    let report = app.reader.read(move |journal| crate::report::report_with(journal, &config, Some(daemon))).await;
    match report {
        Ok(report) => Json(report).into_response(),
        Err(r) => refused(r),
    }
}

/// `GET /api/overview`: the overview page's data.
pub async fn overview(State(app): State<Arc<App>>) -> Response {
    match views::overview(&app.handle, &app.reader).await {
        Ok(o) => Json(o).into_response(),
        Err(r) => refused(r),
    }
}

/// The parsed list parameters, or the error answer.
pub struct ListParams {
    pub filter: StateFilter,
    pub name: Option<String>,
    pub before: Option<JobId>,
    pub limit: usize,
    pub offset: usize,
}

pub fn list_params(params: &BTreeMap<String, String>) -> Result<ListParams, Problem> {
    let filter = StateFilter::parse(params.get("state").map(String::as_str))
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
    let before = match params.get("before").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(text.parse::<JobId>().map_err(|_| {
            Problem::new(StatusCode::BAD_REQUEST, format!("before must be a job id (a whole number), not `{text}`"))
        })?),
    };
    let limit = count(params, "limit", PAGE)?;
    if limit == 0 || limit > views::MAX_PAGE {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("limit must be between 1 and {}", views::MAX_PAGE)));
    }
    Ok(ListParams { filter, name: params.get("q").cloned(), before, limit, offset: count(params, "offset", 0)? })
}

/// `GET /api/jobs?state=&q=&limit=&before=&offset=`: a page of files by their newest job.
pub async fn jobs(State(app): State<Arc<App>>, Query(params): Query<BTreeMap<String, String>>) -> Response {
    let p = match list_params(&params) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    match views::jobs(&app.handle, &app.reader, p.filter, p.name, p.before, p.limit, p.offset).await {
        Ok(page) => Json(page).into_response(),
        Err(r) => refused(r),
    }
}

/// `GET /api/jobs/{id}`: one job with its timeline and outputs.
pub async fn job(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match views::job(&app.handle, &app.reader, id).await {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("there is no job #{id}")),
        Err(r) => refused(r),
    }
}

/// `POST /api/jobs/{id}/retry`: sends a failed (or refused) job's file back to its inbox.
pub async fn retry(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match job_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match app.handle.retry(Which::Job(id)).await {
        Ok(outcomes) => match outcomes.into_iter().next() {
            Some(Retried::Moved { to, .. }) => {
                done(format!("job #{id}: its file is back in the inbox as {}; it is sent again", to.display()))
            }
            Some(Retried::Skipped { why: crate::retry::Skip::NoSuchJob, .. }) => {
                error(StatusCode::NOT_FOUND, format!("there is no job #{id}"))
            }
            Some(Retried::Skipped { why, .. }) => {
                error(StatusCode::CONFLICT, format!("job #{id} is not retried: {why}"))
            }
            None => error(StatusCode::NOT_FOUND, format!("there is no job #{id}")),
        },
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /api/retry-failed`: every failed file back to its inbox (refused ones stay).
pub async fn retry_failed(State(app): State<Arc<App>>) -> Response {
    match app.handle.retry(Which::Failed { refused: false }).await {
        Ok(outcomes) => {
            let moved = outcomes.iter().filter(|o| matches!(o, Retried::Moved { .. })).count();
            let left = outcomes.len() - moved;
            let mut message = format!("{moved} failed file(s) sent back to their inbox");
            if left > 0 {
                message.push_str(&format!(
                    "; {left} left (refused before sending, or no longer in the failed folder: see `retouchd retry --failed`)"
                ));
            }
            Json(serde_json::json!({ "message": message, "retried": moved, "left": left })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /api/jobs/{id}/cancel`: cancels a job still waiting for its first upload.
pub async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match job_id(&id) {
        Ok(id) => app.handle.cancel_job(id).map_or_else(refused, done),
        Err(r) => r.into_response(),
    }
}

/// `POST /api/waiting/cancel` with `{"file": "/inbox/path"}`: takes a waiting file out of the
/// queue (it goes to failed/ unsent).
pub async fn cancel_waiting(State(app): State<Arc<App>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Body {
        file: std::path::PathBuf,
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("send JSON like {{\"file\": \"/inbox/photo.jpg\"}} ({e})"));
        }
    };
    app.handle.cancel_waiting_file(body.file).await.map_or_else(refused, done)
}

/// `POST /api/pause`, `POST /api/resume`: holds or releases every upload not yet started.
pub async fn pause(State(app): State<Arc<App>>) -> Response {
    app.handle.hold(true).await.map_or_else(refused, done)
}

pub async fn resume(State(app): State<Arc<App>>) -> Response {
    app.handle.hold(false).await.map_or_else(refused, done)
}

/// `POST /api/reload`: reads the config file again (as SIGHUP does).
pub async fn reload(State(app): State<Arc<App>>) -> Response {
    app.handle.reload().await.map_or_else(refused, done)
}

/// `GET /api/config`: the config file with its secrets redacted.
pub async fn config(State(app): State<Arc<App>>) -> Response {
    match app.redacted_config().await {
        Ok((file, text, sources)) => {
            let sources: BTreeMap<&str, String> = sources.into_iter().collect();
            Json(serde_json::json!({ "file": file, "text": text, "secrets": sources })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /api/events`: live updates (see [`super::events`]).
pub async fn events(State(app): State<Arc<App>>) -> Response {
    app.hub.stream().into_response()
}
