//! Log output: readable on a terminal, plain (no colours, no timestamps) under systemd, where
//! journald adds its own, or JSON for log shippers. The level comes from `RUST_LOG` or the caller.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text; plain under systemd, with colours on a terminal.
    Auto,
    Text,
    Json,
}

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` is not set.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // A log that cannot be written (a closed pipe after Ctrl-C on `run 2>&1 | tee`) is dropped
    // quietly: reporting it would write to the same closed pipe, and printing to it panics.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    // A second init (tests running several commands in one process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Auto if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto | LogFormat::Text => {
            use std::io::IsTerminal;
            builder.with_ansi(std::io::stderr().is_terminal()).try_init()
        }
    };
}
