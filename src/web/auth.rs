//! Who may use the dashboard, and how requests prove it.
//!
//! - Without a password (loopback only, which the config enforces) every request is let in, but
//!   only under a local `Host` name (`localhost`, a loopback address): a web page elsewhere
//!   cannot reach the daemon through a name of its own that points at 127.0.0.1.
//! - With a password: a script sends `Authorization: Bearer <password>`; a browser logs in once
//!   and holds an HttpOnly, SameSite=Strict session cookie.
//! - Every POST from a browser also carries the session's CSRF token (`X-CSRF-Token`, or the
//!   `csrf` form field), and an `Origin`, when sent, must be this host.
//! - Password *checks* are limited, not answers: every check (a login, a bearer password) takes
//!   a token from a bucket that refills at [`CHECKS_PER_SECOND`] up to [`CHECK_BURST`] (the right
//!   password gives its token back, so a script polling with it spends nothing); with none left
//!   the request is answered 429 at once, without looking at the password, right or wrong
//!   alike. Every checked password is answered at once too, so timing tells a guesser nothing,
//!   and all clients together get about one wrong guess a second. Clients on loopback have a
//!   bucket of their own: a guessing attack from the LAN never locks out someone on the machine
//!   itself (or coming through an SSH tunnel).
//!
//! Secrets are compared through their SHA-256 digests in constant time; session ids and CSRF
//! tokens are 256 random bits from the operating system.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::api::Token;

/// The session cookie's name.
pub const COOKIE: &str = "retouchd_session";
/// How long a session lasts without being used.
pub const SESSION_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most (the oldest is dropped first).
const MAX_SESSIONS: usize = 1000;
/// Password checks allowed per second, for all clients of one kind together (LAN, loopback).
pub const CHECKS_PER_SECOND: f64 = 1.0;
/// Password checks allowed at once after a quiet time.
pub const CHECK_BURST: f64 = 5.0;

/// A browser's login.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    last_used: Instant,
}

/// Who the request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A browser with a session (or anyone, on a dashboard without a password): its CSRF token.
    Browser { csrf: String },
    /// A script with the bearer password.
    Script,
    /// Nobody we know.
    Anonymous,
}

/// Why a request is turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Not logged in.
    Login,
    /// A wrong password.
    WrongPassword,
    /// Too many password checks lately: try again after this long (nothing was checked).
    TooManyChecks(Duration),
    /// A wrong `Host`, `Origin` or CSRF token.
    Forbidden(&'static str),
}

pub struct Auth {
    password: Option<[u8; 32]>,
    /// With no password: the one CSRF token every page carries.
    open_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
    /// Password checks from the network, and from loopback.
    checks: Mutex<[Bucket; 2]>,
}

