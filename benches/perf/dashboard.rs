//! The dashboard on a journal of a million jobs: the time the daemon spends on each page
//! (its `Server-Timing` header, so the network and the client are not counted), and the CPU
//! that 100 open pages cost it while nothing happens.

use std::time::{Duration, Instant};

use crate::Row;
use crate::rig::{Inbox, Rig, instant_sim};

const JOBS: usize = 1_000_000;
const PAGES: usize = 100;
/// Requests per page measured (after 3 unmeasured ones).
const TRIES: usize = 30;

/// The `app;dur=` of a response, in milliseconds.
fn server_time(response: &reqwest::Response) -> f64 {
    response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("app;dur="))
        .and_then(|v| v.parse().ok())
        .expect("a Server-Timing header")
}

pub fn dashboard(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let rig = Rig::new(runtime, instant_sim());
    let config = rig.config("poll_interval = \"2s\"", &[Inbox::new("a")]);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("[web]\nlisten = \"127.0.0.1:0\"\n{text}")).expect("config with [web]");
    let building = Instant::now();
    rig.million_jobs(JOBS, &rig.path("a/inbox"), &rig.path("a/outbox"));
    eprintln!("   journal of {JOBS} jobs built in {:.0} s", building.elapsed().as_secs_f64());
    let (daemon, _) = rig.start_daemon(&config);
    let mut url = String::new();
    rig.wait("the dashboard's address", Duration::from_secs(30), || {
        url = rig.live_status().and_then(|s| s.dashboard).unwrap_or_default();
        !url.is_empty()
    });
    let base = url.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    let pages: [(&str, &str, bool); 9] = [
        ("overview page", "/", true),
        ("overview data (API)", "/api/overview", true),
        ("queue page: jobs in flight", "/queue", true),
        ("queue page: all files, newest first", "/queue?state=all", true),
        ("queue page: delivered", "/queue?state=done", true),
        ("queue page: failed (1 in 50)", "/queue?state=failed", true),
        ("queue page: delivered, half way down", "/queue?state=done&before=500000", true),
        ("name search, matching the newest file", "/api/jobs?q=IMG_0999999", false),
        ("name search, matching nothing (reads every job)", "/api/jobs?q=no-such-name", false),
    ];
    for (what, path, judged) in pages {
        let mut times: Vec<f64> = runtime.block_on(async {
            let mut times = Vec::new();
            for i in 0..TRIES + 3 {
                let answer = http.get(format!("{base}{path}")).send().await.expect("the dashboard answers");
                assert!(answer.status().is_success(), "{path}: {}", answer.status());
                let ms = server_time(&answer);
                answer.bytes().await.expect("body");
                if i >= 3 {
                    times.push(ms);
                }
            }
            times
        });
        times.sort_by(f64::total_cmp);
        let (median, worst) = (times[TRIES / 2], times[TRIES - 1]);
        let measure = format!("{what} `{path}`, {JOBS} jobs, server time, median / worst of {TRIES}");
        let value = format!("{median:.1} / {worst:.1} ms");
        rows.push(if judged {
            Row::judged("dashboard", measure, value, "< 50 ms", worst < 50.0)
        } else {
            Row::info("dashboard", measure, value)
        });
    }

    // 100 pages connected to the live events, nothing happening.
    let streams: Vec<_> = (0..PAGES)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/api/events"));
            runtime.spawn(async move {
                let mut answer = http.get(url).send().await.expect("events");
                while let Ok(Some(_)) = answer.chunk().await {}
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let before = daemon.cpu();
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let share = (daemon.cpu() - before).as_secs_f64() / since.elapsed().as_secs_f64() * 100.0;
    for s in &streams {
        s.abort();
    }
    daemon.stop();
    rows.push(Row::judged(
        "dashboard",
        format!("CPU of the daemon with {PAGES} pages open on the live events, idle, over 60 s"),
        format!("{share:.2} % of a core"),
        "< 5 %",
        share < 5.0,
    ));
    rows
}
