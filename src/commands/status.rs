//! `retouchd status`: the report ([`crate::report`]) of the journal and the running daemon, as
//! text or JSON.

use std::path::PathBuf;

use super::{Failure, load_config_for, open_journal};
use crate::{config, exit};

pub fn status(config_file: Option<PathBuf>, json: bool, health: bool) -> Result<(), Failure> {
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    if health {
        return daemon_health(&config);
    }
    if config.cluster.is_none() && !config.state_dir.join(crate::journal::FILE_NAME).exists() {
        println!("no journal yet in {}; start `retouchd run` first", config.state_dir.display());
        return Ok(());
    }
    let journal = open_journal(&config)?;
    let report = crate::report::report(&journal, &config).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Failure::new(exit::FAILURE, e))?);
    } else {
        print!("{}", crate::report::render(&report));
    }
    Ok(())
}

/// `retouchd status --health`: one line and the exit code, from the running daemon's own
/// status alone (no journal read, so it answers while a shared journal's database is away).
fn daemon_health(config: &config::Config) -> Result<(), Failure> {
    let unwell = |why: String| Err(Failure::new(exit::FAILURE, format!("unhealthy: {why}")));
    let Some(daemon) = crate::daemon::LiveStatus::read(&config.state_dir) else {
        return unwell(format!("no daemon runs with the state folder {}", config.state_dir.display()));
    };
    match daemon.health(crate::vocab::now_secs()) {
        Ok(()) => {
            println!("healthy: {}", daemon.line());
            Ok(())
        }
        Err(why) => unwell(why),
    }
}

/// `retouchd retry`: failed files sent again ([`crate::retry`]).
pub fn retry(config_file: Option<PathBuf>, job: Option<i64>, failed: bool, refused: bool) -> Result<(), Failure> {
    use super::write_out;
    use crate::retry::{self, Retried, Which};
    let which = match (job, failed) {
        (Some(id), _) => Which::Job(id),
        (None, true) => Which::Failed { refused },
        (None, false) => {
            return Err(Failure::new(
                exit::USAGE,
                "say what to retry: a job number (from `retouchd status`), or --failed for every failed file",
            ));
        }
    };
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    let journal = open_journal(&config)?;
    let outcomes = retry::retry(&config, &journal, which).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    if let (Which::Job(_), [Retried::Skipped { id, why }]) = (which, &outcomes[..]) {
        return Err(Failure::new(exit::FAILURE, format!("#{id} not retried: {why}")));
    }
    write_out(retry::report(&outcomes).as_bytes())
}
