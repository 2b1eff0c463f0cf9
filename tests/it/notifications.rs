//! Batches and notifications against real receivers (`tests/notify_receivers.py`): a webhook
//! receiver that checks the signature with the README's snippet (and that the snippet rejects
//! forgeries), an ntfy server that checks ntfy's documented fields and the token, and an SMTP
//! server (aiosmtpd) that wants STARTTLS and a login. The daemon runs as a user would run it.

use std::io::BufRead;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const SECRET: &str = "0123456789abcdef-webhook-secret";
const NTFY_TOKEN: &str = "tk_studio_test";
const SMTP_USER: &str = "studio";
const SMTP_PASSWORD: &str = "mail-password-1";

/// The receivers' process (killed when dropped) and where they listen.
struct Receivers {
    child: std::process::Child,
    http: u16,
    smtp: u16,
    records: std::path::PathBuf,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receivers {
    /// Starts the receivers and adds a channel for each to the workspace's config.
    fn start(ws: &Workspace) -> Receivers {
        // A certificate for 127.0.0.1 that retouchd trusts through SSL_CERT_FILE (STARTTLS).
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(ws.path("smtp-cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(ws.path("smtp-key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let records = ws.path("records.jsonl");
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify_receivers.py");
        let mut child = std::process::Command::new(python())
            .arg(script)
            .arg(&records)
            .arg(readme)
            .args([SECRET, NTFY_TOKEN, SMTP_USER, SMTP_PASSWORD])
            .arg(ws.path("smtp-cert.pem"))
            .arg(ws.path("smtp-key.pem"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python with aiosmtpd (tests/run installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ports: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("receivers said {line:?}: {e}"));
        let receivers = Receivers {
            http: ports["http"].as_u64().unwrap() as u16,
            smtp: ports["smtp"].as_u64().unwrap() as u16,
            child,
            records,
        };
        let mut text = std::fs::read_to_string(&ws.config).unwrap();
        text.push_str(&receivers.config());
        std::fs::write(&ws.config, text).unwrap();
        receivers
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.records)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["kind"] == kind).collect()
    }

    fn config(&self) -> String {
        format!(
            r#"
[batches]
quiet = "1s"

[[notify]]
kind = "webhook"
url = "http://127.0.0.1:{http}/hook"
secret = "{SECRET}"
events = ["batch_done", "failed"]

[[notify]]
kind = "ntfy"
url = "http://127.0.0.1:{http}/studio-test"
token = "{NTFY_TOKEN}"
events = ["batch_done"]

[[notify]]
name = "office"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp}
security = "starttls"
username = "{SMTP_USER}"
password = "{SMTP_PASSWORD}"
from = "retouchd <retouchd@studio.example>"
to = ["me@studio.example"]
"#,
            http = self.http,
            smtp = self.smtp
        )
    }
}

/// The workspace's command with the receivers' certificate trusted.
fn command(ws: &Workspace, args: &[&str]) -> std::process::Command {
    let mut cmd = ws.command(args);
    cmd.env("SSL_CERT_FILE", ws.path("smtp-cert.pem"));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_told_to_a_signed_webhook_ntfy_and_one_email_and_an_outage_loses_nothing() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let receivers = Receivers::start(&ws);

    // `check` validates every channel and sends nothing.
    let check = command(&ws, &["check"]).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}{}", String::from_utf8_lossy(&check.stderr));
    assert!(
        said.contains("notify office (email), for batch_done, paused, resumed, low_credits, budget_reached: valid"),
        "{said}"
    );
    assert!(receivers.records().is_empty(), "check sent nothing");

    // `notify-test` sends one test event to each, at once.
    let test = command(&ws, &["notify-test"]).output().unwrap();
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success(), "{said}{}", String::from_utf8_lossy(&test.stderr));
    assert_eq!(said.matches(": sent, id evt_").count(), 3, "{said}");
    let hooks = receivers.of_kind("webhook");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["verified"], true, "the README's snippet accepts the signature");
    assert_eq!(hooks[0]["forged_rejected"], true, "…and rejects a forged body, secret or time");
    assert_eq!(hooks[0]["notice"]["event"], "test");
    assert_eq!(receivers.of_kind("ntfy")[0]["problems"], serde_json::json!([]));
    let mails = receivers.of_kind("email");
    assert_eq!(mails[0]["login"], serde_json::json!([SMTP_USER, SMTP_PASSWORD]), "logged in after STARTTLS");
    std::fs::remove_file(&receivers.records).unwrap();

    // A shoot copied in as one folder: two photos and one that is not a photo.
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let mut cmd = command(&ws, &["run"]);
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let _daemon = Daemon(cmd.spawn().unwrap());
    ws.drop_file("smith-wedding/a.jpg", &distinct_jpeg(1));
    ws.drop_file("smith-wedding/b.jpg", &distinct_jpeg(2));
    ws.drop_file("smith-wedding/notes.jpg", b"not a photo at all");
    let mail =
        wait_for("the batch's e-mail", Duration::from_secs(60), async || receivers.of_kind("email").into_iter().next())
            .await;
    assert_eq!(mail["subject"], "[retouchd] smith-wedding: 2 delivered, 1 refused");
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains("2 credit(s) spent") && body.contains("smith-wedding/notes.jpg:"), "{body}");
    assert!(body.contains(&ws.path("outbox/smith-wedding").display().to_string()), "{body}");

    let hooks = receivers.of_kind("webhook");
    assert!(hooks.iter().all(|h| h["verified"] == true && h["forged_rejected"] == true), "{hooks:?}");
    let events: Vec<&str> = hooks.iter().map(|h| h["notice"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["failed", "batch_done"], "the refusal as it happened, then the batch");
    let batch = &hooks[1]["notice"];
    assert_eq!(hooks[1]["id_header"], batch["id"], "the id is in the body and a header");
    let data = &batch["data"];
    assert_eq!(
        (data["delivered"].as_u64(), data["refused"].as_u64(), data["credits"].as_u64()),
        (Some(2), Some(1), Some(2))
    );
    assert_eq!(data["folder"], ws.path("inbox/smith-wedding").display().to_string());
    assert_eq!(hooks[0]["notice"]["data"]["outcome"], "refused");
    let ntfy = receivers.of_kind("ntfy");
    assert_eq!(ntfy.len(), 1, "ntfy asked for batch_done only: {ntfy:?}");
    assert_eq!(ntfy[0]["problems"], serde_json::json!([]));
    assert_eq!(ntfy[0]["publish"]["title"], "smith-wedding: 2 delivered, 1 refused");
    assert_eq!(ntfy[0]["publish"]["priority"], 4, "a batch with a refusal is worth a look");
    assert_eq!(receivers.of_kind("email").len(), 1, "one e-mail per batch, none per photo");

    // The container's HEALTHCHECK: the running daemon is well.
    let health = command(&ws, &["status", "--health"]).output().unwrap();
    let said = String::from_utf8_lossy(&health.stdout);
    assert!(health.status.success() && said.starts_with("healthy: "), "{said}");

    // The receivers go down: the next batch waits in the journal, `status` says so, and it
    // arrives once they are back.
    std::fs::write(format!("{}.down", receivers.records.display()), "").unwrap();
    ws.drop_file("second.jpg", &distinct_jpeg(3));
    wait_for("a refused try", Duration::from_secs(60), async || {
        (!receivers.of_kind("refused_while_down").is_empty()).then_some(())
    })
    .await;
    let status = wait_for("status to show the backlog", Duration::from_secs(30), async || {
        let out = command(&ws, &["status"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("notifications waiting for webhook-1: 1").then_some(text)
    })
    .await;
    assert!(status.contains("answered 503"), "{status}");
    std::fs::remove_file(format!("{}.down", receivers.records.display())).unwrap();
    wait_for("the second batch after the outage", Duration::from_secs(60), async || {
        let hooks = receivers.of_kind("webhook");
        (hooks.len() == 3 && receivers.of_kind("ntfy").len() == 2 && receivers.of_kind("email").len() == 2)
            .then_some(())
    })
    .await;
    let hooks = receivers.of_kind("webhook");
    assert_eq!(
        hooks[2]["notice"]["data"]["folder"],
        ws.path("inbox").display().to_string(),
        "loose files: the inbox's batch"
    );
    let ids: std::collections::HashSet<&str> = hooks.iter().map(|h| h["notice"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each event once");
}

/// A `retouchd process` run is one batch, told before the command returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_run_is_one_batch_told_before_it_returns() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    let receivers = Receivers::start(&ws);
    let shoot = ws.path("shoot");
    write(&shoot, "one/a.jpg", &distinct_jpeg(7));
    write(&shoot, "two/b.jpg", &distinct_jpeg(8));
    let out = command(&ws, &["process"]).arg(&shoot).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hooks = receivers.of_kind("webhook");
    assert_eq!(hooks.len(), 1, "one batch for the run, sent before it returned: {hooks:?}");
    let data = &hooks[0]["notice"]["data"];
    assert_eq!(data["folder"], std::fs::canonicalize(&shoot).unwrap().display().to_string());
    assert_eq!((data["delivered"].as_u64(), data["credits"].as_u64()), (Some(2), Some(2)));
    assert_eq!(receivers.of_kind("email").len(), 1);
    let health = command(&ws, &["status", "--health"]).output().unwrap();
    assert_eq!(health.status.code(), Some(1), "no daemon runs: unhealthy");
    assert!(String::from_utf8_lossy(&health.stderr).contains("unhealthy: no daemon runs"));
}
