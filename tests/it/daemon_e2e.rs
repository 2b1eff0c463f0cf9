//! The real `retouchd` binary against the simulator, on real temporary folders.

use std::time::Duration;

use retouchd::sim::SimConfig;

use crate::support::*;

fn corrupt_jpeg() -> Vec<u8> {
    // Starts and ends like a JPEG, but there is no frame header in between.
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
    v.extend_from_slice(b"garbage garbage garbage");
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_delivers_valid_files_fails_invalid_ones_and_submits_no_junk() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let photo = |n: u8| retouchd::imagegen::jpeg_bytes(48, 40 + n as u16, [n * 60, 90, 90]);
    let valid = [
        ("a.jpg", photo(1)),
        ("B.JPG", photo(2)),
        ("sub/c.Png", png()),
        ("sub/deeper/d.jpeg", photo(3)),
        ("batch.zip", retouchd::imagegen::zip_of(&[("x.jpg", jpeg()), ("y.png", png())])),
    ];
    for (name, bytes) in &valid {
        ws.drop_file(name, bytes);
    }
    let junk = [".DS_Store", "._IMG.jpg", "Thumbs.db", "x.jpg.part", "@eaDir/t.jpg"];
    for name in junk {
        ws.drop_file(name, &jpeg());
    }
    ws.drop_file("corrupt.jpg", &corrupt_jpeg());
    ws.drop_file("huge.png", &png_declaring(30_000, 30_000));
    ws.drop_file("text.jpg", b"just some text");

    let out = ws.run_once(Duration::from_secs(60)).await;
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{log}", out.status);
    assert!(log.contains("5 delivered, 0 failed, 3 refused"), "{log}");

    let outbox = ws.files("outbox");
    for stem in ["a", "B", "sub/c", "sub/deeper/d"] {
        assert!(
            outbox.contains(&format!("{stem}/index=0&blendmode=normal&name=Heal.png")),
            "{stem} missing in {outbox:?}"
        );
        assert!(outbox.contains(&format!("{stem}/result.json")), "{stem} missing in {outbox:?}");
    }
    assert!(outbox.iter().any(|f| f.starts_with("batch/x/index=0")), "{outbox:?}");
    assert!(!outbox.iter().any(|f| f.contains(".retouchd-staging/") || f.ends_with(".part")), "{outbox:?}");

    let done = ws.files("done");
    assert_eq!(done, vec!["B.JPG", "a.jpg", "batch.zip", "sub/c.Png", "sub/deeper/d.jpeg"]);
    let failed = ws.files("failed");
    for name in ["corrupt.jpg", "huge.png", "text.jpg"] {
        assert!(failed.contains(&name.to_string()), "{failed:?}");
        let note = std::fs::read_to_string(ws.path(&format!("failed/{name}.error.txt"))).unwrap();
        assert!(note.contains("Reason:"), "{note}");
    }
    let huge_note = std::fs::read_to_string(ws.path("failed/huge.png.error.txt")).unwrap();
    assert!(huge_note.contains("megapixels"), "{huge_note}");

    let inbox = ws.files("inbox");
    assert_eq!(
        inbox,
        vec![".DS_Store", "._IMG.jpg", "@eaDir/t.jpg", "Thumbs.db", "x.jpg.part"],
        "junk stays, untouched"
    );

    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 5, "one charged start per valid file: {stats:?}");
    for (name, bytes) in &valid {
        assert_eq!(stats.charged_by_hash.get(&sha256(bytes)), Some(&1), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_slowly_in_chunks_is_submitted_only_when_whole() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let mut daemon = ws.spawn(&[], "daemon");
    let whole = retouchd::imagegen::jpeg_bytes(400, 300, [1, 2, 3]);
    let path = ws.path("inbox/slow.jpg");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        // 10 chunks, 250 ms apart: longer than the 400 ms settle overall, never still for it.
        for chunk in whole.chunks(whole.len() / 10 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    wait_for("slow.jpg delivered", Duration::from_secs(30), async || ws.path("done/slow.jpg").exists().then_some(()))
        .await;
    daemon.kill().unwrap();
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 1, "{stats:?}\n{}", ws.log("daemon"));
    assert_eq!(stats.charged_by_hash.get(&sha256(&whole)), Some(&1), "only the whole file was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_into_place_is_picked_up_after_settling() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let mut daemon = ws.spawn(&[], "daemon");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tmp = ws.drop_file("incoming.jpg.part", &jpeg());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sim.stats().start_requests, 0, "a .part file is never sent");
    std::fs::rename(&tmp, ws.path("inbox/incoming.jpg")).unwrap();
    wait_for("incoming.jpg delivered", Duration::from_secs(30), async || {
        ws.path("outbox/incoming/result.json").exists().then_some(())
    })
    .await;
    daemon.kill().unwrap();
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_then_a_restart_delivers_every_file_once_and_charges_once() {
    let sim = start_sim(SimConfig { processing_ms: 2500, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_uploads = 4", "");
    let mut files = Vec::new();
    for i in 0..12 {
        let bytes = retouchd::imagegen::jpeg_bytes(32 + i, 32, [i as u8, 0, 0]);
        ws.drop_file(&format!("batch/img{i:02}.jpg"), &bytes);
        files.push(bytes);
    }
    let mut first = ws.spawn(&[], "first");
    wait_for("some jobs at the server", Duration::from_secs(30), async || {
        (sim.stats().charged_starts >= 6).then_some(())
    })
    .await;
    first.kill().unwrap(); // SIGKILL

    let out = ws.run_once(Duration::from_secs(90)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let results: Vec<String> = ws.files("outbox").into_iter().filter(|f| f.ends_with("result.json")).collect();
    assert_eq!(results.len(), 12, "{results:?}");
    assert!(!results.iter().any(|f| f.contains(" (2)")), "nothing delivered twice: {results:?}");
    assert_eq!(ws.files("done").len(), 12);
    assert!(ws.files("inbox").is_empty());
    let stats = sim.stats();
    for (i, bytes) in files.iter().enumerate() {
        assert_eq!(stats.charged_by_hash.get(&sha256(bytes)), Some(&1), "img{i:02} charged once: {stats:?}");
    }
    assert_eq!(stats.charged_starts, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_pauses_uploads_and_they_resume_once_the_token_works() {
    let sim = start_sim(SimConfig { token: "the-right-one".into(), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "token_retry = \"1s\"", "");
    ws.drop_file("a.jpg", &jpeg());
    ws.drop_file("b.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("the token refused twice", Duration::from_secs(20), async || {
        (sim.stats().refused_starts >= 2).then_some(())
    })
    .await;
    assert!(ws.files("failed").is_empty(), "a bad token never fails a file");
    assert_eq!(ws.files("inbox"), vec!["a.jpg", "b.jpg"], "files stay where they are");
    let log = ws.log("daemon");
    assert!(log.contains("refused the token"), "{log}");
    assert!(!log.contains(TOKEN), "the token never appears in logs");
    let shown = wait_for_or_show(Duration::from_secs(15), async || {
        let out = ws.command(&["status"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("PAUSED (token): Token issue")
    })
    .await;
    assert!(shown, "status shows the pause");

    sim.update(|c| {
        c.token = TOKEN.into();
        c.quota = Some(10);
    });
    wait_for("both delivered", Duration::from_secs(30), async || (ws.files("done").len() == 2).then_some(())).await;
    let credits = wait_for_or_show(Duration::from_secs(15), async || {
        let out = ws.command(&["status"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("retouches left today: 8")
    })
    .await;
    assert!(credits, "status shows the credits left");
    assert!(ws.log("daemon").contains("retouches left today (server.low_quota_warning = 20)"), "low quota warned");
    daemon.kill().unwrap();
    assert_eq!(sim.stats().charged_starts, 2);
    assert!(ws.log("daemon").contains("resuming"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_result_fails_with_a_reason_by_default() {
    let sim = start_sim(SimConfig { retention_ms: 0, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("late.jpg", &jpeg());
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let note = std::fs::read_to_string(ws.path("failed/late.jpg.error.txt")).unwrap();
    assert!(note.contains("no longer knows"), "{note}");
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_result_is_resubmitted_when_configured() {
    let sim = start_sim(SimConfig { retention_ms: 0, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "on_expired = \"resubmit\"", "");
    ws.drop_file("late.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("the expired task resubmitted", Duration::from_secs(30), async || {
        (sim.stats().charged_starts == 2).then_some(())
    })
    .await;
    // Results are kept again from now on; the resubmitted job can be fetched.
    sim.update(|c| c.retention_ms = 3_600_000);
    wait_for("delivered", Duration::from_secs(30), async || ws.path("done/late.jpg").exists().then_some(())).await;
    daemon.kill().unwrap();
    assert_eq!(sim.stats().charged_starts, 2, "{}", ws.log("daemon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_goes_to_failed_with_the_servers_reason_and_retry_sends_it_back() {
    let sim = start_sim(SimConfig { fail_rate: 1.0, fail_reason: "no face found".into(), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("sub/nobody.jpg", &jpeg());
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success());
    let note = std::fs::read_to_string(ws.path("failed/sub/nobody.jpg.error.txt")).unwrap();
    assert!(note.contains("no face found"), "{note}");

    let status = ws.command(&["status", "--json"]).output().unwrap();
    assert!(status.status.success());
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["counts"]["failed"], 1, "{report}");
    assert!(report["recent_failures"][0]["reason"].as_str().unwrap().contains("no face found"));
    let text = ws.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("no face found") && !text.contains(TOKEN), "{text}");

    let retried = ws.command(&["retry", "--failed"]).output().unwrap();
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    assert!(ws.path("inbox/sub/nobody.jpg").exists());
    assert!(!ws.path("failed/sub/nobody.jpg.error.txt").exists());
    sim.update(|c| c.fail_rate = 0.0);
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success());
    assert!(ws.path("done/sub/nobody.jpg").exists(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_state_folder_is_refused() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let mut first = ws.spawn(&[], "first");
    wait_for("the first to take the lock", Duration::from_secs(10), async || {
        ws.log("first").contains("retouchd started").then_some(())
    })
    .await;
    let second = ws.command(&["run"]).output().unwrap();
    first.kill().unwrap();
    assert_eq!(second.status.code(), Some(5));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another retouchd") && err.contains(&first.id().to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_journal_stops_the_daemon_and_is_left_untouched() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let junk = b"definitely not a sqlite database, just bytes that fill a header page".repeat(10);
    std::fs::write(ws.path("state/journal.sqlite"), &junk).unwrap();
    let out = ws.command(&["run", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));
    assert_eq!(std::fs::read(ws.path("state/journal.sqlite")).unwrap(), junk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_all_reported_with_their_keys_and_exit_3() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(
        &sim,
        "poll_interval_typo = \"3s\"\nmax_uploads = -1",
        "incomplete_grace = \"-2s\"\nmode = \"often\"",
    );
    let out = ws.command(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["server.poll_interval_typo", "server.max_uploads", "watch[0].incomplete_grace", "watch[0].mode"] {
        assert!(err.contains(key), "{key} missing in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_the_server_and_the_token() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let out = ws.command(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("token: accepted"));
    let bad = Workspace::with_token(&sim, "wrong", "", "");
    let out = bad.command(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(sim.stats().charged_starts, 0, "checking spends no credit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_without_token_network_or_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["demo", "--dir"]).arg(dir.path().join("demo")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("4 delivered, 0 failed, 1 refused"), "{stdout}");
    assert!(dir.path().join("demo/outbox/portrait-1/result.json").exists());
    assert!(dir.path().join("demo/failed/not-a-photo.jpg.error.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_learns_how_long_jobs_take_and_asks_near_the_expected_completion() {
    let sim = start_sim(SimConfig { processing_ms: 10_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let mut daemon = ws.spawn(&[], "daemon");
    ws.drop_file("first.jpg", &retouchd::imagegen::jpeg_bytes(40, 30, [10, 0, 0]));
    wait_for("first delivered", Duration::from_secs(40), async || ws.path("done/first.jpg").exists().then_some(()))
        .await;
    ws.drop_file("second.jpg", &retouchd::imagegen::jpeg_bytes(41, 30, [200, 0, 0]));
    wait_for("second delivered", Duration::from_secs(40), async || ws.path("done/second.jpg").exists().then_some(()))
        .await;
    daemon.kill().unwrap();
    let stats = sim.stats();
    let mut polls: Vec<u64> = stats.polls_by_job.values().copied().collect();
    polls.sort();
    println!("status requests per job for a 10 s job at poll_interval 2 s: {polls:?}");
    assert_eq!(polls.len(), 2);
    assert!(polls[1] >= 4, "the first job, with nothing learned yet, is polled on the interval: {polls:?}");
    assert!(polls[0] <= 2, "the second is polled near its expected completion: {polls:?}");
}
