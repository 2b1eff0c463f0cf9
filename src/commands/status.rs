//! `retouchd status`: the report ([`crate::report`]) of the journal and the running daemon, as
//! text or JSON.

use std::path::PathBuf;

use super::{Failure, load_config_for, open_journal};
use crate::{config, exit};

pub fn status(config_file: Option<PathBuf>, json: bool) -> Result<(), Failure> {
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
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
