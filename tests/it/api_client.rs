//! The API client against the simulator: one test per documented behaviour of the server.

use std::io::Read;
use std::time::Duration;

use retouchd::api::{ErrorKind, TaskState};
use retouchd::formats::FileKind;
use retouchd::sim::SimConfig;

use crate::support::*;

async fn completed(client: &retouchd::api::Client, id: &str) -> Vec<retouchd::api::TaskStatus> {
    let mut seen = Vec::new();
    wait_for("the task to finish", Duration::from_secs(10), async || {
        let status = client.status(id).await.expect("status answers");
        seen.push(status.clone());
        status.state.is_finished().then_some(())
    })
    .await;
    seen
}

#[tokio::test]
async fn start_returns_a_task_id_and_the_quota_left() {
    let sim = start_sim(SimConfig { quota: Some(5), ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let started = client_for(&sim, TOKEN).start(&photo, "photo.jpg", LAYERED, "key-1").await.unwrap();
    assert!(!started.id.is_empty());
    assert_eq!(started.quota, Some(4));
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test]
async fn without_a_quota_the_start_and_the_balance_give_one_figure() {
    let sim = start_sim(SimConfig { credits: 50, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let started = client.start(&photo, "photo.jpg", LAYERED, "key-1").await.unwrap();
    assert_eq!(started.quota, Some(49));
    assert_eq!(client.balance().await.unwrap().professional, Some(49));
}

#[tokio::test]
async fn start_with_an_empty_file_is_no_file_uploaded() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.jpg", b"");
    let err = client_for(&sim, TOKEN).start(&empty, "empty.jpg", LAYERED, "k").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoFile, "{err}");
    assert_eq!(err.status, Some(400));
    assert!(!retried(&err));
}

#[tokio::test]
async fn start_with_a_wrong_token_is_a_token_issue() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let err = client_for(&sim, "wrong").start(&photo, "photo.jpg", LAYERED, "k").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadToken, "{err}");
    assert!(!retried(&err));
    assert_eq!(sim.stats().charged_starts, 0);
}

/// The simulator refuses a wrong token whether it comes as the form field or the header alone.
#[tokio::test]
async fn sim_checks_the_token_in_the_field_and_in_the_header() {
    let sim = start_sim(fast_sim()).await;
    let url = format!("{}/retoucher/start", sim.base_url());
    let http = reqwest::Client::new();
    let form = |token: Option<&str>| {
        let part = reqwest::multipart::Part::bytes(jpeg()).file_name("a.jpg");
        let mut form = reqwest::multipart::Form::new().text("payload", LAYERED).part("file", part);
        if let Some(t) = token {
            form = form.text("token", t.to_string());
        }
        form
    };
    let field_only = http.post(&url).multipart(form(Some("bad"))).send().await.unwrap();
    assert_eq!(field_only.status(), 401);
    let header_only = http.post(&url).header("X-Retouch-Token", "bad").multipart(form(None)).send().await.unwrap();
    assert_eq!(header_only.status(), 401);
    let body: serde_json::Value = header_only.json().await.unwrap();
    assert_eq!(body["message"], "Token issue");
    let good_header = http.post(&url).header("X-Retouch-Token", TOKEN).multipart(form(None)).send().await.unwrap();
    assert_eq!(good_header.status(), 200);
    let good_field = http.post(&url).multipart(form(Some(TOKEN))).send().await.unwrap();
    assert_eq!(good_field.status(), 200);
}

#[tokio::test]
async fn start_over_the_quota_is_processing_limit_reached_461() {
    for codes_in_body in [false, true] {
        let sim = start_sim(SimConfig { quota: Some(1), codes_in_body, ..fast_sim() }).await;
        let dir = tempfile::tempdir().unwrap();
        let photo = write(dir.path(), "photo.jpg", &jpeg());
        let client = client_for(&sim, TOKEN);
        client.start(&photo, "photo.jpg", LAYERED, "a").await.unwrap();
        let err = client.start(&photo, "photo.jpg", LAYERED, "b").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::QuotaReached, "codes_in_body={codes_in_body}: {err}");
        assert_eq!(err.status, Some(if codes_in_body { 200 } else { 461 }));
        assert_eq!(sim.stats().charged_starts, 1);
    }
}

