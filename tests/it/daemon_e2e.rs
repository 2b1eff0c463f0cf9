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
    assert_eq!(out.status.code(), Some(1), "files were refused, so the run fails\n{log}");
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

/// Two daemons with different state folders on one inbox would both pay for every photo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_an_owned_inbox_is_refused_with_who_owns_it() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let mut first = ws.spawn(&[], "first");
    wait_for("the first to claim the inbox", Duration::from_secs(10), async || {
        retouchd::inbox::owner_of(&ws.path("inbox")).map(drop)
    })
    .await;
    let text = std::fs::read_to_string(&ws.config).unwrap().replace("dir = \"state\"", "dir = \"elsewhere\"");
    std::fs::write(&ws.config, text).unwrap();
    let second = ws.command(&["run"]).output().unwrap();
    first.kill().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(5), "{err}");
    let state = ws.path("state").display().to_string();
    for part in ["in use by another retouchd", &first.id().to_string(), &state, &retouchd::vocab::host_name()] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
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
    // No balance_url: with the server on this machine (the simulator), the balance is asked
    // there too, not at the real balance host.
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("balance_url")).collect();
    std::fs::write(&ws.config, text.join("\n")).unwrap();
    let out = ws.command(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("token: accepted; 1000 credits left"), "{stdout}");
    let bad = Workspace::with_token(&sim, "wrong", "", "");
    let out = bad.command(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(6));

    // A URL without /api/v1 answers the limits route 404 as production does, but has no start
    // route either: that is a wrong URL, and check says so instead of passing.
    let wrong = Workspace::new(&sim, "", "");
    let text = std::fs::read_to_string(&wrong.config).unwrap().replace("/api/v1\"", "\"");
    std::fs::write(&wrong.config, text).unwrap();
    let out = wrong.command(&["check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("no start route") && err.contains("/api/v1"), "{err}");
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

    // Run again, as it suggests, with one new photo: only that one is sent. This time on a
    // machine without a CA store (a minimal container image): the demo talks plain HTTP to
    // loopback and needs none.
    std::fs::write(dir.path().join("demo/inbox/new.jpg"), jpeg()).unwrap();
    let (no_certs, no_cert_dir) = (dir.path().join("none.pem"), dir.path().join("no-certs"));
    std::fs::write(&no_certs, "").unwrap();
    std::fs::create_dir(&no_cert_dir).unwrap();
    let out = bin()
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env("SSL_CERT_FILE", &no_certs)
        .env("SSL_CERT_DIR", &no_cert_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 delivered, 0 failed, 0 refused"), "{stdout}");
    assert!(!dir.path().join("demo/outbox/portrait-1 (2)").exists(), "the samples are not sent again");
    assert!(!dir.path().join("demo/failed/not-a-photo (2).jpg").exists());
}

/// Without a CA store, an HTTPS server cannot be verified: `check` says what to install
/// instead of a TLS library's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_store_an_https_server_is_refused_with_what_to_install() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let text = std::fs::read_to_string(&ws.config).unwrap();
    let text = text.replace(&sim.base_url(), "https://retouch.invalid/api/retouch/v1");
    assert!(text.contains("https://retouch.invalid"), "{text}");
    std::fs::write(&ws.config, text).unwrap();
    let (no_certs, no_cert_dir) = (ws.path("none.pem"), ws.path("no-certs"));
    std::fs::write(&no_certs, "").unwrap();
    std::fs::create_dir(&no_cert_dir).unwrap();
    let out =
        ws.command(&["check"]).env("SSL_CERT_FILE", &no_certs).env("SSL_CERT_DIR", &no_cert_dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(retouchd::exit::CONFIG)), "{stderr}");
    assert!(stderr.contains("no CA certificates") && stderr.contains("ca-certificates"), "{stderr}");
}
