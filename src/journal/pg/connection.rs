//! The shared journal's connections. The `postgres` client blocks on its own runtime, so each
//! connection lives on a thread of its own and calls are sent to it; a broken connection is
//! dropped and made again on the next call ([`JournalError::Unreachable`] until then), and a
//! statement that lost a deadlock or serialization race is tried again.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::journal::{JournalError, Result};

/// Why a call failed, before it is told apart into a [`JournalError`].
pub(super) enum Failure {
    Postgres(postgres::Error),
    Refused(JournalError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Postgres(e)
    }
}

/// A task for a connection's thread.
type Task = Box<dyn FnOnce(&mut Session) + Send>;

/// One connection to the database, on a thread of its own.
#[derive(Debug)]
pub(super) struct Connection {
    tasks: mpsc::Sender<Task>,
    location: PathBuf,
}

/// What a connection's thread holds: the client, made when first needed and again after it broke.
struct Session {
    config: postgres::Config,
    client: Option<Client>,
}

/// How often a statement that lost a deadlock or serialization race is tried again.
const RACE_RETRIES: usize = 5;

impl Connection {
    /// A connection whose writes count files in the share `shard` (see `file_counts`).
    pub(super) fn open(mut config: postgres::Config, location: PathBuf, role: &str, shard: &str) -> Connection {
        let shard: String = shard.chars().filter(|c| c.is_alphanumeric() || "-_.@".contains(*c)).collect();
        config
            .application_name(&format!("retouchd {role}"))
            .options(&format!("-c retouchd.shard={shard}"))
            .connect_timeout(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        let (tx, rx) = mpsc::channel::<Task>();
        let mut session = Session { config, client: None };
        let spawned = std::thread::Builder::new().name(format!("journal-{role}")).spawn(move || {
            for task in rx {
                task(&mut session);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a journal connection thread");
        }
        Connection { tasks: tx, location }
    }

    /// Runs `f` with a connected client on the connection's thread, and waits for its answer.
    /// A lost connection is dropped (made again next time) and reported as unreachable; a
    /// deadlock or serialization failure is tried again.
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> std::result::Result<T, Failure> + Send + 'static,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let location = self.location.clone();
        let task: Task = Box::new(move |session: &mut Session| {
            let _ = reply_tx.send(session.run(&location, &f));
        });
        let sent = self.tasks.send(task);
        let stopped = || JournalError::Unreachable {
            path: self.location.clone(),
            detail: "the journal connection thread stopped".into(),
        };
        sent.map_err(|_| stopped())?;
        reply_rx.recv().map_err(|_| stopped())?
    }
}

impl Session {
    fn run<T>(&mut self, location: &Path, f: &dyn Fn(&mut Client) -> std::result::Result<T, Failure>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let client = match &mut self.client {
                Some(client) if !client.is_closed() => client,
                _ => match self.config.connect(NoTls) {
                    Ok(client) => self.client.insert(client),
                    Err(e) => return Err(classify(location, e)),
                },
            };
            match f(client) {
                Ok(value) => return Ok(value),
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Postgres(e)) => {
                    let raced = e.code().is_some_and(|c| {
                        *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                            || *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    });
                    if raced && attempt < RACE_RETRIES {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(5 * attempt as u64));
                        continue;
                    }
                    let error = classify(location, e);
                    if error.is_transient() {
                        self.client = None;
                    }
                    return Err(error);
                }
            }
        }
    }
}

/// A database's answer (a refused statement) or a lost connection (unreachable: retry later).
fn classify(location: &Path, e: postgres::Error) -> JournalError {
    let path = location.to_path_buf();
    match e.as_db_error() {
        Some(db) if !is_shutdown(db.code()) => JournalError::Database { path, detail: db.to_string() },
        _ => JournalError::Unreachable { path, detail: e.to_string() },
    }
}

/// The server is shutting down or starting (a restart): the same as unreachable.
fn is_shutdown(code: &postgres::error::SqlState) -> bool {
    use postgres::error::SqlState;
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::CONNECTION_FAILURE,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
}