#[tokio::test]
async fn start_with_an_invalid_payload_is_invalid_task_462() {
    for codes_in_body in [false, true] {
        let sim = start_sim(SimConfig { codes_in_body, ..fast_sim() }).await;
        let dir = tempfile::tempdir().unwrap();
        let photo = write(dir.path(), "photo.jpg", &jpeg());
        let client = client_for(&sim, TOKEN);
        for (i, payload) in ["not json", r#"{"tasks":[{"Plugin":"Heal"}]}"#, r#"{"mode":"professional","tasks":[]}"#]
            .into_iter()
            .enumerate()
        {
            let err = client.start(&photo, "photo.jpg", payload, &format!("k{i}")).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidTask, "payload {payload:?}: {err}");
        }
        assert_eq!(sim.stats().charged_starts, 0);
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_same_id_and_charges_nothing() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let first = client.start(&photo, "photo.jpg", LAYERED, "same-key").await.unwrap();
    let second = client.start(&photo, "photo.jpg", LAYERED, "same-key").await.unwrap();
    assert_eq!(first.id, second.id);
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 1);
    assert_eq!(stats.requests_by_key["same-key"], 2);
    assert_eq!(stats.charged_by_hash.values().sum::<u64>(), 1);
}

#[tokio::test]
async fn status_goes_waiting_active_completed_and_progress_reaches_100_before_completed() {
    let sim = start_sim(SimConfig { processing_ms: 1500, completion_lag_ms: 600, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    let seen = completed(&client, &id).await;
    let states: Vec<&str> = seen.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states.first(), Some(&"waiting"), "{states:?}");
    assert!(states.contains(&"active"), "{states:?}");
    assert_eq!(states.last(), Some(&"completed"), "{states:?}");
    let early_full = seen.iter().any(|s| s.state == TaskState::Active && s.progress == Some(100.0));
    assert!(early_full, "progress should reach 100 while still active: {seen:?}");
    assert!(seen.last().unwrap().expire_date.is_some());
}

#[tokio::test]
async fn a_failed_task_carries_the_servers_reason() {
    let sim = start_sim(SimConfig { fail_rate: 1.0, fail_reason: "no face found".into(), ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    let last = completed(&client, &id).await.pop().unwrap();
    assert_eq!(last.state, TaskState::Failed);
    assert_eq!(last.reason.as_deref(), Some("no face found"));
    let err = client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn get_file_answers_404_until_the_result_is_stored_then_a_zip_of_layers() {
    let sim = start_sim(SimConfig { store_lag_ms: 800, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    completed(&client, &id).await;
    let early = client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err();
    assert_eq!(early.kind, ErrorKind::NotFound, "right after completion the file is not stored yet");
    let download = wait_for("the stored result", Duration::from_secs(5), async || {
        client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.ok()
    })
    .await;
    assert_eq!(download.kind, FileKind::Zip, "detected by bytes although served as photo.jpg");
    assert_eq!(download.bytes, std::fs::metadata(&download.path).unwrap().len());

    let mut archive = zip::ZipArchive::new(std::fs::File::open(&download.path).unwrap()).unwrap();
    let names: Vec<String> = archive.file_names().map(|n| n.unwrap().to_string()).collect();
    assert!(names.contains(&"index=0&blendmode=normal&name=Heal.png".to_string()), "{names:?}");
    assert!(names.contains(&"index=1&blendmode=softLight&name=Dodge Burn.png".to_string()), "{names:?}");
    assert!(names.contains(&"result.json".to_string()), "{names:?}");
    let mut layer = Vec::new();
    archive.by_name("index=0&blendmode=normal&name=Heal.png").unwrap().read_to_end(&mut layer).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(layer));
    let mut reader = decoder.read_info().expect("the layer is a decodable PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut pixels).expect("the layer's pixels decode");
}

#[tokio::test]
async fn the_timeline_records_upload_completion_and_first_download_and_processing_follows_the_knobs() {
    // 100 ms base + 2 tasks × 200 ms + 0.5 MB × 400 ms/MB = 700 ms.
    let knobs = SimConfig { processing_ms: 100, processing_ms_per_task: 200, processing_ms_per_mb: 400, ..fast_sim() };
    let sim = start_sim(SimConfig { store_lag_ms: 0, ..knobs }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = jpeg();
    bytes.resize(500_000, 0);
    let photo = write(dir.path(), "photo.jpg", &bytes);
    let client = client_for(&sim, TOKEN);
    let before = retouchd::sim::unix_us();
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    completed(&client, &id).await;
    wait_for("the result", Duration::from_secs(5), async || {
        client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.ok()
    })
    .await;
    let times = sim.stats().timeline[&id].clone();
    assert_eq!(times.file_name, "photo.jpg");
    assert_eq!(times.processing_ms, 700);
    assert!(before <= times.upload_started_us && times.upload_started_us <= times.created_us, "{times:?}");
    assert_eq!(times.completed_us, times.created_us + 700_000);
    let first = times.first_get_file_us.expect("a getFile was seen");
    assert!(first >= times.completed_us, "fetched only after completion: {times:?}");
    assert_eq!(times.first_served_us, Some(first), "stored at once (store lag 0)");
}

#[tokio::test]
async fn get_file_is_served_as_octet_stream_under_the_original_name() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    completed(&client, &id).await;
    let url = format!("{}/retoucher/getFile/{id}", sim.base_url());
    let response = wait_for("the stored result", Duration::from_secs(5), async || {
        let r = reqwest::get(&url).await.unwrap();
        r.status().is_success().then_some(r)
    })
    .await;
    assert_eq!(response.headers()["content-type"], "binary/octet-stream");
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("photo.jpg"));
}

#[tokio::test]
async fn flat_tasks_return_one_image_in_the_inputs_format() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, TOKEN);
    for (name, bytes, kind) in [("a.jpg", jpeg(), FileKind::Jpeg), ("b.png", png(), FileKind::Png)] {
        let file = write(dir.path(), name, &bytes);
        let id = client.start(&file, name, FLAT, name).await.unwrap().id;
        completed(&client, &id).await;
        let download = wait_for("the result", Duration::from_secs(5), async || {
            client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.ok()
        })
        .await;
        assert_eq!(download.kind, kind, "{name}");
    }
}

#[tokio::test]
async fn a_zip_input_gives_a_zip_result_with_each_images_layers() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = retouchd::imagegen::zip_of(&[("one.jpg", jpeg()), ("two.png", png())]);
    let file = write(dir.path(), "batch.zip", &archive);
    let client = client_for(&sim, TOKEN);
    let id = client.start(&file, "batch.zip", LAYERED, "k").await.unwrap().id;
    completed(&client, &id).await;
    let download = wait_for("the result", Duration::from_secs(5), async || {
        client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.ok()
    })
    .await;
    assert_eq!(download.kind, FileKind::Zip);
    let archive = zip::ZipArchive::new(std::fs::File::open(&download.path).unwrap()).unwrap();
    let names: Vec<String> = archive.file_names().map(|n| n.unwrap().to_string()).collect();
    assert!(names.iter().any(|n| n.starts_with("one/index=0")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("two/index=1")), "{names:?}");
}

#[tokio::test]
async fn results_expire_after_the_retention_and_then_answer_404() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let id = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap().id;
    completed(&client, &id).await;
    sim.update(|c| c.retention_ms = 0);
    assert_eq!(client.status(&id).await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        client.get_file(&id, &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn unknown_task_ids_answer_404_on_status_and_get_file() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, TOKEN);
    let err = client.status("s0me-very-l0ng-1d").await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::NotFound, Some(404)));
    assert!(!retried(&err));
    let err =
        client.get_file("s0me-very-l0ng-1d", &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file left behind");
}

#[tokio::test]
async fn limits_answer_404_in_production_and_the_documented_json_when_enabled() {
    let sim = start_sim(fast_sim()).await;
    let client = client_for(&sim, TOKEN);
    assert_eq!(client.limits().await.unwrap(), None);
    sim.update(|c| {
        c.limits_enabled = true;
        c.max_file_size_mb = 42;
    });
    let limits = client.limits().await.unwrap().expect("limits when enabled");
    assert_eq!(limits.max_file_size_mb, 42.0);
    assert_eq!(limits.max_megapixels, 250.0);
    assert_eq!(limits.image_formats, vec!["png", "jpg", "jpeg"]);
    assert_eq!(limits.archive_formats, vec!["zip"]);
}

#[tokio::test]
async fn balance_reports_credits_left_and_refuses_a_bad_token() {
    let sim = start_sim(SimConfig { credits: 10, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    assert_eq!(client.balance().await.unwrap().professional, Some(10));
    client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap();
    assert_eq!(client.balance().await.unwrap().professional, Some(9));
    let err = client_for(&sim, "wrong").balance().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadToken, "{err}");
}

#[tokio::test]
async fn balance_asks_the_api_host_first_then_the_older_route_and_a_401_is_a_token_problem() {
    let sim = start_sim(SimConfig { credits: 10, ..fast_sim() }).await;
    let client = client_for(&sim, TOKEN);
    assert_eq!(client.balance().await.unwrap().professional, Some(10));
    assert_eq!(sim.stats().balance_requests, [("api".to_string(), 1)].into(), "the API host's route first");
    // A server without it: the older route answers.
    sim.update(|c| c.old_balance_only = true);
    assert_eq!(client.balance().await.unwrap().professional, Some(10));
    assert_eq!(sim.stats().balance_requests.get("older"), Some(&1));
    // An expired token: 401 with the server's message, a token problem, not asked elsewhere.
    sim.update(|c| {
        c.old_balance_only = false;
        c.token_401 = true;
    });
    let err = client_for(&sim, "expired").balance().await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadToken, Some(401)), "{err}");
    assert!(err.message.contains("Token is invalid or expired"), "{err}");
    assert_eq!(sim.stats().balance_requests.get("older"), Some(&1), "a token problem is an answer");
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let err = client_for(&sim, "expired").start(&photo, "photo.jpg", LAYERED, "k").await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadToken, Some(401)), "{err}");
    assert_eq!(sim.stats().charged_starts, 0);
}

