//! The daemon's claims on its inboxes (see [`crate::inbox`]): made at start-up, renewed on every
//! pulse, given up on a clean stop. An inbox that carried a marker before and lacks it now is an
//! unmounted share: it is neither marked nor claimed until it is back. The pulse's renewals run
//! on blocking threads, one per inbox at a time, and their outcomes are taken in at the next
//! pulse: an inbox on a share that stopped answering holds up only its own renewal, and one
//! that does not answer (see [`crate::share`]) is not touched until it does.

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
    /// Renewals running in the background, and where their outcomes arrive.
    renewing: HashSet<PathBuf>,
    renewed: (std::sync::mpsc::Sender<Renewed>, std::sync::mpsc::Receiver<Renewed>),
}

/// A background renewal's outcome: `None` when the inbox looked unmounted.
type Renewed = (PathBuf, Option<Result<Claimed, ClaimError>>);

impl Claims {
    /// Claims every inbox of `config` for the daemon of `state_dir`; fails on the first one that
    /// another live daemon owns.
    pub(super) fn claim_all(config: &Config, journal: &Journal) -> Result<Claims, ClaimFailure> {
        let mut claims = Claims {
            me: Owner::for_config(config),
            marked: HashSet::new(),
            unwritable: HashSet::new(),
            renewing: HashSet::new(),
            renewed: std::sync::mpsc::channel(),
        };
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

    /// Claims one inbox (new in a reload, or at start). An unmounted one is left alone until it
    /// is back (the watcher says so once).
    pub(super) fn claim(&mut self, inbox: &Path, journal: &Journal) -> Result<(), InboxOwned> {
        if self.is_unmounted(inbox) {
            return Ok(());
        }
        let claimed = inbox::claim(inbox, &self.me);
        self.take_in(inbox, claimed, journal)
    }

    /// Takes in the outcome of claiming `inbox`.
    fn take_in(
        &mut self,
        inbox: &Path,
        claimed: Result<Claimed, ClaimError>,
        journal: &Journal,
    ) -> Result<(), InboxOwned> {
        match claimed {
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

    /// Renews every claim (the pulse): takes in the renewals that ended since the last pulse,
    /// and starts one for each inbox that has none running and answers. Returns the inboxes
    /// another daemon owns now.
    pub(super) fn renew(&mut self, config: &Config, journal: &Journal) -> Vec<InboxOwned> {
        let mut lost = Vec::new();
        while let Ok((inbox, outcome)) = self.renewed.1.try_recv() {
            self.renewing.remove(&inbox);
            if let Some(claimed) = outcome
                && let Err(owned) = self.take_in(&inbox, claimed, journal)
            {
                error!("{owned}");
                lost.push(owned);
            }
        }
        for w in &config.watches {
            if self.renewing.contains(&w.inbox) || crate::share::hung_for(&w.inbox).is_some() {
                continue;
            }
            self.renewing.insert(w.inbox.clone());
            let (inbox, me, marked, done) =
                (w.inbox.clone(), self.me.clone(), self.marked.contains(&w.inbox), self.renewed.0.clone());
            tokio::task::spawn_blocking(move || {
                let _noted = crate::share::track(&inbox);
                let unmounted = marked && inbox::inbox_available(&inbox, true).is_err();
                let outcome = (!unmounted).then(|| inbox::claim(&inbox, &me));
                let _ = done.send((inbox, outcome));
            });
        }
        lost
    }

    /// Gives every inbox of `config` up (a clean stop).
    pub(super) fn release_all(&self, config: &Config) {
        for w in &config.watches {
            // A share that does not answer keeps its claim (it expires); the stop goes on.
            if crate::share::hung_for(&w.inbox).is_some() {
                continue;
            }
            let (inbox, me) = (w.inbox.clone(), self.me.clone());
            if crate::share::within(crate::share::ANSWER_WITHIN, move || inbox::release(&inbox, &me)).is_none() {
                warn!(inbox = %w.inbox.display(), "the inbox does not answer; its claim expires on its own");
            }
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
