//! The daemon in-process ([`retouchd::daemon::run`]: coordinator, admission, runners) against
//! the in-process simulator, on tokio's paused clock: settle times, processing, poll intervals,
//! backoffs, retry intervals and outages pass as fast as the work allows. What a user would see
//! (folders, the journal, `status`, the simulator's charges) is checked directly. Only what
//! needs a real process (signals, systemd's socket, kill -9, mounts, exit codes) spawns the
//! binary, in the other modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use retouchd::config::{self, Config, Environment};
use retouchd::daemon::{self, DaemonError, LiveStatus, RunOptions, Summary};
use retouchd::deliver::{STAGING_DIR, Target};
use retouchd::imagegen;
use retouchd::job::{JobState, StateName};
use retouchd::journal::{Journal, Source};
use retouchd::report;
use retouchd::sim::{Hostile, SimConfig};
use retouchd::source::Stamp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::support::*;

fn load(ws: &Workspace) -> Config {
    config::load(&ws.config, &Environment::default()).expect("the test config is valid")
}

/// Runs the daemon with `--once` semantics to the end.
async fn run_once(ws: &Workspace) -> Summary {
    let options = RunOptions { once: true, ..RunOptions::default() };
    daemon::run(load(ws), options, std::future::pending()).await.expect("the daemon runs")
}

/// A daemon running in the background of the test, on the test's runtime.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<Summary, DaemonError>>,
    reloads: mpsc::Sender<Config>,
}

impl Running {
    fn start(ws: &Workspace) -> Running {
        Running::start_with(ws, None)
    }

    /// As [`Running::start`], sending notifications through `transport`.
    fn start_with(ws: &Workspace, transport: Option<retouchd::notify::Transport>) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let (reloads, reload_rx) = mpsc::channel(1);
        let options = RunOptions { reloads: Some(reload_rx), transport, ..RunOptions::default() };
        let task = tokio::spawn(daemon::run(load(ws), options, async {
            let _ = stopped.await;
        }));
        Running { stop: Some(stop), task, reloads }
    }

    async fn stop(mut self) -> Summary {
        let _ = self.stop.take().map(|s| s.send(()));
        (&mut self.task).await.expect("the daemon task ends").expect("the daemon ran")
    }
}

/// Waits (in test time) until `check` holds; fails after a minute of real time with `what`
/// and what `show` says.
async fn until(what: &str, mut check: impl FnMut() -> bool, show: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {}", show());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A notification transport that takes every notice and keeps `kind: message` of each.
fn recording_transport() -> (retouchd::notify::Transport, Arc<std::sync::Mutex<Vec<String>>>) {
    let told: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let transport: retouchd::notify::Transport = {
        let told = Arc::clone(&told);
        Arc::new(move |_, notice: retouchd::notify::Notice, _| {
            let told = Arc::clone(&told);
            Box::pin(async move {
                told.lock().unwrap().push(format!("{}: {}", notice.event.kind().as_str(), notice.message));
                Ok(())
            })
        })
    };
    (transport, told)
}

fn state_counts(ws: &Workspace) -> BTreeMap<StateName, u64> {
    Journal::open_read_only(&ws.path("state")).and_then(|j| j.counts()).unwrap_or_default()
}

fn photo(n: u32) -> Vec<u8> {
    imagegen::jpeg_bytes(40 + (n % 200) as u16, 30 + (n / 200) as u16, [(n % 250) as u8, 80, 120])
}

fn stamp_of(path: &Path) -> Stamp {
    Stamp::of(&std::fs::symlink_metadata(path).unwrap())
}

#[tokio::test(start_paused = true)]
async fn every_restart_rule_resumes_its_job_and_nothing_is_charged_twice() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let client = client_for(&sim, TOKEN);
    let inbox = ws.path("inbox");
    let outbox = ws.path("outbox");
    std::fs::write(inbox.join(retouchd::watch::MARKER), b"").unwrap();
    let names = ["submitting", "processing", "fetching", "delivering", "delivered", "failing", "rejecting", "done"];
    for (i, name) in names.iter().enumerate() {
        ws.drop_file(&format!("{name}.jpg"), &photo(i as u32));
    }
    let source = |name: &str| {
        let rel = PathBuf::from(format!("{name}.jpg"));
        Source { inbox: inbox.clone(), stamp: stamp_of(&inbox.join(&rel)), rel_path: rel }
    };
    let host = sim.base_url();
    let started = |name: &str, key: &str| {
        let (client, path) = (client.clone(), inbox.join(format!("{name}.jpg")));
        let key = key.to_string();
        async move { client.start(&path, "x.jpg", LAYERED, &key).await.expect("the sim accepts it").id }
    };
    let processing_id = started("processing", "k-processing").await;
    let fetching_id = started("fetching", "k-fetching").await;
    {
        let journal = Journal::open(&ws.path("state")).unwrap();
        journal.mark(&inbox).unwrap();
        journal.insert(&source("submitting"), &JobState::Submitting { key: "k-submitting".into() }).unwrap();
        let p = JobState::Processing { task_id: processing_id.clone(), host: host.clone() };
        journal.insert(&source("processing"), &p).unwrap();
        let f = JobState::Fetching { task_id: fetching_id.clone(), host: host.clone() };
        journal.insert(&source("fetching"), &f).unwrap();
        // Staged before the crash: published without asking the server.
        let id = journal.insert(&source("delivering"), &JobState::Submitting { key: "k-unused".into() }).unwrap();
        let staged = outbox.join(STAGING_DIR).join(format!("job-{id}.jpg"));
        write(&outbox.join(STAGING_DIR), &format!("job-{id}.jpg"), &photo(99));
        let target = Target { dir: outbox.clone(), stem: "delivering".into(), ext: Some("jpg".into()), placed: None };
        let d = JobState::Delivering {
            task_id: "gone-long-ago".into(),
            host: host.clone(),
            staged,
            target,
            extras: vec![],
            render_error: None,
        };
        journal.update(&journal.get(id).unwrap().unwrap(), &d).unwrap();
        let out = write(&outbox, "delivered.jpg", &photo(98));
        journal
            .insert(
                &source("delivered"),
                &JobState::Delivered { outputs: vec![out], render_error: None, findings: None },
            )
            .unwrap();
        journal.insert(&source("failing"), &JobState::Failing { reason: "the server said no".into() }).unwrap();
        journal.insert(&source("rejecting"), &JobState::Rejecting { reason: "not a photo".into() }).unwrap();
        journal
            .insert(
                &source("done"),
                &JobState::Done { outputs: vec![], moved_to: None, render_error: None, findings: None },
            )
            .unwrap();
    }
    assert_eq!(sim.stats().charged_starts, 2);

    let summary = run_once(&ws).await;

    assert_eq!((summary.done, summary.failed, summary.rejected), (5, 1, 1), "done stays done and is not counted");
    let before: Vec<&Path> = summary.before.iter().map(|b| b.file.as_path()).collect();
    assert_eq!(before, [inbox.join("done.jpg")], "the done job's file, kept on success, is reported, not sent");
    assert_eq!(
        ws.files("done"),
        ["delivered.jpg", "delivering.jpg", "fetching.jpg", "processing.jpg", "submitting.jpg"]
    );
    let failed = ws.files("failed");
    assert_eq!(failed, ["failing.jpg", "failing.jpg.error.txt", "rejecting.jpg", "rejecting.jpg.error.txt"]);
    let note = std::fs::read_to_string(ws.path("failed/failing.jpg.error.txt")).unwrap();
    assert!(note.contains("the server said no"), "{note}");
    assert_eq!(ws.files("inbox"), ["done.jpg"], "a done job's file (kept on success) is not sent again");
    let outbox_files = ws.files("outbox");
    assert!(outbox_files.contains(&"delivering.jpg".to_string()), "{outbox_files:?}");
    for name in ["submitting", "processing", "fetching"] {
        assert!(outbox_files.contains(&format!("{name}/result.json")), "{name}: {outbox_files:?}");
    }
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 3, "only the submitting job's upload is new: {stats:?}");
    assert_eq!(stats.requests_by_key.get("k-submitting"), Some(&1));
    assert_eq!(stats.requests_by_key.get("k-processing"), Some(&1), "a job at the server is never sent again");
    assert!(stats.polls_by_job.contains_key(&processing_id), "processing resumes by polling");
    assert!(!stats.polls_by_job.contains_key(&fetching_id), "fetching resumes by downloading");
}

