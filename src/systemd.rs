//! Telling systemd how the service is (`Type=notify`): READY once the journal is recovered and
//! the first scan is done, WATCHDOG pings from the main loop (a hung loop stops pinging and is
//! restarted), STATUS lines for `systemctl status`, RELOADING and STOPPING. The datagrams are
//! the `sd-notify` crate's; outside systemd every call does nothing. (Named for systemd, not
//! "notify", which in this crate means the inotify watcher.)

use std::time::Duration;

use sd_notify::NotifyState;

/// Where notifications go, if systemd asked for them.
#[derive(Debug)]
pub struct Systemd {
    /// The watchdog timeout, when systemd runs one for this process.
    watchdog: Option<Duration>,
}

impl Systemd {
    /// Reads `WATCHDOG_USEC` (honouring `WATCHDOG_PID`); `NOTIFY_SOCKET` is read at each send.
    pub fn from_env() -> Systemd {
        Systemd { watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) }
    }

    /// How often to ping the watchdog (half its timeout), if systemd runs one.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one notification. Failures are ignored: notifications are hints.
    fn send(&self, states: &[NotifyState<'_>]) {
        let _ = sd_notify::notify(states);
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A watchdog ping (when systemd runs a watchdog) with the current status line.
    pub fn alive(&self, status: &str) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog, NotifyState::Status(status)]);
        } else {
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// A reload begins (systemd 253+ wants the monotonic time with it).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}
