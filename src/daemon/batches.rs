//! Batches: files dropped together, told about together. A batch is an inbox's top-level
//! folder (a shoot copied in as one folder), or the files dropped loose into the inbox itself;
//! it stays open while any of its files is on its way and until no new file came for the quiet
//! period (`[batches] quiet`), then closes with one `batch_done` event: delivered / failed /
//! refused, credits spent, first drop to last result, where the results are. A `retouchd
//! process` run closes its batches when it ends.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::notify::{BatchReport, MISSES_LISTED, Miss, rfc3339};

/// A file: (inbox, path below it), as the coordinator keys its jobs.
type JobKey = (PathBuf, PathBuf);

/// (inbox, its top-level folder the files are in; `None`: loose in the inbox).
type BatchKey = (PathBuf, Option<PathBuf>);

/// How one file of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settled {
    Delivered { charged: bool },
    Failed { charged: bool, reason: String },
    Refused { reason: String },
}

#[derive(Debug)]
struct Batch {
    first_drop_ms: i64,
    last_arrival: Instant,
    last_result_ms: i64,
    /// Files on their way (seen, not settled).
    pending: HashSet<JobKey>,
    delivered: u64,
    failed: u64,
    refused: u64,
    credits: u64,
    misses: Vec<Miss>,
}

/// An open batch as `status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
    pub folder: String,
    /// Files seen so far, and how many of them have settled.
    pub files: u64,
    pub settled: u64,
    pub delivered: u64,
    pub failed: u64,
    pub refused: u64,
    /// Unix seconds of the first drop.
    pub since: u64,
}

#[derive(Debug, Default)]
pub(super) struct Batches {
    open: HashMap<BatchKey, Batch>,
    /// A `retouchd process` run: every file belongs to this one batch (its folder).
    run: Option<PathBuf>,
}

/// The batch a file belongs to.
fn key_of(inbox: &Path, rel: &Path) -> BatchKey {
    let mut parts = rel.components();
    let first = parts.next().map(|c| PathBuf::from(c.as_os_str()));
    let folder = if parts.next().is_some() { first } else { None };
    (inbox.to_path_buf(), folder)
}

impl Batches {
    /// Makes every file one batch, shown as `folder` (a `retouchd process` run).
    pub(super) fn whole_run(&mut self, folder: PathBuf) {
        self.run = Some(folder);
    }

    fn key(&self, file: &JobKey) -> BatchKey {
        match &self.run {
            Some(folder) => (folder.clone(), None),
            None => key_of(&file.0, &file.1),
        }
    }

    /// A file was dropped (seen ready, or found unfinished in the journal at `since_ms`).
    pub(super) fn arrived(&mut self, file: &JobKey, since_ms: i64) {
        let key = self.key(file);
        let batch = self.open.entry(key).or_insert_with(|| Batch {
            first_drop_ms: since_ms,
            last_arrival: Instant::now(),
            last_result_ms: since_ms,
            pending: HashSet::new(),
            delivered: 0,
            failed: 0,
            refused: 0,
            credits: 0,
            misses: Vec::new(),
        });
        if batch.pending.insert(file.clone()) {
            batch.last_arrival = Instant::now();
            batch.first_drop_ms = batch.first_drop_ms.min(since_ms);
        }
    }

    /// A file's job ended.
    pub(super) fn settled(&mut self, file: &JobKey, how: Settled) {
        let key = self.key(file);
        let Some(batch) = self.open.get_mut(&key) else { return };
        if !batch.pending.remove(file) {
            return;
        }
        batch.last_result_ms = crate::vocab::now_ms();
        let name = match &self.run {
            Some(_) => file.0.join(&file.1).display().to_string(),
            None => file.1.display().to_string(),
        };
        match how {
            Settled::Delivered { charged } => {
                batch.delivered += 1;
                batch.credits += u64::from(charged);
            }
            Settled::Failed { charged, reason } => {
                batch.failed += 1;
                batch.credits += u64::from(charged);
                if batch.misses.len() < MISSES_LISTED {
                    batch.misses.push(Miss { file: name, reason });
                }
            }
            Settled::Refused { reason } => {
                batch.refused += 1;
                if batch.misses.len() < MISSES_LISTED {
                    batch.misses.push(Miss { file: name, reason });
                }
            }
        }
    }

    /// A file turned out not to be a job (handled before, gone): it leaves its batch uncounted.
    pub(super) fn forget(&mut self, file: &JobKey) {
        let key = self.key(file);
        if let Some(batch) = self.open.get_mut(&key) {
            batch.pending.remove(file);
        }
    }

