//! The retoucher server's HTTP API: `start`, `status`, `get_file`, `limits` and `balance`.
//!
//! Uploads and downloads stream between disk and network, so memory does not grow with file
//! size. Every answer is checked the same way (`read_json`): a JSON body whose `status` is not
//! 200 is an error even under HTTP 200. The token is sent both as the `token` form field and the
//! `X-Retouch-Token` header (the two generations of the docs disagree) and never logged.

mod error;
pub mod policy;
pub mod result_json;
mod types;

pub use error::{ApiError, ErrorKind};
pub use policy::{Action, PauseReason, Route};
pub use types::{Balance, Limits, Started, TaskState, TaskStatus, Token};

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Response, StatusCode, Url};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::formats::{self, FileKind};

/// The default main host, with the API prefix.
pub const DEFAULT_BASE_URL: &str = "https://retoucher.hz.labs.retouch4.me/api/v1";
/// The balance route lives on another host.
pub const DEFAULT_BALANCE_URL: &str = "https://3dlutcreator.com/api/retouch/v1/balance";

/// Where to ask for the token's balance when the config does not say: the service's balance
/// host, or, when `base_url` is on this machine (the simulator, a tunnel), the same host's
/// balance route, which is where `retouchd sim` serves it.
pub fn default_balance_url(base_url: &str) -> String {
    let local = Url::parse(base_url).ok().filter(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    });
    match local {
        Some(u) => format!(
            "{}://{}/api/retouch/v1/balance",
            u.scheme(),
            &u[url::Position::BeforeHost..url::Position::AfterPort]
        ),
        None => DEFAULT_BALANCE_URL.to_string(),
    }
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL including `/api/v1`.
    pub base_url: String,
    pub token: Token,
    pub balance_url: String,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads (or writes) on a connection; a slow but moving transfer
    /// never hits it, a stalled one does.
    pub idle_timeout: Duration,
    /// Largest JSON answer accepted.
    pub max_json_bytes: usize,
    /// Largest result download accepted.
    pub max_download_bytes: u64,
    /// Allow `http://` to hosts other than loopback.
    pub allow_plain_http: bool,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>, token: Token) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            token,
            balance_url: DEFAULT_BALANCE_URL.to_string(),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_json_bytes: 1024 * 1024,
            max_download_bytes: 4 * 1024 * 1024 * 1024,
            allow_plain_http: false,
        }
    }
}

/// A downloaded result, in a temporary file the caller renames or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub path: PathBuf,
    /// What the bytes are; the name and content type are not trusted.
    pub kind: FileKind,
    pub bytes: u64,
}

/// An async client for one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    balance_url: String,
    token: Token,
    max_json_bytes: usize,
    max_download_bytes: u64,
}

/// Checks that a URL is http(s), and plain http only to loopback unless allowed.
pub fn check_url(url: &str, allow_plain_http: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback || allow_plain_http {
                Ok(parsed)
            } else {
                Err(format!(
                    "`{url}` uses plain http to a host that is not loopback; the token would travel \
                     unencrypted. Use https, or set allow_plain_http = true if you really mean it"
                ))
            }
        }
        other => Err(format!("`{url}` has scheme `{other}`; use https")),
    }
}