/// A crash while rendering: the job resumes from the staged layers, outputs half made before
/// are discarded, the finished photo is made again, and the server is not asked.
#[tokio::test(start_paused = true)]
async fn a_crash_while_rendering_renders_again_from_the_staged_layers() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "[watch.output]\npsd = true");
    let (inbox, outbox) = (ws.path("inbox"), ws.path("outbox"));
    std::fs::write(inbox.join(retouchd::watch::MARKER), b"").unwrap();
    ws.drop_file("portrait.jpg", &imagegen::portrait_jpeg(120, 160, [220, 170, 140]));
    let source =
        Source { inbox: inbox.clone(), stamp: stamp_of(&inbox.join("portrait.jpg")), rel_path: "portrait.jpg".into() };
    {
        let journal = Journal::open(&ws.path("state")).unwrap();
        journal.mark(&inbox).unwrap();
        let id = journal.insert(&source, &JobState::Submitting { key: "k".into() }).unwrap();
        let staging = outbox.join(STAGING_DIR);
        let staged = staging.join(format!("job-{id}"));
        std::fs::create_dir_all(&staged).unwrap();
        let layers = [
            ("index=0&blendmode=normal&name=Heal.png", imagegen::LayerLook::Patches),
            ("index=1&blendmode=softLight&name=Dodge Burn.png", imagegen::LayerLook::GreyRelief),
        ];
        for (i, (name, look)) in layers.into_iter().enumerate() {
            std::fs::write(staged.join(name), imagegen::layer_png(look, 120, 160, i as u64)).unwrap();
        }
        // Half made when the process died.
        write(&staging.join(format!("job-{id}.render")), "flat.jpg", b"\xFF\xD8 truncated");
        let target = Target { dir: outbox.clone(), stem: "portrait".into(), ext: None, placed: None };
        let rendering = JobState::Rendering { task_id: "gone".into(), host: sim.base_url(), staged, target };
        journal.update(&journal.get(id).unwrap().unwrap(), &rendering).unwrap();
    }
    let summary = run_once(&ws).await;
    assert_eq!(summary.done, 1);
    let files = ws.files("outbox");
    assert_eq!(
        files,
        [
            "portrait.jpg",
            "portrait.psd",
            "portrait/index=0&blendmode=normal&name=Heal.png",
            "portrait/index=1&blendmode=softLight&name=Dodge Burn.png"
        ],
        "layers, finished photo and PSD; nothing left in staging"
    );
    let flat = std::fs::read(ws.path("outbox/portrait.jpg")).unwrap();
    let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&flat));
    decoder.decode().expect("a whole JPEG, made again");
    assert_eq!(decoder.info().map(|i| (i.width, i.height)), Some((120, 160)));
    assert_eq!(sim.stats().charged_starts, 0, "the server is not asked again");
    assert!(ws.path("done/portrait.jpg").exists());
}

#[tokio::test(start_paused = true)]
async fn a_bad_token_pauses_uploads_until_it_works_and_status_says_so() {
    let sim = start_sim(SimConfig { token: "the-right-one".into(), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "token_retry = \"1m\"", "");
    ws.drop_file("a.jpg", &photo(1));
    ws.drop_file("b.jpg", &photo(2));
    let started = tokio::time::Instant::now();
    let daemon = Running::start(&ws);
    let state = ws.path("state");
    until("status shows the pause", || LiveStatus::read(&state).is_some_and(|s| s.paused.is_some()), String::new).await;
    assert!(started.elapsed() < Duration::from_secs(5), "shown at once, not at the next 10 s pulse");
    let live = LiveStatus::read(&state).unwrap();
    assert_eq!((live.paused.as_deref(), live.pause_detail.as_deref()), (Some("token"), Some("Token issue")));
    let config = load(&ws);
    let journal = Journal::open_read_only(&config.state_dir).unwrap();
    let text = report::render(&report::report(&journal, &config).unwrap());
    assert!(text.contains("PAUSED (token): Token issue — the server refused the token"), "{text}");
    assert!(!text.contains("journalctl"), "not under systemd: no journalctl hint: {text}");
    until("the token refused twice", || sim.stats().refused_starts >= 2, || format!("{:?}", sim.stats())).await;
    assert!(ws.files("failed").is_empty(), "a bad token never fails a file");
    assert_eq!(ws.files("inbox"), ["a.jpg", "b.jpg"], "files stay where they are");
    let refused = sim.stats().refused_starts;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sim.stats().refused_starts, refused, "one probe per token_retry, not a retry storm");

    sim.update(|c| {
        c.token = TOKEN.into();
        c.quota = Some(10);
    });
    until("both delivered", || ws.files("done").len() == 2, || format!("{:?}", sim.stats())).await;
    until(
        "status shows the credits",
        || LiveStatus::read(&state).is_some_and(|s| s.quota_left == Some(8)),
        || format!("{:?}", LiveStatus::read(&state)),
    )
    .await;
    assert_eq!(LiveStatus::read(&state).unwrap().paused, None);
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 2);
    assert!(LiveStatus::read(&state).is_none(), "the live status goes with the daemon");
}