    /// Closes the batches that are done: every file settled or forgotten, and quiet for `quiet`
    /// (or at once with `quiet` zero). Each comes back as its report; batches in which nothing
    /// was counted close silently.
    pub(super) fn close_done(
        &mut self,
        quiet: Duration,
        outbox_of: impl Fn(&Path) -> Option<PathBuf>,
    ) -> Vec<BatchReport> {
        let now = Instant::now();
        let mut done = Vec::new();
        self.open.retain(|(inbox, folder), batch| {
            if !batch.pending.is_empty() || now < batch.last_arrival + quiet {
                return true;
            }
            if batch.delivered + batch.failed + batch.refused > 0 {
                let place = |base: &Path| folder.as_ref().map_or(base.to_path_buf(), |f| base.join(f));
                let outbox = outbox_of(inbox).map(|o| place(&o)).unwrap_or_default();
                done.push(BatchReport {
                    folder: place(inbox).display().to_string(),
                    inbox: inbox.display().to_string(),
                    delivered: batch.delivered,
                    failed: batch.failed,
                    refused: batch.refused,
                    credits: batch.credits,
                    first_drop_at: rfc3339(batch.first_drop_ms),
                    last_result_at: rfc3339(batch.last_result_ms),
                    seconds: ((batch.last_result_ms - batch.first_drop_ms).max(0) / 1000) as u64,
                    outbox: outbox.display().to_string(),
                    misses: std::mem::take(&mut batch.misses),
                });
            }
            false
        });
        done.sort_by(|a, b| a.folder.cmp(&b.folder));
        done
    }

    /// When the next batch may close (its quiet period ends), if one is waiting only for that.
    pub(super) fn next_close(&self, quiet: Duration) -> Option<Instant> {
        self.open.values().filter(|b| b.pending.is_empty()).map(|b| b.last_arrival + quiet).min()
    }

    /// The open batches, oldest first.
    pub(super) fn views(&self) -> Vec<BatchView> {
        let mut views: Vec<BatchView> = self
            .open
            .iter()
            .map(|((inbox, folder), b)| {
                let settled = b.delivered + b.failed + b.refused;
                BatchView {
                    folder: folder.as_ref().map_or(inbox.clone(), |f| inbox.join(f)).display().to_string(),
                    files: settled + b.pending.len() as u64,
                    settled,
                    delivered: b.delivered,
                    failed: b.failed,
                    refused: b.refused,
                    since: (b.first_drop_ms / 1000).max(0) as u64,
                }
            })
            .collect();
        views.sort_by(|a, b| (a.since, &a.folder).cmp(&(b.since, &b.folder)));
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str) -> JobKey {
        ("/in".into(), rel.into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_is_one_batch_that_closes_once_settled_and_quiet() {
        let mut batches = Batches::default();
        let quiet = Duration::from_secs(120);
        let outbox = |_: &Path| Some(PathBuf::from("/out"));
        for name in ["shoot/a.jpg", "shoot/b.jpg", "shoot/raw/c.jpg", "loose.jpg"] {
            batches.arrived(&file(name), 1_000_000);
        }
        let views = batches.views();
        assert_eq!(
            views.iter().map(|v| (v.folder.as_str(), v.files)).collect::<Vec<_>>(),
            [("/in", 1), ("/in/shoot", 3)]
        );
        batches.settled(&file("shoot/a.jpg"), Settled::Delivered { charged: true });
        batches.settled(&file("shoot/b.jpg"), Settled::Failed { charged: true, reason: "no face".into() });
        assert!(batches.close_done(quiet, outbox).is_empty(), "c.jpg is on its way");
        batches.settled(&file("shoot/raw/c.jpg"), Settled::Refused { reason: "too big".into() });
        batches.settled(&file("shoot/raw/c.jpg"), Settled::Delivered { charged: true }); // counted once
        assert!(batches.close_done(quiet, outbox).is_empty(), "not quiet yet");
        assert_eq!(batches.next_close(quiet), Some(Instant::now() + quiet));
        tokio::time::sleep(quiet).await;
        let reports = batches.close_done(quiet, outbox);
        assert_eq!(reports.len(), 1, "the loose file is still on its way");
        let report = &reports[0];
        assert_eq!((report.delivered, report.failed, report.refused, report.credits), (1, 1, 1, 2));
        assert_eq!((report.folder.as_str(), report.outbox.as_str()), ("/in/shoot", "/out/shoot"));
        assert_eq!(report.misses.len(), 2);
        // The loose file vanished (forgotten): its batch closes silently.
        batches.forget(&file("loose.jpg"));
        assert!(batches.close_done(quiet, outbox).is_empty());
        assert!(batches.views().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_arriving_during_the_quiet_period_keeps_the_batch_open() {
        let mut batches = Batches::default();
        let quiet = Duration::from_secs(60);
        batches.arrived(&file("a.jpg"), 0);
        batches.settled(&file("a.jpg"), Settled::Delivered { charged: true });
        tokio::time::sleep(Duration::from_secs(50)).await;
        batches.arrived(&file("b.jpg"), 50_000);
        batches.settled(&file("b.jpg"), Settled::Delivered { charged: false });
        tokio::time::sleep(Duration::from_secs(50)).await;
        assert!(batches.close_done(quiet, |_| None).is_empty());
        tokio::time::sleep(Duration::from_secs(10)).await;
        let reports = batches.close_done(quiet, |_| None);
        assert_eq!((reports[0].delivered, reports[0].credits), (2, 1), "one batch, one of them reused (no credit)");
    }
}
