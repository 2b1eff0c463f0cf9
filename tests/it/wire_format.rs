//! What the client puts on the wire, checked against a recording server, and how it copes with
//! answers that are not what the docs say.

use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use retouchd::api::{Client, ClientOptions, ErrorKind, Token};

use crate::support::*;

/// One multipart field: name, file name, content type, bytes.
type Field = (String, Option<String>, Option<String>, Vec<u8>);

#[derive(Debug, Clone, Default)]
struct Recorded {
    headers: Vec<(String, String)>,
    fields: Vec<Field>,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

async fn record(State(log): State<Log>, headers: HeaderMap, mut multipart: Multipart) -> Response {
    let mut rec = Recorded {
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        ..Recorded::default()
    };
    while let Some(field) = multipart.next_field().await.unwrap() {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let bytes = field.bytes().await.unwrap().to_vec();
        rec.fields.push((name, file_name, content_type, bytes));
    }
    log.lock().unwrap().push(rec);
    axum::Json(serde_json::json!({"status": 200, "id": "abc-123", "retouchQuota": 3})).into_response()
}

/// A server that records starts and balance calls, and serves canned odd answers.
async fn recording_server() -> (String, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route("/api/v1/retoucher/start", post(record))
        .route("/balance", post(record))
        .route("/api/v1/retoucher/status/html", get(|| async { axum::response::Html("<html>Bad gateway</html>") }))
        .route(
            "/api/v1/retoucher/status/huge",
            get(|| async { format!("{{\"state\":\"active\",\"pad\":\"{}\"}}", "x".repeat(4 * 1024 * 1024)) }),
        )
        .route(
            "/api/v1/retoucher/status/body-error",
            get(|| async { axum::Json(serde_json::json!({"status": 462, "message": "Invalid task"})) }),
        )
        .route(
            "/api/v1/retoucher/status/no-state",
            get(|| async { axum::Json(serde_json::json!({"status": 200, "progress": 5})) }),
        )
        .route(
            "/api/v1/retoucher/status/token-issue",
            get(|| async { (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"message": "Token issue"}))) }),
        )
        .route(
            "/api/v1/retoucher/getFile/short",
            get(|| async {
                // Promises 1000 bytes, sends 10.
                let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"PK\x03\x04012345",
                ))]);
                let mut r = axum::body::Body::from_stream(stream).into_response();
                r.headers_mut().insert("content-length", 1000.into());
                r
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn client(base: &str, token: &str) -> Client {
    let mut options = ClientOptions::new(format!("{base}/api/v1"), Token::new(token));
    options.balance_url = format!("{base}/balance");
    Client::new(options).unwrap()
}

#[tokio::test]
async fn start_sends_file_payload_and_token_fields_and_both_headers() {
    let (base, log) = recording_server().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = jpeg();
    let photo = write(dir.path(), "My Photo.JPG", &bytes);
    let started = client(&base, TOKEN).start(&photo, "My Photo.JPG", LAYERED, "idem-42").await.unwrap();
    assert_eq!(started.id, "abc-123");
    assert_eq!(started.quota, Some(3));

    let rec = log.lock().unwrap()[0].clone();
    let header = |name: &str| rec.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("x-retouch-token").as_deref(), Some(TOKEN));
    assert_eq!(header("idempotency-key").as_deref(), Some("idem-42"));
    assert!(header("content-type").unwrap().starts_with("multipart/form-data"));

    let field =
        |name: &str| rec.fields.iter().find(|f| f.0 == name).cloned().unwrap_or_else(|| panic!("no field {name}"));
    let file = field("file");
    assert_eq!(file.1.as_deref(), Some("My Photo.JPG"));
    assert_eq!(file.2.as_deref(), Some("image/jpeg"));
    assert_eq!(file.3, bytes, "the file arrives byte for byte");
    assert_eq!(field("payload").3, LAYERED.as_bytes(), "payload is the JSON string, verbatim");
    assert_eq!(field("token").3, TOKEN.as_bytes());
}

#[tokio::test]
async fn balance_sends_retouchtoken_and_the_professional_mode() {
    let (base, log) = recording_server().await;
    // The recorder answers without `remaining`; the call still succeeds with no figure.
    let balance = client(&base, TOKEN).balance().await.unwrap();
    assert_eq!(balance.professional, None);
    let rec = log.lock().unwrap()[0].clone();
    let fields: Vec<(String, Vec<u8>)> = rec.fields.into_iter().map(|f| (f.0, f.3)).collect();
    assert!(fields.contains(&("retouchtoken".into(), TOKEN.as_bytes().to_vec())), "{fields:?}");
    assert!(fields.contains(&("modes[]".into(), b"professional".to_vec())), "{fields:?}");
}

#[tokio::test]
async fn an_html_page_under_http_200_is_a_protocol_error() {
    let (base, _) = recording_server().await;
    let err = client(&base, TOKEN).status("html").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("Bad gateway"), "the error quotes what came: {err}");
}

#[tokio::test]
async fn an_enormous_json_answer_is_refused_not_buffered() {
    let (base, _) = recording_server().await;
    let err = client(&base, TOKEN).status("huge").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn a_body_status_other_than_200_is_an_error_under_http_200() {
    let (base, _) = recording_server().await;
    let err = client(&base, TOKEN).status("body-error").await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::InvalidTask, Some(200)), "{err}");
}

#[tokio::test]
async fn a_status_without_state_is_a_protocol_error() {
    let (base, _) = recording_server().await;
    let err = client(&base, TOKEN).status("no-state").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn any_4xx_saying_token_issue_is_a_bad_token() {
    let (base, _) = recording_server().await;
    let err = client(&base, TOKEN).status("token-issue").await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadToken, Some(403)), "{err}");
}

#[tokio::test]
async fn a_download_shorter_than_its_content_length_fails_and_leaves_nothing() {
    let (base, _) = recording_server().await;
    let dir = tempfile::tempdir().unwrap();
    let err =
        client(&base, TOKEN).get_file("short", &retouchd::beneath::Dir::root(dir.path()).unwrap()).await.unwrap_err();
    assert!(retried(&err), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    let opts = |url: &str| ClientOptions::new(url, Token::new("t"));
    let mut remote = opts("http://example.com/api/v1");
    remote.balance_url = "https://example.com/balance".into();
    let err = Client::new(remote).unwrap_err();
    assert!(err.message.contains("plain http"), "{err}");
    let mut local = opts("http://127.0.0.1:9/api/v1");
    local.balance_url = "http://localhost:9/balance".into();
    assert!(Client::new(local).is_ok());
}
