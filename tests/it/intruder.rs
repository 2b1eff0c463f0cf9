//! What a person who can write the inbox (or the outbox, done and failed folders) can make the
//! daemon do: nothing outside those folders. Folders swapped for symbolic links between the
//! daemon's steps, links planted where it writes, a file that is not a photo moved to failed/.
//! In-process on the paused clock, against the in-process simulator.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use retouchd::config::{self, Environment};
use retouchd::daemon::{self, RunOptions};
use retouchd::job::StateName;
use retouchd::journal::Journal;
use retouchd::sim::SimConfig;

use crate::support::*;

/// Runs the daemon until `stop` is sent; returns its task.
fn start(ws: &Workspace) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = config::load(&ws.config, &Environment::default()).expect("the test config is valid");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        daemon::run(config, RunOptions::default(), async {
            let _ = stopped.await;
        })
        .await
        .expect("the daemon runs");
    });
    (stop, task)
}

fn count(ws: &Workspace, state: StateName) -> u64 {
    Journal::open_read_only(&ws.path("state"))
        .and_then(|j| j.counts())
        .unwrap_or_default()
        .get(&state)
        .copied()
        .unwrap_or(0)
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private folder outside the four, holding `name` with the same bytes and times as the
/// inbox's `shoot/<name>` (so a size-and-mtime check alone cannot tell them apart).
fn private_twin(ws: &Workspace, name: &str) -> PathBuf {
    let private = ws.path("private");
    std::fs::create_dir_all(&private).unwrap();
    let original = ws.path("inbox/shoot").join(name);
    std::fs::copy(&original, private.join(name)).unwrap();
    let times = std::fs::File::open(&original).unwrap().metadata().unwrap();
    let file = std::fs::File::options().write(true).open(private.join(name)).unwrap();
    file.set_modified(times.modified().unwrap()).unwrap();
    private
}

/// The inbox's `shoot` folder swapped for a link to `target`.
fn swap_shoot_for(ws: &Workspace, target: &Path) {
    std::fs::rename(ws.path("inbox/shoot"), ws.path("shoot-was")).unwrap();
    symlink(target, ws.path("inbox/shoot")).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_subfolder_swapped_for_a_link_while_the_server_works_moves_and_deletes_nothing_outside() {
    let sim = start_sim(SimConfig { processing_ms: 30_000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "on_success = \"delete\"");
    ws.drop_file("shoot/a.jpg", &jpeg());
    let (stop, task) = start(&ws);
    until("the photo is at the server", || count(&ws, StateName::Processing) == 1).await;
    let private = private_twin(&ws, "a.jpg");
    swap_shoot_for(&ws, &private);
    until("the job ends", || count(&ws, StateName::Done) + count(&ws, StateName::Failed) == 1).await;
    let _ = stop.send(());
    task.await.unwrap();
    assert_eq!(std::fs::read(private.join("a.jpg")).unwrap(), jpeg(), "the private photo was deleted");
    assert_eq!(ws.files("done"), Vec::<String>::new());
    assert_eq!(sim.stats().charged_starts, 1, "only the inbox's photo was sent");
}

#[tokio::test(start_paused = true)]
async fn a_subfolder_swapped_for_a_link_before_upload_sends_and_moves_nothing_outside() {
    // A long settle: the swap happens between the watcher seeing the files and the upload.
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("shoot/a.jpg", &jpeg());
    ws.drop_file("shoot/token.jpg", b"SECRET-TOKEN-abcdef");
    let (stop, task) = start(&ws);
    // Seen (the journal holds the files' versions) but given no time to settle yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let private = private_twin(&ws, "a.jpg");
    std::fs::copy(ws.path("inbox/shoot/token.jpg"), private.join("token.jpg")).unwrap();
    let times = std::fs::metadata(ws.path("inbox/shoot/token.jpg")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(private.join("token.jpg"))
        .unwrap()
        .set_modified(times.modified().unwrap())
        .unwrap();
    swap_shoot_for(&ws, &private);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let _ = stop.send(());
    task.await.unwrap();
    let mut left: Vec<_> = std::fs::read_dir(&private).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["a.jpg", "token.jpg"], "files left the private folder");
    assert_eq!(sim.stats().charged_starts, 0, "a private file was uploaded");
    for folder in ["done", "failed", "outbox"] {
        for file in ws.files(folder) {
            let text = std::fs::read(ws.path(folder).join(&file)).unwrap();
            assert!(!String::from_utf8_lossy(&text).contains("SECRET-TOKEN"), "{folder}/{file} quotes the secret");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn links_planted_in_done_failed_and_outbox_are_never_followed() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let private = ws.path("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join("victim.txt"), b"keep me").unwrap();
    // done/shoot and outbox/shoot are links to the private folder; failed/ has a planted note.
    symlink(&private, ws.path("done/shoot")).unwrap();
    symlink(&private, ws.path("outbox/shoot")).unwrap();
    symlink(private.join("victim.txt"), ws.path("failed/bad.jpg.error.txt")).unwrap();
    ws.drop_file("shoot/a.jpg", &jpeg());
    ws.drop_file("bad.jpg", b"not a photo");
    let (stop, task) = start(&ws);
    // The photo's outbox folder is a link: its result waits (kept, retried), never follows it.
    until("the refusal and the staged result", || {
        count(&ws, StateName::Rejected) == 1 && count(&ws, StateName::Delivering) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let _ = stop.send(());
    task.await.unwrap();
    let mut left: Vec<_> = std::fs::read_dir(&private).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["victim.txt"], "something was written into the private folder");
    assert_eq!(std::fs::read(private.join("victim.txt")).unwrap(), b"keep me");
    assert!(ws.path("failed/bad.jpg").exists());
    let note = std::fs::read_to_string(ws.path("failed/bad.jpg.error.txt")).unwrap();
    assert!(note.contains("not a PNG, JPEG, TIFF or ZIP"), "{note}");
    assert_eq!(count(&ws, StateName::Delivering), 1, "the paid result is kept for when the folder is fixed");
}

/// Opens `count` connections to `addr` from the loopback address `from`, each sending half a
/// request line and then nothing (a slow-loris guest).
async fn half_open_connections(addr: std::net::SocketAddr, from: [u8; 4], count: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((std::net::Ipv4Addr::from(from), 0).into()).unwrap();
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await {
            Ok(Ok(mut stream)) => {
                let _ = stream.write_all(b"GET /api/status HTTP/1.1\r\nHost: loc").await;
                held.push(stream);
            }
            _ => break,
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_dashboard_connections_fails_no_photo_and_the_dashboard_answers_others() {
    use retouchd::daemon::LiveStatus;
    retouchd::daemon::raise_open_file_limit();
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let text = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, format!("[web]\nlisten = \"127.0.0.1:0\"\npassword = \"pw-0123456789\"\n{text}"))
        .unwrap();
    // The descriptor limit a systemd service gets by default, which the daemon cannot raise here.
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=1024:1024", "--", env!("CARGO_BIN_EXE_retouchd"), "run", "--config"]).arg(&ws.config);
    cmd.current_dir(ws.dir.path()).stdout(log.try_clone().unwrap()).stderr(log);
    let _daemon = Daemon(cmd.spawn().expect("prlimit starts retouchd"));
    let state = ws.path("state");
    let url = wait_for("the dashboard's address", Duration::from_secs(30), async || {
        LiveStatus::read(&state).and_then(|s| s.dashboard)
    })
    .await;
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    // 1,120 half-open connections (from loopback addresses here, which the total cap and the
    // header timeout hold; the per-address cap is a unit test of web::listen).
    let mut held = Vec::new();
    for n in 0..40u8 {
        held.extend(half_open_connections(addr, [127, 0, 1, n + 1], 28).await);
    }
    println!("{} half-open connections held", held.len());
    ws.drop_file("a.jpg", &jpeg());
    let done = ws.path("done/a.jpg");
    wait_for("the photo delivered during the flood", Duration::from_secs(60), async || done.exists().then_some(()))
        .await;
    assert_eq!(ws.files("failed"), Vec::<String>::new(), "a photo failed during the flood:\n{}", ws.log("daemon"));
    // The guest's connections are dropped once their headers are late; others get answers.
    wait_for("the dashboard answering", Duration::from_secs(30), async || {
        let login = reqwest::get(format!("http://{addr}/login")).await.ok()?;
        (login.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
    use tokio::io::AsyncReadExt;
    let mut closed = 0;
    for stream in held.iter_mut().take(50) {
        let mut buf = [0u8; 256];
        if tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "half-open connections are closed by the header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_newlines_and_terminal_escapes_reach_the_log_and_status_escaped() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("a\nERROR retouchd: forged line.jpg", &jpeg());
    ws.drop_file("b\u{1b}[2J\u{1b}]0;owned\u{7}.jpg", b"not a photo");
    let mut cmd = ws.command(&["--log-format", "text", "run", "--once"]);
    let log = std::fs::File::create(ws.path("once.log")).unwrap();
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let mut daemon = Daemon(cmd.spawn().unwrap());
    // Exit code 3 (a file failed) or 0: what matters here is what was printed.
    wait_exit(&mut daemon.0, Duration::from_secs(60)).await;
    let text = ws.log("once");
    assert!(!text.lines().any(|l| l.starts_with("ERROR retouchd: forged")), "a forged log line:\n{text}");
    assert!(text.contains("a\\nERROR retouchd: forged line.jpg"), "the name is shown escaped:\n{text}");
    assert!(!text.contains('\u{1b}'), "a terminal escape reached the log:\n{text}");
    let status = ws.command(&["status"]).output().unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    assert!(!shown.contains('\u{1b}') && !shown.contains('\u{7}'), "status printed raw escapes:\n{shown}");
}
