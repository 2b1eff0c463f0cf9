//! The webhook channel: the notice's JSON POSTed to a URL, signed as Stripe and GitHub sign
//! theirs. The `Retouchd-Signature` header is `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `<t>.<body>` with the shared secret; the receiver recomputes it, compares in constant time and
//! refuses a `t` more than five minutes away (a replayed request). Any 2xx answer means taken.
//! The README has a verification snippet.

use hmac::{KeyInit, Mac};

use super::{Notice, SendError};
use crate::api::Token;

/// The header with the timestamp and signature.
pub const SIGNATURE_HEADER: &str = "Retouchd-Signature";
/// How far a signature's time may be from the receiver's clock.
pub const TOLERANCE_SECS: u64 = 300;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The `Retouchd-Signature` value for `body` sent at `unix_secs`.
pub fn signature(secret: &str, unix_secs: u64, body: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{unix_secs}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={unix_secs},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is a valid signature of `body` at `now_secs` (what a receiver does).
pub fn verify(secret: &str, header: &str, body: &str, now_secs: u64) -> bool {
    let mut t = None;
    let mut given = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => given.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t.filter(|t| t.abs_diff(now_secs) <= TOLERANCE_SECS) else { return false };
    given.iter().any(|sig| {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body.as_bytes());
        mac.verify_slice(sig).is_ok()
    })
}

/// POSTs `body` (the notice's JSON) to `url`, signed now.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    secret: &Token,
    notice: &Notice,
    body: &str,
) -> Result<(), SendError> {
    let signed = signature(secret.expose(), crate::vocab::now_secs(), body);
    let answer = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .header("Retouchd-Event", notice.event.kind().as_str())
        .header("Retouchd-Event-Id", &notice.id)
        .body(body.to_string())
        .send()
        .await
        .map_err(super::transport_words)?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let text: String = text.chars().take(200).collect();
    Err(format!("{url} answered {status}: {}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_a_recent_time() {
        let header = signature("s3cret", 1_765_000_000, "{\"a\":1}");
        assert!(header.starts_with("t=1765000000,v1="));
        assert!(verify("s3cret", &header, "{\"a\":1}", 1_765_000_100));
        assert!(!verify("other", &header, "{\"a\":1}", 1_765_000_100), "another secret");
        assert!(!verify("s3cret", &header, "{\"a\":2}", 1_765_000_100), "another body");
        assert!(!verify("s3cret", &header, "{\"a\":1}", 1_765_000_000 + TOLERANCE_SECS + 1), "too old: a replay");
        let forged = header.replace("t=1765000000", "t=1765000200");
        assert!(!verify("s3cret", &forged, "{\"a\":1}", 1_765_000_200), "the time is signed too");
        // A known answer, computed independently (Python: hmac.new(b"key", b"1.x", sha256)).
        assert_eq!(signature("key", 1, "x"), "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec");
    }
}
