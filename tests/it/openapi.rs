//! `docs/openapi.yaml` against the running daemon, by schemathesis (a property-based API
//! tester from PyPI): generated requests for every operation, valid and invalid, with and
//! without the password, and chained ones (a job id from one answer used in the next). Every
//! answer must match its documented schema and status, and none may be a 500. The event
//! stream (endless) is left out. Needs schemathesis in the test venv, which `tests/run`
//! installs.

use std::process::Command;
use std::time::Duration;

use crate::dashboard::{PASSWORD, spawn_with_dashboard};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis in the test venv: tests/run installs it"]
async fn every_answer_of_the_running_daemon_matches_the_openapi_document() {
    let schemathesis = std::path::Path::new(&python()).with_file_name("schemathesis");
    assert!(schemathesis.exists(), "{} is missing: run tests/run, which installs it", schemathesis.display());

    let sim = start_sim(fast_sim()).await;
    let (ws, _daemon, url) = spawn_with_dashboard(&sim).await;
    // Something to list: a delivered job and a failed one.
    ws.drop_file("kept.jpg", &jpeg());
    wait_for("kept.jpg delivered", Duration::from_secs(30), async || {
        ws.files("done").contains(&"kept.jpg".into()).then_some(())
    })
    .await;
    sim.update(|c| c.fail_rate = 1.0);
    ws.drop_file("refused.jpg", &distinct_jpeg(1));
    wait_for("refused.jpg failed", Duration::from_secs(30), async || {
        ws.files("failed").contains(&"refused.jpg".into()).then_some(())
    })
    .await;
    sim.update(|c| c.fail_rate = 0.0);

    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let report = ws.path("schemathesis");
    let workdir = ws.path("");
    let url = url.trim_end_matches('/').to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .args(["run", document, "--url", &url, "--header"])
            .arg(format!("Authorization: Bearer {PASSWORD}"))
            .args(["--checks", "all", "--exclude-path", "/api/events", "--max-examples", "30", "--seed", "11"])
            .args(["--workers", "1", "--request-timeout", "20", "--report", "junit", "--report-dir"])
            .arg(report)
            .env("NO_COLOR", "1")
            // Its cache of findings goes in the test's folder, not the repository.
            .current_dir(workdir)
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs");
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{said}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        ws.log("daemon").lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(said.contains("Tested: 13"), "every operation but the event stream was tested:\n{said}");
    assert!(!ws.log("daemon").contains("panicked"), "no handler panicked");
}
