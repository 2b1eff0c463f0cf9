//! A broken or malicious server: nothing is written outside the target folder, memory and disk
//! stay bounded, and the job fails with a reason or retries, as fits.

use std::time::Duration;

use retouchd::sim::{Hostile, SimConfig};

use crate::support::*;

/// Peak resident memory of a process, in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs one file against a server answering getFile with `mode`; returns the failure note.
async fn refused_result(mode: Hostile) -> (Workspace, String, f64) {
    let sim = start_sim(SimConfig { hostile: Some(mode), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "max_result_mb = 16", "");
    ws.drop_file("victim.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    let note_path = ws.path("failed/victim.jpg.error.txt");
    let failed = wait_for_or_show(Duration::from_secs(60), async || note_path.exists()).await;
    assert!(failed, "{mode:?}: no failure\n{}", ws.log("daemon"));
    let rss = peak_rss_mib(daemon.id()).unwrap_or(0.0);
    daemon.kill().unwrap();
    let note = std::fs::read_to_string(&note_path).unwrap();
    assert!(!ws.dir.path().join("escaped.png").exists(), "{mode:?}: a file escaped the outbox");
    assert!(!std::path::Path::new("/tmp/retouchd-escaped.png").exists(), "{mode:?}: a file escaped to /tmp");
    let visible: Vec<String> = ws.files("outbox").into_iter().filter(|f| !f.starts_with('.')).collect();
    assert!(visible.is_empty(), "{mode:?}: nothing is delivered: {visible:?}");
    let staged: Vec<String> = ws.files("outbox/.retouchd-staging");
    assert!(staged.is_empty(), "{mode:?}: nothing is left in staging: {staged:?}");
    assert_eq!(sim.stats().charged_starts, 1);
    println!("hostile {mode:?}: failed with \"{}\", peak RSS {rss:.1} MiB", note.lines().nth(3).unwrap_or(""));
    (ws, note, rss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_is_refused_with_bounded_memory_and_disk() {
    let (_, note, rss) = refused_result(Hostile::ZipBomb).await;
    assert!(note.contains("zip bomb"), "{note}");
    assert!(rss < 100.0, "peak RSS {rss:.1} MiB while expanding a 256 MiB bomb");
}

/// Runs one file against a server misbehaving with `mode` until the daemon has retried `what`,
/// then lets the server behave: the file must be delivered once.
async fn retried_then_delivered(mode: Hostile, what: &str) -> f64 {
    let sim = start_sim(SimConfig { hostile: Some(mode), ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "idle_timeout = \"2s\"", "");
    ws.drop_file("patient.jpg", &jpeg());
    let mut daemon = ws.spawn(&[], "daemon");
    let retried = wait_for_or_show(Duration::from_secs(60), async || ws.log("daemon").matches(what).count() >= 2).await;
    assert!(retried, "{mode:?}: no retry of {what}\n{}", ws.log("daemon"));
    assert!(ws.files("failed").is_empty(), "{mode:?}: a misbehaving server does not fail the file by itself");
    sim.update(|c| c.hostile = None);
    let delivered = wait_for_or_show(Duration::from_secs(60), async || ws.path("done/patient.jpg").exists()).await;
    assert!(delivered, "{mode:?}: not delivered once the server behaved\n{}", ws.log("daemon"));
    let rss = peak_rss_mib(daemon.id()).unwrap_or(0.0);
    assert!(daemon.0.try_wait().unwrap().is_none(), "still running");
    daemon.kill().unwrap();
    assert_eq!(sim.stats().charged_starts, 1);
    println!("hostile {mode:?}: retried, then delivered; peak RSS {rss:.1} MiB");
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enormous_json_is_refused_without_buffering_and_retried() {
    let rss = retried_then_delivered(Hostile::HugeJson, "polling failed").await;
    assert!(rss < 100.0, "peak RSS {rss:.1} MiB");
}
