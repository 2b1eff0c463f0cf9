//! The web dashboard against the real daemon in-process (real clock, real sockets) and the
//! simulator: who gets in (host names, password, sessions, CSRF, slowed failures), what is
//! served (security headers, nothing outside the job's own pictures), and that each action
//! does what it says (pause, resume, cancel, retry, retry all, reload) and the live events
//! carry the news. The browser test (`browser.rs`) clicks through the same pages in Chromium.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use retouchd::config::{self, Environment};
use retouchd::daemon::{DaemonError, LiveStatus, RunOptions, Summary};
use retouchd::serve;
use retouchd::sim::Simulator;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::*;

pub const PASSWORD: &str = "correct horse battery";

/// The daemon running in-process with `[web]` on a free port.
struct Dash {
    ws: Workspace,
    sim: Simulator,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Summary, DaemonError>>,
    http: reqwest::Client,
}

impl Dash {
    /// `web`: the `[web]` section's lines; `watch`: extra `[[watch]]` lines.
    async fn start(web: &str, server: &str, watch: &str) -> Dash {
        let sim = start_sim(fast_sim()).await;
        let ws = Workspace::new(&sim, server, watch);
        let text = std::fs::read_to_string(&ws.config).unwrap();
        let listen = if web.contains("listen") { "" } else { "listen = \"127.0.0.1:0\"\n" };
        std::fs::write(&ws.config, format!("[web]\n{listen}{web}\n{text}")).unwrap();
        let config = config::load(&ws.config, &Environment::default()).expect("the test config is valid");
        let (stop, stopped) = oneshot::channel::<()>();
        let path = ws.config.clone();
        let options = RunOptions {
            reload_source: Some(std::sync::Arc::new(move || {
                config::load(&path, &Environment::default()).map_err(|e| e.to_string())
            })),
            ..RunOptions::default()
        };
        let task = tokio::spawn(serve::run(config, options, Some(ws.config.clone()), async {
            let _ = stopped.await;
        }));
        let state = ws.path("state");
        let url = wait_for("the dashboard's address in the live status", Duration::from_secs(20), async || {
            LiveStatus::read(&state).and_then(|s| s.dashboard)
        })
        .await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = url.replace("0.0.0.0", "127.0.0.1");
        Dash { ws, sim, url: url.trim_end_matches('/').to_string(), stop: Some(stop), task, http }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    /// A GET as a script with the bearer password.
    async fn api(&self, path: &str) -> Value {
        let answer = self.get(path).bearer_auth(PASSWORD).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        answer.json().await.unwrap()
    }

    /// A POST as a script with the bearer password: (status, body).
    async fn act(&self, path: &str) -> (StatusCode, Value) {
        let answer = self.post(path).bearer_auth(PASSWORD).send().await.unwrap();
        (answer.status(), answer.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        (&mut self.task).await.expect("the daemon task ends").expect("the daemon ran");
        self.sim.stop().await;
    }
}

/// The real binary with the finished photo on and `[web]` on a free loopback port with
/// [`PASSWORD`]: its workspace, the process, and the dashboard's address.
pub async fn spawn_with_dashboard(sim: &Simulator) -> (Workspace, Daemon, String) {
    let ws = Workspace::new(sim, "", "[watch.output]\nflat = \"jpeg\"");
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, format!("[web]\nlisten = \"127.0.0.1:0\"\npassword = \"{PASSWORD}\"\n{text}")).unwrap();
    let daemon = ws.spawn(&[], "daemon");
    let state = ws.path("state");
    let url = wait_for("the dashboard's address", Duration::from_secs(30), async || {
        LiveStatus::read(&state).and_then(|s| s.dashboard)
    })
    .await;
    (ws, daemon, url)
}

/// The newest job of `name`, once the API lists it in `state`.
async fn job_in(dash: &Dash, name: &str, state: &str) -> Value {
    wait_for(&format!("{name} {state}"), Duration::from_secs(30), async || {
        let page = dash.api(&format!("/api/jobs?q={name}")).await;
        page["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name && j["state"] == state).cloned()
    })
    .await
}

/// A form body.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn session_of(headers: &HeaderMap) -> String {
    let cookie = headers.get("set-cookie").expect("a session cookie").to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_only_local_names_get_in_and_posts_still_need_the_csrf_token() {
    let dash = Dash::start("", "", "").await;
    let page = dash.get("/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["server-timing"].to_str().unwrap().starts_with("app;dur="));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1 id=\"daemon-state\">Running</h1>"), "{html}");

    // A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) is turned away.
    let rebound = dash.get("/api/status").header("host", "evil.example:8642").send().await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);

