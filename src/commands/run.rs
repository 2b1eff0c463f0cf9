//! `retouchd run`: the daemon (with its dashboard) until SIGTERM or SIGINT; SIGHUP reloads the
//! config, a refused one leaving the old running.

use std::path::PathBuf;

use super::{Failure, config_path, load_config, outcome};
use crate::daemon::RunOptions;

/// Runs the daemon with the config at `given` (or the default location); with `once`, until
/// the inboxes are processed, printing what it did.
pub async fn run(given: Option<PathBuf>, once: bool, log_format: crate::logging::LogFormat) -> Result<(), Failure> {
    let config_file = config_path(given.as_deref())?;
    let config = load_config(Some(&config_file))?;
    crate::logging::init(log_format, &config.log_level);
    crate::daemon::raise_open_file_limit();
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    let reload_source: crate::daemon::control::ReloadSource = {
        let path = config_file.clone();
        std::sync::Arc::new(move || load_config(Some(&path)).map_err(|f| f.message))
    };
    let path = config_file.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            match load_config(Some(&path)) {
                Ok(config) => {
                    if reload_tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(f) => tracing::error!("the new configuration is refused; the old one keeps running. {}", f.message),
            }
        }
    });
    let options =
        RunOptions { once, reloads: Some(reloads), reload_source: Some(reload_source), ..RunOptions::default() };
    let summary = crate::serve::run(config, options, Some(config_file), shutdown).await?;
    if once {
        return outcome(&summary);
    }
    Ok(())
}
