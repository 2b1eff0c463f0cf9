//! The web dashboard (`[web]`): a few server-rendered pages with live updates, and the JSON API
//! they are built on, served by the daemon itself. Off unless configured; loopback-only
//! without a password.
//!
//! - [`auth`]: who may use it (password, sessions, CSRF, slowed failures, local host names);
//! - [`views`]: what it shows, as data (shared by pages and API); [`pages`]: that data as HTML;
//! - [`site`]: the page routes (login, overview, queue, job, config, thumbnails);
//! - [`api`]: the JSON routes; [`events`]: live updates; [`thumbs`]: before/after thumbnails;
//! - [`redact`]: the config file without its secrets.
//!
//! Every answer carries a strict Content-Security-Policy (nothing but this origin: the script,
//! style and icon are compiled into the binary) and a `Server-Timing` header with the time the
//! daemon spent on it.

pub mod api;
pub mod auth;
pub mod events;
pub mod hook;
pub mod listen;
pub mod pages;
pub mod redact;
pub mod site;
pub mod thumbs;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::WebConfig;
use crate::daemon::Handle;
use auth::{Auth, Caller, Denied};

/// What every route shares.
pub struct App {
    pub handle: Handle,
    /// The dashboard's own read-only connection to the journal.
    pub reader: views::Reader,
    pub auth: Auth,
    pub hub: Arc<events::Hub>,
    pub thumbs: thumbs::Thumbnails,
    /// The config file, for the config view.
    pub config_file: Option<PathBuf>,
    /// The completion hook's rate limit.
    pub hook_limit: hook::HookLimit,
}

impl App {
    /// The config file's path, its text with secrets redacted, and where each secret comes from.
    pub async fn redacted_config(&self) -> Result<(String, String, Vec<(&'static str, String)>), String> {
        let config = self.handle.config();
        let mut sources = vec![("server token", config.server.token_source.clone())];
        if let Some(web) = &config.web {
            let password = web.password_source.clone().unwrap_or_else(|| "none (loopback only)".into());
            sources.push(("dashboard password", password));
        }
        let Some(file) = self.config_file.clone() else {
            return Ok(("(none)".into(), String::new(), sources));
        };
        let shown = file.display().to_string();
        let text = tokio::fs::read_to_string(&file).await.map_err(|e| format!("cannot read {shown}: {e}"))?;
        let text = redact::redact_config(&text).map_err(|e| format!("{shown}: {e}"))?;
        Ok((shown, text, sources))
    }
}

/// Serves the dashboard on `listener` until `cancel`.
pub async fn serve(
    handle: Handle,
    web: WebConfig,
    config_file: Option<PathBuf>,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) {
    let app = match App::new(handle, &web, config_file, cancel.clone()) {
        Ok(app) => app,
        Err(e) => {
            error!(error = %e, "the dashboard cannot read the journal; it is off");
            return;
        }
    };
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    info!(address, password = web.password.is_some(), "dashboard at http://{address}/");
    listen::serve(listener, router(app), cancel).await;
}

impl App {
    pub fn new(
        handle: Handle,
        web: &WebConfig,
        config_file: Option<PathBuf>,
        cancel: CancellationToken,
    ) -> Result<Arc<App>, crate::journal::JournalError> {
        let state_dir = handle.config().state_dir.clone();
        let reader = views::Reader::open(&handle.config())?;
        Ok(Arc::new(App {
            hub: events::Hub::start(handle.clone(), reader.clone(), cancel),
            auth: Auth::new(web.password.as_ref()),
            thumbs: thumbs::Thumbnails::new(&state_dir),
            handle,
            reader,
            config_file,
            hook_limit: hook::HookLimit::default(),
        }))
    }
}

/// Every route, behind [`guard`].
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(site::overview))
        .route("/queue", get(site::queue))
        .route("/jobs/{id}", get(site::job))
        .route("/jobs/{id}/thumbnail/{which}", get(site::thumbnail))
        .route("/config", get(site::config))
        .route("/login", get(site::login_page).post(site::login))
        .route("/logout", post(site::logout))
        .route("/assets/{name}", get(asset))
        .route("/favicon.ico", get(|| async { Redirect::permanent("/assets/icon.svg") }))
        .route("/api/session", get(api::session))
        .route("/api/status", get(api::status))
        .route("/api/overview", get(api::overview))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/retry", post(api::retry))
        .route("/api/jobs/{id}/cancel", post(api::cancel))
        .route("/api/waiting/cancel", post(api::cancel_waiting))
        .route("/api/retry-failed", post(api::retry_failed))
        .route("/api/pause", post(api::pause))
        .route("/api/resume", post(api::resume))
        .route("/api/reload", post(api::reload))
        .route("/api/config", get(api::config))
        .route("/api/events", get(api::events))
        .route("/hook/{token}", get(hook::called).post(hook::called))
        .route("/api/openapi.yaml", get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// The API's description, as in the repository.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

/// The assets, compiled in: (name, content type, bytes).
const ASSETS: [(&str, &str, &str); 3] = [
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        api::error(StatusCode::NOT_FOUND, format!("no such API route: {}", request.uri().path()))
    } else {
        (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found\n").into_response()
    }
}

/// Routes anyone may reach (the login page and what it needs).
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/") || path == "/favicon.ico"
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The session cookie's value, if sent.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == auth::COOKIE)
        .map(|(_, v)| v)
}

