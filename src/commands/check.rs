//! `retouchd check`: the config is valid (it was loaded), a shared journal's database answers,
//! the server answers, its start route exists at the configured URL, and the token is
//! accepted, all without spending a credit.

use std::path::PathBuf;

use crate::api::{Client, ErrorKind};
use crate::config::Config;

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The server settings cannot even make a client (a config problem).
    #[error("{0}")]
    Client(crate::api::ApiError),
    /// The server or the token did not pass.
    #[error("{0}")]
    Server(String),
    /// The shared journal's database cannot be used.
    #[error("{0}")]
    Database(String),
    /// An outbox, done or failed folder cannot be written.
    #[error("{0}")]
    Folders(String),
}

/// Runs the checks, printing one line per finding.
/// Prints a line; a reader that went away (`retouchd check | head -1`) is not an error. (`check`
/// keeps SIGPIPE ignored: it talks to servers, and a server closing a connection must not kill
/// it before it says what failed.)
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub async fn run(config: &Config) -> Result<(), CheckError> {
    say!("config: ok ({} watch(es), token from {})", config.watches.len(), config.server.token_source);
    for w in &config.warnings {
        say!("warning: {w}");
    }
    // Every watch's outbox, done and failed folder must take a result before a credit is spent.
    let folders: Vec<(PathBuf, bool)> = config.watches.iter().flat_map(|w| w.delivery_folders()).collect();
    let problems = tokio::task::spawn_blocking(move || {
        folders.iter().filter_map(|(dir, outbox)| crate::deliver::probe_folder(dir, *outbox).err()).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| CheckError::Folders(e.to_string()))?;
    if !problems.is_empty() {
        return Err(CheckError::Folders(problems.join("\n")));
    }
    say!("folders: every outbox, done and failed folder can be written");
    for channel in &config.notify {
        say!("notify {}: valid; nothing sent (`retouchd notify-test` sends a test)", channel.describe());
    }
    if let Some(cluster) = config.cluster.clone() {
        let location = cluster.location.clone();
        let journal = tokio::task::spawn_blocking(move || {
            crate::journal::Journal::for_cluster(&cluster, false).and_then(|j| j.nodes().map(|n| n.len()))
        })
        .await
        .map_err(|e| CheckError::Database(e.to_string()))?;
        match journal {
            Ok(nodes) => say!("database: {location} answers; {nodes} node(s) known"),
            Err(crate::journal::JournalError::NotSetUp { .. }) => {
                say!("database: answers; no tables yet (the first node to start makes them)")
            }
            Err(e) => return Err(CheckError::Database(format!("database: {e}"))),
        }
    }
    let client = Client::new(config.server.client_options()).map_err(CheckError::Client)?;
    match client.limits().await {
        Ok(Some(l)) => say!(
            "server: {} answers; limits {} MB, {} megapixels",
            client.base_url(),
            l.max_file_size_mb,
            l.max_megapixels
        ),
        Ok(None) => say!("server: {} answers (no limits route, as in production)", client.base_url()),
        Err(e) => {
            return Err(CheckError::Server(format!("server {} does not answer properly: {e}", client.base_url())));
        }
    }
    // A start without a file is answered 400 "No file uploaded" and costs nothing; a 404 means
    // the URL is wrong (usually `/api/v1` is missing), which would otherwise fail every photo.
    let payload = config.watches.first().map(|w| w.payload.as_str()).unwrap_or("{}");
    match client.probe_start(payload).await {
        Ok(()) => say!("server: the start route answers as documented (no credit spent)"),
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(CheckError::Server(format!(
                "server: {} has no start route (HTTP 404); server.url should end in /api/v1, like {}",
                client.base_url(),
                crate::api::DEFAULT_BASE_URL
            )));
        }
        Err(e) => {
            return Err(CheckError::Server(format!(
                "server {} does not answer a start properly: {e}",
                client.base_url()
            )));
        }
    }
    match client.balance().await {
        Ok(b) => match b.professional {
            Some(n) => say!("token: accepted; {n} credits left"),
            None => say!("token: accepted"),
        },
        Err(e) if e.kind == ErrorKind::BadToken => {
            return Err(CheckError::Server(format!(
                "token: refused ({}); check {}",
                e.message, config.server.token_source
            )));
        }
        Err(e) => say!("token: could not be checked ({e}); it is checked again at the first upload"),
    }
    Ok(())
}
/// `retouchd check` from the command line, each problem with its exit code.
pub async fn cli(config_file: Option<std::path::PathBuf>) -> Result<(), super::Failure> {
    let config = super::load_config(config_file.as_deref())?;
    run(&config).await.map_err(|e| match e {
        CheckError::Client(e) => super::Failure::new(crate::exit::CONFIG, e),
        CheckError::Server(message) => super::Failure::new(crate::exit::SERVER, message),
        CheckError::Database(message) => super::Failure::new(crate::exit::JOURNAL, message),
        CheckError::Folders(message) => super::Failure::new(crate::exit::CONFIG, message),
    })
}
