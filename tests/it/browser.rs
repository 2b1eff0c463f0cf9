//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from `tests/browser`): the real binary with `[web]` and a password, the simulator, and
//! `tests/browser/dashboard.mjs` clicking through it like a user. Screenshots land in
//! `target/dashboard-screenshots/`. Needs Node.js, `npm ci --prefix tests/browser` and
//! `/usr/bin/chromium` (or `RETOUCHD_TEST_CHROMIUM`); CI installs them.

use std::process::Command;
use std::time::Duration;

use crate::dashboard::{PASSWORD, spawn_with_dashboard};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and Node.js with playwright-core (tests/browser); CI installs them"]
async fn a_user_logs_in_watches_a_file_go_through_live_and_retries_a_failure_in_chromium() {
    let chromium = std::env::var("RETOUCHD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&chromium).exists(), "{chromium} is missing: apt-get install chromium");
    let root = env!("CARGO_MANIFEST_DIR");
    let modules = format!("{root}/tests/browser/node_modules/playwright-core");
    assert!(std::path::Path::new(&modules).is_dir(), "run `npm ci --prefix tests/browser` first");

    let sim = start_sim(fast_sim()).await;
    let (ws, _daemon, url) = spawn_with_dashboard(&sim).await;

    // One job fails at the server first; the server works again before the user retries it.
    sim.update(|c| c.fail_rate = 1.0);
    ws.drop_file("needs-retry.jpg", &retouchd::imagegen::portrait_jpeg(800, 600, [196, 150, 128]));
    wait_for("needs-retry.jpg in failed/", Duration::from_secs(30), async || {
        ws.files("failed").iter().any(|f| f == "needs-retry.jpg").then_some(())
    })
    .await;
    sim.update(|c| c.fail_rate = 0.0);

    let sample = ws.path("sample.jpg");
    std::fs::write(&sample, retouchd::imagegen::portrait_jpeg(1200, 900, [205, 160, 140])).unwrap();
    let screenshots = format!("{root}/target/dashboard-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let args = serde_json::json!({
        "url": url.trim_end_matches('/'),
        "password": PASSWORD,
        "inbox": ws.path("inbox"),
        "sample": sample,
        "failed_name": "needs-retry.jpg",
        "screenshots": screenshots,
        "chromium": chromium,
    });
    let script = format!("{root}/tests/browser/dashboard.mjs");
    let output = tokio::task::spawn_blocking(move || Command::new("node").arg(script).arg(args.to_string()).output())
        .await
        .unwrap()
        .expect("node runs (apt-get install nodejs)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser test failed: {said}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        ws.log("daemon")
    );
    let seen: serde_json::Value = serde_json::from_str(said.trim().lines().last().unwrap()).unwrap();
    assert_eq!(seen["state"], "Running");
    assert_eq!(seen["done"], "2", "both files delivered: {seen}");
    for shot in ["login.png", "queue.png", "overview.png", "job.png", "phone.png"] {
        let bytes = std::fs::read(format!("{screenshots}/{shot}")).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{shot}");
    }
    // Each file was paid for once: the failure, its retry, and the live drop.
    assert_eq!(sim.stats().charged_starts, 3);
}
