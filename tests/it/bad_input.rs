//! Bad input from disk and config: each gets a clear outcome, and the daemon keeps running.

use std::time::Duration;

use retouchd::imagegen;
use retouchd::sim::SimConfig;

use crate::support::*;

/// A valid JPEG padded with comment segments to about `mb` megabytes.
fn padded_jpeg(mb: usize) -> Vec<u8> {
    let base = jpeg();
    let mut out = base[..2].to_vec();
    for _ in 0..(mb * 1024 * 1024 / 65_000) {
        out.extend_from_slice(&[0xFF, 0xFE, 0xFD, 0xE9]); // COM, length 65001
        out.extend(std::iter::repeat_n(b'x', 64_999));
    }
    out.extend_from_slice(&base[2..]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_file_gets_a_clear_outcome_and_every_good_one_is_delivered() {
    let sim = start_sim(SimConfig { limits_enabled: true, max_file_size_mb: 1, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "incomplete_grace = \"2s\"");
    let photo = |n: u8| imagegen::jpeg_bytes(40 + n as u16, 30, [n.wrapping_mul(40), 10, 10]);
    let good: Vec<(&str, Vec<u8>)> = vec![
        ("with space.jpg", photo(1)),
        ("caf\u{e9} NFC.jpg", photo(2)),
        ("cafe\u{301} NFD.jpg", photo(3)),
        ("it's \"quoted\".jpg", photo(4)),
        ("new\nline.jpg", photo(5)),
        ("-leading-dash.jpg", photo(6)),
        ("UPPER.JPEG", photo(7)),
        ("folder.jpg/inside.jpg", photo(8)),
    ];
    for (name, bytes) in &good {
        ws.drop_file(name, bytes);
    }
    let whole_png = imagegen::png_bytes(30, 30, [1, 2, 3]);
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.jpg", vec![], "empty"),
        ("truncated.jpg", jpeg()[..jpeg().len() / 2].to_vec(), "incomplete"),
        ("truncated.png", whole_png[..whole_png.len() - 20].to_vec(), "incomplete"),
        ("text.jpg", b"I am text, not a photo".to_vec(), "not a PNG, JPEG, TIFF or ZIP"),
        ("too-many-pixels.png", png_declaring(40_000, 40_000), "megapixels"),
        ("too-big.jpg", padded_jpeg(2), "at most 1 MB"),
        ("notes.zip", imagegen::zip_of(&[("a.jpg", photo(9)), ("notes.txt", b"hi".to_vec())]), "notes.txt"),
        ("nested.zip", imagegen::zip_of(&[("inner.zip", imagegen::zip_of(&[("x.jpg", photo(10))]))]), "nested"),
        ("big-entry.zip", imagegen::zip_of(&[("big.jpg", padded_jpeg(2))]), "at most 1 MB"),
    ];
    for (name, bytes, _) in &bad {
        ws.drop_file(name, bytes);
    }
    std::os::unix::fs::symlink("/etc/hostname", ws.path("inbox/outside-link.jpg")).unwrap();

    let out = ws.run_once(Duration::from_secs(90)).await;
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "bad files were refused, so the run fails\n{log}");

    let done = ws.files("done");
    for (name, _) in &good {
        assert!(done.contains(&name.to_string()), "{name:?} not delivered: {done:?}\n{log}");
    }
    let outbox = ws.files("outbox");
    assert!(outbox.contains(&"caf\u{e9} NFC/result.json".to_string()), "{outbox:?}");
    assert!(outbox.contains(&"cafe\u{301} NFD/result.json".to_string()), "{outbox:?}");
    assert!(outbox.contains(&"new\nline/result.json".to_string()), "{outbox:?}");
    assert!(outbox.contains(&"folder.jpg/inside/result.json".to_string()), "{outbox:?}");
    for (name, _, why) in &bad {
        let note = std::fs::read_to_string(ws.path(&format!("failed/{name}.error.txt")))
            .unwrap_or_else(|e| panic!("{name}: no note ({e})\n{log}"));
        assert!(note.contains(why), "{name}: expected {why:?} in\n{note}");
    }
    assert!(ws.path("inbox/outside-link.jpg").symlink_metadata().is_ok(), "a symlink is left alone");
    let stats = sim.stats();
    assert_eq!(stats.charged_starts, good.len() as u64, "only good files were sent: {stats:?}");
    println!(
        "bad input: {} good files delivered, {} bad files refused with reasons, 1 symlink ignored",
        good.len(),
        bad.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_refused_with_a_reason() {
    // Root reads any file, so as root (CI) the daemon runs as `nobody` and the file stays root's.
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let as_root = is_root();
    if as_root {
        ws.give_to_nobody();
    }
    let path = ws.drop_file("locked.jpg", &jpeg());
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let out = if as_root {
        ws.run_once_as_nobody(Duration::from_secs(60)).await
    } else {
        ws.run_once(Duration::from_secs(60)).await
    };
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let note = std::fs::read_to_string(ws.path("failed/locked.jpg.error.txt")).unwrap();
    assert!(note.contains("permission"), "{note}");
}

#[tokio::test]
async fn invalid_config_values_are_all_reported_together_with_keys_and_fixes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), b"x").unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
[server]
token_file = "no-such-token-file"
poll_interval = "-5s"
colour = "blue"

[[watch]]
inbox = "missing-inbox"
outbox = "out"
done_dir = "done"
failed_dir = "failed"
[watch.payload]
mode = "professional"
tasks = [{ Plugin = "Heal" }]

[[watch]]
inbox = "a-file"
outbox = "out2"
failed_dir = "failed2"
done_dir = "done2"
settle = "soon"
[watch.payload]
mode = "professional"
tasks = [{ Plugin = "Heal" }]
"#,
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    for (key, hint) in [
        ("server.token_file", "check the path"),
        ("server.poll_interval", "negative"),
        ("server.colour", "unknown key"),
        ("watch[0].inbox", "create it"),
        ("watch[1].inbox", "is a file"),
        ("watch[1].settle", "not a duration"),
    ] {
        let line =
            err.lines().find(|l| l.contains(&format!("- {key}:"))).unwrap_or_else(|| panic!("{key} missing in\n{err}"));
        assert!(line.contains(hint), "{key}: expected {hint:?} in {line}");
    }
}
