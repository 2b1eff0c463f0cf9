//! What real studios drop into an inbox and what real days do to a daemon: folder and file
//! names that are not UTF-8, relative paths in the config, an outbox it cannot write. Whatever a
//! job meets fails that job alone, never the daemon. In-process on the paused clock where it
//! can be, the binary where a process is needed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use retouchd::config::{self, Environment};
use retouchd::daemon::{self, RunOptions};
use retouchd::sim::SimConfig;

use crate::support::*;

fn odd(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

#[tokio::test(start_paused = true)]
async fn a_folder_and_a_file_whose_names_are_not_utf8_are_delivered_under_their_own_names() {
    let sim = start_sim(SimConfig { ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let folder = odd(b"Fr\xe9d\xe9ric");
    let file = odd(b"Portr\xe4t \x81.jpg");
    let rel: PathBuf = [folder.clone(), file.clone()].iter().collect();
    std::fs::create_dir_all(ws.path("inbox").join(&folder)).unwrap();
    std::fs::write(ws.path("inbox").join(&rel), jpeg()).unwrap();
    std::fs::write(ws.path("inbox").join(odd(b"top\xff.jpg")), jpeg()).unwrap();
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let options = RunOptions { once: true, ..RunOptions::default() };
    let summary = tokio::time::timeout(Duration::from_secs(600), daemon::run(config, options, std::future::pending()))
        .await
        .expect("the daemon finishes")
        .expect("the daemon runs to the end");
    assert_eq!((summary.done, summary.failed), (2, 0), "{summary:?}");
    assert!(ws.path("done").join(&rel).is_file(), "the source keeps its name in done/");
    assert!(ws.path("done").join(odd(b"top\xff.jpg")).is_file());
    let layers = ws.path("outbox").join(&folder).join(odd(b"Portr\xe4t \x81"));
    assert!(layers.is_dir(), "the layers folder keeps the name's bytes: {:?}", ws.files("outbox"));
    assert!(ws.path("outbox").join(odd(b"top\xff")).is_dir(), "no U+FFFD in names: {:?}", ws.files("outbox"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_plain_http_server_with_an_https_url_says_what_failed_and_hints_at_http() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let text = std::fs::read_to_string(&ws.config).unwrap().replace("http://", "https://");
    std::fs::write(&ws.config, text).unwrap();
    let out = ws.command(&["check"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), None, "killed by a signal (SIGPIPE) after printing:\n{stdout}{stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("plain HTTP") && stderr.contains("http:// URL"), "{stdout}{stderr}");
}

#[tokio::test(start_paused = true)]
async fn a_paid_result_that_cannot_be_published_for_long_waits_and_is_delivered_never_thrown_away() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "max_job_age = \"2m\"", "");
    ws.drop_file("shoot/a.jpg", &jpeg());
    // Where the result must go is blocked: a file stands where its folder belongs.
    std::fs::write(ws.path("outbox/shoot"), b"in the way").unwrap();
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(config, RunOptions::default(), async {
        let _ = stopped.await;
    }));
    // Well past max_job_age, the result still waits in staging.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(ws.files("failed").is_empty(), "a paid result was given up: {:?}", ws.files("failed"));
    std::fs::remove_file(ws.path("outbox/shoot")).unwrap();
    let done = ws.path("done/shoot/a.jpg");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done.exists() {
        assert!(std::time::Instant::now() < deadline, "not delivered: {:?}", ws.files("outbox"));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let _ = stop.send(());
    let summary = task.await.unwrap().unwrap();
    assert_eq!(summary.failed, 0);
    assert!(ws.path("outbox/shoot/a").is_dir(), "{:?}", ws.files("outbox"));
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(start_paused = true)]
async fn no_credit_is_spent_while_the_outbox_cannot_take_the_result_and_uploads_resume_once_it_can() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    // Nobody (root included) can deliver into this outbox: a file stands where staging goes.
    std::fs::write(ws.path("outbox").join(retouchd::deliver::STAGING_DIR), b"in the way").unwrap();
    let check = ws.command(&["check"]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(3), "check must refuse it: {said}");
    assert!(said.contains("outbox") && said.contains("write access"), "{said}");
    ws.drop_file("a.jpg", &jpeg());
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(config, RunOptions::default(), async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(sim.stats().start_requests, 0, "a photo was sent although its result could not be delivered");
    assert!(ws.files("failed").is_empty());
    std::fs::remove_file(ws.path("outbox").join(retouchd::deliver::STAGING_DIR)).unwrap();
    let done = ws.path("done/a.jpg");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done.exists() {
        assert!(std::time::Instant::now() < deadline, "not delivered once the outbox works");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(sim.stats().charged_starts, 1);
}