#[tokio::test]
async fn injected_5xx_answers_are_retryable_server_errors_with_retry_after() {
    let sim = start_sim(SimConfig { status_error_rate: 1.0, retry_after_secs: Some(7), ..fast_sim() }).await;
    let err = client_for(&sim, TOKEN).status("any").await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(500)));
    assert!(retried(&err));
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_server_that_is_down_answers_503_on_every_route() {
    let sim = start_sim(SimConfig { down: true, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let errors = [
        client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap_err(),
        client.status("x").await.unwrap_err(),
        client.get_file("x", &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err(),
        client.limits().await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(503)), "{err}");
    }
}

#[tokio::test]
async fn a_dropped_start_is_a_transport_error_and_resending_the_key_is_free() {
    let sim = start_sim(SimConfig { drop_rate: 1.0, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "photo.jpg", &jpeg());
    let client = client_for(&sim, TOKEN);
    let err = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap_err();
    assert!(retried(&err), "{err}");
    assert!(matches!(err.kind, ErrorKind::Transport | ErrorKind::Protocol), "{err}");
    sim.update(|c| c.drop_rate = 0.0);
    let started = client.start(&photo, "photo.jpg", LAYERED, "k").await.unwrap();
    assert!(!started.id.is_empty());
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 1, "the first (dropped) start charged, the resend did not");
    assert_eq!(stats.requests_by_key["k"], 2);
}

#[tokio::test]
async fn a_slow_answer_past_the_idle_timeout_is_a_transport_error() {
    let sim = start_sim(SimConfig { delay_ms: 1500, ..fast_sim() }).await;
    let mut options = retouchd::api::ClientOptions::new(sim.base_url(), retouchd::api::Token::new(TOKEN));
    options.idle_timeout = Duration::from_millis(300);
    let client = retouchd::api::Client::new(options).unwrap();
    let err = client.status("x").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport, "{err}");
    // A slow answer within the timeout is fine.
    sim.update(|c| c.delay_ms = 100);
    assert_eq!(client.status("x").await.unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn uploads_of_the_documented_100_mb_are_accepted_and_streamed() {
    let sim = start_sim(SimConfig { processing_ms: 0, ..fast_sim() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut big = jpeg();
    big.truncate(big.len() - 2);
    big.resize(100 * 1024 * 1024 - 2, 0x55);
    big.extend_from_slice(&[0xFF, 0xD9]);
    let photo = write(dir.path(), "big.jpg", &big);
    let started = client_for(&sim, TOKEN).start(&photo, "big.jpg", FLAT, "k").await.unwrap();
    assert!(!started.id.is_empty());
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, 1);
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output_or_errors() {
    let sim = start_sim(SimConfig { status_error_rate: 1.0, ..fast_sim() }).await;
    let client = client_for(&sim, "super-secret-token-xyz");
    let err = client.status("x").await.unwrap_err();
    let shown = format!("{client:?} {err} {err:?}");
    assert!(!shown.contains("super-secret-token-xyz"), "{shown}");
}
