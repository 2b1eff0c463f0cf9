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

/// An HTTPS server on loopback with a self-signed certificate for `localhost`.
async fn self_signed_server() -> (u16, tokio::task::JoinHandle<()>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der_cert = cert.cert.der().clone();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der_cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    use tokio::io::AsyncWriteExt;
                    let body = r#"{"status":200,"state":"completed"}"#;
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn tls_certificates_are_verified() {
    let (port, server) = self_signed_server().await;
    let options = retouchd::api::ClientOptions::new(
        format!("https://localhost:{port}/api/v1"),
        retouchd::api::Token::new(SECRET),
    );
    let client = retouchd::api::Client::new(options).unwrap();
    let err = client.status("any").await.expect_err("a self-signed certificate must be refused");
    server.abort();
    println!("self-signed server: {err}");
    assert_eq!(err.kind, retouchd::api::ErrorKind::Transport, "{err}");
    assert!(err.message.to_lowercase().contains("certificate"), "{err}");
}
