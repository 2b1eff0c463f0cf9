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

#[tokio::test(start_paused = true)]
async fn the_same_photo_dropped_again_reuses_the_paid_result_even_after_the_outputs_were_moved() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let photo = jpeg();
    ws.drop_file("shoot/IMG_1.jpg", &photo);
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(daemon::run(config, RunOptions::default(), async {
        let _ = stopped.await;
    }));
    let wait_for_file = async |path: PathBuf| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "{} never came", path.display());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    wait_for_file(ws.path("done/shoot/IMG_1.jpg")).await;
    // The studio moves the outputs away, then copies the shoot in again under another name.
    std::fs::remove_dir_all(ws.path("outbox/shoot")).unwrap();
    ws.drop_file("shoot/IMG_1 copy.jpg", &photo);
    wait_for_file(ws.path("done/shoot/IMG_1 copy.jpg")).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(sim.stats().charged_starts, 1, "the same photo was paid for twice");
    let layers = ws.path("outbox/shoot/IMG_1 copy");
    assert!(layers.join("result.json").is_file(), "its layers came from the first job: {:?}", ws.files("outbox"));
    assert!(
        ws.path("outbox/shoot/IMG_1 copy.jpg").is_file() || ws.files("outbox").iter().any(|f| f.contains("IMG_1 copy"))
    );
}

#[tokio::test(start_paused = true)]
async fn resend_identical_pays_again_on_purpose() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "resend_identical = true");
    ws.drop_file("a.jpg", &jpeg());
    ws.drop_file("b.jpg", &jpeg());
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let options = RunOptions { once: true, ..RunOptions::default() };
    let summary = daemon::run(config, options, std::future::pending()).await.unwrap();
    assert_eq!(summary.done, 2);
    assert_eq!(sim.stats().charged_starts, 2);
}

/// A photo whose XMP binds EXIF's namespace to another prefix (`geo:`), with a location.
fn photo_with_located_xmp() -> Vec<u8> {
    let xmp = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:geo="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" geo:GPSLatitude="48,51.29N" geo:GPSLongitude="2,17.4E" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>"#;
    let meta = retouchd::render::metadata::Metadata { xmp: Some(xmp.as_bytes().to_vec()), ..Default::default() };
    meta.insert_into_jpeg(&retouchd::imagegen::portrait_jpeg(64, 48, [200, 160, 140]))
}

/// What exiftool (an independent reader) finds in `path`, as `group:tag` → value.
fn exiftool(path: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let out =
        std::process::Command::new("exiftool").args(["-j", "-G", "-n"]).arg(path).output().expect("exiftool runs");
    let all: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().next().unwrap()
}

#[tokio::test(start_paused = true)]
#[ignore = "needs exiftool (Debian's libimage-exiftool-perl); CI installs it"]
async fn no_gps_removes_the_xmp_location_under_any_prefix_as_exiftool_reads_it() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "[watch.output]\nflat = \"jpeg\"\nmetadata = \"no-gps\"");
    let source = ws.drop_file("a.jpg", &photo_with_located_xmp());
    let before = exiftool(&source);
    assert!(before.keys().any(|k| k.contains("GPSLatitude")), "the source has a location: {before:?}");
    let config = config::load(&ws.config, &Environment::default()).unwrap();
    let options = RunOptions { once: true, ..RunOptions::default() };
    daemon::run(config, options, std::future::pending()).await.unwrap();
    let after = exiftool(&ws.path("outbox/a.jpg"));
    let located: Vec<&String> = after.keys().filter(|k| k.contains("GPS")).collect();
    assert!(located.is_empty(), "the location is still in the finished photo: {located:?} of {after:?}");
    assert_eq!(after.get("XMP:Rating").and_then(|v| v.as_i64()), Some(4), "the rest of the XMP stays: {after:?}");
}
