//! The daemon's claims on its inboxes (see [`crate::inbox`]): made at start-up, renewed on every
//! pulse, given up on a clean stop. An inbox that carried a marker before and lacks it now is an
//! unmounted share: it is neither marked nor claimed until it is back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::inbox::{self, ClaimError, Claimed, InboxOwned, Owner};
use crate::journal::{Journal, JournalError};

pub(crate) struct Claims {
    me: Owner,
    /// Inboxes that have carried this daemon's marker (from the journal).
    marked: HashSet<PathBuf>,
    /// Inboxes whose marker could not be written, said once until it works again.
    unwritable: HashSet<PathBuf>,
}

impl Claims {
    /// Claims every inbox of `config` for the daemon of `state_dir`; fails on the first one that
    /// another live daemon owns.
    pub(super) fn claim_all(config: &Config, journal: &Journal) -> Result<Claims, ClaimFailure> {
        let mut claims = Claims { me: Owner::for_config(config), marked: HashSet::new(), unwritable: HashSet::new() };
        for w in &config.watches {
            if journal.is_marked(&w.inbox)? {
                claims.marked.insert(w.inbox.clone());
            }
        }
        for w in &config.watches {
            if claims.is_unmounted(&w.inbox) {
                warn!(inbox = %w.inbox.display(), "inbox unavailable (its marker file is missing: unmounted?); its watch waits for it");
            }
            if let Err(e) = claims.claim(&w.inbox, journal) {
                return Err(ClaimFailure::Owned(e));
            }
        }
        Ok(claims)
    }

    /// An inbox that carried the marker and lacks it now: an unmounted share.
    fn is_unmounted(&self, inbox: &Path) -> bool {
        self.marked.contains(inbox) && inbox::inbox_available(inbox, true).is_err()
    }

    /// Claims one inbox (new in a reload, or at start, or renewed on a pulse). An unmounted one
    /// is left alone until it is back (the watcher says so once).
    pub(super) fn claim(&mut self, inbox: &Path, journal: &Journal) -> Result<(), InboxOwned> {
        if self.is_unmounted(inbox) {
            return Ok(());
        }
        match inbox::claim(inbox, &self.me) {
            Ok(claimed) => {
                self.unwritable.remove(inbox);
                if let Claimed::TakenOver(old) = claimed {
                    info!(inbox = %inbox.display(), host = old.host, pid = old.pid, state_dir = %old.state_dir.display(),
                        "took over an inbox whose owner stopped renewing its claim");
                }
                if self.marked.insert(inbox.to_path_buf())
                    && let Err(e) = journal.mark(inbox)
                {
                    warn!(inbox = %inbox.display(), error = %e, "cannot note the marker in the journal");
                }
                Ok(())
            }
            Err(ClaimError::Owned(owned)) => Err(owned),
            Err(ClaimError::Io(e)) => {
                if self.unwritable.insert(inbox.to_path_buf()) {
                    warn!(inbox = %inbox.display(), error = %e, "cannot place the marker file; is the inbox writable?");
                }
                Ok(())
            }
        }
    }

    /// Renews every claim (the pulse). Returns the inboxes another daemon owns now.
    pub(super) fn renew(&mut self, config: &Config, journal: &Journal) -> Vec<InboxOwned> {
        let mut lost = Vec::new();
        for w in &config.watches {
            if let Err(owned) = self.claim(&w.inbox, journal) {
                error!("{owned}");
                lost.push(owned);
            }
        }
        lost
    }

    /// Gives every inbox of `config` up (a clean stop).
    pub(super) fn release_all(&self, config: &Config) {
        for w in &config.watches {
            inbox::release(&w.inbox, &self.me);
        }
    }
}

/// Why the inboxes could not be claimed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ClaimFailure {
    #[error(transparent)]
    Owned(InboxOwned),
    #[error(transparent)]
    Journal(#[from] JournalError),
}
