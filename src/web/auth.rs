//! Who may use the dashboard, and how requests prove it.
//!
//! - Without a password (loopback only, which the config enforces) every request is let in, but
//!   only under a local `Host` name (`localhost`, a loopback address): a web page elsewhere
//!   cannot reach the daemon through a name of its own that points at 127.0.0.1.
//! - With a password: a script sends `Authorization: Bearer <password>`; a browser logs in once
//!   and holds an HttpOnly, SameSite=Strict session cookie.
//! - Every POST from a browser also carries the session's CSRF token (`X-CSRF-Token`, or the
//!   `csrf` form field), and an `Origin`, when sent, must be this host.
//! - Wrong passwords (at login, or as a bearer) are slowed: each is answered only after
//!   [`FAILURE_DELAY`], and failures wait for each other, so all clients together get at most
//!   one guess a second. The right password is never held up by someone else's guessing.
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
/// How long a wrong password waits for its answer (one at a time, for all clients).
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

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
    /// A wrong password: answered after [`Auth::slow_down`].
    WrongPassword,
    /// A wrong `Host`, `Origin` or CSRF token.
    Forbidden(&'static str),
}

pub struct Auth {
    password: Option<[u8; 32]>,
    /// With no password: the one CSRF token every page carries.
    open_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
    /// Held by a wrong password while it waits: failures come one at a time.
    failing: tokio::sync::Mutex<()>,
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
            failing: tokio::sync::Mutex::new(()),
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

    /// Who sent a request with these headers (`cookie`: the session cookie's value;
    /// `bearer`: the `Authorization: Bearer` value).
    pub fn identify(&self, cookie: Option<&str>, bearer: Option<&str>) -> Result<Caller, Denied> {
        let Some(password) = &self.password else {
            return Ok(Caller::Browser { csrf: self.open_csrf.clone() });
        };
        if let Some(given) = bearer {
            return if same(&digest(given), password) { Ok(Caller::Script) } else { Err(Denied::WrongPassword) };
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
                    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
                    if Some(origin_host) != host {
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

    /// Logs in with `password`: a new session id, or why not.
    pub fn login(&self, password: &str) -> Result<String, Denied> {
        let Some(expected) = &self.password else { return Err(Denied::Forbidden("this dashboard has no password")) };
        if !same(&digest(password), expected) {
            return Err(Denied::WrongPassword);
        }
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

    /// Waits before a wrong password from `ip` is answered: [`FAILURE_DELAY`], after every
    /// other failure before it.
    pub async fn slow_down(&self, ip: IpAddr) {
        let _turn = self.failing.lock().await;
        tracing::warn!(client = %ip, "dashboard: wrong password");
        tokio::time::sleep(FAILURE_DELAY).await;
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
        assert_eq!(auth.identify(None, None), Ok(Caller::Anonymous));
        assert_eq!(auth.identify(Some("made-up"), None), Ok(Caller::Anonymous));
        assert_eq!(auth.login("guess"), Err(Denied::WrongPassword));
        let session = auth.login("correct horse").unwrap();
        assert_eq!(session.len(), 64);
        let Ok(Caller::Browser { csrf }) = auth.identify(Some(&session), None) else { panic!("no session") };
        let other = auth.login("correct horse").unwrap();
        let Ok(Caller::Browser { csrf: other_csrf }) = auth.identify(Some(&other), None) else { panic!() };
        assert_ne!((&session, &csrf), (&other, &other_csrf), "each login is its own");
        auth.logout(&session);
        assert_eq!(auth.identify(Some(&session), None), Ok(Caller::Anonymous));
        tokio::time::advance(SESSION_IDLE + Duration::from_secs(1)).await;
        assert_eq!(auth.identify(Some(&other), None), Ok(Caller::Anonymous), "idle sessions expire");
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_passwords_are_answered_one_a_second_for_all_clients_together() {
        let auth = std::sync::Arc::new(with_password());
        let started = Instant::now();
        let guesses: Vec<_> = (0..5)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.slow_down(if i % 2 == 0 { IP } else { OTHER }).await })
            })
            .collect();
        for g in guesses {
            g.await.unwrap();
        }
        assert_eq!(started.elapsed(), FAILURE_DELAY * 5, "five guesses from two addresses take five seconds");
        // Meanwhile the right password is checked at once.
        assert_eq!(auth.identify(None, Some("correct horse")), Ok(Caller::Script));
        assert_eq!(auth.identify(None, Some("wrong")), Err(Denied::WrongPassword));
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
        assert_eq!(Auth::check_post(&Caller::Script, None, Some("http://evil.example"), host), Ok(()));
        assert_eq!(Auth::check_post(&Caller::Anonymous, Some("t0k3n"), None, host), Err(Denied::Login));
    }

    #[test]
    fn without_a_password_every_page_shares_one_csrf_token() {
        let auth = Auth::new(None);
        let Ok(Caller::Browser { csrf }) = auth.identify(None, None) else { panic!() };
        assert_eq!(auth.identify(Some("anything"), None), Ok(Caller::Browser { csrf }));
        assert!(!auth.needs_login());
    }
}
