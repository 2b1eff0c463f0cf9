//! The systemd notification protocol (`Type=notify`): READY once the journal is recovered and
//! the first scan is done, WATCHDOG pings from the main loop (a hung loop stops pinging and is
//! restarted), and STATUS lines for `systemctl status`. Does nothing outside systemd.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where to send notifications, if systemd asked for them.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, Target)>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (honouring `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            let target = match bytes.first() {
                Some(b'@') => Target::Abstract(bytes[1..].to_vec()),
                Some(b'/') => Target::Path(PathBuf::from(s)),
                _ => return None,
            };
            UnixDatagram::unbound().ok().map(|socket| (socket, target))
        });
        let for_us = std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// How often to ping the watchdog (half its timeout), if systemd runs one.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one notification (`KEY=value` lines). Failures are ignored: notifications are hints.
    pub fn send(&self, message: &str) {
        let Some((socket, target)) = &self.target else { return };
        let _ = match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                match std::os::unix::net::SocketAddr::from_abstract_name(name) {
                    Ok(addr) => socket.send_to_addr(message.as_bytes(), &addr),
                    Err(e) => Err(e),
                }
            }
        };
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A watchdog ping with the current status line.
    pub fn alive(&self, status: &str) {
        if self.watchdog.is_some() {
            self.send(&format!("WATCHDOG=1\nSTATUS={status}"));
        } else {
            self.send(&format!("STATUS={status}"));
        }
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_socket_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some((UnixDatagram::unbound().unwrap(), Target::Path(path))),
            watchdog: Some(Duration::from_secs(10)),
        };
        notifier.ready("starting");
        notifier.alive("1 uploading");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=starting");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\nSTATUS=1 uploading");
        assert_eq!(notifier.watchdog_every(), Some(Duration::from_secs(5)));
    }
}
