//! The page routes: log in and out, overview, queue, job, config, and the job's thumbnails.
//! With `?fragment=main` a page answers only its live part (the page script swaps it in).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::App;
use super::auth::{self, Caller, Denied};
use super::pages::{self, Frame};
use super::thumbs::Which;
use super::views::{self, StateFilter};

type Params = Query<BTreeMap<String, String>>;

fn csrf(caller: &Caller) -> &str {
    match caller {
        Caller::Browser { csrf } => csrf,
        _ => "",
    }
}

/// The whole page, or only its live part when asked.
fn respond(
    app: &App,
    caller: &Caller,
    params: &BTreeMap<String, String>,
    title: &str,
    nav: &str,
    refresh: &str,
    main: maud::Markup,
) -> Response {
    if params.get("fragment").map(String::as_str) == Some("main") {
        return Html(main.into_string()).into_response();
    }
    let frame = Frame { title, nav, csrf: csrf(caller), logged_in: app.auth.needs_login(), refresh };
    Html(pages::page(&frame, main).into_string()).into_response()
}

fn problem(app: &App, caller: &Caller, status: StatusCode, message: &str) -> Response {
    let frame = Frame { title: "Problem", nav: "", csrf: csrf(caller), logged_in: app.auth.needs_login(), refresh: "" };
    (status, Html(pages::problem(&frame, message).into_string())).into_response()
}

pub async fn overview(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> Response {
    match views::overview(&app.handle, &app.reader).await {
        Ok(o) => respond(&app, &caller, &params, "Overview", "overview", "/?fragment=main", pages::overview(&o)),
        Err(e) => problem(&app, &caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub async fn queue(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(mut params): Params,
) -> Response {
    // The queue opens on the jobs in flight.
    params.entry("state".into()).or_insert_with(|| "active".into());
    let p = match super::api::list_params(&params) {
        Ok(p) => p,
        Err(_) => {
            return problem(
                &app,
                &caller,
                StatusCode::BAD_REQUEST,
                "that filter is not understood; pick one from the list",
            );
        }
    };
    let page = match views::jobs(&app.handle, &app.reader, p.filter, p.name.clone(), p.before, p.limit, p.offset).await
    {
        Ok(page) => page,
        Err(e) => return problem(&app, &caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let note = match (p.filter, app.handle.status().await) {
        (StateFilter::Active, Ok(s)) if s.waiting > 0 => {
            Some(format!("{} more file(s) are not sent yet: choose “waiting” to see them and why.", s.waiting))
        }
        _ => None,
    };
    let name = p.name.unwrap_or_default();
    let main = pages::queue(p.filter, &name, &page, p.offset, note.as_deref());
    let mut refresh = String::from("/queue?fragment=main");
    for (k, v) in params.iter().filter(|(k, _)| *k != "fragment") {
        refresh.push_str(&format!("&{}={}", k, url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()));
    }
    respond(&app, &caller, &params, "Queue", "queue", &refresh, main)
}

pub async fn job(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Response {
    let Ok(id) = super::api::job_id(&id) else {
        return problem(&app, &caller, StatusCode::NOT_FOUND, "there is no such job");
    };
    match views::job(&app.handle, &app.reader, id).await {
        Ok(Some(detail)) => {
            let refresh = format!("/jobs/{id}?fragment=main");
            respond(&app, &caller, &params, &format!("Job #{id}"), "queue", &refresh, pages::job(&detail))
        }
        Ok(None) => problem(&app, &caller, StatusCode::NOT_FOUND, &format!("there is no job #{id}")),
        Err(e) => problem(&app, &caller, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// A job's before or after thumbnail: only the pictures the job itself knows.
pub async fn thumbnail(State(app): State<Arc<App>>, Path((id, which)): Path<(String, String)>) -> Response {
    let (Ok(id), Some(which)) = (super::api::job_id(&id), Which::parse(&which)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let job = match app.reader.read(move |journal| journal.get(id)).await {
        Ok(Some(job)) => job,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match app.thumbs.get(&job, which, &app.handle.config()).await {
        Ok(Some(bytes)) => {
            ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=60")], bytes)
                .into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(job = id, error = %e, "cannot make a thumbnail");
            StatusCode::UNPROCESSABLE_ENTITY.into_response()
        }
    }
}

pub async fn config(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(params): Params,
) -> Response {
    match app.redacted_config().await {
        Ok((file, text, sources)) => respond(
            &app,
            &caller,
            &params,
            "Config",
            "config",
            "/config?fragment=main",
            pages::config(&file, &text, &sources),
        ),
        Err(e) => problem(&app, &caller, StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// Where to go after logging in: a path of this dashboard, nothing else.
fn next_page(params: &BTreeMap<String, String>) -> String {
    params.get("next").filter(|next| is_local_path(next)).cloned().unwrap_or_else(|| "/".into())
}

/// Whether `next` is a path on this dashboard: one leading `/` (not `//`, which is another
/// host), no backslash, and no control character (browsers drop tabs and newlines from
/// addresses, so `/\t/evil.example` would become `//evil.example`).
fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
}

pub async fn login_page(State(app): State<Arc<App>>, Query(params): Params) -> Response {
    if !app.auth.needs_login() {
        return Redirect::to("/").into_response();
    }
    let failed = params.contains_key("failed").then_some("Wrong password.");
    Html(pages::login(&next_page(&params), failed).into_string()).into_response()
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let next = next_page(&form);
    let password = form.get("password").map(String::as_str).unwrap_or("");
    match app.auth.login(password, peer.ip()) {
        Ok(session) => {
            let cookie = format!(
                "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                auth::COOKIE,
                auth::SESSION_IDLE.as_secs()
            );
            let mut response = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(Denied::TooManyChecks(wait)) => super::too_many_checks(false, wait),
        Err(Denied::WrongPassword) => {
            // Back to the form (so reloading it sends nothing again), which says why.
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/login?failed=1&next={next}")).into_response()
        }
        Err(_) => Redirect::to("/").into_response(),
    }
}

pub async fn logout(
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
    Extension(caller): Extension<Caller>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if let Err(Denied::Forbidden(why)) =
        auth::Auth::check_post(&caller, form.get("csrf").map(String::as_str), None, None)
    {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    if let Some(session) = super::session_cookie(&headers) {
        app.auth.logout(session);
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_leads_back_only_to_a_path_on_this_dashboard() {
        for good in ["/", "/jobs/7", "/queue?state=failed&q=a%20b"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in
            ["//evil.example", "/\t/evil.example", "/\n/evil.example", "/\\evil.example", "https://evil", "", "/ /x"]
        {
            assert!(!is_local_path(bad), "{bad:?}");
        }
        let params = BTreeMap::from([("next".to_string(), "/\t/evil.example".to_string())]);
        assert_eq!(next_page(&params), "/");
    }
}
