//! The one error type of the API client, classified so that callers can branch on what happened
//! and whether a retry can help. Classification sits next to the error, in one place.

use std::time::Duration;

/// What kind of failure a call met. Callers branch on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 460, or any 4xx whose message is "Token issue": the token is wrong, expired or unknown.
    BadToken,
    /// 461: the processing limit (daily quota or credits) is reached.
    QuotaReached,
    /// 462: the server refused the task description.
    InvalidTask,
    /// 400 "No file uploaded".
    NoFile,
    /// 429: too many requests.
    RateLimited,
    /// Any other 4xx.
    Client,
    /// 404: no such route or task (or the result expired).
    NotFound,
    /// 5xx.
    Server,
    /// The request never got a complete answer: timeout, reset, DNS, refused connection.
    Transport,
    /// An answer that is not what the docs say: not JSON, missing fields, too large.
    Protocol,
    /// A local file could not be read or written (the upload's source, the download's target).
    Local,
}

impl ErrorKind {
    /// A short stable name, for logs, metrics and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadToken => "bad_token",
            ErrorKind::QuotaReached => "quota_reached",
            ErrorKind::InvalidTask => "invalid_task",
            ErrorKind::NoFile => "no_file",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Client => "client_error",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Server => "server_error",
            ErrorKind::Transport => "transport",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Local => "local_io",
        }
    }

    /// Classifies an answer from its HTTP status, the JSON body's `status` (if any) and the
    /// body's `message` (if any). The body's status wins when it is present and not 200, since
    /// the docs do not say whether 460..462 come as HTTP status or only in the body.
    pub fn classify(http_status: u16, body_status: Option<u16>, message: Option<&str>) -> Option<ErrorKind> {
        let code = match body_status {
            Some(code) if code != 200 => code,
            _ => http_status,
        };
        if (200..300).contains(&code) {
            return None;
        }
        let message = message.unwrap_or("").trim();
        let kind = match code {
            // 401: the token is invalid or expired (the fuller API document), whatever the message.
            401 | 460 => ErrorKind::BadToken,
            461 => ErrorKind::QuotaReached,
            462 => ErrorKind::InvalidTask,
            _ if (400..500).contains(&code) && message.eq_ignore_ascii_case("Token issue") => ErrorKind::BadToken,
            400 if message.eq_ignore_ascii_case("No file uploaded") => ErrorKind::NoFile,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            400..=499 => ErrorKind::Client,
            500..=599 => ErrorKind::Server,
            // 1xx/3xx that reqwest did not follow, or nonsense codes: the answer is not usable.
            _ => ErrorKind::Protocol,
        };
        Some(kind)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed API call. Never holds the token: messages come from the server or from reqwest
/// errors with the URL stripped of its query.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{route}: {kind}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Which call failed, e.g. "start".
    pub route: &'static str,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// What the server said, or what went wrong on the way.
    pub message: String,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// For `Local` errors: the OS error number (e.g. ENOSPC for a full disk).
    pub os_error: Option<i32>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, route: &'static str, message: impl Into<String>) -> Self {
        ApiError { kind, route, status: None, message: message.into(), retry_after: None, os_error: None }
    }

    /// A local file problem while serving `route`.
    pub(crate) fn local(route: &'static str, what: String, err: &std::io::Error) -> Self {
        ApiError { os_error: err.raw_os_error(), ..ApiError::new(ErrorKind::Local, route, format!("{what}: {err}")) }
    }

    pub(crate) fn transport(route: &'static str, err: &reqwest::Error) -> Self {
        // reqwest's Display includes the URL; ours carry no secrets, but keep only the cause chain.
        let mut message = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(err);
        while let Some(e) = source {
            let text = e.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
            source = e.source();
        }
        // A TLS handshake answered in plain HTTP (`https://` pointed at `retouchd sim`, say).
        if message.contains("InvalidContentType") || message.contains("corrupt message") {
            message.push_str(
                "; the server answered in plain HTTP, not TLS: if it is `retouchd sim` or another local \
                 server, use an http:// URL",
            );
        }
        let kind = if err.is_decode() { ErrorKind::Protocol } else { ErrorKind::Transport };
        ApiError::new(kind, route, message)
    }
}

/// Parses a `Retry-After` header: delay-seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(value)?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

fn httpdate_parse(value: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        let rest = value.split_once(", ")?.1.strip_suffix(" GMT")?;
        let mut parts = rest.split(' ');
        let day = parts.next()?;
        let month = match parts.next()? {
            "Jan" => "01",
            "Feb" => "02",
            "Mar" => "03",
            "Apr" => "04",
            "May" => "05",
            "Jun" => "06",
            "Jul" => "07",
            "Aug" => "08",
            "Sep" => "09",
            "Oct" => "10",
            "Nov" => "11",
            "Dec" => "12",
            _ => return None,
        };
        let year = parts.next()?;
        let time = parts.next()?;
        humantime::parse_rfc3339_weak(&format!("{year}-{month}-{day} {time}")).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_problems_are_bad_token() {
        assert_eq!(ErrorKind::classify(460, None, None), Some(ErrorKind::BadToken));
        assert_eq!(ErrorKind::classify(403, None, Some("Token issue")), Some(ErrorKind::BadToken));
        assert_eq!(ErrorKind::classify(401, Some(401), Some("Token issue")), Some(ErrorKind::BadToken));
        assert_eq!(ErrorKind::classify(401, None, Some("Token is expired")), Some(ErrorKind::BadToken));
        assert_eq!(ErrorKind::classify(200, Some(460), None), Some(ErrorKind::BadToken));
    }

    #[test]
    fn documented_codes_map_to_kinds_as_http_status_or_body_status() {
        for (code, kind) in [
            (461, ErrorKind::QuotaReached),
            (462, ErrorKind::InvalidTask),
            (404, ErrorKind::NotFound),
            (429, ErrorKind::RateLimited),
            (418, ErrorKind::Client),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
        ] {
            assert_eq!(ErrorKind::classify(code, None, None), Some(kind), "HTTP {code}");
            assert_eq!(ErrorKind::classify(200, Some(code), None), Some(kind), "body {code}");
        }
    }

    #[test]
    fn no_file_is_a_400_with_its_message() {
        assert_eq!(ErrorKind::classify(400, None, Some("No file uploaded")), Some(ErrorKind::NoFile));
        assert_eq!(ErrorKind::classify(400, None, Some("bad parameters")), Some(ErrorKind::Client));
    }

    #[test]
    fn success_is_not_an_error_and_body_status_200_defers_to_http() {
        assert_eq!(ErrorKind::classify(200, None, None), None);
        assert_eq!(ErrorKind::classify(200, Some(200), None), None);
        assert_eq!(ErrorKind::classify(500, Some(200), None), Some(ErrorKind::Server));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
