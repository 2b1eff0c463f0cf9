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