/// Checks every request (host, login, CSRF), then adds the security headers and the time spent.
async fn guard(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let mut response = match admit(&app, &mut request, peer.ip()) {
        Ok(()) => next.run(request).await,
        Err(turned_away) => refusal(turned_away.is_api, &turned_away.path, turned_away.denied),
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    let spent = format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&spent) {
        headers.insert("server-timing", v);
    }
    response
}

const SECURITY_HEADERS: [(header::HeaderName, &str); 7] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    (header::HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()"),
];

/// Lets a request in (with its [`Caller`] attached), or answers it.
/// A request [`admit`] turns away: why, and what it asked for.
struct TurnedAway {
    is_api: bool,
    /// The path (with the query, for a login to lead back there).
    path: String,
    denied: Denied,
}

fn admit(app: &App, request: &mut Request, peer: std::net::IpAddr) -> Result<(), TurnedAway> {
    let path = request.uri().path().to_string();
    // The completion hook's unguessable path is its own authority (see `hook`).
    if path.starts_with(crate::daemon::completion_hook::HOOK_PATH) {
        return Ok(());
    }
    let is_api = path.starts_with("/api/");
    let away = |path: &str, denied| TurnedAway { is_api, path: path.to_string(), denied };
    let headers = request.headers();
    let host = header_text(headers, header::HOST);
    if !app.auth.needs_login() && !host.is_some_and(Auth::is_local_host) {
        return Err(away(
            &path,
            Denied::Forbidden(
                "this dashboard has no password, so it answers only to localhost or 127.0.0.1; \
                 set web.password_file to open it to other names",
            ),
        ));
    }
    let bearer = header_text(headers, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    let caller = app.auth.identify(session_cookie(headers), bearer, peer).map_err(|denied| away(&path, denied))?;
    if caller == Caller::Anonymous && !is_public(&path) {
        let wanted = request.uri().path_and_query().map_or(path.as_str(), |p| p.as_str());
        return Err(away(wanted, Denied::Login));
    }
    if request.method() == Method::POST && path != "/login" && path != "/logout" {
        let csrf = header_text(headers, header::HeaderName::from_static("x-csrf-token"));
        Auth::check_post(&caller, csrf, header_text(headers, header::ORIGIN), host)
            .map_err(|denied| away(&path, denied))?;
    }
    request.extensions_mut().insert(caller);
    Ok(())
}

fn deny(is_api: bool, status: StatusCode, message: &str) -> Response {
    if is_api {
        api::error(status, message)
    } else {
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
    }
}

/// 429: too many password checks lately; nothing was checked.
pub fn too_many_checks(is_api: bool, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let message = format!(
        "too many password attempts on this dashboard lately; nothing was checked. Try again in {secs} s \
         (from the machine itself, or through an SSH tunnel to it, the limit is a separate one)"
    );
    let mut response = deny(is_api, StatusCode::TOO_MANY_REQUESTS, &message);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The answer to a request turned away; `path`: what it asked for (a login leads back there).
fn refusal(is_api: bool, path: &str, denied: Denied) -> Response {
    match denied {
        Denied::Login if is_api => {
            let mut r = api::error(
                StatusCode::UNAUTHORIZED,
                "log in first: send `Authorization: Bearer <password>`, or log in on the dashboard",
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"retouchd\""));
            r
        }
        Denied::Login => {
            let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        Denied::WrongPassword => deny(is_api, StatusCode::UNAUTHORIZED, "wrong password"),
        Denied::TooManyChecks(wait) => too_many_checks(is_api, wait),
        Denied::Forbidden(why) => deny(is_api, StatusCode::FORBIDDEN, why),
    }
}