    // A cross-site form cannot pause: no CSRF token.
    assert_eq!(dash.post("/api/pause").send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let csrf: Value = dash.get("/api/session").send().await.unwrap().json().await.unwrap();
    let token = csrf["csrf"].as_str().unwrap().to_string();
    assert!(html.contains(&token), "the page carries the token for its own POSTs");
    let from_elsewhere = dash.post("/api/pause").header("x-csrf-token", &token).header("origin", "http://evil.example");
    assert_eq!(from_elsewhere.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let paused = dash.post("/api/pause").header("x-csrf-token", &token).send().await.unwrap();
    assert_eq!(paused.status(), StatusCode::OK);
    let status: Value = dash.get("/api/status").send().await.unwrap().json().await.unwrap();
    assert_eq!(status["daemon"]["paused"], "user");
    let overview: Value = dash.get("/api/overview").send().await.unwrap().json().await.unwrap();
    assert!(overview["pauses"][0]["says"].as_str().is_some_and(|s| s.contains("paused by a person")), "{overview}");
    let page = dash.get("/").send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Pauses, budgets and notifications") && page.contains("retouchd resume"),
        "the overview shows the pause"
    );
    // `retouchd status` names the dashboard and the pause.
    let config = config::load(&dash.ws.config, &Environment::default()).unwrap();
    let journal = retouchd::journal::Journal::open_read_only(&config.state_dir).unwrap();
    let text = retouchd::report::render(&retouchd::report::report(&journal, &config).unwrap());
    assert!(text.contains(&format!("dashboard: {}/", dash.url)), "{text}");
    assert!(text.contains("PAUSED: paused by a person") && text.contains("Resume on the dashboard"), "{text}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_password_pages_ask_to_log_in_and_the_session_and_bearer_work() {
    let dash = Dash::start(&format!("password = \"{PASSWORD}\""), "", "").await;
    let page = dash.get("/queue").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/login?next=%2Fqueue");
    let api = dash.get("/api/status").send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(api.headers().contains_key("www-authenticate"));
    let login = dash.get("/login").send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    for asset in ["/assets/app.css", "/assets/app.js", "/assets/icon.svg"] {
        assert_eq!(dash.get(asset).send().await.unwrap().status(), StatusCode::OK, "{asset} is public");
    }

    // A wrong password is answered at once (checks are limited, not answers).
    let started = std::time::Instant::now();
    let wrong = dash
        .post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("password", "guess"), ("next", "/queue")]))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(900), "a wrong password is not held up");
    assert_eq!(dash.get("/api/status").bearer_auth(PASSWORD).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(wrong.status(), StatusCode::SEE_OTHER);
    let again = wrong.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(again, "/login?failed=1&next=%2Fqueue");
    assert!(dash.get(&again).send().await.unwrap().text().await.unwrap().contains("Wrong password."));
    let wrong_bearer = dash.get("/api/status").bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong_bearer.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong_bearer.headers().contains_key("x-retouchd-wrong-password"), "internal marks stay inside");

    let login = dash
        .post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("password", PASSWORD), ("next", "/queue")]))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/queue");
    let cookie = session_of(login.headers());
    let mut with_session = HeaderMap::new();
    with_session.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    let queue = dash.get("/queue").headers(with_session.clone()).send().await.unwrap();
    assert_eq!(queue.status(), StatusCode::OK);
    let html = queue.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(csrf.len(), 64);

    // POSTs from the session need its CSRF token; a script's bearer needs none.
    let bare = dash.post("/api/pause").headers(with_session.clone()).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let good =
        dash.post("/api/pause").headers(with_session.clone()).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(good.status(), StatusCode::OK);
    assert_eq!(dash.act("/api/resume").await.0, StatusCode::OK);
    // A redirect after login only ever goes to this dashboard (a tab is dropped by browsers).
    for next in ["//evil.example/", "/\t/evil.example", "/\\evil.example"] {
        let away = dash
            .post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("password", PASSWORD), ("next", next)]))
            .send()
            .await
            .unwrap();
        assert_eq!(away.headers()["location"], "/", "{next:?}");
    }

    // Logging out ends the session.
    let out = dash
        .post("/logout")
        .headers(with_session.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = dash.get("/").headers(with_session).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the old cookie no longer works");
    // The password never appears in the config view.
    let config = dash.api("/api/config").await;
    assert!(!config["text"].as_str().unwrap().contains(PASSWORD));
    assert!(!config["text"].as_str().unwrap().contains(TOKEN), "nor the server token");
    assert_eq!(config["secrets"]["dashboard password"], "web.password");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_the_jobs_own_pictures_and_the_compiled_assets_is_served() {
    let dash = Dash::start(&format!("password = \"{PASSWORD}\""), "", "[watch.output]\nflat = \"jpeg\"").await;
    dash.ws.drop_file("portrait.jpg", &retouchd::imagegen::portrait_jpeg(640, 480, [200, 160, 140]));
    let job = job_in(&dash, "portrait.jpg", "done").await;
    let id = job["id"].as_i64().unwrap();
    let detail = dash.api(&format!("/api/jobs/{id}")).await;
    let states: Vec<&str> =
        detail["timeline"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"submitting"));
    assert_eq!(states.last(), Some(&"done"));
    assert!(states.contains(&"processing") && states.contains(&"rendering"), "{states:?}");
    for which in ["before", "after"] {
        let url = detail[format!("{which}_thumbnail")].as_str().unwrap().to_string();
        let thumb = dash.get(&url).bearer_auth(PASSWORD).send().await.unwrap();
        assert_eq!(thumb.status(), StatusCode::OK, "{url}");
        assert_eq!(thumb.headers()["content-type"], "image/jpeg");
        let bytes = thumb.bytes().await.unwrap();
        assert_eq!(&bytes[..2], &[0xff, 0xd8]);
        assert!(dash.ws.path(&format!("state/thumbnails/{id}-{which}.jpg")).is_file(), "cached in the state folder");
    }
    std::fs::write(dash.ws.path("secret.txt"), "do not serve").unwrap();
    for path in [
        "/assets/../config.toml".to_string(),
        "/assets/..%2fconfig.toml".into(),
        "/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        format!("/jobs/{id}/thumbnail/..%2f..%2fsecret.txt"),
        format!("/jobs/{id}/thumbnail/%2fetc%2fpasswd"),
        "/jobs/..%2f..%2fsecret.txt/thumbnail/before".into(),
        "/jobs/-1/thumbnail/before".into(),
        "/jobs/999999/thumbnail/after".into(),
        "/..%2fsecret.txt".into(),
        "/api/jobs/1%2f..%2f..%2fsecret.txt".into(),
        "/state/journal.sqlite".into(),
        "/thumbnails/1-before.jpg".into(),
    ] {
        let answer = dash.get(&path).bearer_auth(PASSWORD).send().await.unwrap();
        let status = answer.status();
        let body = answer.bytes().await.unwrap();
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST, "{path}: {status}");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("do not serve") && !text.contains("root:") && !text.contains("[server]"), "{path}");
    }
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_cancel_and_retry_do_what_they_say_and_the_events_tell_the_page() {
    let dash = Dash::start(&format!("password = \"{PASSWORD}\""), "max_in_flight = 1", "").await;
    let mut events = dash.get("/api/events").bearer_auth(PASSWORD).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    // Paused: files wait, nothing is uploaded.
    assert_eq!(dash.act("/api/pause").await.0, StatusCode::OK);
    assert_eq!(dash.act("/api/pause").await.1["message"], "uploads were already paused");
    for (i, name) in ["a.jpg", "b.jpg", "c.jpg"].into_iter().enumerate() {
        dash.ws.drop_file(name, &distinct_jpeg(i as u32));
    }
    let first = job_in(&dash, "a.jpg", "submitting").await;
    assert_eq!(first["cancellable"], true);
    let waiting = wait_for("two files waiting for a slot", Duration::from_secs(20), async || {
        let page = dash.api("/api/jobs?state=waiting").await;
        (page["waiting"]["total"] == 2).then_some(page)
    })
    .await;
    assert_eq!(dash.sim.stats().start_requests, 0, "nothing uploaded while paused");

    // Cancel the job waiting to upload, and a file waiting for a slot: both to failed/, unsent.
    let id = first["id"].as_i64().unwrap();
    let (status, body) = dash.act(&format!("/api/jobs/{id}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = dash.act(&format!("/api/jobs/{id}/cancel")).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second cancel says why not: {body}");
    let file = waiting["waiting"]["files"][0]["file"].as_str().unwrap().to_string();
    let cancelled = dash
        .post("/api/waiting/cancel")
        .bearer_auth(PASSWORD)
        .json(&serde_json::json!({ "file": file }))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let failed = job_in(&dash, "a.jpg", "failed").await;
    assert!(failed["reason"].as_str().unwrap().contains("cancelled"), "{failed}");
    assert!(failed["retryable"].as_bool().unwrap());
    let cancelled_name = std::path::Path::new(&file).file_name().unwrap().to_string_lossy().into_owned();
    job_in(&dash, &cancelled_name, "failed").await;
    assert_eq!(dash.sim.stats().start_requests, 0, "a cancel sends nothing");

    // Resume: the third file goes through; retry one, then all the failed ones.
    assert_eq!(dash.act("/api/resume").await.0, StatusCode::OK);
    let third = ["a.jpg", "b.jpg", "c.jpg"].into_iter().find(|n| *n != "a.jpg" && *n != cancelled_name).unwrap();
    job_in(&dash, third, "done").await;
    let (status, body) = dash.act(&format!("/api/jobs/{id}/retry")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    job_in(&dash, "a.jpg", "done").await;
    let (status, body) = dash.act("/api/retry-failed").await;
    assert_eq!((status, body["retried"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    job_in(&dash, &cancelled_name, "done").await;
    assert_eq!(dash.sim.stats().charged_starts, 3, "each file paid once");
    let (status, _) = dash.act(&format!("/api/jobs/{id}/retry")).await;
    assert_eq!(status, StatusCode::CONFLICT, "a delivered job is not retried");
    assert_eq!(dash.act("/api/jobs/987654/cancel").await.0, StatusCode::NOT_FOUND);

    // The event stream carried the jobs' news as they happened.
    let mut seen = String::new();
    while !seen.contains("\"state\":\"done\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: jobs"), "{seen}");
    assert!(seen.contains("event: overview"), "{seen}");

    // Reload reads the file again; a broken file keeps the old config and says why.
    assert_eq!(dash.act("/api/reload").await.0, StatusCode::OK);
    let good = std::fs::read_to_string(&dash.ws.config).unwrap();
    std::fs::write(&dash.ws.config, good.replace("poll_interval = \"2s\"", "poll_interval = 2")).unwrap();
    let (status, body) = dash.act("/api/reload").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("server.poll_interval"), "{body}");
    let overview = dash.api("/api/overview").await;
    assert_eq!(overview["state"], "running");
    assert_eq!(overview["counts"]["done"], 3);
    assert_eq!(overview["delivered_last_hour"], 3);
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_a_json_error_that_says_what_to_send() {
    let dash = Dash::start(&format!("password = \"{PASSWORD}\""), "", "").await;
    for (path, needle) in [
        ("/api/jobs?state=bogus", "unknown state"),
        ("/api/jobs?limit=0", "limit must be between"),
        ("/api/jobs?limit=x", "limit must be a whole number"),
        ("/api/jobs?before=x", "before must be a job id"),
        ("/api/jobs?offset=-1", "offset must be a whole number"),
    ] {
        let answer = dash.get(path).bearer_auth(PASSWORD).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(needle), "{path}: {body}");
    }
    let answer = dash.get("/api/jobs/abc").bearer_auth(PASSWORD).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let bad_body = dash.post("/api/waiting/cancel").bearer_auth(PASSWORD).body("file=x").send().await.unwrap();
    assert_eq!(bad_body.status(), StatusCode::BAD_REQUEST);
    let openapi = dash.get("/api/openapi.yaml").bearer_auth(PASSWORD).send().await.unwrap().text().await.unwrap();
    assert!(openapi.starts_with("openapi: 3.0.3"));
    dash.stop().await;
}

#[tokio::test]
async fn a_port_in_use_stops_the_start_with_the_key_to_change() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, format!("[web]\nlisten = \"127.0.0.1:{port}\"\n{text}")).unwrap();
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let err = serve::run(config, RunOptions::default(), None, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("web.listen = 127.0.0.1:{port}")), "{err}");
}

