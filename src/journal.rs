//! The durable job journal: one SQLite file (WAL, fully synced commits) in the state folder.
//!
//! Every state change is committed before the side effect that depends on it, so after a crash
//! the journal says exactly what may have happened (see [`crate::job`] for the restart rules).
//! Only unfinished jobs are loaded at start, through an index, so a journal with a million
//! finished jobs opens as fast as an empty one. A journal that SQLite cannot read stops the
//! daemon with a clear error; it is never replaced.

use std::collections::BTreeMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::job::{JobState, StateName};
pub use crate::source::Source;
use crate::source::Stamp;

pub const FILE_NAME: &str = "journal.sqlite";
/// 1: jobs. 2: `latest` marks each file's newest job, and `file_counts` (kept by triggers)
/// counts files by the state of their newest job, so counting needs no scan. 3: each job's
/// `history` (its states with their times), files counted per inbox, and the newest jobs of
/// each state indexed by id (the dashboard's pages).
const SCHEMA_VERSION: i64 = 3;

/// A job's row id.
pub type JobId = i64;

/// One job as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub source: Source,
    pub state: JobState,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// The server's progress figure (0..100) as last recorded, while the job is at the server.
    pub progress: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal {path} is damaged ({detail}). It was left untouched. Move it aside to keep it for \
         inspection, then start again (jobs in flight will be forgotten and their files processed anew)"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the journal {path} cannot be written ({detail}); check that the state folder is writable by retouchd's user"
    )]
    NotWritable { path: PathBuf, detail: String },
    #[error("the journal {path} was written by a newer retouchd (schema {found}, this one knows {SCHEMA_VERSION})")]
    TooNew { path: PathBuf, found: i64 },
    #[error("journal error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal entry {id} cannot be read: {detail}")]
    BadRow { id: JobId, detail: String },
    /// A batch this write was part of failed (the first write of the batch has the full error).
    #[error("journal error on {path}: {detail}")]
    Batch { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// The journal: one connection writes; a second one reads.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
    reader: Option<Mutex<Connection>>,
    /// The schema of the file (a read-only journal may be older than this version).
    schema: i64,
}

/// Now, in Unix milliseconds (the journal's timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn path_of(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// A new job's history starts with its first state at offset 0 (see [`Step`]).
const INSERT: &str = "INSERT INTO jobs (inbox, rel_path, size, mtime_ns, state, data, created_at, updated_at, history)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8 || '0;')";

fn insert_row(
    stmt: &mut rusqlite::CachedStatement<'_>,
    source: &Source,
    state: &JobState,
    now: i64,
) -> rusqlite::Result<()> {
    let data = serde_json::to_string(state).expect("job states serialize");
    let name = state.name().as_str();
    let size = source.stamp.size as i64;
    let code = step_code(state.name());
    stmt.execute(params![
        bytes(&source.inbox),
        bytes(&source.rel_path),
        size,
        source.stamp.mtime_ns,
        name,
        data,
        now,
        code
    ])
    .map(drop)
}

/// A new state clears the progress figure (it belongs to one stay at the server) and is added
/// to the job's history with its offset from the job's creation.
const UPDATE: &str = "UPDATE jobs SET state = ?2, data = ?3, updated_at = ?4, progress = NULL,
                      history = history || ?5 || (?4 - created_at) || ';' WHERE id = ?1";

fn update_row(stmt: &mut rusqlite::CachedStatement<'_>, id: JobId, state: &JobState, now: i64) -> rusqlite::Result<()> {
    let data = serde_json::to_string(state).expect("job states serialize");
    stmt.execute(params![id, state.name().as_str(), data, now, step_code(state.name())]).map(drop)
}

/// One entry of a job's history: a state it entered, and when (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub state: StateName,
    pub at: i64,
}

/// A state's one-letter code in the `history` column (`a` for the first of [`StateName::ALL`]).
/// The column is a list of `<code><milliseconds since creation>;`, about 7 bytes a step.
fn step_code(state: StateName) -> String {
    let index = StateName::ALL.iter().position(|s| *s == state).unwrap_or(0);
    char::from(b'a' + index as u8).to_string()
}

/// Reads a `history` column back; an entry this version cannot read is skipped.
fn parse_history(history: &str, created_at: i64) -> Vec<Step> {
    history
        .split(';')
        .filter_map(|entry| {
            let mut chars = entry.chars();
            let code = chars.next()?;
            let index = (code as u32).checked_sub(u32::from(b'a'))? as usize;
            let state = *StateName::ALL.get(index)?;
            let offset: i64 = chars.as_str().parse().ok()?;
            Some(Step { state, at: created_at + offset })
        })
        .collect()
}