/// A token bucket of password checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
    /// Tokens added per second, and at most held.
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// A full bucket refilling at `rate` per second up to `burst`.
    pub(crate) fn new(rate: f64, burst: f64) -> Bucket {
        Bucket { tokens: burst, at: Instant::now(), rate, burst }
    }

    /// The password checks' bucket.
    fn full() -> Bucket {
        Bucket::new(CHECKS_PER_SECOND, CHECK_BURST)
    }

    /// Gives a token back (the password was right).
    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// Takes a token, or says how long until one is there.
    pub(crate) fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// 256 random bits from the operating system, as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness at all is not something to run a login on.
        panic!("the operating system gives no random numbers; cannot make a session");
    }
    hex::encode(bytes)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal digests, compared without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn new(password: Option<&Token>) -> Auth {
        Auth {
            password: password.map(|p| digest(p.expose())),
            open_csrf: random_token(),
            sessions: Mutex::new(HashMap::new()),
            checks: Mutex::new([Bucket::full(), Bucket::full()]),
        }
    }

    pub fn needs_login(&self) -> bool {
        self.password.is_some()
    }

    /// Whether `host` (the request's `Host` header) may reach a dashboard without a password:
    /// `localhost` or a loopback address, with any port.
    pub fn is_local_host(host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => {
                host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
            }
        };
        name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Checks a password given by `peer`, if the limit of checks allows one now.
    /// A token is taken first and the right password gives it back, all under one lock, so
    /// concurrent guesses can never check more than the bucket holds.
    fn check_password(&self, given: &str, expected: &[u8; 32], peer: IpAddr) -> Result<(), Denied> {
        let mut buckets = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = &mut buckets[usize::from(peer.is_loopback())];
        bucket.take().map_err(Denied::TooManyChecks)?;
        if same(&digest(given), expected) {
            bucket.refund();
            Ok(())
        } else {
            drop(buckets);
            tracing::warn!(client = %peer, "dashboard: wrong password");
            Err(Denied::WrongPassword)
        }
    }

    /// Who sent a request with these headers (`cookie`: the session cookie's value;
    /// `bearer`: the `Authorization: Bearer` value) from `peer`.
    pub fn identify(&self, cookie: Option<&str>, bearer: Option<&str>, peer: IpAddr) -> Result<Caller, Denied> {
        let Some(password) = &self.password else {
            return Ok(Caller::Browser { csrf: self.open_csrf.clone() });
        };
        if let Some(given) = bearer {
            return self.check_password(given, password, peer).map(|()| Caller::Script);
        }
        let Some(id) = cookie else { return Ok(Caller::Anonymous) };
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get_mut(id) {
            Some(s) if s.last_used.elapsed() < SESSION_IDLE => {
                s.last_used = Instant::now();
                Ok(Caller::Browser { csrf: s.csrf.clone() })
            }
            Some(_) => {
                sessions.remove(id);
                Ok(Caller::Anonymous)
            }
            None => Ok(Caller::Anonymous),
        }
    }

    /// Checks a POST: a script needs nothing more; a browser must send its CSRF token, and
    /// its `Origin` (when sent) must be the `Host` it talks to.
    pub fn check_post(
        caller: &Caller,
        csrf: Option<&str>,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), Denied> {
        match caller {
            Caller::Script => Ok(()),
            Caller::Anonymous => Err(Denied::Login),
            Caller::Browser { csrf: expected } => {
                if let Some(origin) = origin {
                    // This host, over plain HTTP or through a TLS proxy; any other scheme
                    // (`null`, `file://`, an extension's) is another site.
                    let origin_host = ["http://", "https://"].iter().find_map(|scheme| origin.strip_prefix(scheme));
                    if origin_host.is_none() || origin_host != host {
                        return Err(Denied::Forbidden("this request came from another site"));
                    }
                }
                match csrf {
                    Some(given) if same(&digest(given), &digest(expected)) => Ok(()),
                    _ => Err(Denied::Forbidden("the CSRF token is missing or wrong; reload the page")),
                }
            }
        }
    }

    /// Logs in with `password` from `peer`: a new session id, or why not.
    pub fn login(&self, password: &str, peer: IpAddr) -> Result<String, Denied> {
        let Some(expected) = &self.password else { return Err(Denied::Forbidden("this dashboard has no password")) };
        self.check_password(password, expected, peer)?;
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Session { csrf: random_token(), last_used: Instant::now() });
        Ok(id)
    }

    pub fn logout(&self, session: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 8));

    fn with_password() -> Auth {
        Auth::new(Some(&Token::new("correct horse")))
    }

    #[test]
    fn only_local_host_names_reach_a_dashboard_without_a_password() {
        for host in ["localhost", "localhost:8642", "127.0.0.1:8642", "127.8.9.1", "[::1]:8642", "[::1]", "LOCALHOST:1"]
        {
            assert!(Auth::is_local_host(host), "{host}");
        }
        for host in
            ["evil.example:8642", "192.168.1.2:8642", "localhost.evil.example", "[::2]:80", "", "127.0.0.1.nip.io"]
        {
            assert!(!Auth::is_local_host(host), "{host}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_gives_a_session_with_its_own_csrf_token_and_logout_ends_it() {
        let auth = with_password();
        assert_eq!(auth.identify(None, None, IP), Ok(Caller::Anonymous));
        assert_eq!(auth.identify(Some("made-up"), None, IP), Ok(Caller::Anonymous));
        assert_eq!(auth.login("guess", IP), Err(Denied::WrongPassword));
        let session = auth.login("correct horse", IP).unwrap();
        assert_eq!(session.len(), 64);
        let Ok(Caller::Browser { csrf }) = auth.identify(Some(&session), None, IP) else { panic!("no session") };
        let other = auth.login("correct horse", IP).unwrap();
        let Ok(Caller::Browser { csrf: other_csrf }) = auth.identify(Some(&other), None, IP) else { panic!() };
        assert_ne!((&session, &csrf), (&other, &other_csrf), "each login is its own");
        auth.logout(&session);
        assert_eq!(auth.identify(Some(&session), None, IP), Ok(Caller::Anonymous));
        tokio::time::advance(SESSION_IDLE + Duration::from_secs(1)).await;
        assert_eq!(auth.identify(Some(&other), None, IP), Ok(Caller::Anonymous), "idle sessions expire");
    }

    #[tokio::test(start_paused = true)]
    async fn password_checks_are_limited_and_over_the_limit_right_and_wrong_get_the_same_answer() {
        let auth = with_password();
        // A burst, from two LAN addresses together.
        for i in 0..CHECK_BURST as usize {
            let ip = if i % 2 == 0 { IP } else { OTHER };
            assert_eq!(auth.identify(None, Some("guess"), ip), Err(Denied::WrongPassword), "check {i}");
        }
        // Over the limit: nothing is checked, so the right password cannot be told from a wrong one.
        let wrong = auth.identify(None, Some("guess"), IP);
        let right = auth.identify(None, Some("correct horse"), OTHER);
        assert!(matches!(wrong, Err(Denied::TooManyChecks(_))), "{wrong:?}");
        assert!(matches!(right, Err(Denied::TooManyChecks(_))), "{right:?}");
        assert!(matches!(auth.login("correct horse", IP), Err(Denied::TooManyChecks(_))));
        // Someone on the machine itself has a bucket of their own.
        let local = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(auth.identify(None, Some("correct horse"), local), Ok(Caller::Script));
        // One check a second comes back; the right password gives its token back (a script
        // polling with it spends nothing), a wrong one spends it.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..20 {
            assert_eq!(auth.identify(None, Some("correct horse"), IP), Ok(Caller::Script));
        }
        assert_eq!(auth.identify(None, Some("guess"), IP), Err(Denied::WrongPassword));
        assert!(matches!(auth.identify(None, Some("correct horse"), IP), Err(Denied::TooManyChecks(_))));
        // A thousand guesses in ten seconds: about fifteen are checked.
        let mut checked = 0;
        for _ in 0..100 {
            for _ in 0..10 {
                if auth.identify(None, Some("guess"), IP) == Err(Denied::WrongPassword) {
                    checked += 1;
                }
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(checked <= 11, "{checked} guesses checked in ten seconds");
        // Sessions need no password check.
        tokio::time::advance(Duration::from_secs(10)).await;
        let session = auth.login("correct horse", IP).unwrap();
        for _ in 0..50 {
            let _ = auth.identify(None, Some("guess"), IP);
        }
        assert!(matches!(auth.identify(Some(&session), None, IP), Ok(Caller::Browser { .. })));
    }

    #[test]
    fn posts_need_the_csrf_token_and_a_matching_origin_unless_from_a_script() {
        let browser = Caller::Browser { csrf: "t0k3n".into() };
        let host = Some("nas.local:8642");
        assert_eq!(Auth::check_post(&browser, Some("t0k3n"), None, host), Ok(()));
        assert_eq!(Auth::check_post(&browser, Some("t0k3n"), Some("http://nas.local:8642"), host), Ok(()));
        assert!(matches!(Auth::check_post(&browser, None, None, host), Err(Denied::Forbidden(_))));
        assert!(matches!(Auth::check_post(&browser, Some("t0k3m"), None, host), Err(Denied::Forbidden(_))));
        assert!(matches!(
            Auth::check_post(&browser, Some("t0k3n"), Some("http://evil.example"), host),
            Err(Denied::Forbidden(_))
        ));
        assert_eq!(Auth::check_post(&browser, Some("t0k3n"), Some("https://nas.local:8642"), host), Ok(()));
        for origin in ["ftp://nas.local:8642", "null", "nas.local:8642", "file://nas.local:8642"] {
            assert!(matches!(Auth::check_post(&browser, Some("t0k3n"), Some(origin), host), Err(Denied::Forbidden(_))));
        }
        assert_eq!(Auth::check_post(&Caller::Script, None, Some("http://evil.example"), host), Ok(()));
        assert_eq!(Auth::check_post(&Caller::Anonymous, Some("t0k3n"), None, host), Err(Denied::Login));
    }

    #[test]
    fn without_a_password_every_page_shares_one_csrf_token() {
        let auth = Auth::new(None);
        let Ok(Caller::Browser { csrf }) = auth.identify(None, None, IP) else { panic!() };
        assert_eq!(auth.identify(Some("anything"), None, IP), Ok(Caller::Browser { csrf }));
        assert!(!auth.needs_login());
    }
}
