//! Running under systemd: READY, WATCHDOG and STATUS over `NOTIFY_SOCKET`, and SIGHUP reloads.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use retouchd::sim::SimConfig;

use crate::support::*;

fn signal(daemon: &Daemon, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(daemon.id() as i32, sig) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_watchdog_pings_and_status_lines() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("a.jpg", &jpeg());
    let socket_path = ws.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let mut cmd = ws.command(&["run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "1000000");
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let mut daemon = Daemon(cmd.spawn().unwrap());

    let mut messages: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let done = messages.iter().any(|m| m.contains("STATUS=0 uploading, 0 in flight, 0 waiting, 1 done"));
        if done && messages.iter().filter(|m| m.starts_with("WATCHDOG=1")).count() >= 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    signal(&daemon, libc::SIGTERM);
    wait_exit(&mut daemon.0, Duration::from_secs(10)).await;
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    println!("notifications: {messages:?}");
    assert!(messages[0].starts_with("READY=1\nSTATUS="), "READY comes first: {messages:?}");
    let pings = messages.iter().filter(|m| m.starts_with("WATCHDOG=1\nSTATUS=")).count();
    assert!(pings >= 3, "watchdog pings every half period: {messages:?}");
    assert!(messages.iter().any(|m| m.contains("1 done")), "status lines count the work: {messages:?}");
    assert!(messages.last().unwrap().starts_with("STOPPING=1"), "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_payload_for_new_jobs_while_in_flight_jobs_finish() {
    let sim = start_sim(SimConfig { processing_ms: 5000, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let mut daemon = ws.spawn(&[], "daemon");
    ws.drop_file("before.jpg", &imagegen_jpeg(1));
    wait_for("the first job at the server", Duration::from_secs(20), async || {
        (sim.stats().charged_starts == 1).then_some(())
    })
    .await;

    // A broken config is refused, and the old one keeps running.
    let good = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, good.replace("poll_interval = \"2s\"", "poll_interval = \"1ms\"")).unwrap();
    signal(&daemon, libc::SIGHUP);
    wait_for("the refusal", Duration::from_secs(10), async || {
        ws.log("daemon").contains("the new configuration is refused").then_some(())
    })
    .await;
    assert!(ws.log("daemon").contains("server.poll_interval"), "the refusal names the key");

    std::fs::write(&ws.config, good.replace("Plugin = \"Heal\"", "Plugin = \"Skin Tone\"")).unwrap();
    signal(&daemon, libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), async || {
        ws.log("daemon").contains("configuration reloaded").then_some(())
    })
    .await;
    ws.drop_file("after.jpg", &imagegen_jpeg(2));
    let both = wait_for_or_show(Duration::from_secs(60), async || ws.files("done").len() == 2).await;
    assert!(both, "{:?}\n{}", ws.files("done"), ws.log("daemon"));
    assert!(daemon.0.try_wait().unwrap().is_none(), "still running after two SIGHUPs");
    daemon.kill().unwrap();
    let plugins: Vec<String> =
        sim.stats().payloads.iter().map(|p| p["tasks"][0]["Plugin"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(plugins, vec!["Heal", "Skin Tone"], "the job in flight kept its payload; the new one took the new");
    assert_eq!(results_count(&ws), 2);
}

fn imagegen_jpeg(n: u8) -> Vec<u8> {
    retouchd::imagegen::jpeg_bytes(30 + n as u16, 30, [n.wrapping_mul(70), 20, 20])
}

fn results_count(ws: &Workspace) -> usize {
    ws.files("outbox").iter().filter(|f| f.ends_with("result.json")).count()
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("retry") && text.contains("demo"), "{shell}: {text}");
    }
    let out = bin().arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(page.starts_with(".ie") && page.contains(".TH retouchd 1"), "{page}");
    for command in ["run", "status", "retry", "process", "check", "demo", "sim"] {
        assert!(page.contains(&format!(".SS \"retouchd {command}")), "no section for {command} in the man page");
    }
    // On/off flags take no value; options that do show theirs.
    for flag in ["once", "json", "psd", "force"] {
        let upper = flag.to_uppercase();
        assert!(
            !page.contains(&format!("{flag}\\fR {upper}")) && !page.contains(&format!("{flag} {upper}")),
            "--{flag} shown with a value"
        );
    }
    assert!(page.contains("config\\fR FILE") || page.contains("config FILE") || page.contains("CONFIG"), "{page}");
    for section in ["COMMANDS", "CONFIGURATION", "FILES", "EXIT STATUS", "ENVIRONMENT"] {
        assert!(
            page.contains(&format!(".SH {section}")) || page.contains(&format!(".SH \"{section}\"")),
            "{section} missing"
        );
    }
    assert!(page.contains("RETOUCHD_TOKEN") && page.contains("journal.sqlite"), "{page}");
    assert!(!page.contains("retouchd\\-run(1)"), "names no page that is never made");
}

/// A command whose standard output is a pipe nobody reads any more.
fn with_closed_stdout(cmd: &mut std::process::Command) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(std::process::Stdio::piped()).output().unwrap()
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["man"][..], &["completions", "bash"], &["--help"]] {
        let out = with_closed_stdout(bin().args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?} said something: {err}");
        let quiet = out.status.success() || out.status.signal() == Some(libc::SIGPIPE);
        assert!(quiet, "{args:?} ended with {:?}", out.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_neither_stops_process_nor_crashes_the_daemon_on_ctrl_c() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    // `retouchd process FILE | head -0`: the work is done, and the run ends with its own code.
    let file = write(&ws.path("shoot"), "a.jpg", &imagegen_jpeg(5));
    let out = with_closed_stdout(ws.command(&["process"]).arg(&file));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ws.path("shoot/a/result.json").exists());

    // `retouchd run 2>&1 | tee log`, then Ctrl-C: tee is gone before the daemon logs "stopping".
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = ws.command(&["run"]);
    cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
    let mut daemon = Daemon(cmd.spawn().unwrap());
    wait_for("the daemon's live status", Duration::from_secs(10), async || {
        ws.path("state/daemon.json").exists().then_some(())
    })
    .await;
    signal(&daemon, libc::SIGINT);
    let status = wait_exit(&mut daemon.0, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "a clean stop, not a panic (101)");
    assert!(!ws.path("state/daemon.json").exists(), "it stopped properly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sends_files_once_writes_results_next_to_them_and_never_pays_twice() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let shoot = ws.path("shoot");
    write(&shoot, "a.jpg", &imagegen_jpeg(1));
    write(&shoot, "day2/b.png", &retouchd::imagegen::png_bytes(20, 20, [1, 2, 3]));
    write(&shoot, ".DS_Store", b"junk");
    write(&shoot, "readme.txt", b"notes about the shoot, not a photo");
    let single = write(&ws.path("elsewhere"), "c.jpg", &imagegen_jpeg(2));
    write(&shoot, "notes.jpg", b"not a photo");

    // The simulator serves from the other worker thread while this one waits.
    let run = || ws.command(&["process"]).arg(&shoot).arg(&single).output().unwrap();
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one file could not be retouched: {stdout}");
    assert!(stdout.contains("3 delivered, 0 failed, 1 refused"), "{stdout}");
    assert!(stdout.contains("notes.jpg: refused: this is not a PNG"), "rows say what the summary says: {stdout}");
    assert!(stdout.contains("passed over 1 file(s) that are not photos") && stdout.contains("readme.txt"), "{stdout}");
    assert!(ws.path("shoot/a/result.json").exists());
    assert!(ws.path("shoot/day2/b/result.json").exists());
    assert!(ws.path("elsewhere/c/result.json").exists());
    assert!(ws.path("shoot/a.jpg").exists() && ws.path("shoot/notes.jpg").exists(), "sources are never moved");
    for folder in ["shoot", "shoot/day2", "elsewhere"] {
        assert!(!ws.path(folder).join(".retouchd-staging").exists(), "no staging folder left in {folder}");
    }
    assert_eq!(sim.stats().charged_starts, 3);
    let rejected_entries = || {
        let journal = retouchd::journal::Journal::open_read_only(&ws.path("state")).unwrap();
        journal.counts().unwrap().get(&retouchd::job::StateName::Rejected).copied()
    };
    assert_eq!(rejected_entries(), Some(1));

    let again = run();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("0 delivered, 0 failed, 0 refused"), "{stdout}");
    let a_result = ws.path("shoot/a").display().to_string();
    assert!(stdout.contains("a.jpg: already done (job #") && stdout.contains(&a_result), "{stdout}");
    assert!(stdout.contains("notes.jpg: refused before (job #"), "{stdout}");
    assert!(stdout.contains("add --again to send them anew"), "{stdout}");
    assert_eq!(again.status.code(), Some(0), "nothing failed this time: {stdout}");
    assert_eq!(sim.stats().charged_starts, 3, "a second run pays nothing again");
    assert_eq!(rejected_entries(), Some(1), "a file refused before is not journaled as refused again");

    let redo = ws.command(&["process", "--again"]).arg(&single).output().unwrap();
    let stdout = String::from_utf8_lossy(&redo.stdout);
    assert!(redo.status.success(), "{stdout}");
    assert!(stdout.contains("each costs a new credit") && stdout.contains("1 delivered"), "{stdout}");
    assert!(ws.path("elsewhere/c (2)/result.json").exists(), "a second result beside the first");
    assert_eq!(sim.stats().charged_starts, 4, "--again pays once more, as it says");

    let out_dir = ws.path("results");
    let mut cmd = ws.command(&["process"]);
    cmd.arg("--out").arg(&out_dir).arg(write(&ws.path("more"), "d.jpg", &imagegen_jpeg(3)));
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out_dir.join("d/result.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_beside_the_running_daemon_says_how_to_use_it_with_code_5() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let mut daemon = ws.spawn(&[], "daemon");
    wait_for("the daemon to start", Duration::from_secs(10), async || {
        ws.log("daemon").contains("retouchd started").then_some(())
    })
    .await;
    let file = write(&ws.path("elsewhere"), "x.jpg", &imagegen_jpeg(4));
    let out = ws.command(&["process"]).arg(&file).output().unwrap();
    daemon.kill().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("(pid {})", daemon.id())) && err.contains("Drop the files into one of its inboxes"),
        "{err}"
    );
    assert_eq!(sim.stats().charged_starts, 0);
}

/// `retouchd init ARGS` with `input` on standard input.
fn init(config: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = bin()
        .args(["init", "--config"])
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_sets_up_a_checked_private_config_by_flags_or_by_answers() {
    use std::os::unix::fs::PermissionsExt;
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // For scripts: flags, the token on standard input.
    let config = dir.path().join("etc/config.toml");
    let inbox = dir.path().join("photos/inbox");
    let url = sim.base_url();
    let flags = ["--inbox", inbox.to_str().unwrap(), "--preset", "light", "--server-url", &url];
    let out = init(&config, &flags, &format!("{TOKEN}\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("token: accepted") && stdout.contains("next: `retouchd run --config"), "{stdout}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains(TOKEN) && text.contains("token_file = \"token\""),
        "the token is never in the config: {text}"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("etc/token")).unwrap().trim(), TOKEN);
    assert_eq!((mode(&config), mode(&dir.path().join("etc/token"))), (0o600, 0o600));
    for folder in ["outbox", "done", "failed"] {
        assert!(dir.path().join("photos").join(folder).is_dir(), "{folder} made beside the inbox");
    }
    let check = bin().args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // Never over an existing config without --force.
    let again = init(&config, &flags, &format!("{TOKEN}\n"));
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text, "unchanged");

    // Asked: the inbox, the defaults taken for the other folders, preset 2, the subtle
    // strength, the outputs by name, the token.
    let asked = dir.path().join("asked/config.toml");
    let answers = format!("{}\n\n\n\n2\nsubtle\nphoto+psd\n{TOKEN}\n", dir.path().join("shoot/inbox").display());
    let out = init(&asked, &["--server-url", &url], &answers);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&asked).unwrap();
    assert!(text.contains("portrait-flat") && text.contains("Layer = 0"), "{text}");
    assert!(text.contains("\"subtle\" strength") && text.contains("Alpha1 = 0.2, Alpha2 = 0.05"), "{text}");
    assert!(text.contains("layers = false") && text.contains("psd = true"), "{text}");
    assert!(text.contains(&dir.path().join("shoot/outbox").display().to_string()), "{text}");

    // The Debian package's default config (and its empty token file) are replaced without --force.
    let packaged = dir.path().join("packaged/config.toml");
    std::fs::create_dir_all(packaged.parent().unwrap()).unwrap();
    std::fs::write(&packaged, include_str!("../../packaging/deb/config.toml")).unwrap();
    std::fs::write(dir.path().join("packaged/token"), "").unwrap();
    let out = init(&packaged, &flags, &format!("{TOKEN}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&packaged).unwrap().contains("[[watch]]"));

    // A token the server refuses: nothing is written.
    let refused = dir.path().join("refused/config.toml");
    let out = init(&refused, &flags, "not-the-token\n");
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!refused.exists() && !dir.path().join("refused/token").exists(), "neither config nor token written");
    assert_eq!(sim.stats().charged_starts, 0, "setting up spends no credit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_says_why_a_file_is_held_up_instead_of_an_endless_submitting() {
    let sim = start_sim(SimConfig { down: true, ..fast_sim() }).await;
    let ws = Workspace::new(&sim, "", "");
    let file = write(&ws.path("shoot"), "a.jpg", &imagegen_jpeg(6));
    let log = std::fs::File::create(ws.path("process.log")).unwrap();
    let mut cmd = ws.command(&["process"]);
    cmd.arg(&file).stdout(log.try_clone().unwrap()).stderr(log);
    let process = Daemon(cmd.spawn().unwrap());
    let said = wait_for("process to say why the file waits", Duration::from_secs(20), async || {
        let log = ws.log("process");
        log.lines()
            .find(|l| l.contains("a.jpg: submitting: uploading failed") && l.contains("retrying in"))
            .map(str::to_string)
    })
    .await;
    drop(process);
    println!("{said}");
    assert!(said.contains("503") || said.contains("unavailable") || said.contains("down"), "{said}");
    assert_eq!(sim.stats().charged_starts, 0);
}

/// `retouchd pause` and `resume` from a shell: for one inbox or all, before the daemon starts or
/// while it runs, kept across a restart, shown by `status`; jobs wait and nothing is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_a_shell_hold_uploads_across_a_restart() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let inbox = ws.path("inbox");
    let run = |args: &[&str]| {
        let out = ws.command(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let (code, said) = run(&["pause", "--watch", "/no/such/inbox"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not an inbox of the config"), "{said}");

    // One inbox, for two hours, before the daemon starts.
    let (code, said) = run(&["pause", "--watch", inbox.to_str().unwrap(), "--for", "2h"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Uploads from") && said.contains("until") && said.contains("UTC"), "{said}");
    let daemon = ws.spawn(&[], "daemon");
    ws.drop_file("a.jpg", &imagegen_jpeg(1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sim.stats().start_requests, 0, "nothing is sent from a paused inbox");
    let (_, status) = run(&["status"]);
    assert!(status.contains("PAUSED: uploads from") && status.contains("--watch"), "{status}");
    let (_, said) = run(&["resume"]);
    assert!(said.contains("uploads resumed"), "{said}");
    wait_for("a.jpg delivered", Duration::from_secs(30), async || ws.path("done/a.jpg").exists().then_some(())).await;

    // Every inbox, while it runs; kept when the daemon restarts.
    let (_, said) = run(&["pause"]);
    assert!(said.contains("Paused by a person"), "{said}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.drop_file("b.jpg", &imagegen_jpeg(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(daemon);
    let _daemon = ws.spawn(&[], "again");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sim.stats().charged_starts, 1, "b.jpg waits through the restart");
    let (_, status) = run(&["status"]);
    assert!(status.contains("PAUSED: paused by a person (`retouchd resume`"), "{status}");
    let (_, said) = run(&["resume"]);
    assert!(said.contains("uploads resumed"), "{said}");
    wait_for("b.jpg delivered", Duration::from_secs(30), async || ws.path("done/b.jpg").exists().then_some(())).await;
    assert_eq!(run(&["resume"]).1.trim(), "nothing was paused");
}
