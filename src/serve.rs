//! The top of the house: the daemon with what is served beside it. [`run`] opens the dashboard's
//! listener (when `[web]` is set) as the daemon's [`daemon::Front`], so that the daemon runs jobs
//! and the dashboard shows them without the daemon knowing the web exists; the metrics endpoint
//! is the daemon's own.

use std::future::Future;
use std::path::PathBuf;

use crate::config::Config;
use crate::daemon::{self, DaemonError, RunOptions, Summary};

/// Runs the daemon until `shutdown` (see [`daemon::run`]), with the dashboard beside it when the
/// config has `[web]` and the daemon watches its inboxes (not for `process`'s given files).
/// `config_file` is shown on the dashboard, secrets redacted.
pub async fn run(
    config: Config,
    mut options: RunOptions,
    config_file: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, DaemonError> {
    if let Some(web) = config.web.clone().filter(|_| options.files.is_none()) {
        options.front = Some(Box::new(move |handle, stop| {
            Box::pin(async move {
                let listener = tokio::net::TcpListener::bind(web.listen)
                    .await
                    .map_err(|error| DaemonError::Web { addr: web.listen, error })?;
                let address = listener.local_addr().map_err(|error| DaemonError::Web { addr: web.listen, error })?;
                tokio::spawn(crate::web::serve(handle, web, config_file, listener, stop));
                Ok(format!("http://{address}/"))
            })
        }));
    }
    daemon::run(config, options, shutdown).await
}
