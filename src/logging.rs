//! Log output: readable on a terminal, plain (no colours, no timestamps) under systemd, where
//! journald adds its own, or JSON for log shippers. The level comes from `RUST_LOG` or the caller.
//! File names come from whoever writes the inbox: in text output every control character (a
//! newline that would forge a log line, a terminal escape) is shown escaped ([`printable`]).

use std::borrow::Cow;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;

/// `text` with control characters and bidirectional overrides escaped (`\n`, `\u{1b}`), so
/// that a name can neither start a line of its own nor drive a terminal.
pub fn printable(text: &str) -> Cow<'_, str> {
    let risky = |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(risky) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if risky(c) { c.escape_default().to_string() } else { c.to_string() }).collect())
}

/// [`printable`] for a path or anything else shown.
pub fn escaped(value: impl std::fmt::Display) -> String {
    printable(&value.to_string()).into_owned()
}

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
    // Text output: every field's value with its control characters escaped (JSON escapes them).
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => write!(writer, "{}", printable(&text)),
            name => write!(writer, "{name}={}", printable(&text)),
        }
    })
    .delimited(" ");
    // A second init (tests running several commands in one process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Auto if under_journald => builder.fmt_fields(fields).without_time().with_ansi(false).try_init(),
        LogFormat::Auto | LogFormat::Text => {
            use std::io::IsTerminal;
            builder.fmt_fields(fields).with_ansi(std::io::stderr().is_terminal()).try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_shown_escaped() {
        assert_eq!(printable("IMG 1.jpg"), "IMG 1.jpg");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        let forged = "a.jpg\nERROR retouchd: token leaked\u{1b}[2J\u{202E}gpj.exe";
        let shown = printable(forged);
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202E}'), "{shown}");
        assert_eq!(shown, "a.jpg\\nERROR retouchd: token leaked\\u{1b}[2J\\u{202e}gpj.exe");
    }
}