/// A second host on a private network: a network namespace joined to this one by a veth pair
/// (10.77.N.1 here, 10.77.N.2 there); removed when dropped.
struct LanHost {
    ns: String,
    here: String,
}

impl LanHost {
    fn new() -> LanHost {
        let n = std::process::id() % 200 + 20;
        let (ns, host_end, ns_end) = (format!("rtd-lan-{n}"), format!("rtdh{n}"), format!("rtdn{n}"));
        // A namespace left by a killed run of this test.
        let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(std::process::Stdio::null()).status();
        let here = format!("10.77.{n}.1");
        for args in [
            vec!["netns", "add", &ns],
            vec!["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end],
            vec!["link", "set", &ns_end, "netns", &ns],
            vec!["addr", "add", &format!("{here}/24"), "dev", &host_end],
            vec!["link", "set", &host_end, "up"],
            vec!["netns", "exec", &ns, "ip", "addr", "add", &format!("10.77.{n}.2/24"), "dev", &ns_end],
            vec!["netns", "exec", &ns, "ip", "link", "set", &ns_end, "up"],
            vec!["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
        ] {
            let status = Command::new("ip").args(&args).status().expect("ip runs (iproute2)");
            assert!(status.success(), "ip {args:?}");
        }
        LanHost { ns, here }
    }

    /// `curl` from the other host: (HTTP status, body); status 0 when it cannot connect.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "-m", "10", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for LanHost {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: makes a network namespace as a second host on a LAN (CI runs it as root)"]
async fn from_another_host_on_the_lan_only_the_password_opens_it() {
    assert!(is_root(), "run as root (a network namespace is the second host)");
    let lan = LanHost::new();
    // A dashboard on loopback cannot be reached from the LAN at all.
    let local = Dash::start("", "", "").await;
    let port = local.url.rsplit(':').next().unwrap().to_string();
    let (code, _) = lan.curl(&[&format!("http://{}:{port}/api/status", lan.here)]);
    assert_eq!(code, 0, "a loopback dashboard is not reachable from another host");
    local.stop().await;

    let dash = Dash::start(&format!("listen = \"0.0.0.0:0\"\npassword = \"{PASSWORD}\""), "", "").await;
    let port = dash.url.rsplit(':').next().unwrap().to_string();
    let base = format!("http://{}:{port}", lan.here);
    let status = format!("{base}/api/status");
    let (code, body) = lan.curl(&[&status]);
    assert_eq!(code, 401, "no password: {body}");
    let (code, _) = lan.curl(&["-H", "Authorization: Bearer guess", &status]);
    assert_eq!(code, 401, "a wrong password");
    let (code, _) = lan.curl(&["-X", "POST", &format!("{base}/api/pause")]);
    assert_eq!(code, 401, "no action without the password");
    let (code, _) = lan.curl(&[&format!("{base}/queue")]);
    assert_eq!(code, 303, "pages lead to the login");
    let (code, body) = lan.curl(&["-H", &format!("Authorization: Bearer {PASSWORD}"), &status]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"counts\""), "{body}");
    // A browser there logs in and gets its session.
    let jar = dash.ws.path("cookies.txt");
    let jar = jar.to_str().unwrap();
    let login = format!("{base}/login");
    let (code, _) = lan.curl(&["-c", jar, "--data-urlencode", &format!("password={PASSWORD}"), "-d", "next=/", &login]);
    assert_eq!(code, 303);
    let (code, page) = lan.curl(&["-b", jar, &format!("{base}/")]);
    assert_eq!(code, 200);
    assert!(page.contains("daemon-state"), "{page}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_get_about_one_check_a_second_and_cannot_tell_the_right_password_by_timing() {
    let dash = Dash::start(&format!("password = \"{PASSWORD}\""), "", "").await;
    // 300 guesses, 8 at a time (one client's connections are capped at 32), the right password
    // hidden among them (from loopback here: the LAN's bucket works the same way).
    let started = std::time::Instant::now();
    let at_once = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let tries: Vec<_> = (0..300)
        .map(|i| {
            let request = dash.get("/api/status").bearer_auth(if i == 250 { PASSWORD } else { "guess" });
            let at_once = at_once.clone();
            tokio::spawn(async move {
                let _turn = at_once.acquire().await.unwrap();
                let sent = std::time::Instant::now();
                let answer = request.send().await.unwrap();
                (i, answer.status(), answer.headers().get("retry-after").is_some(), sent.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tries {
        answers.push(t.await.unwrap());
    }
    let took = started.elapsed();
    let checked = answers.iter().filter(|(_, s, _, _)| *s != StatusCode::TOO_MANY_REQUESTS).count();
    let limited = answers.iter().filter(|(_, s, retry, _)| *s == StatusCode::TOO_MANY_REQUESTS && *retry).count();
    let slowest = answers.iter().map(|(_, _, _, t)| *t).max().unwrap();
    println!("300 concurrent guesses in {took:?}: {checked} checked, {limited} answered 429, slowest {slowest:?}");
    assert!(checked <= 5 + took.as_secs() as usize + 1, "{checked} passwords checked in {took:?}");
    assert_eq!(checked + limited, 300, "every other guess gets 429 with Retry-After");
    assert!(slowest < Duration::from_secs(5), "every answer comes at once: no timing to read ({slowest:?})");
    let (_, right, _, _) = answers[250];
    assert!(right == StatusCode::TOO_MANY_REQUESTS || right == StatusCode::OK, "{right}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_hook_wakes_its_job_a_lost_call_falls_back_to_polling_and_a_forged_one_wakes_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let web = format!("listen = \"127.0.0.1:{port}\"\npassword = \"{PASSWORD}\"");
    let dash = Dash::start(&web, &format!("hook_url = \"http://127.0.0.1:{port}/\""), "").await;
    dash.sim.update(|c| c.processing_ms = 3000);
    let polls = |sim: &Simulator| sim.stats().polls_by_job.values().sum::<u64>();

    // Called: the job is asked about once, when the server says it is done.
    dash.ws.drop_file("called.jpg", &retouchd::imagegen::jpeg_bytes(64, 48, [10, 20, 30]));
    job_in(&dash, "called.jpg", "done").await;
    let stats = dash.sim.stats();
    assert_eq!(stats.hooks.get("204"), Some(&1), "{:?}", stats.hooks);
    assert_eq!(polls(&dash.sim), 1, "one status request, at the call (the fallback is 4x slower)");
    let url = stats.hook_urls.values().next().unwrap().clone();
    assert!(url.starts_with(&format!("http://127.0.0.1:{port}/hook/")), "{url}");

    // Lost: polling finds the job all the same.
    dash.sim.update(|c| c.hook_drop_rate = 1.0);
    dash.ws.drop_file("lost.jpg", &retouchd::imagegen::jpeg_bytes(64, 48, [30, 20, 10]));
    job_in(&dash, "lost.jpg", "done").await;
    assert_eq!(dash.sim.stats().hooks.get("lost"), Some(&1));

    // Forged: a made-up token, or a done job's, wakes nothing; no password is asked for.
    for (method, path) in [
        ("POST", "/hook/0123456789abcdef0123456789abcdef"),
        ("GET", "/hook/x"),
        ("POST", &url[url.find("/hook/").unwrap()..]),
    ] {
        let request = if method == "GET" { dash.get(path) } else { dash.post(path) };
        assert_eq!(request.send().await.unwrap().status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A call before the job is done is not believed: the job is asked, and goes on waiting.
    dash.sim.update(|c| {
        c.hook_drop_rate = 0.0;
        c.processing_ms = 60_000;
    });
    let known: Vec<String> = dash.sim.stats().hook_urls.into_values().collect();
    dash.ws.drop_file("early.jpg", &retouchd::imagegen::jpeg_bytes(64, 48, [50, 60, 70]));
    job_in(&dash, "early.jpg", "processing").await;
    let early = wait_for("the early job's hook URL", Duration::from_secs(10), async || {
        dash.sim.stats().hook_urls.into_values().find(|u| !known.contains(u))
    })
    .await;
    let before = polls(&dash.sim);
    let answer = dash.post(&early[early.find("/hook/").unwrap()..]).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    wait_for("the job asked at once", Duration::from_secs(5), async || (polls(&dash.sim) > before).then_some(())).await;
    job_in(&dash, "early.jpg", "processing").await;
    assert_eq!(dash.sim.stats().charged_starts, 3);
    dash.stop().await;
}