/// Which jobs a page of the dashboard lists (see [`Journal::page`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in these states (all when empty).
    pub states: Vec<StateName>,
    /// Only files whose path below the inbox contains this (ASCII letters in either case).
    pub name: Option<String>,
    /// Only jobs older than this one (the previous page's last id).
    pub before: Option<JobId>,
    pub limit: usize,
}

const PROGRESS: &str = "UPDATE jobs SET progress = ?2 WHERE id = ?1";

/// One write of a batch (see [`Journal::write_batch`]).
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Insert(&'a Source, &'a JobState),
    Update(JobId, &'a JobState),
    /// The server's progress figure for a job at the server (losing it costs nothing).
    Progress(JobId, f64),
}

const SELECT: &str = "SELECT id, inbox, rel_path, size, mtime_ns, data, created_at, updated_at, progress FROM jobs";

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Journal> {
        let path = state_dir.join(FILE_NAME);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        let mut journal = Journal { path: path.clone(), conn: Mutex::new(conn), reader: None, schema: 0 };
        journal.schema = journal.prepare(true)?;
        // A second connection for reads: with WAL they see every committed write and need not
        // wait for a commit's sync to disk.
        let read_flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let reader = Connection::open_with_flags(&path, read_flags).map_err(|e| classify(&path, e))?;
        reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| classify(&path, e))?;
        journal.reader = Some(Mutex::new(reader));
        Ok(journal)
    }

    /// Opens an existing journal for reading only (for `retouchd status`).
    pub fn open_read_only(state_dir: &Path) -> Result<Journal> {
        let path = state_dir.join(FILE_NAME);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        let mut journal = Journal { path, conn: Mutex::new(conn), reader: None, schema: 0 };
        journal.schema = journal.prepare(false)?;
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection for queries (the writer's, for a read-only journal).
    fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.as_ref().unwrap_or(&self.conn).lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: rusqlite::Error) -> JournalError {
        classify(&self.path, e)
    }

    /// Checks the file, and (when writable) creates or migrates its schema. Returns the schema.
    fn prepare(&self, writable: bool) -> Result<i64> {
        let mut conn = self.lock();
        // Reading the schema is where a file that is not a database shows itself.
        let _: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| classify(&self.path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| classify(&self.path, e))?;
        let read_version = |conn: &Connection| -> Result<Option<i64>> {
            let has_meta: bool = conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'", [], |r| {
                    r.get::<_, i64>(0).map(|n| n > 0)
                })
                .map_err(|e| classify(&self.path, e))?;
            if !has_meta {
                return Ok(None);
            }
            conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))
                .optional()
                .map_err(|e| classify(&self.path, e))
        };
        if !writable {
            return Ok(read_version(&conn)?.unwrap_or(1));
        }
        let terminal = StateName::terminal_sql_list();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS jobs (
                 id INTEGER PRIMARY KEY,
                 inbox BLOB NOT NULL,
                 rel_path BLOB NOT NULL,
                 size INTEGER NOT NULL,
                 mtime_ns INTEGER NOT NULL,
                 state TEXT NOT NULL,
                 data TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL,
                 progress REAL
             );
             CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs(state) WHERE state NOT IN ({terminal});
             CREATE INDEX IF NOT EXISTS jobs_by_source ON jobs(inbox, rel_path);"
        ))
        .map_err(|e| classify(&self.path, e))?;
        match read_version(&conn)? {
            None => {
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema', 1)", [])
                    .map_err(|e| classify(&self.path, e))?;
                self.migrate_to_2(&mut conn)?;
                self.migrate_to_3(&mut conn)?;
            }
            Some(1) => {
                self.migrate_to_2(&mut conn)?;
                self.migrate_to_3(&mut conn)?;
            }
            Some(2) => self.migrate_to_3(&mut conn)?,
            Some(v) if v > SCHEMA_VERSION => return Err(JournalError::TooNew { path: self.path.clone(), found: v }),
            Some(_) => {}
        }
        Ok(SCHEMA_VERSION)
    }

    /// Schema 1 → 2, in one transaction: mark each file's newest job, count files by its state,
    /// and keep both up to date with triggers from now on. Reads the whole journal once (about
    /// a second per million jobs).
    fn migrate_to_2(&self, conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(
            "ALTER TABLE jobs ADD COLUMN latest INTEGER NOT NULL DEFAULT 1;
             UPDATE jobs SET latest = 0 WHERE id NOT IN (SELECT max(id) FROM jobs GROUP BY inbox, rel_path);
             CREATE TABLE file_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
             INSERT INTO file_counts (state, n) SELECT state, count(*) FROM jobs WHERE latest = 1 GROUP BY state;
             CREATE INDEX jobs_latest ON jobs(state, updated_at) WHERE latest = 1;
             -- A new job supersedes its file's earlier ones and counts in its state.
             CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
                 UPDATE jobs SET latest = 0
                  WHERE inbox = NEW.inbox AND rel_path = NEW.rel_path AND latest = 1 AND id <> NEW.id;
                 INSERT INTO file_counts (state, n) VALUES (NEW.state, 1)
                     ON CONFLICT (state) DO UPDATE SET n = n + 1;
             END;
             CREATE TRIGGER jobs_uncounted_when_superseded AFTER UPDATE OF latest ON jobs
             WHEN OLD.latest = 1 AND NEW.latest = 0 BEGIN
                 UPDATE file_counts SET n = n - 1 WHERE state = OLD.state;
             END;
             CREATE TRIGGER jobs_recounted_on_state AFTER UPDATE OF state ON jobs
             WHEN OLD.latest = 1 AND NEW.latest = 1 AND OLD.state <> NEW.state BEGIN
                 UPDATE file_counts SET n = n - 1 WHERE state = OLD.state;
                 INSERT INTO file_counts (state, n) VALUES (NEW.state, 1)
                     ON CONFLICT (state) DO UPDATE SET n = n + 1;
             END;
             UPDATE meta SET value = 2 WHERE key = 'schema';",
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Schema 2 → 3, in one transaction: a `history` column (empty for older jobs: their
    /// timeline is their creation and last change), files counted per inbox and state (the
    /// counts rebuilt from the jobs once), and the newest jobs indexed by state and id in place
    /// of all jobs by state and time.
    fn migrate_to_3(&self, conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(
            "ALTER TABLE jobs ADD COLUMN history TEXT NOT NULL DEFAULT '';
             DROP TRIGGER jobs_counted_on_insert;
             DROP TRIGGER jobs_uncounted_when_superseded;
             DROP TRIGGER jobs_recounted_on_state;
             DROP TABLE file_counts;
             DROP INDEX IF EXISTS jobs_by_state;
             CREATE INDEX jobs_latest_by_id ON jobs(state) WHERE latest = 1;
             CREATE TABLE file_counts (inbox BLOB NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
                                       PRIMARY KEY (inbox, state));
             INSERT INTO file_counts (inbox, state, n)
                 SELECT inbox, state, count(*) FROM jobs WHERE latest = 1 GROUP BY inbox, state;
             CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
                 UPDATE jobs SET latest = 0
                  WHERE inbox = NEW.inbox AND rel_path = NEW.rel_path AND latest = 1 AND id <> NEW.id;
                 INSERT INTO file_counts (inbox, state, n) VALUES (NEW.inbox, NEW.state, 1)
                     ON CONFLICT (inbox, state) DO UPDATE SET n = n + 1;
             END;
             CREATE TRIGGER jobs_uncounted_when_superseded AFTER UPDATE OF latest ON jobs
             WHEN OLD.latest = 1 AND NEW.latest = 0 BEGIN
                 UPDATE file_counts SET n = n - 1 WHERE inbox = OLD.inbox AND state = OLD.state;
             END;
             CREATE TRIGGER jobs_recounted_on_state AFTER UPDATE OF state ON jobs
             WHEN OLD.latest = 1 AND NEW.latest = 1 AND OLD.state <> NEW.state BEGIN
                 UPDATE file_counts SET n = n - 1 WHERE inbox = OLD.inbox AND state = OLD.state;
                 INSERT INTO file_counts (inbox, state, n) VALUES (NEW.inbox, NEW.state, 1)
                     ON CONFLICT (inbox, state) DO UPDATE SET n = n + 1;
             END;
             UPDATE meta SET value = 3 WHERE key = 'schema';",
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records a new job; the state is committed before this returns.
    pub fn insert(&self, source: &Source, state: &JobState) -> Result<JobId> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(INSERT).map_err(|e| self.err(e))?;
        insert_row(&mut stmt, source, state, now_ms()).map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records many jobs in one transaction (imports, and benchmarks that need a big journal).
    pub fn insert_batch<'a>(&self, jobs: impl IntoIterator<Item = (&'a Source, &'a JobState)>) -> Result<()> {
        let writes: Vec<Write<'a>> = jobs.into_iter().map(|(source, state)| Write::Insert(source, state)).collect();
        self.write_batch(&writes).map(drop)
    }

    /// Applies `writes` in order in one transaction: one sync to disk for all of them (none for a
    /// batch of progress figures only). Returns, for each write, the job's id (new for an insert).
    pub fn write_batch(&self, writes: &[Write<'_>]) -> Result<Vec<JobId>> {
        let now = now_ms();
        let mut conn = self.lock();
        let progress_only = writes.iter().all(|w| matches!(w, Write::Progress(..)));
        if progress_only {
            conn.pragma_update(None, "synchronous", "OFF").map_err(|e| self.err(e))?;
        }
        let result = self.write_all(&mut conn, writes, now);
        if progress_only {
            conn.pragma_update(None, "synchronous", "FULL").map_err(|e| self.err(e))?;
        }
        result
    }

    fn write_all(&self, conn: &mut Connection, writes: &[Write<'_>], now: i64) -> Result<Vec<JobId>> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut ids = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Insert(source, state) => {
                    let mut stmt = tx.prepare_cached(INSERT).map_err(|e| self.err(e))?;
                    insert_row(&mut stmt, source, state, now).map_err(|e| self.err(e))?;
                    ids.push(tx.last_insert_rowid());
                }
                Write::Update(id, state) => {
                    let mut stmt = tx.prepare_cached(UPDATE).map_err(|e| self.err(e))?;
                    update_row(&mut stmt, *id, state, now).map_err(|e| self.err(e))?;
                    ids.push(*id);
                }
                Write::Progress(id, progress) => {
                    let mut stmt = tx.prepare_cached(PROGRESS).map_err(|e| self.err(e))?;
                    stmt.execute(params![id, progress]).map_err(|e| self.err(e))?;
                    ids.push(*id);
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// Records a job's new state; committed before this returns.
    pub fn update(&self, id: JobId, state: &JobState) -> Result<()> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(UPDATE).map_err(|e| self.err(e))?;
        update_row(&mut stmt, id, state, now_ms()).map_err(|e| self.err(e))
    }

    fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(JobId, Source, String, i64, i64, Option<f64>)> {
        Ok((
            row.get(0)?,
            Source {
                inbox: path_of(row.get(1)?),
                rel_path: path_of(row.get(2)?),
                stamp: Stamp { size: row.get::<_, i64>(3)? as u64, mtime_ns: row.get(4)? },
            },
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
        ))
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<JobRecord>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params, Self::row).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, source, data, created_at, updated_at, progress) = row.map_err(|e| self.err(e))?;
            let state = serde_json::from_str(&data)
                .map_err(|e| JournalError::BadRow { id, detail: format!("state `{data}`: {e}") })?;
            out.push(JobRecord { id, source, state, created_at, updated_at, progress });
        }
        Ok(out)
    }

    /// Jobs not yet done, failed or rejected, oldest first.
    pub fn unfinished(&self) -> Result<Vec<JobRecord>> {
        self.query(&format!("{SELECT} WHERE state NOT IN ({}) ORDER BY id", StateName::terminal_sql_list()), [])
    }

    /// The newest job for a source path, if any.
    pub fn latest_for(&self, inbox: &Path, rel_path: &Path) -> Result<Option<JobRecord>> {
        let mut rows = self.query(
            &format!("{SELECT} WHERE inbox = ?1 AND rel_path = ?2 ORDER BY id DESC LIMIT 1"),
            params![bytes(inbox), bytes(rel_path)],
        )?;
        Ok(rows.pop())
    }

    pub fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        Ok(self.query(&format!("{SELECT} WHERE id = ?1"), [id])?.pop())
    }

    /// The newest jobs in one state that are also the newest job of their file (a failure whose
    /// file was retried and delivered since is not listed).
    pub fn recent_latest(&self, state: StateName, limit: usize) -> Result<Vec<JobRecord>> {
        let newest = if self.schema >= 2 {
            "latest = 1"
        } else {
            "id = (SELECT max(id) FROM jobs WHERE inbox = j.inbox AND rel_path = j.rel_path)"
        };
        self.query(
            &format!("{SELECT} AS j WHERE state = ?1 AND {newest} ORDER BY updated_at DESC LIMIT ?2"),
            params![state.as_str(), limit as i64],
        )
    }

    /// How many files are in each state, by their newest job (a file that failed, was retried
    /// and was delivered counts once, as done). Read from the counts the journal keeps.
    pub fn file_counts(&self) -> Result<BTreeMap<StateName, u64>> {
        if self.schema >= 2 {
            return self.count_states("SELECT state, sum(n) FROM file_counts GROUP BY state HAVING sum(n) > 0");
        }
        // A journal of schema 1, read by a newer `status`: count the hard way.
        self.count_states(
            "SELECT state, count(*) FROM jobs
             WHERE id IN (SELECT max(id) FROM jobs GROUP BY inbox, rel_path) GROUP BY state",
        )
    }

    /// Whether retouchd has put its marker file in this inbox before.
    pub fn is_marked(&self, inbox: &Path) -> Result<bool> {
        let key = format!("marker:{}", inbox.display());
        let found: Option<i64> = self
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.is_some())
    }

    /// Remembers that this inbox carries retouchd's marker file.
    pub fn mark(&self, inbox: &Path) -> Result<()> {
        let key = format!("marker:{}", inbox.display());
        self.lock()
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, now_ms()])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether a person paused uploads (kept across restarts).
    pub fn held(&self) -> Result<bool> {
        let found: Option<i64> = self
            .read()
            .query_row("SELECT value FROM meta WHERE key = 'held'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.is_some_and(|v| v != 0))
    }

    pub fn set_held(&self, held: bool) -> Result<()> {
        self.lock()
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('held', ?1)", [i64::from(held)])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Everything delivered for sources in `inbox` (result files and folders).
    pub fn outputs_in(&self, inbox: &Path) -> Result<Vec<PathBuf>> {
        let done = self.query(
            &format!("{SELECT} WHERE inbox = ?1 AND state = ?2"),
            params![bytes(inbox), StateName::Done.as_str()],
        )?;
        Ok(done
            .into_iter()
            .flat_map(|j| match j.state {
                JobState::Done { outputs, .. } => outputs,
                _ => Vec::new(),
            })
            .collect())
    }

    /// The newest delivered jobs that came without a finished photo (a render problem), among
    /// the last 10,000 deliveries (so a journal of millions is not read whole).
    pub fn recent_render_errors(&self, limit: usize) -> Result<Vec<JobRecord>> {
        let newest = if self.schema >= 3 { "AND latest = 1 ORDER BY id DESC" } else { "ORDER BY updated_at DESC" };
        self.query(
            &format!(
                "SELECT * FROM ({SELECT} WHERE state = ?1 {newest} LIMIT 10000)
                 WHERE instr(data, '\"render_error\"') > 0 LIMIT ?2"
            ),
            params![StateName::Done.as_str(), limit as i64],
        )
    }

    /// How many files each inbox has in each state, by their newest job (read from the kept
    /// counts; counted from the jobs in a journal older than schema 3).
    pub fn file_counts_by_inbox(&self) -> Result<BTreeMap<PathBuf, BTreeMap<StateName, u64>>> {
        let sql = if self.schema >= 3 {
            "SELECT inbox, state, n FROM file_counts WHERE n > 0"
        } else {
            "SELECT inbox, state, count(*) FROM jobs
             WHERE id IN (SELECT max(id) FROM jobs GROUP BY inbox, rel_path) GROUP BY inbox, state"
        };
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(|e| self.err(e))?;
        let mut counts: BTreeMap<PathBuf, BTreeMap<StateName, u64>> = BTreeMap::new();
        for row in rows {
            let (inbox, name, n) = row.map_err(|e| self.err(e))?;
            let state = stored_state(&name)?;
            counts.entry(path_of(inbox)).or_default().insert(state, n.max(0) as u64);
        }
        Ok(counts)
    }

    /// A page of files by their newest job, newest job first: at most `query.limit` jobs. With
    /// states, each state is read through its index and the pages merged; a name filter reads
    /// jobs newest first until the page is full (so a name that matches nothing reads them all).
    pub fn page(&self, query: &JobQuery) -> Result<Vec<JobRecord>> {
        let newest = if self.schema >= 2 { "latest = 1" } else { "1" };
        let before = query.before.unwrap_or(JobId::MAX);
        let pattern = query.name.as_deref().map(like_pattern).unwrap_or_else(|| "%".into());
        let limit = query.limit as i64;
        let sql_for = |state: bool| {
            format!(
                "{SELECT} WHERE {newest} AND id < ?1 {} AND CAST(rel_path AS TEXT) LIKE ?2 ESCAPE '\\'
                 ORDER BY id DESC LIMIT ?3",
                if state { "AND state = ?4" } else { "" }
            )
        };
        if query.states.is_empty() {
            return self.query(&sql_for(false), params![before, pattern, limit]);
        }
        let mut jobs = Vec::new();
        for state in &query.states {
            jobs.extend(self.query(&sql_for(true), params![before, pattern, limit, state.as_str()])?);
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
        jobs.truncate(query.limit);
        Ok(jobs)
    }

    /// The states a job went through, with their times (for a job of schema 3 or later; an
    /// older one shows its creation and its last change).
    pub fn timeline(&self, id: JobId) -> Result<Vec<Step>> {
        let conn = self.read();
        let column = if self.schema >= 3 { "history" } else { "''" };
        let row: Option<(String, String, i64, i64)> = conn
            .query_row(&format!("SELECT {column}, state, created_at, updated_at FROM jobs WHERE id = ?1"), [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((history, state, created_at, updated_at)) = row else { return Ok(Vec::new()) };
        let steps = parse_history(&history, created_at);
        if !steps.is_empty() {
            return Ok(steps);
        }
        let state = StateName::parse(&state).unwrap_or(StateName::Submitting);
        let mut steps = vec![Step { state: StateName::Submitting, at: created_at }];
        if state != StateName::Submitting {
            steps.push(Step { state, at: updated_at });
        }
        Ok(steps)
    }

    /// How many files were delivered since `since_ms` (Unix milliseconds), by their newest job.
    pub fn delivered_since(&self, since_ms: i64) -> Result<u64> {
        let newest = if self.schema >= 2 { "AND latest = 1" } else { "" };
        self.read()
            .query_row(
                &format!("SELECT count(*) FROM jobs WHERE state = ?1 {newest} AND updated_at >= ?2"),
                params![StateName::Done.as_str(), since_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// The newest delivered job with `output` among its outputs (a scan: for commands, not the
    /// daemon's hot path).
    pub fn job_with_output(&self, output: &Path) -> Result<Option<JobRecord>> {
        let needle =
            serde_json::to_string(output).map_err(|e| JournalError::BadRow { id: 0, detail: e.to_string() })?;
        let jobs = self.query(
            &format!("{SELECT} WHERE state = ?1 AND instr(data, ?2) > 0 ORDER BY id DESC"),
            params![StateName::Done.as_str(), needle],
        )?;
        Ok(jobs
            .into_iter()
            .find(|j| matches!(&j.state, JobState::Done { outputs, .. } if outputs.iter().any(|o| o == output))))
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Result<BTreeMap<StateName, u64>> {
        self.count_states("SELECT state, count(*) FROM jobs GROUP BY state")
    }

    fn count_states(&self, sql: &str) -> Result<BTreeMap<StateName, u64>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.err(e))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let (name, n) = row.map_err(|e| self.err(e))?;
            let state = stored_state(&name)?;
            counts.insert(state, n);
        }
        Ok(counts)
    }
}

/// A state name read from the `state` column; one this version does not know is a bad row.
fn stored_state(name: &str) -> Result<StateName> {
    StateName::parse(name).ok_or_else(|| JournalError::BadRow { id: 0, detail: format!("unknown state `{name}`") })
}

/// `text` as a LIKE pattern that matches it anywhere, with `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn classify(path: &Path, e: rusqlite::Error) -> JournalError {
    use rusqlite::ffi::ErrorCode;
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            JournalError::Corrupt { path, detail: e.to_string() }
        }
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            JournalError::NotWritable { path, detail: e.to_string() }
        }
        _ => JournalError::Sqlite { path, source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> Source {
        Source { inbox: "/in".into(), rel_path: name.into(), stamp: Stamp { size: 10, mtime_ns: 5 } }
    }

    /// The counts as the schema-1 query computes them from the jobs themselves.
    fn counted_the_hard_way(journal: &Journal) -> BTreeMap<StateName, u64> {
        journal
            .count_states(
                "SELECT state, count(*) FROM jobs
                 WHERE id IN (SELECT max(id) FROM jobs GROUP BY inbox, rel_path) GROUP BY state",
            )
            .unwrap()
    }

    #[test]
    fn kept_counts_match_the_jobs_through_random_inserts_retries_and_state_changes() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut ids: Vec<JobId> = Vec::new();
        let states = [
            JobState::Submitting { key: "k".into() },
            JobState::Processing { task_id: "t".into(), host: "h".into() },
            JobState::Failed { reason: "r".into(), moved_to: None },
            JobState::Done { outputs: vec![], moved_to: None, render_error: None },
        ];
        for round in 0..400 {
            match rng.u8(..3) {
                // A new file, or a file sent again (a new job supersedes the old one).
                0 | 1 => {
                    let name = format!("f{}.jpg", rng.usize(..40));
                    let state = &states[rng.usize(..states.len())];
                    // Two inboxes with the same names: each is counted on its own.
                    let src = Source { inbox: if rng.bool() { "/in".into() } else { "/in2".into() }, ..source(&name) };
                    if rng.bool() {
                        ids.push(journal.insert(&src, state).unwrap());
                    } else {
                        let ids_now = journal.write_batch(&[Write::Insert(&src, state)]).unwrap();
                        ids.extend(ids_now);
                    }
                }
                // Any job, newest or superseded, moves on.
                _ if !ids.is_empty() => {
                    let id = ids[rng.usize(..ids.len())];
                    journal.update(id, &states[rng.usize(..states.len())]).unwrap();
                }
                _ => {}
            }
            if round % 50 == 0 {
                assert_eq!(journal.file_counts().unwrap(), counted_the_hard_way(&journal), "round {round}");
            }
        }
        assert_eq!(journal.file_counts().unwrap(), counted_the_hard_way(&journal));
        let per_inbox = journal.file_counts_by_inbox().unwrap();
        let summed = per_inbox.values().flatten().fold(BTreeMap::new(), |mut all: BTreeMap<StateName, u64>, (s, n)| {
            *all.entry(*s).or_default() += n;
            all
        });
        assert_eq!(
            summed.into_iter().filter(|(_, n)| *n > 0).collect::<BTreeMap<_, _>>(),
            counted_the_hard_way(&journal)
        );
        assert_eq!(per_inbox.len(), 2);
        let failed: Vec<JobRecord> = journal.recent_latest(StateName::Failed, 1000).unwrap();
        assert_eq!(failed.len() as u64, counted_the_hard_way(&journal).get(&StateName::Failed).copied().unwrap_or(0));
    }

    #[test]
    fn a_schema_1_journal_is_migrated_once_and_read_as_it_was_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('schema', 1);
                 CREATE TABLE jobs (id INTEGER PRIMARY KEY, inbox BLOB NOT NULL, rel_path BLOB NOT NULL,
                     size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL,
                     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, progress REAL);",
            )
            .unwrap();
            let failed = r#"{"state":"failed","reason":"no face"}"#;
            let done = r#"{"state":"done","outputs":[]}"#;
            for (id, file, state, data) in
                [(1, "a.jpg", "failed", failed), (2, "a.jpg", "done", done), (3, "b.jpg", "failed", failed)]
            {
                conn.execute(
                    "INSERT INTO jobs VALUES (?1, CAST('/in' AS BLOB), CAST(?2 AS BLOB), 1, 1, ?3, ?4, 0, ?1, NULL)",
                    params![id, file, state, data],
                )
                .unwrap();
            }
        }
        // A newer `status` reads the old journal as it is, without changing it.
        let old = Journal::open_read_only(dir.path()).unwrap();
        let expected: BTreeMap<StateName, u64> = [(StateName::Done, 1), (StateName::Failed, 1)].into();
        assert_eq!(old.file_counts().unwrap(), expected);
        assert_eq!(old.recent_latest(StateName::Failed, 10).unwrap().len(), 1);
        drop(old);
        // The daemon migrates it.
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.schema, 3);
        assert_eq!(journal.file_counts().unwrap(), expected);
        journal.insert(&source("b.jpg"), &JobState::Submitting { key: "k".into() }).unwrap();
        let after: BTreeMap<StateName, u64> = [(StateName::Done, 1), (StateName::Submitting, 1)].into();
        assert_eq!(journal.file_counts().unwrap(), after);
        drop(journal);
        assert_eq!(Journal::open(dir.path()).unwrap().file_counts().unwrap(), after, "migrated once");
    }

    #[test]
    fn jobs_round_trip_and_unfinished_ones_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let a = journal.insert(&source("a.jpg"), &JobState::new("k1".into())).unwrap();
        let b = journal.insert(&source("b.jpg"), &JobState::new("k2".into())).unwrap();
        journal
            .update(b, &JobState::Done { outputs: vec!["/out/b.jpg".into()], moved_to: None, render_error: None })
            .unwrap();
        drop(journal);

        let journal = Journal::open(dir.path()).unwrap();
        let unfinished = journal.unfinished().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].id, a);
        assert_eq!(unfinished[0].state, JobState::new("k1".into()));
        assert_eq!(journal.latest_for(Path::new("/in"), Path::new("b.jpg")).unwrap().unwrap().id, b);
        let counts = journal.counts().unwrap();
        assert_eq!((counts[&StateName::Submitting], counts[&StateName::Done]), (1, 1));
    }

    #[test]
    fn a_file_retried_and_delivered_counts_once_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let failed = JobState::Failed { reason: "no face".into(), moved_to: None };
        let first = journal.insert(&source("a.jpg"), &failed).unwrap();
        journal.insert(&source("b.jpg"), &failed).unwrap();
        assert_eq!(journal.recent_latest(StateName::Failed, 10).unwrap().len(), 2);
        journal
            .insert(&source("a.jpg"), &JobState::Done { outputs: vec![], moved_to: None, render_error: None })
            .unwrap();
        let counts = journal.file_counts().unwrap();
        assert_eq!((counts[&StateName::Done], counts[&StateName::Failed]), (1, 1));
        assert_eq!(journal.counts().unwrap()[&StateName::Failed], 2, "every job stays in the journal");
        let failures: Vec<JobId> = journal.recent_latest(StateName::Failed, 10).unwrap().iter().map(|j| j.id).collect();
        assert!(!failures.contains(&first), "a failure delivered since is not listed: {failures:?}");
        assert_eq!(failures.len(), 1);
    }

    #[test]
    fn progress_is_recorded_without_a_sync_and_cleared_by_the_next_state() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let id = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
        let processing = JobState::Processing { task_id: "t".into(), host: "h".into() };
        journal.update(id, &processing).unwrap();
        journal.write_batch(&[Write::Progress(id, 42.0)]).unwrap();
        assert_eq!(journal.get(id).unwrap().unwrap().progress, Some(42.0));
        let sync: i64 = journal.lock().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "full syncs are back on after a progress-only batch");
        journal.update(id, &JobState::Fetching { task_id: "t".into(), host: "h".into() }).unwrap();
        assert_eq!(journal.get(id).unwrap().unwrap().progress, None);
    }

    #[test]
    fn a_batch_lands_in_one_transaction_and_reads_back_like_single_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let done = JobState::Done { outputs: vec!["/out/a.jpg".into()], moved_to: None, render_error: None };
        let waiting = JobState::new("k".into());
        let rows = [(source("a.jpg"), done.clone()), (source("b.jpg"), waiting.clone())];
        journal.insert_batch(rows.iter().map(|(s, j)| (s, j))).unwrap();
        assert_eq!(journal.latest_for(Path::new("/in"), Path::new("a.jpg")).unwrap().unwrap().state, done);
        let unfinished = journal.unfinished().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!((unfinished[0].source.clone(), unfinished[0].state.clone()), (source("b.jpg"), waiting));
    }

    #[test]
    fn each_state_change_is_kept_in_the_jobs_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let id = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
        journal.update(id, &JobState::Processing { task_id: "t".into(), host: "h".into() }).unwrap();
        journal.update(id, &JobState::Failed { reason: "no face".into(), moved_to: None }).unwrap();
        let steps = journal.timeline(id).unwrap();
        let states: Vec<StateName> = steps.iter().map(|s| s.state).collect();
        assert_eq!(states, [StateName::Submitting, StateName::Processing, StateName::Failed]);
        let job = journal.get(id).unwrap().unwrap();
        assert_eq!(steps[0].at, job.created_at);
        assert_eq!(steps[2].at, job.updated_at);
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(journal.timeline(id + 1).unwrap(), vec![], "no such job");
        assert_eq!(
            parse_history("a0;z5;b7;c;", 100),
            vec![Step { state: StateName::Submitting, at: 100 }, Step { state: StateName::Processing, at: 107 }]
        );
    }

    #[test]
    fn pages_list_newest_jobs_of_files_by_state_and_name_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let failed = JobState::Failed { reason: "r".into(), moved_to: None };
        let done = JobState::Done { outputs: vec![], moved_to: None, render_error: None };
        let mut ids = Vec::new();
        for i in 0..25 {
            let state = if i % 5 == 0 { &failed } else { &done };
            ids.push(journal.insert(&source(&format!("Shoot_{i:02}.jpg")), state).unwrap());
        }
        // A file that failed and was then delivered is listed once, as delivered.
        journal.insert(&source("Shoot_00.jpg"), &done).unwrap();
        let page = |states: Vec<StateName>, name: Option<&str>, before, limit| {
            let q = JobQuery { states, name: name.map(str::to_string), before, limit };
            journal.page(&q).unwrap().iter().map(|j| j.source.rel_path.display().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            page(vec![StateName::Failed], None, None, 10),
            ["Shoot_20.jpg", "Shoot_15.jpg", "Shoot_10.jpg", "Shoot_05.jpg"]
        );
        let first = page(vec![], None, None, 10);
        assert_eq!(first[0], "Shoot_00.jpg", "the newest job first");
        let last_id = journal.page(&JobQuery { limit: 10, ..JobQuery::default() }).unwrap()[9].id;
        let second = page(vec![], None, Some(last_id), 100);
        assert_eq!(first.len() + second.len(), 25, "every file once: {first:?} {second:?}");
        assert!(second.iter().all(|n| !first.contains(n)));
        assert_eq!(page(vec![], Some("shoot_1"), None, 100).len(), 10, "case-insensitive part of the name");
        assert_eq!(page(vec![], Some("%"), None, 100).len(), 0, "% is a character, not a wildcard");
        let both = page(vec![StateName::Failed, StateName::Done], None, None, 3);
        assert_eq!(both, ["Shoot_00.jpg", "Shoot_24.jpg", "Shoot_23.jpg"]);
        assert_eq!(journal.delivered_since(0).unwrap(), 21);
        assert_eq!(journal.delivered_since(now_ms() + 60_000).unwrap(), 0);
        let by_inbox = journal.file_counts_by_inbox().unwrap();
        assert_eq!(by_inbox[Path::new("/in")][&StateName::Failed], 4);
        assert_eq!(by_inbox[Path::new("/in")][&StateName::Done], 21);
    }

    #[test]
    fn non_utf8_names_survive() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let name = PathBuf::from(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
        let src = Source { rel_path: name.clone(), ..source("x") };
        journal.insert(&src, &JobState::new("k".into())).unwrap();
        assert_eq!(journal.unfinished().unwrap()[0].source.rel_path, name);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"this is not sqlite, and it is long enough to have a header........").unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("left untouched"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not sqlite, and it is long enough to have a header........"
        );
    }
}
