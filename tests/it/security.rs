//! The token stays secret: not in logs at any level, not in process arguments, not in status
//! output; a config file others can read is warned about.

use std::time::Duration;

use retouchd::sim::SimConfig;

use crate::support::*;

const SECRET: &str = "SeCrEt-ToKeN-7f3a9c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_a_trace_level_log_process_arguments_or_status() {
    let sim = start_sim(SimConfig { token: SECRET.into(), status_error_rate: 0.3, ..fast_sim() }).await;
    let ws = Workspace::with_token(&sim, SECRET, "", "");
    ws.drop_file("a.jpg", &jpeg());
    let log = std::fs::File::create(ws.path("trace.log")).unwrap();
    let mut cmd = ws.command(&["run", "--once"]);
    cmd.env("RUST_LOG", "trace").stdout(log.try_clone().unwrap()).stderr(log);
    let mut daemon = Daemon(cmd.spawn().unwrap());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.id())).unwrap_or_default();
    let status = wait_exit(&mut daemon.0, Duration::from_secs(60)).await;
    assert!(status.success());
    let trace = ws.log("trace");
    assert!(ws.path("done/a.jpg").exists(), "{trace}");
    assert!(trace.contains("DEBUG") && trace.contains("POST start"), "a verbose log with HTTP detail:\n{trace}");
    assert!(!trace.contains(SECRET), "the token leaked into the trace log");
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET), "the token is in the process arguments");
    let status = ws.command(&["status", "--json"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&status.stdout).contains(SECRET));
    println!("trace log: {} lines, {} bytes, token found 0 times", trace.lines().count(), trace.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_holding_the_token_that_others_can_read_is_warned_about() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    std::fs::set_permissions(&ws.config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = ws.command(&["check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("others can read it") && stdout.contains("chmod 600"), "{stdout}");
    std::fs::set_permissions(&ws.config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = ws.command(&["check"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("others can read it"));
}

#[test]
fn the_simulator_binds_loopback_by_default() {
    let help = bin().args(["sim", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("[default: 127.0.0.1:8080]"), "{text}");
}
