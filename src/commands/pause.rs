//! `retouchd pause` and `retouchd resume`: a person's pause, written to the journal (kept across
//! restarts, seen by every node of a shared journal); the running daemon takes it within
//! seconds. Jobs already at the server go on; nothing new is uploaded from what is paused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Failure, load_config_for};
use crate::config::{self, Config};
use crate::daemon::hold_words;
use crate::exit;
use crate::journal::Hold;

/// Pauses uploads from every inbox, or from `watch` (one of the config's inboxes), until
/// resumed or for `duration`.
pub fn pause(config_file: Option<PathBuf>, watch: Option<PathBuf>, duration: Option<Duration>) -> Result<(), Failure> {
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    let inbox = watch.map(|w| configured_inbox(&config, &w)).transpose()?;
    let until_ms = duration.map(|d| crate::vocab::now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64));
    let hold = Hold { until_ms };
    let journal = writable_journal(&config)?;
    journal.set_pause(inbox.as_deref(), Some(hold)).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    say!("{}; jobs already at the server go on.", capitalised(&hold_words(inbox.as_deref(), hold)));
    say!("A running daemon takes it within seconds; it is kept across restarts.");
    Ok(())
}

/// Ends the pause of `watch`, or every pause.
pub fn resume(config_file: Option<PathBuf>, watch: Option<PathBuf>) -> Result<(), Failure> {
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    let inbox = watch.map(|w| configured_inbox(&config, &w)).transpose()?;
    let journal = writable_journal(&config)?;
    let failed = |e| Failure::new(exit::JOURNAL, e);
    let pauses = journal.pauses().map_err(failed)?;
    let now = crate::vocab::now_ms();
    match inbox {
        Some(inbox) => {
            let had = pauses.watches.iter().any(|(w, h)| *w == inbox && h.active(now));
            journal.set_pause(Some(&inbox), None).map_err(failed)?;
            say!("{}", if had { "uploads from that inbox resumed" } else { "that inbox was not paused" });
            if let Some(all) = pauses.all.filter(|h| h.active(now)) {
                say!("Every inbox is still paused: {}.", hold_words(None, all));
            }
        }
        None => {
            let had = pauses.all.is_some_and(|h| h.active(now)) || pauses.watches.iter().any(|(_, h)| h.active(now));
            journal.set_pause(None, None).map_err(failed)?;
            for (inbox, _) in &pauses.watches {
                journal.set_pause(Some(inbox), None).map_err(failed)?;
            }
            say!("{}", if had { "uploads resumed" } else { "nothing was paused" });
        }
    }
    Ok(())
}

/// The config's inbox that `given` names (compared once both are resolved), as configured.
fn configured_inbox(config: &Config, given: &Path) -> Result<PathBuf, Failure> {
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let wanted = resolved(given);
    config.watches.iter().map(|w| &w.inbox).find(|inbox| resolved(inbox) == wanted).cloned().ok_or_else(|| {
        let known: Vec<String> = config.watches.iter().map(|w| w.inbox.display().to_string()).collect();
        Failure::new(
            exit::USAGE,
            format!("{} is not an inbox of the config; its inboxes: {}", given.display(), known.join(", ")),
        )
    })
}

fn writable_journal(config: &Config) -> Result<crate::journal::Journal, Failure> {
    crate::journal::Journal::for_command(config).map_err(|e| Failure::new(exit::JOURNAL, e))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
