//! The completion hook's route (`/hook/<token>`, see [`crate::daemon::completion_hook`]): the server calls
//! it when a job finishes. The unguessable token is its only authority (no password, no host or
//! CSRF check: a reverse proxy brings the vendor's call here); calls are rate-limited, answered
//! at once, and never trusted: a known token only makes its job ask the server now.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::App;
use super::auth::Bucket;

/// Calls taken per second, and at most at once (a batch finishing together).
const CALLS_PER_SECOND: f64 = 20.0;
const CALL_BURST: f64 = 200.0;

/// The calls' rate limit.
pub struct HookLimit(Mutex<Bucket>);

impl Default for HookLimit {
    fn default() -> Self {
        HookLimit(Mutex::new(Bucket::new(CALLS_PER_SECOND, CALL_BURST)))
    }
}

/// `GET` or `POST /hook/{token}`: 204 when a job waits for this call, 404 otherwise, 429 over
/// the rate limit. The body, if any, is not read.
pub async fn called(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    if app.hook_limit.0.lock().unwrap_or_else(|p| p.into_inner()).take().is_err() {
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    let well_formed = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed && app.handle.hook_called(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