/// The files `status` lists as waiting, with why (kind) and in words.
fn waiting_now(ws: &Workspace) -> Vec<(String, String, String)> {
    let config = load(ws);
    let Ok(journal) = Journal::open_read_only(&config.state_dir) else { return Vec::new() };
    let Ok(report) = report::report(&journal, &config) else { return Vec::new() };
    let kind = |w: &report::WaitingView| serde_json::to_value(&w.why).unwrap()["kind"].as_str().unwrap().to_string();
    let mut waiting: Vec<_> = report
        .waiting
        .iter()
        .map(|w| (Path::new(&w.file).file_name().unwrap().to_string_lossy().into_owned(), kind(w), w.says.clone()))
        .collect();
    waiting.sort();
    waiting
}

#[tokio::test(start_paused = true)]
async fn every_file_that_waits_is_listed_with_why_and_a_held_job_says_why() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "max_in_flight = 1", "incomplete_grace = \"2m\"");
    ws.drop_file("a.jpg", &photo(1));
    let daemon = Running::start(&ws);
    until("a.jpg delivered", || ws.files("done") == ["a.jpg"], || format!("{:?}", state_counts(&ws))).await;
    // The delivered original copied back unchanged (cp -p), an empty file and a truncated one.
    let original = ws.path("done/a.jpg");
    std::fs::copy(&original, ws.path("inbox/a.jpg")).unwrap();
    let mtime = std::fs::metadata(&original).unwrap().modified().unwrap();
    std::fs::File::options().write(true).open(ws.path("inbox/a.jpg")).unwrap().set_modified(mtime).unwrap();
    ws.drop_file("empty.jpg", b"");
    ws.drop_file("cut.jpg", &photo(2)[..300]);
    until(
        "the three listed with why",
        || {
            waiting_now(&ws).iter().map(|w| w.1.as_str()).collect::<Vec<_>>()
                == ["done_before", "incomplete", "incomplete"]
        },
        || format!("{:?}", waiting_now(&ws)),
    )
    .await;
    let waiting = waiting_now(&ws);
    assert!(waiting[0].2.contains("job #1 delivered it") && waiting[0].2.contains("--again"), "{waiting:?}");
    assert!(waiting[1].2.contains("fails in 2m") || waiting[1].2.contains("fails in 1m"), "{waiting:?}");
    let config = load(&ws);
    let text = report::render(&report::report(&Journal::open_read_only(&config.state_dir).unwrap(), &config).unwrap());
    assert!(text.contains("waiting, not sent yet (3):"), "{text}");
    assert!(text.contains("empty.jpg — incomplete (still being copied, or truncated): it fails in"), "{text}");
    assert!(!text.contains(" in flight,"), "the header repeats no count its lists could contradict: {text}");

    // The server refuses the token: the job at the gate says why, the queued file too.
    sim.update(|c| c.token = "another".into());
    ws.drop_file("b.jpg", &photo(3));
    ws.drop_file("c.jpg", &photo(4));
    until(
        "b held by the pause and c queued behind it",
        || {
            let config = load(&ws);
            let Ok(report) = Journal::open_read_only(&config.state_dir).and_then(|j| report::report(&j, &config))
            else {
                return false;
            };
            report
                .in_flight
                .iter()
                .any(|j| j.waiting.as_deref().is_some_and(|w| w.contains("uploads are paused: token")))
                && report
                    .waiting
                    .iter()
                    .any(|w| w.file.ends_with("c.jpg") && w.says.starts_with("uploads are paused: token"))
        },
        || format!("{:?}", LiveStatus::read(&ws.path("state"))),
    )
    .await;
    // The incomplete files fail once their grace is over, and leave the list.
    tokio::time::sleep(Duration::from_secs(150)).await;
    let failed = || ws.files("failed").iter().filter(|f| f.ends_with(".jpg")).cloned().collect::<Vec<_>>();
    until("the incomplete files failed", || failed() == ["cut.jpg", "empty.jpg"], || format!("{:?}", failed())).await;
    until(
        "they left the list",
        || waiting_now(&ws).iter().map(|w| w.0.as_str()).collect::<Vec<_>>() == ["a.jpg", "c.jpg"],
        || format!("{:?}", waiting_now(&ws)),
    )
    .await;
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 1, "the copy of a.jpg was not paid for again");
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_answered_with_401_pauses_uploads_with_the_servers_message() {
    let sim = start_sim(SimConfig { token: "the-right-one".into(), token_401: true, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "token_retry = \"1m\"", "");
    ws.drop_file("a.jpg", &photo(1));
    let daemon = Running::start(&ws);
    let state = ws.path("state");
    until("status shows the pause", || LiveStatus::read(&state).is_some_and(|s| s.paused.is_some()), String::new).await;
    let live = LiveStatus::read(&state).unwrap();
    assert_eq!(live.paused.as_deref(), Some("token"));
    assert_eq!(live.pause_detail.as_deref(), Some("Token is invalid or expired"));
    assert!(ws.files("failed").is_empty(), "a token problem never fails a file");
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 0);
}

