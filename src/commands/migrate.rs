//! `retouchd migrate-journal`: copies a stopped daemon's SQLite journal into the shared
//! PostgreSQL journal the config names.

use std::path::PathBuf;

use super::{Failure, load_config_for};
use crate::{config, exit};

pub fn migrate_journal(config_file: Option<PathBuf>, from: Option<PathBuf>) -> Result<(), Failure> {
    use crate::journal::migrate;
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    let Some(cluster) = &config.cluster else {
        return Err(Failure::new(
            exit::CONFIG,
            "the config has no shared journal to copy into: set state.database to a PostgreSQL URL first",
        ));
    };
    let state_dir = from.unwrap_or_else(|| config.state_dir.clone());
    // The daemon that writes this journal must be stopped: its lock says whether it runs.
    let _lock = crate::lock::StateLock::acquire(&state_dir).map_err(|e| Failure::new(exit::LOCKED, e))?;
    let source = migrate::source_journal(&state_dir).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    let target = migrate::target_journal(cluster).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    let copied = migrate::copy(&source, &target, |n| eprint!("\rcopied {n} jobs"))
        .map_err(|e| Failure::new(exit::JOURNAL, e))?;
    eprintln!();
    println!(
        "copied {} jobs ({} unfinished: the first node to start takes them over) from {} into {}",
        copied.jobs,
        copied.unfinished,
        source.path().display(),
        target.path().display()
    );
    Ok(())
}
