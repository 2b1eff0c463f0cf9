//! Group commit: new jobs and state changes from every runner go to one writer task, which
//! writes whatever has queued up in one transaction. One sync to disk then covers many jobs.
//! Each write is committed before its caller goes on, exactly as with a direct write.
//!
//! A batch that fails because the journal's database cannot be reached (a shared journal) is
//! written again once it can: its callers wait, and nothing depending on it happens meanwhile.
//! A write the database refuses alone (a file another node claimed, a job another node took
//! over) is answered with that refusal; the rest of its batch is written.
//!
//! The writer waits for requests as an async task and writes each batch on a blocking thread,
//! so no async worker waits on the disk, and the runtime knows a write is under way (a paused
//! test clock does not jump ahead while a commit is being synced, as it would while waiting on
//! a thread of our own).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::cluster::{Health, backoff};
use crate::job::JobState;
use crate::journal::{JobId, Journal, JournalError, Source, Write};

/// At most this many writes per transaction.
const MAX_BATCH: usize = 512;

enum Request {
    Insert(Source, JobState),
    Update(JobId, i64, JobState),
    Progress(JobId, f64),
}

type Reply = oneshot::Sender<Result<JobId, JournalError>>;

/// The sending side; the writer task ends when this is dropped.
pub struct Committer {
    tx: mpsc::UnboundedSender<(Request, Option<Reply>)>,
    journal: Arc<Journal>,
}

impl Committer {
    /// Starts the writer task (on the current runtime).
    pub fn start(journal: Arc<Journal>, health: Arc<Health>) -> Committer {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Request, Option<Reply>)>();
        let writer = Arc::clone(&journal);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let mut full = std::mem::take(&mut batch);
                let mut attempt = 0;
                loop {
                    let journal = Arc::clone(&writer);
                    match tokio::task::spawn_blocking(move || commit(&journal, full)).await {
                        Ok(Ok(())) => {
                            health.answered();
                            break;
                        }
                        // The database cannot be reached: the same batch again, after a pause.
                        Ok(Err((e, unwritten))) => {
                            health.failed(&e);
                            full = unwritten;
                            tokio::time::sleep(backoff(attempt)).await;
                            attempt += 1;
                        }
                        Err(e) => {
                            // The batch's callers see their replies dropped: "the journal writer stopped".
                            tracing::error!(error = %e, "the journal writer failed");
                            break;
                        }
                    }
                }
            }
        });
        Committer { tx, journal }
    }

    /// Records a new job; returns its id once committed.
    pub async fn insert(&self, source: Source, state: JobState) -> Result<JobId, JournalError> {
        self.send(Request::Insert(source, state)).await
    }

    /// Records a job's new state, held under `generation`; returns once committed.
    pub async fn update(&self, id: JobId, generation: i64, state: JobState) -> Result<(), JournalError> {
        self.send(Request::Update(id, generation, state)).await.map(drop)
    }

    /// Records the server's progress figure for a job, without waiting: it rides in the next
    /// batch (a batch of progress figures alone is not synced to disk).
    pub fn progress(&self, id: JobId, progress: f64) {
        let _ = self.tx.send((Request::Progress(id, progress), None));
    }

    async fn send(&self, request: Request) -> Result<JobId, JournalError> {
        let stopped = || JournalError::Batch {
            path: self.journal.path().to_path_buf(),
            detail: "the journal writer stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.tx.send((request, Some(reply))).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

type Batch = Vec<(Request, Option<Reply>)>;

/// Writes one batch and answers every request in it; gives the batch back, unanswered, when the
/// database cannot be reached.
fn commit(journal: &Journal, batch: Batch) -> Result<(), (JournalError, Batch)> {
    let writes: Vec<Write<'_>> = batch
        .iter()
        .map(|(request, _)| match request {
            Request::Insert(source, state) => Write::Insert(source, state),
            Request::Update(id, generation, state) => Write::Update { id: *id, generation: *generation, state },
            Request::Progress(id, progress) => Write::Progress(*id, *progress),
        })
        .collect();
    let written = journal.write_batch(&writes);
    drop(writes);
    match written {
        Ok(outcomes) => {
            for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Ok(())
        }
        Err(e) if e.is_transient() => Err((e, batch)),
        Err(e) => {
            tracing::debug!(error = %e, "a journal batch failed");
            let detail = e.to_string();
            let mut replies = batch.into_iter().filter_map(|(_, reply)| reply);
            if let Some(first) = replies.next() {
                let _ = first.send(Err(e));
            }
            for reply in replies {
                let _ =
                    reply.send(Err(JournalError::Batch { path: journal.path().to_path_buf(), detail: detail.clone() }));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn source(name: &str) -> Source {
        Source {
            inbox: PathBuf::from("/in"),
            rel_path: PathBuf::from(name),
            stamp: crate::source::Stamp { size: 1, mtime_ns: 1 },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_committed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let committer = Arc::new(Committer::start(Arc::clone(&journal), Arc::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200 {
            let committer = Arc::clone(&committer);
            tasks.spawn(async move {
                let id = committer.insert(source(&format!("{n}.jpg")), JobState::new(format!("k{n}"))).await.unwrap();
                let done = JobState::Done {
                    outputs: vec![PathBuf::from(format!("/out/{n}.jpg"))],
                    moved_to: None,
                    render_error: None,
                    findings: None,
                };
                committer.update(id, 0, done).await.unwrap();
                id
            });
        }
        let mut ids: Vec<JobId> = tasks.join_all().await;
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200, "every insert got its own id");
        assert!(journal.unfinished().unwrap().is_empty(), "every update landed");
        assert_eq!(journal.counts().unwrap()[&crate::job::StateName::Done], 200);
        let again = Journal::open(dir.path());
        assert!(again.is_ok(), "the file is a sound journal");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_write_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let committer = Committer::start(Arc::clone(&journal), Arc::default());
        // Another connection drops the jobs table: every write fails, with the journal named.
        let other = rusqlite::Connection::open(journal.path()).unwrap();
        other.execute_batch("DROP TABLE jobs").unwrap();
        let err = committer.update(1, 0, JobState::new("k".into())).await.unwrap_err();
        assert!(err.to_string().contains(&journal.path().display().to_string()), "{err}");
        let err = committer.insert(source("a.jpg"), JobState::new("k".into())).await.unwrap_err();
        assert!(err.to_string().contains("jobs"), "the reason is kept: {err}");
    }
}
