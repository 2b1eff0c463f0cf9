//! The commands: [`run`] (the daemon), [`demo`], [`process`] (one-shot runs), [`render`]
//! (finished photos again, without the server), [`status`] (and `retry`), [`check`], [`init`]
//! (first setup), [`migrate`], [`pause`] (and `resume`), [`notify_test`], [`sim`] and the manual page ([`man`]). Each is a thin layer over
//! the daemon, the journal and the API client, and fails with a [`Failure`] that carries its
//! exit code; `main.rs` only parses arguments and dispatches. The status report and retrying
//! are [`crate::report`] and [`crate::retry`], which the dashboard uses too.

/// `println!` for the commands, through [`say_line`].
macro_rules! say {
    () => { $crate::commands::say_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::commands::say_line(format_args!($($arg)*)) };
}

pub mod check;
pub mod demo;
pub mod init;
pub mod man;
pub mod migrate;
pub mod notify_test;
pub mod pause;
pub mod process;
pub mod render;
pub mod run;
pub mod sim;
pub mod status;

use std::path::{Path, PathBuf};

use crate::config::{self, Config, Environment};
use crate::daemon::DaemonError;
use crate::exit;
use crate::journal::Journal;

/// Prints one line to standard output. A reader that went away (`retouchd process DIR | head`)
/// does not stop the work, as `println!` would by panicking: the line is dropped.
pub(crate) fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A failure with its exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Failure { code, message: message.to_string() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(exit::FAILURE, format!("{e:#}"))
    }
}

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Self {
        let code = match e {
            DaemonError::Lock(crate::lock::LockError::Held { .. }) => exit::LOCKED,
            DaemonError::Lock(_) => exit::JOURNAL,
            DaemonError::Journal(_) => exit::JOURNAL,
            DaemonError::Client(_) => exit::CONFIG,
            DaemonError::InboxOwned(_) => exit::LOCKED,
            DaemonError::Web { .. } => exit::CONFIG,
        };
        Failure::new(code, e)
    }
}

/// The config file to use: the one given, else the default location.
pub fn config_path(given: Option<&Path>) -> Result<PathBuf, Failure> {
    given
        .map(Path::to_path_buf)
        .or_else(config::default_path)
        .ok_or_else(|| Failure::new(exit::CONFIG, "no config file given and no default location; pass --config FILE"))
}

/// Loads the config to run with.
pub fn load_config(given: Option<&Path>) -> Result<Config, Failure> {
    load_config_for(given, config::Purpose::Run)
}

/// Loads the config for `purpose`; a problem is a config failure.
pub fn load_config_for(given: Option<&Path>, purpose: config::Purpose) -> Result<Config, Failure> {
    let path = config_path(given)?;
    config::load_for(&path, &Environment::from_process(), purpose).map_err(|e| Failure::new(exit::CONFIG, e))
}

/// Writes bytes to standard output; a reader that went away ends the output quietly.
pub fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(exit::FAILURE, format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Prints what a run to the end did; a run in which files failed or were refused fails.
pub fn outcome(summary: &crate::daemon::Summary) -> Result<(), Failure> {
    let line = format!("{} delivered, {} failed, {} refused\n", summary.done, summary.failed, summary.rejected);
    write_out(line.as_bytes())?;
    match summary.failed + summary.rejected {
        0 => Ok(()),
        n => Err(Failure::new(exit::FAILURE, format!("{n} file(s) could not be retouched; see the reasons above"))),
    }
}

pub fn open_journal(config: &Config) -> Result<Journal, Failure> {
    Journal::for_config(config, false).map_err(|e| Failure::new(exit::JOURNAL, e))
}