/// Whether building a client failed because the machine has no CA certificates (the TLS
/// verifier says so in its words, somewhere in the error's chain).
fn no_ca_store(e: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.to_string().contains("No CA certificates") {
            return true;
        }
        cause = c.source();
    }
    false
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ApiError> {
        let bad = |m: String| ApiError::new(ErrorKind::Client, "config", m);
        check_url(&options.base_url, options.allow_plain_http).map_err(bad)?;
        check_url(&options.balance_url, options.allow_plain_http).map_err(bad)?;
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .read_timeout(options.idle_timeout)
                .user_agent(concat!("retouchd/", env!("CARGO_PKG_VERSION")))
        };
        let http = match builder().build() {
            Ok(http) => http,
            // No CA store on this machine (a minimal container image): a client that only talks
            // plain HTTP (the demo, the simulator, a local tunnel) needs none; one that talks
            // HTTPS cannot verify its server, and is told what to install.
            Err(e) if no_ca_store(&e) => {
                let https = [&options.base_url, &options.balance_url].into_iter().find(|u| u.starts_with("https:"));
                match https {
                    None => builder()
                        .tls_certs_only(std::iter::empty())
                        .build()
                        .map_err(|e| ApiError::transport("config", &e))?,
                    Some(url) => {
                        return Err(bad(format!(
                            "no CA certificates on this machine, so {url} cannot be verified: install the \
                             ca-certificates package (or mount the host's /etc/ssl/certs), or point SSL_CERT_FILE \
                             at a CA bundle"
                        )));
                    }
                }
            }
            Err(e) => return Err(ApiError::transport("config", &e)),
        };
        Ok(Client {
            http,
            base: options.base_url.trim_end_matches('/').to_string(),
            balance_url: options.balance_url,
            token: options.token,
            max_json_bytes: options.max_json_bytes,
            max_download_bytes: options.max_download_bytes,
        })
    }

    /// The base URL jobs are started on; the journal remembers it per job.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A client for the same server with another token (after a reload).
    pub fn with_token(&self, token: Token) -> Client {
        Client { token, ..self.clone() }
    }

    fn url(&self, route: &str) -> String {
        format!("{}/{}", self.base, route)
    }

    /// Submits the file at `file` (a path the caller trusts; the daemon opens its inbox files
    /// beneath their inbox and uses [`Client::start_file`]).
    pub async fn start(
        &self,
        file: &Path,
        file_name: &str,
        payload_json: &str,
        idempotency_key: &str,
    ) -> Result<Started, ApiError> {
        let opened = std::fs::File::open(file)
            .map_err(|e| ApiError::local("start", format!("cannot open {}", file.display()), &e))?;
        self.start_file(opened, file_name, payload_json, idempotency_key, None).await
    }

    /// Submits an opened file. Streams it from disk; `idempotency_key` makes a resent request free.
    /// `hook`: the URL the server is to call when the job finishes (the `hook` field), if any.
    pub async fn start_file(
        &self,
        file: std::fs::File,
        file_name: &str,
        payload_json: &str,
        idempotency_key: &str,
        hook: Option<&str>,
    ) -> Result<Started, ApiError> {
        const ROUTE: &str = "start";
        let len = file.metadata().map_err(|e| ApiError::local(ROUTE, format!("cannot stat {file_name}"), &e))?.len();
        let mut head = [0u8; 8];
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
        let kind = formats::sniff(&head[..n]);
        let handle = tokio::fs::File::from_std(file);
        let mime = match kind {
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Zip => "application/zip",
            // Never sent (its proxy is); named for what it is all the same.
            FileKind::Tiff => "image/tiff",
            FileKind::Unknown => "application/octet-stream",
        };
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(handle, 64 * 1024));
        // Control characters (a newline in a name) would break the multipart headers.
        let wire_name: String = file_name.chars().map(|c| if c.is_control() { '_' } else { c }).collect();
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(wire_name)
            .mime_str(mime)
            .expect("static mime type parses");
        let mut form = reqwest::multipart::Form::new()
            .text("payload", payload_json.to_string())
            .text("token", self.token.expose().to_string());
        if let Some(hook) = hook {
            form = form.text("hook", hook.to_string());
        }
        let form = form.part("file", part);
        debug!(route = ROUTE, file = %crate::logging::escaped(file_name), bytes = len, "POST start");
        let response = self
            .http
            .post(self.url("retoucher/start"))
            .header("X-Retouch-Token", self.token.expose())
            .header("Idempotency-Key", idempotency_key)
            .multipart(form)
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        let body = self.read_json(ROUTE, response).await?;
        let id = types::text(body.get("id"))
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| ApiError::new(ErrorKind::Protocol, ROUTE, "the answer has no task id"))?;
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || id.len() > 200 {
            return Err(ApiError::new(ErrorKind::Protocol, ROUTE, "the task id has unexpected characters"));
        }
        let quota = types::number(body.get("retouchQuota")).map(|q| q as i64);
        Ok(Started { id, quota })
    }

    /// Proves the start route exists without spending a credit: a start without a file must be
    /// answered 400 "No file uploaded" (the documented answer). `Ok` when it is; a
    /// [`ErrorKind::NotFound`] error means there is no start route at this URL.
    pub async fn probe_start(&self, payload_json: &str) -> Result<(), ApiError> {
        const ROUTE: &str = "start";
        let form = reqwest::multipart::Form::new()
            .text("payload", payload_json.to_string())
            .text("token", self.token.expose().to_string());
        debug!(route = ROUTE, "POST start without a file (a probe)");
        let response = self
            .http
            .post(self.url("retoucher/start"))
            .header("X-Retouch-Token", self.token.expose())
            .multipart(form)
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        match self.read_json(ROUTE, response).await {
            Err(e) if e.kind == ErrorKind::NoFile => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(ApiError::new(
                ErrorKind::Protocol,
                ROUTE,
                "the server accepted a start without a file; it does not behave as documented",
            )),
        }
    }

    /// Asks where a task is.
    pub async fn status(&self, id: &str) -> Result<TaskStatus, ApiError> {
        const ROUTE: &str = "status";
        let response = self
            .http
            .get(self.url(&format!("retoucher/status/{id}")))
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        let body = self.read_json(ROUTE, response).await?;
        TaskStatus::from_json(&body)
            .ok_or_else(|| ApiError::new(ErrorKind::Protocol, ROUTE, "the answer has no `state`"))
    }

    /// Downloads a task's result into a new temporary file (created exclusively, under an
    /// unpredictable name) in `dir`, which should be on the same file system as its final
    /// place, so that a rename can publish it.
    pub async fn get_file(&self, id: &str, dir: &crate::beneath::Dir) -> Result<Download, ApiError> {
        const ROUTE: &str = "getFile";
        let response = self
            .http
            .get(self.url(&format!("retoucher/getFile/{id}")))
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        if !response.status().is_success() {
            // Errors come as JSON (or as anything); read_json classifies them.
            return Err(match self.read_json(ROUTE, response).await {
                Err(e) => e,
                Ok(_) => ApiError::new(ErrorKind::Protocol, ROUTE, "error status with a success body"),
            });
        }
        if let Some(len) = response.content_length()
            && len > self.max_download_bytes
        {
            return Err(ApiError::new(
                ErrorKind::Protocol,
                ROUTE,
                format!("result of {len} bytes is over the {} byte cap", self.max_download_bytes),
            ));
        }
        let local = |e: std::io::Error| ApiError::local(ROUTE, format!("writing into {}", dir.path().display()), &e);
        let (file, name) = dir.create_temp(".retouchd-download-").map_err(local)?;
        let path = dir.path().join(&name);
        match self.stream_to(ROUTE, response, tokio::fs::File::from_std(file), &path).await {
            Ok((kind, bytes)) => Ok(Download { path, kind, bytes }),
            Err(e) => {
                let _ = dir.remove_file(Path::new(&name));
                Err(e)
            }
        }
    }

    async fn stream_to(
        &self,
        route: &'static str,
        response: Response,
        mut file: tokio::fs::File,
        path: &Path,
    ) -> Result<(FileKind, u64), ApiError> {
        let local = |e: std::io::Error| ApiError::local(route, format!("writing {}", path.display()), &e);
        let mut stream = response.bytes_stream();
        let mut head = Vec::with_capacity(8);
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::transport(route, &e))?;
            bytes += chunk.len() as u64;
            if bytes > self.max_download_bytes {
                return Err(ApiError::new(
                    ErrorKind::Protocol,
                    route,
                    format!("result is over the {} byte cap", self.max_download_bytes),
                ));
            }
            if head.len() < 8 {
                let take = (8 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        file.sync_all().await.map_err(local)?;
        debug!(route, bytes, "download complete");
        Ok((formats::sniff(&head), bytes))
    }

    /// The server's limits; `None` when the route answers 404 (it is not in production).
    pub async fn limits(&self) -> Result<Option<Limits>, ApiError> {
        const ROUTE: &str = "limits";
        let response =
            self.http.get(self.url("info/limits")).send().await.map_err(|e| ApiError::transport(ROUTE, &e))?;
        match self.read_json(ROUTE, response).await {
            Ok(body) => Ok(Some(Limits::from_json(&body))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Credits left; checks the token without spending a credit. Asks the API host first
    /// (`POST {url}/balance`, the token in `X-Retouch-Token`, a JSON body); a server without
    /// that route (404, 405) is asked by the older multipart route (`balance_url`). A token
    /// problem (401, 460) is an answer, not a reason to try elsewhere.
    pub async fn balance(&self) -> Result<Balance, ApiError> {
        match self.api_balance().await {
            Err(e) if e.kind == ErrorKind::NotFound || e.status == Some(405) => {
                debug!(error = %e, "no balance route on the API host; asking the older one");
                self.older_balance().await
            }
            answer => answer,
        }
    }

    async fn api_balance(&self) -> Result<Balance, ApiError> {
        const ROUTE: &str = "balance";
        let response = self
            .http
            .post(self.url("balance"))
            .header("X-Retouch-Token", self.token.expose())
            .json(&serde_json::json!({"modes": ["professional"]}))
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        let body = self.read_json(ROUTE, response).await?;
        Ok(Balance::from_json(&body))
    }

    async fn older_balance(&self) -> Result<Balance, ApiError> {
        const ROUTE: &str = "balance";
        let form = reqwest::multipart::Form::new()
            .text("retouchtoken", self.token.expose().to_string())
            .text("modes[]", "professional");
        let response = self
            .http
            .post(&self.balance_url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| ApiError::transport(ROUTE, &e))?;
        let body = self.read_json(ROUTE, response).await?;
        Ok(Balance::from_json(&body))
    }

    /// Reads a JSON answer (capped in size) and turns error answers into `ApiError`s.
    async fn read_json(&self, route: &'static str, response: Response) -> Result<Value, ApiError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(error::parse_retry_after);
        let raw = read_capped(route, response, self.max_json_bytes).await?;
        debug!(route, status = status.as_u16(), bytes = raw.len(), "answer");
        let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
        let (body_status, message) = match &parsed {
            Some(v) => (
                types::number(v.get("status")).map(|n| n as u16),
                types::text(v.get("message")).or_else(|| types::text(v.get("error"))),
            ),
            None => (None, None),
        };
        if let Some(kind) = ErrorKind::classify(status.as_u16(), body_status, message.as_deref()) {
            let message = message.unwrap_or_else(|| snippet(&raw, status));
            return Err(ApiError { kind, route, status: Some(status.as_u16()), message, retry_after, os_error: None });
        }
        match parsed {
            Some(value @ Value::Object(_)) => Ok(value),
            _ => Err(ApiError {
                kind: ErrorKind::Protocol,
                route,
                status: Some(status.as_u16()),
                message: format!("expected a JSON object, got: {}", snippet(&raw, status)),
                retry_after,
                os_error: None,
            }),
        }
    }
}

async fn read_capped(route: &'static str, response: Response, cap: usize) -> Result<Vec<u8>, ApiError> {
    if response.content_length().is_some_and(|len| len > cap as u64) {
        return Err(ApiError::new(ErrorKind::Protocol, route, format!("answer over {cap} bytes")));
    }
    let mut stream = response.bytes_stream();
    let mut raw = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::transport(route, &e))?;
        if raw.len() + chunk.len() > cap {
            return Err(ApiError::new(ErrorKind::Protocol, route, format!("answer over {cap} bytes")));
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw)
}

/// A short printable excerpt of a body that was not what we expected.
fn snippet(raw: &[u8], status: StatusCode) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(200)]);
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim();
    if text.is_empty() { format!("empty body with HTTP {}", status.as_u16()) } else { text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balance_is_asked_where_the_server_is_when_that_is_this_machine() {
        assert_eq!(default_balance_url("http://127.0.0.1:8080/api/v1"), "http://127.0.0.1:8080/api/retouch/v1/balance");
        assert_eq!(default_balance_url("http://localhost:9/api/v1"), "http://localhost:9/api/retouch/v1/balance");
        assert_eq!(default_balance_url("http://[::1]:7/api/v1"), "http://[::1]:7/api/retouch/v1/balance");
        assert_eq!(default_balance_url(DEFAULT_BASE_URL), DEFAULT_BALANCE_URL);
        assert_eq!(default_balance_url("https://cf-retoucher.retouch4.me/api/v1"), DEFAULT_BALANCE_URL);
    }
}