#[tokio::test(start_paused = true)]
async fn face_aware_plugins_that_find_no_face_are_flagged_and_the_face_count_is_shown() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.set_tasks(r#"[ { Plugin = "Face Detection" }, { Plugin = "Eye Vessels", Alpha1 = 1, Layer = 1 } ]"#);
    ws.drop_file("with-face.jpg", &photo(1));
    run_once(&ws).await;
    sim.update(|c| c.no_faces = true);
    ws.drop_file("landscape.jpg", &photo(2));
    run_once(&ws).await;
    let config = load(&ws);
    let journal = Journal::open_read_only(&config.state_dir).unwrap();
    let report = report::report(&journal, &config).unwrap();
    let flagged: Vec<&str> = report.recent_no_face.iter().map(|j| j.file.as_str()).collect();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(flagged[0].ends_with("landscape.jpg"), "{flagged:?}");
    assert_eq!(report.recent_no_face[0].faces, Some(0));
    let done = journal.recent_latest(StateName::Done, 10).unwrap();
    let with_face = done.iter().find(|j| j.source.rel_path == Path::new("with-face.jpg")).unwrap();
    let view = report::view(with_face, 0);
    assert_eq!((view.faces, view.no_face), (Some(1), false));
    assert_eq!(view.plugins_run, ["Eye Vessels"], "the plugins result.json says ran");
    let text = report::render(&report);
    assert!(text.contains("face-aware plugins found no face") && text.contains("landscape.jpg"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["recent_no_face"][0]["faces"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_url_without_the_api_prefix_pauses_uploads_and_a_reload_fixes_it() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "token_retry = \"1m\"", "");
    let right = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, right.replace("/api/v1\"", "\"")).unwrap();
    ws.drop_file("a.jpg", &photo(3));
    let daemon = Running::start(&ws);
    let state = ws.path("state");
    until(
        "paused for the route",
        || LiveStatus::read(&state).and_then(|s| s.paused).as_deref() == Some("route"),
        || format!("{:?} {:?}", LiveStatus::read(&state), ws.files("failed")),
    )
    .await;
    assert!(ws.files("failed").is_empty(), "a wrong URL is a setup problem, not a bad photo");
    assert_eq!(ws.files("inbox"), ["a.jpg"]);
    assert_eq!(sim.stats().charged_starts, 0);

    std::fs::write(&ws.config, right).unwrap();
    daemon.reloads.send(load(&ws)).await.unwrap();
    let done = || state_counts(&ws).get(&StateName::Done) == Some(&1);
    until("delivered after the reload", done, || format!("{:?}", sim.stats())).await;
    daemon.stop().await;
    assert!(ws.path("done/a.jpg").exists());
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_payload_applies_to_new_jobs_while_running_jobs_finish() {
    let sim = start_sim(SimConfig { processing_ms: 30_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("before.jpg", &photo(4));
    let daemon = Running::start(&ws);
    until("the first job at the server", || sim.stats().charged_starts == 1, String::new).await;
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, text.replace("Plugin = \"Heal\"", "Plugin = \"Mattifier\"")).unwrap();
    daemon.reloads.send(load(&ws)).await.unwrap();
    ws.drop_file("after.jpg", &photo(5));
    until("both delivered", || ws.files("done").len() == 2, || format!("{:?}", ws.files("done"))).await;
    daemon.stop().await;
    let payloads = sim.stats().payloads;
    let first_plugins: Vec<String> = payloads.iter().map(|p| p["tasks"][0]["Plugin"].to_string()).collect();
    assert_eq!(
        first_plugins,
        ["\"Heal\"", "\"Mattifier\""],
        "the running job kept its payload; the new one took the new"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_result_fails_with_a_reason_by_default() {
    let sim = start_sim(SimConfig { retention_ms: 0, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("late.jpg", &photo(6));
    assert_eq!(run_once(&ws).await.failed, 1);
    let note = std::fs::read_to_string(ws.path("failed/late.jpg.error.txt")).unwrap();
    assert!(note.contains("no longer knows") && note.contains("on_expired"), "{note}");
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_result_is_sent_again_when_configured() {
    let sim = start_sim(SimConfig { retention_ms: 0, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "on_expired = \"resubmit\"", "");
    ws.drop_file("late.jpg", &photo(7));
    let daemon = Running::start(&ws);
    until("the expired task sent again", || sim.stats().charged_starts == 2, String::new).await;
    sim.update(|c| c.retention_ms = 3_600_000);
    until("delivered", || ws.path("done/late.jpg").exists(), || format!("{:?}", sim.stats())).await;
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_never_completes_is_given_up_after_max_job_age() {
    let sim = start_sim(SimConfig { processing_ms: 24 * 3_600_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_job_age = \"30m\"", "");
    ws.drop_file("forever.jpg", &photo(8));
    assert_eq!(run_once(&ws).await.failed, 1);
    let note = std::fs::read_to_string(ws.path("failed/forever.jpg.error.txt")).unwrap();
    assert!(note.contains("max_job_age (30m)"), "{note}");
    let polls: u64 = sim.stats().polls_by_job.values().sum();
    assert!(polls < 60, "half an hour of polling a queued job costs few requests: {polls}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_goes_to_failed_with_the_servers_reason_and_retry_sends_it_back() {
    let sim = start_sim(SimConfig { fail_rate: 1.0, fail_reason: "no face found".into(), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("sub/nobody.jpg", &photo(9));
    assert_eq!(run_once(&ws).await.failed, 1);
    let note = std::fs::read_to_string(ws.path("failed/sub/nobody.jpg.error.txt")).unwrap();
    assert!(note.contains("no face found"), "{note}");

    // The commands a person runs next, as the real binary (quick: no daemon to wait for).
    let out = ws.command(&["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["failed"], 1, "{report}");
    assert!(report["recent_failures"][0]["reason"].as_str().unwrap().contains("no face found"), "{report}");
    let failed_now = ws.path("failed/sub/nobody.jpg").display().to_string();
    assert_eq!(report["recent_failures"][0]["file"], failed_now.as_str(), "shown where the file is now: {report}");
    let out = ws.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no face found") && !text.contains(TOKEN), "{text}");
    assert!(text.contains(&failed_now), "{text}");
    let out = ws.command(&["retry", "--failed"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 file(s) sent back"));
    assert!(ws.path("inbox/sub/nobody.jpg").exists());
    assert!(!ws.path("failed/sub/nobody.jpg.error.txt").exists());
    sim.update(|c| c.fail_rate = 0.0);
    assert_eq!(run_once(&ws).await.done, 1);
    assert!(ws.path("done/sub/nobody.jpg").exists());

    // Retried and delivered: the file counts once, as done, and is no longer a failure.
    let out = ws.command(&["status", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["done"], 1, "{report}");
    assert!(report["counts"].get("failed").is_none(), "{report}");
    assert_eq!(report["recent_failures"].as_array().map(Vec::len), Some(0), "{report}");

    // An inbox that cannot be read (an unmounted share) is reported, not a reason to refuse.
    std::fs::rename(ws.path("inbox"), ws.path("inbox-away")).unwrap();
    let out = ws.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("inbox cannot be read") && text.contains("not mounted?"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn status_shows_the_servers_progress_for_a_job_at_the_server() {
    let sim = start_sim(SimConfig { processing_ms: 600_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("slow.jpg", &photo(10));
    let daemon = Running::start(&ws);
    let config = load(&ws);
    let progress = || {
        let journal = Journal::open_read_only(&config.state_dir).ok()?;
        let report = report::report(&journal, &config).ok()?;
        report.in_flight.first().and_then(|j| j.progress.filter(|&p| p > 0.0)).map(|p| (p, report))
    };
    until("a progress figure in status", || progress().is_some(), || format!("{:?}", state_counts(&ws))).await;
    let (first, report) = progress().unwrap();
    let job = &report.in_flight[0];
    assert_eq!(job.state, StateName::Processing);
    let text = report::render(&report);
    assert!(text.contains(&format!("processing {first:.0}%")), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["in_flight"][0]["progress"].as_f64(), Some(first), "{json}");
    until("the figure moves on", || progress().is_some_and(|(p, _)| p > first), String::new).await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn polling_learns_how_long_jobs_take_and_asks_near_the_expected_completion() {
    let sim = start_sim(SimConfig { processing_ms: 10_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let daemon = Running::start(&ws);
    ws.drop_file("first.jpg", &photo(11));
    until("first delivered", || ws.path("done/first.jpg").exists(), String::new).await;
    ws.drop_file("second.jpg", &photo(12));
    until("second delivered", || ws.path("done/second.jpg").exists(), String::new).await;
    daemon.stop().await;
    let stats = sim.stats();
    let mut polls: Vec<u64> = stats.polls_by_job.values().copied().collect();
    polls.sort();
    println!("status requests per job for a 10 s job at poll_interval 2 s: {polls:?}");
    assert_eq!(polls.len(), 2);
    assert!(polls[1] >= 4, "the first job, with nothing learned yet, is polled on the interval: {polls:?}");
    assert!(polls[0] <= 2, "the second is polled near its expected completion: {polls:?}");
}

#[tokio::test(start_paused = true)]
async fn server_and_network_faults_and_an_outage_are_ridden_out() {
    const FILES: u32 = 40;
    let sim = start_sim(SimConfig {
        start_error_rate: 0.2,
        status_error_rate: 0.2,
        get_file_error_rate: 0.2,
        drop_rate: 0.05,
        delay_ms: 150,
        store_lag_ms: 2500, // the first getFile after completion answers 404
        fail_rate: 0.15,
        fail_reason: "no face found".into(),
        retry_after_secs: Some(1),
        ..fast_sim()
    })
    .await;
    let ws = Workspace::new(&sim, "", "");
    let mut hashes = Vec::new();
    for i in 0..FILES {
        let bytes = photo(1000 + i);
        hashes.push(sha256(&bytes));
        ws.drop_file(&format!("f{i:02}.jpg"), &bytes);
    }
    let daemon = Running::start(&ws);
    until("half the files at the server", || sim.stats().charged_starts >= FILES as u64 / 2, String::new).await;
    // The server goes away for ten minutes.
    sim.update(|c| c.down = true);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!daemon.task.is_finished(), "the daemon rides out the outage");
    sim.update(|c| c.down = false);
    let settled = || ws.files("done").len() + ws.files("failed").len() / 2 == FILES as usize;
    until("every file settled", settled, || format!("{:?}", state_counts(&ws))).await;
    daemon.stop().await;

    for note in ws.files("failed").into_iter().filter(|f| f.ends_with(".error.txt")) {
        let text = std::fs::read_to_string(ws.path(&format!("failed/{note}"))).unwrap();
        assert!(text.contains("no face found"), "only server-failed tasks land in failed/: {text}");
    }
    let stats = sim.stats();
    let charged_twice = hashes.iter().filter(|h| stats.charged_by_hash.get(*h).copied().unwrap_or(0) > 1).count();
    assert_eq!(charged_twice, 0, "{stats:?}");
    assert!(stats.injected_faults > 20, "faults were really injected: {}", stats.injected_faults);
    let results = ws.files("outbox").into_iter().filter(|f| f.ends_with("result.json")).count();
    assert_eq!(results, ws.files("done").len());
}

#[tokio::test(start_paused = true)]
async fn a_file_written_slowly_in_chunks_is_submitted_only_when_whole() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let daemon = Running::start(&ws);
    let whole = imagegen::jpeg_bytes(400, 300, [1, 2, 3]);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(ws.path("inbox/slow.jpg")).unwrap();
        // 10 chunks, 250 ms apart: longer than the 400 ms settle overall, never still for it.
        for chunk in whole.chunks(whole.len() / 10 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    until("slow.jpg delivered", || ws.path("done/slow.jpg").exists(), String::new).await;
    daemon.stop().await;
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 1, "{stats:?}");
    assert_eq!(stats.charged_by_hash.get(&sha256(&whole)), Some(&1), "only the whole file was sent");
}

#[tokio::test(start_paused = true)]
async fn a_file_renamed_into_place_is_picked_up_after_settling() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let daemon = Running::start(&ws);
    let tmp = ws.drop_file("incoming.jpg.part", &photo(13));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sim.stats().start_requests, 0, "a .part file is never sent");
    std::fs::rename(&tmp, ws.path("inbox/incoming.jpg")).unwrap();
    until("incoming.jpg delivered", || ws.path("outbox/incoming/result.json").exists(), String::new).await;
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(start_paused = true)]
async fn files_deleted_renamed_or_rewritten_before_upload_are_handled() {
    // One upload at a time, each answer 2 s late: the others wait for their turn, and change meanwhile.
    let sim = start_sim(SimConfig { delay_ms: 2000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_uploads = 1", "");
    ws.drop_file("first.jpg", &photo(20));
    let daemon = Running::start(&ws);
    until("the first upload", || sim.stats().start_requests >= 1, String::new).await;
    let old_c = photo(21);
    ws.drop_file("deleted.jpg", &photo(22));
    ws.drop_file("renamed.jpg", &photo(23));
    ws.drop_file("rewritten.jpg", &old_c);
    tokio::time::sleep(Duration::from_millis(1200)).await; // settled and waiting for the upload slot
    std::fs::remove_file(ws.path("inbox/deleted.jpg")).unwrap();
    std::fs::rename(ws.path("inbox/renamed.jpg"), ws.path("inbox/renamed-later.jpg")).unwrap();
    let new_c = photo(24);
    std::fs::write(ws.path("inbox/rewritten.jpg"), &new_c).unwrap();

    until("three delivered", || ws.files("done").len() == 3, || format!("{:?}", ws.files("done"))).await;
    daemon.stop().await;
    assert_eq!(ws.files("done"), ["first.jpg", "renamed-later.jpg", "rewritten.jpg"]);
    assert!(ws.files("failed").is_empty(), "nothing to fail: the files moved on");
    let stats = sim.stats();
    assert_eq!(stats.charged_by_hash.get(&sha256(&old_c)), None, "the old version was never sent");
    assert_eq!(stats.charged_by_hash.get(&sha256(&new_c)), Some(&1), "the new version was sent once");
    assert_eq!(stats.charged_starts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_files_dropped_at_once_are_all_delivered() {
    // More than three times the jobs allowed in flight: most of them wait in the queue.
    const FILES: u32 = 1000;
    let sim = start_sim(SimConfig { processing_ms: 0, completion_lag_ms: 0, store_lag_ms: 0, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_in_flight = 300\nmax_uploads = 8", "");
    for i in 0..FILES {
        ws.drop_file(&format!("d{}/f{i:04}.jpg", i % 10), &photo(i));
    }
    let started = std::time::Instant::now();
    assert_eq!(run_once(&ws).await.done, FILES as u64);
    println!("{FILES} files dropped at once: all processed in {:.1?}", started.elapsed());
    assert_eq!(ws.files("done").len(), FILES as usize);
    assert_eq!(sim.stats().charged_starts, FILES as u64);
}

/// Runs one file against a server answering getFile with `mode`; returns the failure note.
async fn refused_result(mode: Hostile) -> String {
    let sim = start_sim(SimConfig { hostile: Some(mode), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_result_mb = 16", "");
    ws.drop_file("victim.jpg", &photo(30));
    assert_eq!(run_once(&ws).await.failed, 1, "{mode:?}");
    let note = std::fs::read_to_string(ws.path("failed/victim.jpg.error.txt")).unwrap();
    assert!(!ws.dir.path().join("escaped.png").exists(), "{mode:?}: a file escaped the outbox");
    assert!(!Path::new("/tmp/retouchd-escaped.png").exists(), "{mode:?}: a file escaped to /tmp");
    let visible: Vec<String> = ws.files("outbox").into_iter().filter(|f| !f.starts_with('.')).collect();
    assert!(visible.is_empty(), "{mode:?}: nothing is delivered: {visible:?}");
    let staged = ws.files(&format!("outbox/{STAGING_DIR}"));
    assert!(staged.is_empty(), "{mode:?}: nothing is left in staging: {staged:?}");
    assert_eq!(sim.stats().charged_starts, 1);
    note
}

#[tokio::test(start_paused = true)]
async fn hostile_result_archives_are_refused_with_a_reason() {
    for (mode, words) in [
        (Hostile::TraversalZip, "points outside"),
        (Hostile::AbsoluteZip, "points outside"),
        (Hostile::SymlinkZip, "link"),
        (Hostile::DuplicateZip, "twice"),
        (Hostile::TruncatedZip, "cannot be read"),
    ] {
        let note = refused_result(mode).await;
        assert!(
            note.contains(words) || (mode == Hostile::DuplicateZip && note.contains("duplicates")),
            "{mode:?}: {note}"
        );
    }
}

/// A server misbehaving with `mode` until `retried` says the daemon tried again twice; then it
/// behaves and the file must be delivered, charged once.
async fn retried_then_delivered(mode: Hostile, retried: impl Fn(&retouchd::sim::SimStats) -> bool) {
    let sim = start_sim(SimConfig { hostile: Some(mode), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "idle_timeout = \"2s\"", "");
    ws.drop_file("patient.jpg", &photo(31));
    let daemon = Running::start(&ws);
    until("retries", || retried(&sim.stats()), || format!("{mode:?}: {:?}", sim.stats())).await;
    assert!(ws.files("failed").is_empty(), "{mode:?}: a misbehaving server does not fail the file by itself");
    sim.update(|c| c.hostile = None);
    until("delivered once the server behaves", || ws.path("done/patient.jpg").exists(), || format!("{mode:?}")).await;
    daemon.stop().await;
    assert_eq!(sim.stats().charged_starts, 1, "{mode:?}");
}

#[tokio::test(start_paused = true)]
async fn broken_status_answers_are_retried() {
    let polled_thrice = |s: &retouchd::sim::SimStats| s.polls_by_job.values().any(|&n| n >= 3);
    for mode in [Hostile::HtmlStatus, Hostile::InvalidJson, Hostile::HugeJson] {
        retried_then_delivered(mode, polled_thrice).await;
    }
}

#[tokio::test(start_paused = true)]
async fn broken_downloads_are_retried() {
    let fetched_thrice = |s: &retouchd::sim::SimStats| s.downloads_by_job.values().any(|&n| n >= 3);
    for mode in [Hostile::LyingLength, Hostile::Stall] {
        retried_then_delivered(mode, fetched_thrice).await;
    }
}

/// The workspace's config with another state folder (a second daemon on the same inbox).
fn with_state_dir(ws: &Workspace, dir: &str) -> Config {
    let text = std::fs::read_to_string(&ws.config).unwrap().replace("dir = \"state\"", &format!("dir = \"{dir}\""));
    let path = ws.path(&format!("{dir}.toml"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    config::load(&path, &Environment::default()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_second_daemon_with_another_state_folder_is_refused_the_inbox_until_the_first_stops() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let first = Running::start(&ws);
    let inbox = ws.path("inbox");
    until("the first claims the inbox", || retouchd::inbox::owner_of(&inbox).is_some(), String::new).await;

    let second = with_state_dir(&ws, "state2");
    let err = daemon::run(second.clone(), RunOptions::default(), std::future::pending()).await.unwrap_err();
    let DaemonError::InboxOwned(owned) = &err else { panic!("not refused for the inbox: {err}") };
    assert_eq!(owned.owner.pid, std::process::id());
    assert_eq!(owned.owner.state_dir, ws.path("state"));
    let text = err.to_string();
    assert!(
        text.contains(&ws.path("state").display().to_string()) && text.contains("in use by another retouchd"),
        "{text}"
    );

    ws.drop_file("once.jpg", &photo(40));
    until("delivered by the first", || ws.path("done/once.jpg").exists(), String::new).await;
    first.stop().await;
    assert_eq!(retouchd::inbox::owner_of(&inbox), None, "a clean stop gives the inbox up");
    assert!(inbox.join(retouchd::inbox::MARKER).exists(), "the marker stays");
    let summary = daemon::run(second, RunOptions { once: true, ..RunOptions::default() }, std::future::pending())
        .await
        .expect("the inbox is free now");
    assert_eq!(summary, Summary::default(), "nothing to do: the file was delivered once");
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_says_why_files_stay_and_sends_refused_ones_only_when_asked() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("notes.jpg", b"a text file with a photo's name");
    assert_eq!(run_once(&ws).await.rejected, 1);
    assert!(ws.path("failed/notes.jpg").exists());

    let out = ws.command(&["retry"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--failed"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = ws.command(&["retry", "--failed"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("0 file(s) sent back"), "{text}");
    assert!(text.contains("1 not sent back: it was refused before sending") && text.contains("--refused"), "{text}");
    assert!(ws.path("failed/notes.jpg").exists(), "a refused file stays unless asked for");

    let out = ws.command(&["retry", "--failed", "--refused"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 file(s) sent back"), "{text}");
    assert!(ws.path("inbox/notes.jpg").exists());
}

/// Delivery and failure hooks run (in real time: the hooks are processes with a timeout), and a
/// failing hook loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_after_delivery_and_failure_and_a_failing_hook_loses_nothing() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let hooks_file = dir.path().join("hooks.txt");
    let hooks = format!(
        r#"on_delivered = ["sh", "-c", "echo \"$RETOUCHD_EVENT|$RETOUCHD_JOB|$RETOUCHD_SOURCE_NOW|$RETOUCHD_OUTPUT\" >> '{0}'; exit 3"]
on_failed = ["sh", "-c", "echo \"$RETOUCHD_EVENT|$RETOUCHD_REASON\" >> '{0}'"]
hook_timeout = "5s""#,
        hooks_file.display()
    );
    let ws = Workspace::new(&sim, "", &hooks);
    ws.drop_file("good.jpg", &photo(1));
    ws.drop_file("bad.jpg", b"not a photo");
    let summary = run_once(&ws).await;
    assert_eq!((summary.done, summary.rejected), (1, 1), "{summary:?}");
    let lines = std::fs::read_to_string(&hooks_file).unwrap();
    let done = ws.path("done/good.jpg").display().to_string();
    let output = ws.path("outbox/good").display().to_string();
    assert!(lines.lines().any(|l| l.starts_with("delivered|") && l.contains(&done) && l.ends_with(&output)), "{lines}");
    assert!(lines.lines().any(|l| l.starts_with("failed|this is not a PNG")), "{lines}");
    assert!(ws.path("outbox/good/result.json").exists(), "a failing hook loses nothing");
}

/// The Prometheus endpoint of a running daemon (in real time: it is read over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_reports_jobs_submissions_bytes_and_durations() {
    let sim = start_sim(fast_sim()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ws = Workspace::new(&sim, &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\""), "");
    ws.drop_file("a.jpg", &photo(1));
    let daemon = Running::start(&ws);
    wait_for("delivered", Duration::from_secs(30), async || ws.path("done/a.jpg").exists().then_some(())).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = wait_for("metrics", Duration::from_secs(10), async || {
        let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
        body.contains("retouchd_job_duration_seconds_count 1").then_some(body)
    })
    .await;
    daemon.stop().await;
    for expected in [
        "retouchd_jobs{state=\"done\"} 1",
        "retouchd_submissions_total 1",
        "retouchd_paused{reason=\"token\"} 0",
        "# TYPE retouchd_job_duration_seconds histogram",
        "retouchd_job_duration_seconds_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(
        text.contains("retouchd_upload_bytes_total ") && !text.contains("retouchd_upload_bytes_total 0\n"),
        "{text}"
    );
}

/// `[schedule] uploads`: a file dropped outside every window waits, saying when the next one
/// opens, and goes when it opens (the window here opens eleven minutes from now, UTC).
#[tokio::test(start_paused = true)]
async fn a_file_waits_for_its_upload_window_and_goes_when_it_opens() {
    let sim = start_sim(fast_sim()).await;
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let minute = |m: i32| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(1440) % 60);
    let opens = i32::from(now.hour()) * 60 + i32::from(now.minute()) + 11;
    let rule = format!("Mon-Sun {}-{}", minute(opens), minute(opens + 60));
    let ws = Workspace::new(&sim, "", &format!("[watch.schedule]\nuploads = [\"{rule}\"]\ntimezone = \"UTC\"\n"));
    ws.drop_file("night.jpg", &photo(21));
    let daemon = Running::start(&ws);
    let config = load(&ws);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(sim.stats().start_requests, 0, "nothing is sent outside the window");
    let journal = Journal::open_read_only(&config.state_dir).unwrap();
    let text = report::render(&report::report(&journal, &config).unwrap());
    assert!(text.contains("outside the upload windows") && text.contains("next window at"), "{text}");
    until(
        "night.jpg delivered once the window opens",
        || ws.path("done/night.jpg").exists(),
        || format!("{:?}", state_counts(&ws)),
    )
    .await;
    assert_eq!(sim.stats().charged_starts, 1);
    daemon.stop().await;
}

/// A time zone whose next midnight, by the wall clock, is one minute to an hour away, and that
/// distance: a paused clock can then run past the end of its day while the wall clock stays in
/// the same day there.
fn zone_with_midnight_soon() -> (String, Duration) {
    let now = jiff::Timestamp::now();
    let fixed = (-14..=12).map(|h: i32| if h == 0 { "UTC".to_string() } else { format!("Etc/GMT{h:+}") });
    fixed
        .map(|zone| {
            let local = now.in_tz(&zone).unwrap();
            let midnight = local.tomorrow().unwrap().start_of_day().unwrap().timestamp();
            (zone, midnight.duration_since(now).unsigned_abs())
        })
        .filter(|(_, away)| *away >= Duration::from_secs(60))
        .min_by_key(|(_, away)| *away)
        .unwrap()
}

/// A day budget of one credit: the first photo is sent, the next two wait (saying until when)
/// and nothing more is charged, not even when a timer runs past the end of the day while the
/// wall clock has not (each wait is counted again); `status` shows what is spent and the open
/// batch; `budget_reached` is told once, however long the files wait.
#[tokio::test(start_paused = true)]
async fn a_spent_day_budget_holds_the_next_files_and_charges_nothing_more() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let (zone, midnight_in) = zone_with_midnight_soon();
    // [budget] must come before [[watch]]: put it first; [[notify]] goes last.
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let channel = "[[notify]]\nkind = \"ntfy\"\nurl = \"http://127.0.0.1:9/studio\"\n";
    std::fs::write(&ws.config, format!("[budget]\nper_day = 1\ntimezone = \"{zone}\"\n{text}\n{channel}")).unwrap();
    let config = load(&ws);
    let (transport, told) = recording_transport();
    ws.drop_file("first.jpg", &photo(31));
    let daemon = Running::start_with(&ws, Some(transport));
    until("first.jpg delivered", || ws.path("done/first.jpg").exists(), String::new).await;
    ws.drop_file("second.jpg", &photo(32));
    ws.drop_file("third.jpg", &photo(33));
    // Past the day's end by the timers, not by the wall clock.
    tokio::time::sleep(midnight_in + Duration::from_secs(300)).await;
    assert_eq!(sim.stats().charged_starts, 1, "the budget of one credit a day is spent ({zone})");
    assert_eq!(sim.stats().start_requests, 1, "and nothing more is even sent");
    let journal = Journal::open_read_only(&config.state_dir).unwrap();
    let report = report::report(&journal, &config).unwrap();
    let text = report::render(&report);
    assert!(text.contains("credits spent: 1 of 1 today"), "{text}");
    assert!(text.contains("credit budget reached: 1 of 1 credits today; uploads resume at"), "{text}");
    assert!(
        ws.path("inbox/second.jpg").exists() && ws.path("inbox/third.jpg").exists(),
        "the files wait in their inbox"
    );
    let told = told.lock().unwrap().clone();
    let reached: Vec<&String> = told.iter().filter(|t| t.starts_with("budget_reached")).collect();
    assert_eq!(reached.len(), 1, "told once: {told:?}");
    assert!(reached[0].contains("1 of 1 credits today"), "{told:?}");
    assert!(!told.iter().any(|t| t.starts_with("batch_done")), "the waiting files keep the batch open: {told:?}");
    let batches = &report.daemon.as_ref().expect("the daemon's status").batches;
    assert_eq!((batches.len(), batches[0].files, batches[0].settled), (1, 3, 1), "{batches:?}");
    daemon.stop().await;
}

/// Credits running low are told once (not at every upload), and the account's quota running
/// out pauses uploads and is told as `paused`.
#[tokio::test(start_paused = true)]
async fn low_credits_are_told_once_and_a_spent_quota_as_a_pause() {
    let sim = start_sim(SimConfig { quota: Some(3), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "low_quota_warning = 5", "");
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, format!("{text}\n[[notify]]\nkind = \"ntfy\"\nurl = \"http://127.0.0.1:9/studio\"\n"))
        .unwrap();
    let (transport, told) = recording_transport();
    let daemon = Running::start_with(&ws, Some(transport));
    for (i, name) in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"].iter().enumerate() {
        ws.drop_file(name, &photo(60 + i as u32));
    }
    until(
        "three delivered",
        || state_counts(&ws).get(&StateName::Done) == Some(&3),
        || format!("{:?}", state_counts(&ws)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let told = told.lock().unwrap().clone();
    let low: Vec<&String> = told.iter().filter(|t| t.starts_with("low_credits")).collect();
    assert_eq!(low.len(), 1, "once, when they fell below 5: {told:?}");
    assert!(low[0].contains("has 2 retouching credit(s) left"), "{told:?}");
    assert!(told.iter().any(|t| t.starts_with("paused: quota")), "the spent quota pauses uploads: {told:?}");
    daemon.stop().await;
}

/// Regression: in `process` mode (no marker files) a file removed before its upload was retried
/// as "inbox unavailable" until max_job_age instead of being dropped at once.
#[tokio::test(start_paused = true)]
async fn process_drops_a_file_removed_before_its_upload() {
    let sim = start_sim(SimConfig { delay_ms: 2000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_uploads = 1", "");
    let paths = [write(&ws.path("batch"), "a.jpg", &photo(1)), write(&ws.path("batch"), "b.jpg", &photo(2))];
    let config = load(&ws);
    let run = {
        let paths = paths.to_vec();
        tokio::spawn(async move {
            let request = retouchd::commands::process::Request { paths: &paths, ..Default::default() };
            retouchd::commands::process::run(config, request).await.unwrap()
        })
    };
    // Whichever file goes first (jobs start together), remove the other while it waits.
    until("the first upload", || !sim.stats().uploads_read.is_empty(), String::new).await;
    let first = sim.stats().uploads_read[0].clone();
    let other = paths.iter().find(|p| !p.ends_with(&first)).unwrap();
    std::fs::remove_file(other).unwrap();
    let summary = run.await.unwrap();
    assert_eq!((summary.done, summary.failed), (1, 1), "{summary:?}");
    let journal = Journal::open_read_only(&ws.path("state")).unwrap();
    let removed = journal.latest_for(&ws.path("batch"), Path::new(other.file_name().unwrap())).unwrap();
    let reason = removed.map(|job| job.state.reason().unwrap_or_default().to_string()).unwrap_or_default();
    assert!(reason.contains("the file was removed or renamed"), "{reason}");
    assert_eq!(sim.stats().charged_starts, 1);
}
