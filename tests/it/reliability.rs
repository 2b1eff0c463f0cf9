//! Evidence for "nothing is lost, nothing is paid twice": random SIGKILLs, server and network
//! faults, a full disk, an unmounted inbox, SIGTERM. Each test prints its figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use retouchd::sim::SimConfig;

use crate::support::*;

/// Jobs per state right now, from `retouchd status --json`.
fn states(ws: &Workspace) -> BTreeMap<String, u64> {
    let out = ws.command(&["status", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["counts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

fn results(ws: &Workspace) -> Vec<String> {
    ws.files("outbox").into_iter().filter(|f| f.ends_with("result.json")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_lose_nothing_and_never_charge_twice() {
    const FILES: u32 = 300;
    const KILLS: u32 = 24;
    // Answers take 100 ms and there are four upload slots for 96 jobs in flight: jobs spend a
    // while in `submitting`, so kills land there too, not only while the server processes.
    let sim =
        start_sim(SimConfig { processing_ms: 200, processing_jitter_ms: 2500, delay_ms: 100, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_uploads = 4\nmax_in_flight = 96", "");
    let mut hashes = Vec::new();
    for i in 0..FILES {
        let bytes = distinct_jpeg(i);
        hashes.push(sha256(&bytes));
        ws.drop_file(&format!("set{}/photo {i:03}.jpg", i % 7), &bytes);
    }
    let mut seen_at_kill: BTreeMap<String, u32> = BTreeMap::new();
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut daemon = ws.spawn(&[], &format!("run{kill}"));
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1500))).await;
        for (state, n) in states(&ws) {
            if n > 0 && !["done", "failed", "rejected"].contains(&state.as_str()) {
                *seen_at_kill.entry(state).or_default() += 1;
            }
        }
        daemon.kill().unwrap();
    }
    let out = ws.run_once(Duration::from_secs(240)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let results = results(&ws);
    let duplicates = results.iter().filter(|f| f.contains(" (2)")).count();
    let outbox = ws.files("outbox");
    let partials = outbox.iter().filter(|f| f.contains(".retouchd-staging") || f.ends_with(".part")).count();
    let stats = sim.stats();
    let charged_twice = hashes.iter().filter(|h| stats.charged_by_hash.get(*h).copied().unwrap_or(0) > 1).count();
    let never_charged = hashes.iter().filter(|h| !stats.charged_by_hash.contains_key(*h)).count();
    println!(
        "crash safety: {FILES} files, {KILLS} SIGKILLs over {:.0?}, kills landed with jobs in {seen_at_kill:?}; \
         results {}, duplicates {duplicates}, partials {partials}, done {}, charged starts {}, \
         start requests {}, charged twice {charged_twice}, never charged {never_charged}",
        started.elapsed(),
        results.len(),
        ws.files("done").len(),
        stats.charged_starts,
        stats.start_requests,
    );
    assert_eq!(results.len(), FILES as usize, "every file delivered");
    assert_eq!(duplicates, 0, "no file delivered twice");
    assert_eq!(partials, 0, "no staging or partial file visible: {outbox:?}");
    assert_eq!(ws.files("done").len(), FILES as usize, "every source in done/");
    assert!(ws.files("inbox").is_empty() && ws.files("failed").is_empty());
    assert_eq!((charged_twice, never_charged), (0, 0));
    assert_eq!(stats.charged_starts, FILES as u64);
    for phase in ["submitting", "processing"] {
        assert!(seen_at_kill.contains_key(phase), "no kill landed during {phase}: {seen_at_kill:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_quickly_and_a_restart_resumes_everything() {
    let sim = start_sim(SimConfig { processing_ms: 3000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    for i in 0..10 {
        ws.drop_file(&format!("t{i}.jpg"), &distinct_jpeg(2000 + i));
    }
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("jobs at the server", Duration::from_secs(30), async || (sim.stats().charged_starts >= 5).then_some(()))
        .await;
    let asked = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut daemon.0, Duration::from_secs(10)).await;
    let took = asked.elapsed();
    println!("SIGTERM: exited {status:?} after {took:?}");
    assert!(status.success(), "{}", ws.log("daemon"));
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(ws.log("daemon").contains("SIGTERM"));
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success());
    assert_eq!(ws.files("done").len(), 10);
    assert_eq!(results(&ws).len(), 10);
    assert_eq!(sim.stats().charged_starts, 10);
}

/// Why the tests that mount a tmpfs are ignored by a plain `cargo test`.
const NEEDS_ROOT: &str = "mounts a tmpfs, which needs root; CI runs as root with --include-ignored";

/// Mounts a tmpfs of `size` on `dir`; fails the test where mounting is not allowed.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Mount {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot mount a tmpfs on {}: this test {NEEDS_ROOT}", dir.display());
    Mount(dir.to_path_buf())
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs, which needs root; CI runs as root with --include-ignored"]
async fn a_full_outbox_disk_makes_jobs_wait_and_keeps_sources() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let _mount = mount_tmpfs(&ws.path("outbox"), "256k");
    // Fill the disk to the last byte.
    let filler = ws.path("outbox/filler.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
    ws.drop_file("a.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("the full-disk warning", Duration::from_secs(30), async || {
        ws.log("daemon").contains("disk is full").then_some(())
    })
    .await;
    assert!(ws.path("inbox/a.jpg").exists(), "the source stays while the disk is full");
    let visible: Vec<String> =
        ws.files("outbox").into_iter().filter(|f| !f.starts_with('.') && f != "filler.bin").collect();
    assert!(visible.is_empty(), "nothing partial appears: {visible:?}");
    std::fs::remove_file(&filler).unwrap();
    wait_for("delivered once space is back", Duration::from_secs(60), async || {
        ws.path("done/a.jpg").exists().then_some(())
    })
    .await;
    daemon.kill().unwrap();
    assert_eq!(results(&ws).len(), 1);
    assert_eq!(sim.stats().charged_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs, which needs root; CI runs as root with --include-ignored"]
async fn an_unmounted_inbox_pauses_the_watch_and_nothing_is_treated_as_gone() {
    let sim = start_sim(SimConfig { processing_ms: 2500, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let mount = mount_tmpfs(&ws.path("inbox"), "16m");
    ws.drop_file("share.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("the job at the server", Duration::from_secs(30), async || {
        (sim.stats().charged_starts == 1).then_some(())
    })
    .await;
    // Unmount (the mount point stays, empty), keeping the share's content aside.
    let kept = ws.dir.path().join("share-copy");
    std::fs::create_dir_all(&kept).unwrap();
    let mut mtimes = Vec::new();
    for f in ["share.jpg", ".retouchd"] {
        std::fs::copy(ws.path("inbox").join(f), kept.join(f)).unwrap();
        mtimes.push(std::fs::metadata(ws.path("inbox").join(f)).unwrap().modified().unwrap());
    }
    drop(mount);
    wait_for("the watch paused", Duration::from_secs(30), async || {
        ws.log("daemon").contains("share looks unmounted").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ws.path("done/share.jpg").exists(), "the source is not settled while the share is away");
    // The finished photo needs the source's pixels: the job waits for the share, result staged.
    assert_eq!(states(&ws).get("rendering"), Some(&1), "{}", ws.log("daemon"));
    // The share comes back, with the file (same size and time, as a remount shows it).
    let _again = mount_tmpfs(&ws.path("inbox"), "16m");
    for (f, mtime) in ["share.jpg", ".retouchd"].into_iter().zip(mtimes) {
        let to = ws.path("inbox").join(f);
        std::fs::copy(kept.join(f), &to).unwrap();
        std::fs::File::options().write(true).open(&to).unwrap().set_modified(mtime).unwrap();
    }
    let moved = wait_for_or_show(Duration::from_secs(90), async || ws.path("done/share.jpg").exists()).await;
    assert!(moved, "the source was not moved to done once the share was back:\n{}", ws.log("daemon"));
    daemon.kill().unwrap();
    assert_eq!(sim.stats().charged_starts, 1, "not paid twice");
    assert_eq!(results(&ws).len(), 1);
    assert!(ws.path("outbox/share.jpg").exists(), "the finished photo, made once the source was back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs, which needs root; CI runs as root with --include-ignored"]
async fn a_read_only_state_folder_refuses_to_start_and_resets_nothing() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let _mount = mount_tmpfs(&ws.path("state"), "16m");
    ws.drop_file("a.jpg", &jpeg());
    assert!(ws.run_once(Duration::from_secs(60)).await.status.success());
    let before = std::fs::read(ws.path("state/journal.sqlite")).unwrap();
    let remount =
        std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(ws.path("state")).status().unwrap();
    assert!(remount.success());
    let out = ws.command(&["run", "--once"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("read-only state: exit {:?}: {err}", out.status.code());
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("writable"), "{err}");
    assert_eq!(std::fs::read(ws.path("state/journal.sqlite")).unwrap(), before);
}

/// Every file below `root` (links not followed), as raw paths relative to it; the marker left out.
fn raw_files(root: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    walk(root)
        .into_iter()
        .filter(|p| !p.symlink_metadata().is_ok_and(|m| m.is_dir()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(retouchd::watch::MARKER)))
        .map(|p| p.strip_prefix(root).map(std::path::Path::to_path_buf).unwrap_or(p))
        .collect()
}

/// A random name of 1 to 12 bytes that is not UTF-8 as often as not (no `/`, no NUL, not hidden
/// or a temporary name that the ignore rules skip).
fn random_name(rng: &mut fastrand::Rng) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    loop {
        let bytes: Vec<u8> = (0..rng.usize(1..13)).map(|_| rng.u8(1..=255)).filter(|b| *b != b'/').collect();
        if !bytes.is_empty() && !matches!(bytes[0], b'.' | b'~' | b'#' | b'$') {
            return std::ffi::OsString::from_vec(bytes);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_byte_names_folder_trees_server_faults_and_kills_lose_nothing_and_never_charge_twice() {
    const FILES: u32 = 120;
    const KILLS: u32 = 10;
    let seed = fastrand::u64(..);
    println!("soak seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let sim = start_sim(SimConfig {
        processing_ms: 200,
        processing_jitter_ms: 2000,
        delay_ms: 50,
        start_error_rate: 0.1,
        status_error_rate: 0.2,
        get_file_error_rate: 0.1,
        ..fast_sim()
    })
    .await;
    let ws = Workspace::new(&sim, "max_uploads = 4\nmax_in_flight = 48", "");
    let mut dropped = std::collections::BTreeSet::new();
    let mut hashes = Vec::new();
    while dropped.len() < FILES as usize {
        let depth = rng.usize(0..3);
        let mut rel: std::path::PathBuf = (0..depth).map(|_| random_name(&mut rng)).collect();
        let mut name = random_name(&mut rng);
        name.push(".jpg");
        rel.push(name);
        if dropped.iter().any(|d: &std::path::PathBuf| d.starts_with(&rel) || rel.starts_with(d)) {
            continue;
        }
        let bytes = distinct_jpeg(5000 + dropped.len() as u32);
        let path = ws.path("inbox").join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        hashes.push(sha256(&bytes));
        dropped.insert(rel);
    }
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut daemon = ws.spawn(&[], &format!("soak{kill}"));
        tokio::time::sleep(Duration::from_millis(rng.u64(500..4000))).await;
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("the daemon exited on its own ({status}):\n{}", ws.log(&format!("soak{kill}")));
        }
        daemon.kill().unwrap();
    }
    let out = ws.run_once(Duration::from_secs(240)).await;
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the last run failed (seed {seed}):\n{log}");
    let stats = sim.stats();
    let charged_twice = hashes.iter().filter(|h| stats.charged_by_hash.get(*h).copied().unwrap_or(0) > 1).count();
    let never_charged = hashes.iter().filter(|h| !stats.charged_by_hash.contains_key(*h)).count();
    let done = raw_files(&ws.path("done"));
    println!(
        "soak (seed {seed}): {FILES} files with random byte names in random trees, {KILLS} SIGKILLs and \
         server faults ({} injected) over {:.0?}: done {}, lost {}, charged starts {}, charged twice \
         {charged_twice}, never charged {never_charged}",
        stats.injected_faults,
        started.elapsed(),
        done.len(),
        dropped.difference(&done).count(),
        stats.charged_starts,
    );
    assert_eq!(done, dropped, "every source in done/ under its own name (seed {seed})");
    assert!(raw_files(&ws.path("inbox")).is_empty() && raw_files(&ws.path("failed")).is_empty());
    assert_eq!((charged_twice, never_charged), (0, 0), "each photo charged exactly once (seed {seed})");
    assert_eq!(results(&ws).len(), FILES as usize, "every result delivered (seed {seed})");
    for kill in 0..KILLS {
        assert!(!ws.log(&format!("soak{kill}")).contains("panicked"), "a panic (seed {seed})");
    }
}

/// A FUSE mount (bindfs) of `source` on `target`, whose process can be stopped to make every
/// call into it hang as a dead NFS server does. Continued and unmounted when dropped.
struct HangingShare {
    target: std::path::PathBuf,
    pid: i32,
}

impl HangingShare {
    fn mount(source: &std::path::Path, target: &std::path::Path) -> HangingShare {
        let ok = std::process::Command::new("bindfs").arg(source).arg(target).status().is_ok_and(|s| s.success());
        assert!(ok, "cannot mount bindfs on {}: this test needs root, /dev/fuse and bindfs", target.display());
        let found = std::process::Command::new("pgrep")
            .args(["-n", "-f"])
            .arg(format!("bindfs {}", source.display()))
            .output()
            .unwrap();
        let pid = String::from_utf8_lossy(&found.stdout).trim().parse().expect("bindfs's pid");
        HangingShare { target: target.to_path_buf(), pid }
    }

    fn hang(&self) {
        // SAFETY: signalling the FUSE process this test started.
        unsafe { libc::kill(self.pid, libc::SIGSTOP) };
    }
}

impl Drop for HangingShare {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.target).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a FUSE file system (bindfs), which needs root and /dev/fuse; CI runs as root with --include-ignored"]
async fn a_share_that_stops_answering_is_reported_and_the_other_inbox_goes_on() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    for d in ["nas-src", "nas", "nas-out", "nas-done", "nas-failed"] {
        std::fs::create_dir_all(ws.path(d)).unwrap();
    }
    // Declared before the share, so dropped after it: the share answers again (SIGCONT) before
    // the daemon is killed and waited for. Killed while one of its threads waits on the hung
    // mount, the daemon stays a zombie that cannot be reaped, and the test hung in its wait
    // (seen once in a clean-clone CI run).
    let _daemon: Daemon;
    let share = HangingShare::mount(&ws.path("nas-src"), &ws.path("nas"));
    // A second watch on the share, with the same payload.
    let config = std::fs::read_to_string(&ws.config).unwrap();
    let watch = &config[config.find("[[watch]]").unwrap()..];
    let second = watch
        .replace("inbox = \"inbox\"", "inbox = \"nas\"")
        .replace("outbox = \"outbox\"", "outbox = \"nas-out\"")
        .replace("done_dir = \"done\"", "done_dir = \"nas-done\"")
        .replace("failed_dir = \"failed\"", "failed_dir = \"nas-failed\"");
    std::fs::write(&ws.config, format!("{config}\n{second}")).unwrap();
    _daemon = ws.spawn(&[], "daemon");
    let state = ws.path("state");
    wait_for("the daemon ready", Duration::from_secs(30), async || retouchd::daemon::LiveStatus::read(&state)).await;
    share.hang();
    let hung_at = Instant::now();
    ws.drop_file("local.jpg", &jpeg());
    wait_for("the local inbox's photo delivered", Duration::from_secs(60), async || {
        ws.path("done/local.jpg").exists().then_some(())
    })
    .await;
    let delivered_after = hung_at.elapsed();
    let status = wait_for("status naming the share that does not answer", Duration::from_secs(60), async || {
        let out = ws.command(&["status"]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("does not answer").then_some(text)
    })
    .await;
    println!(
        "hung share: the local photo delivered {delivered_after:?} after the share hung; status said it after {:?}",
        hung_at.elapsed()
    );
    assert!(status.contains("nas"), "{status}");
    // Still delivering on the local inbox while the share hangs.
    ws.drop_file("later.jpg", &distinct_jpeg(77));
    wait_for("a later photo delivered", Duration::from_secs(60), async || {
        ws.path("done/later.jpg").exists().then_some(())
    })
    .await;
}
