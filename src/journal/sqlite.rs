//! The embedded journal: one SQLite file (WAL, fully synced commits) in the state folder, for
//! one daemon. Only unfinished jobs are loaded at start, through an index, so a journal with a million
//! finished jobs opens as fast as an empty one. A journal that SQLite cannot read stops the
//! daemon with a clear error; it is never replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    Copying, Exported, InboxMarks, JobId, JobQueries, JobQuery, JobRecord, JobWrites, JournalError, Leases,
    NoticeBacklog, NoticeClaim, Notices, QueuedNotice, Result, Source, Step, Store, Write, WriteOutcome, bytes,
    delivered_outputs, first_with_output, like_pattern, output_needle, parse_state, path_of, step_code, stored_state,
    timeline_of,
};
use crate::job::{JobState, StateName};
use crate::source::Stamp;
use crate::vocab::now_ms;

pub const FILE_NAME: &str = "journal.sqlite";
/// 1: jobs. 2: `latest` marks each file's newest job, and `file_counts` (kept by triggers)
/// counts files by the state of their newest job, so counting needs no scan. 3: each job's
/// `history` (its states with their times), files counted per inbox, and the newest jobs of
/// each state indexed by id (the dashboard's pages). 4: `notices`, the notifications not yet
/// taken by their receivers.
const SCHEMA_VERSION: i64 = 4;

/// The SQLite journal: one connection writes; a second one reads.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    conn: Mutex<Connection>,
    reader: Option<Mutex<Connection>>,
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
    let data = super::state_data(state).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
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
    let data = super::state_data(state).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    stmt.execute(params![id, state.name().as_str(), data, now, step_code(state.name())]).map(drop)
}

const PROGRESS: &str = "UPDATE jobs SET progress = ?2 WHERE id = ?1";

const SELECT: &str = "SELECT id, inbox, rel_path, size, mtime_ns, data, created_at, updated_at, progress FROM jobs";

impl Sqlite {
    /// Opens (creating if needed) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Sqlite> {
        let path = state_dir.join(FILE_NAME);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        let mut journal = Sqlite { path: path.clone(), conn: Mutex::new(conn), reader: None };
        journal.prepare(true)?;
        // A second connection for reads: with WAL they see every committed write and need not
        // wait for a commit's sync to disk.
        let read_flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let reader = Connection::open_with_flags(&path, read_flags).map_err(|e| classify(&path, e))?;
        reader.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| classify(&path, e))?;
        journal.reader = Some(Mutex::new(reader));
        Ok(journal)
    }

    /// Opens an existing journal for reading only (for `retouchd status`).
    pub fn open_read_only(state_dir: &Path) -> Result<Sqlite> {
        let path = state_dir.join(FILE_NAME);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        let journal = Sqlite { path, conn: Mutex::new(conn), reader: None };
        journal.prepare(false)?;
        Ok(journal)
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
            // Old journals are migrated once, by the daemon's writable open; a reader (`status`)
            // changes nothing, so it asks for that first instead of reading an old layout.
            return match read_version(&conn)?.unwrap_or(1) {
                v if v < SCHEMA_VERSION => Err(JournalError::Outdated { path: self.path.clone(), found: v }),
                v if v > SCHEMA_VERSION => {
                    Err(JournalError::TooNew { path: self.path.clone(), found: v, knows: SCHEMA_VERSION })
                }
                v => Ok(v),
            };
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
                self.migrate_to_4(&mut conn)?;
            }
            Some(1) => {
                self.migrate_to_2(&mut conn)?;
                self.migrate_to_3(&mut conn)?;
                self.migrate_to_4(&mut conn)?;
            }
            Some(2) => {
                self.migrate_to_3(&mut conn)?;
                self.migrate_to_4(&mut conn)?;
            }
            Some(3) => self.migrate_to_4(&mut conn)?,
            Some(v) if v > SCHEMA_VERSION => {
                return Err(JournalError::TooNew { path: self.path.clone(), found: v, knows: SCHEMA_VERSION });
            }
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

    /// Schema 3 → 4: the notifications' outbox (see [`super::Notices`]).
    fn migrate_to_4(&self, conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(
            "CREATE TABLE notices (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, body TEXT NOT NULL,
                                   attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
                                   created_at INTEGER NOT NULL, last_error TEXT);
             CREATE INDEX notices_by_channel ON notices(channel, id);
             UPDATE meta SET value = 4 WHERE key = 'schema';",
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn write_all(&self, conn: &mut Connection, writes: &[Write<'_>], now: i64) -> Result<Vec<WriteOutcome>> {
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut ids = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Insert(source, state) => {
                    let mut stmt = tx.prepare_cached(INSERT).map_err(|e| self.err(e))?;
                    insert_row(&mut stmt, source, state, now).map_err(|e| self.err(e))?;
                    ids.push(Ok(tx.last_insert_rowid()));
                }
                // One daemon writes a local journal: there is no other claim to fence off.
                Write::Update { id, state, .. } => {
                    let mut stmt = tx.prepare_cached(UPDATE).map_err(|e| self.err(e))?;
                    update_row(&mut stmt, *id, state, now).map_err(|e| self.err(e))?;
                    ids.push(Ok(*id));
                }
                Write::Progress(id, progress) => {
                    let mut stmt = tx.prepare_cached(PROGRESS).map_err(|e| self.err(e))?;
                    stmt.execute(params![id, progress]).map_err(|e| self.err(e))?;
                    ids.push(Ok(*id));
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
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
            let state = parse_state(id, &data)?;
            out.push(JobRecord {
                id,
                source,
                state,
                created_at,
                updated_at,
                progress,
                generation: crate::vocab::FIRST_GENERATION,
            });
        }
        Ok(out)
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

impl Store for Sqlite {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl JobWrites for Sqlite {
    /// Applies `writes` in order in one transaction: one sync to disk for all of them (none for a
    /// batch of progress figures only). Returns, for each write, the job's id (new for an insert).
    fn write_batch(&self, writes: &[Write<'_>]) -> Result<Vec<WriteOutcome>> {
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
}

impl JobQueries for Sqlite {
    /// Jobs not yet done, failed or rejected, oldest first.
    fn unfinished(&self) -> Result<Vec<JobRecord>> {
        self.query(&format!("{SELECT} WHERE state NOT IN ({}) ORDER BY id", StateName::terminal_sql_list()), [])
    }

    /// The newest job for a source path, if any.
    fn latest_for(&self, inbox: &Path, rel_path: &Path) -> Result<Option<JobRecord>> {
        let mut rows = self.query(
            &format!("{SELECT} WHERE inbox = ?1 AND rel_path = ?2 ORDER BY id DESC LIMIT 1"),
            params![bytes(inbox), bytes(rel_path)],
        )?;
        Ok(rows.pop())
    }

    fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        Ok(self.query(&format!("{SELECT} WHERE id = ?1"), [id])?.pop())
    }

    /// The newest jobs in one state that are also the newest job of their file (a failure whose
    /// file was retried and delivered since is not listed).
    fn recent_latest(&self, state: StateName, limit: usize) -> Result<Vec<JobRecord>> {
        self.query(
            &format!("{SELECT} WHERE state = ?1 AND latest = 1 ORDER BY updated_at DESC LIMIT ?2"),
            params![state.as_str(), limit as i64],
        )
    }

    /// How many files are in each state, by their newest job (a file that failed, was retried
    /// and was delivered counts once, as done). Read from the counts the journal keeps.
    fn file_counts(&self) -> Result<BTreeMap<StateName, u64>> {
        self.count_states("SELECT state, sum(n) FROM file_counts GROUP BY state HAVING sum(n) > 0")
    }

    /// How many files each inbox has in each state, by their newest job (read from the kept
    /// counts).
    fn file_counts_by_inbox(&self) -> Result<BTreeMap<PathBuf, BTreeMap<StateName, u64>>> {
        let sql = "SELECT inbox, state, n FROM file_counts WHERE n > 0";
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

    /// How many jobs are in each state.
    fn counts(&self) -> Result<BTreeMap<StateName, u64>> {
        self.count_states("SELECT state, count(*) FROM jobs GROUP BY state")
    }

    /// Everything delivered for sources in `inbox` (result files and folders).
    fn outputs_in(&self, inbox: &Path) -> Result<Vec<PathBuf>> {
        let done = self.query(
            &format!("{SELECT} WHERE inbox = ?1 AND state = ?2"),
            params![bytes(inbox), StateName::Done.as_str()],
        )?;
        Ok(delivered_outputs(done))
    }

    /// The newest delivered jobs that came without a finished photo (a render problem), among
    /// the last 10,000 deliveries (so a journal of millions is not read whole).
    fn recent_render_errors(&self, limit: usize) -> Result<Vec<JobRecord>> {
        self.query(
            &format!(
                "SELECT * FROM ({SELECT} WHERE state = ?1 AND latest = 1 ORDER BY id DESC LIMIT 10000)
                 WHERE instr(data, '\"render_error\"') > 0 LIMIT ?2"
            ),
            params![StateName::Done.as_str(), limit as i64],
        )
    }

    /// A page of files by their newest job, newest job first: at most `query.limit` jobs. With
    /// states, each state is read through its index and the pages merged; a name filter reads
    /// jobs newest first until the page is full (so a name that matches nothing reads them all).
    fn page(&self, query: &JobQuery) -> Result<Vec<JobRecord>> {
        let before = query.before.unwrap_or(JobId::MAX);
        let pattern = query.name.as_deref().map(like_pattern).unwrap_or_else(|| "%".into());
        let limit = query.limit as i64;
        let sql_for = |state: bool| {
            format!(
                "{SELECT} WHERE latest = 1 AND id < ?1 {} AND CAST(rel_path AS TEXT) LIKE ?2 ESCAPE '\\'
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

    /// The states a job went through, with their times.
    fn timeline(&self, id: JobId) -> Result<Vec<Step>> {
        let conn = self.read();
        let row: Option<(String, String, i64, i64)> = conn
            .query_row("SELECT history, state, created_at, updated_at FROM jobs WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row
            .map(|(history, state, created_at, updated_at)| timeline_of(&history, &state, created_at, updated_at))
            .unwrap_or_default())
    }

    /// How many files were delivered since `since_ms` (Unix milliseconds), by their newest job.
    fn delivered_since(&self, since_ms: i64) -> Result<u64> {
        self.read()
            .query_row(
                "SELECT count(*) FROM jobs WHERE state = ?1 AND latest = 1 AND updated_at >= ?2",
                params![StateName::Done.as_str(), since_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    fn charge_rows(&self, since_ms: i64) -> Result<Vec<(PathBuf, String, i64)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT inbox, history, created_at FROM jobs WHERE updated_at >= ?1 AND instr(history, ?2) > 0")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_ms, super::charge_code()], |r| {
                Ok((super::path_of(r.get(0)?), r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The newest delivered job with `output` among its outputs (a scan: for commands, not the
    /// daemon's hot path).
    fn job_with_output(&self, output: &Path) -> Result<Option<JobRecord>> {
        let jobs = self.query(
            &format!("{SELECT} WHERE state = ?1 AND instr(data, ?2) > 0 ORDER BY id DESC"),
            params![StateName::Done.as_str(), output_needle(output)?],
        )?;
        Ok(first_with_output(jobs, output))
    }
}

impl InboxMarks for Sqlite {
    /// Whether retouchd has put its marker file in this inbox before.
    fn is_marked(&self, inbox: &Path) -> Result<bool> {
        let key = format!("marker:{}", inbox.display());
        let found: Option<i64> = self
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(found.is_some())
    }

    /// Remembers that this inbox carries retouchd's marker file.
    fn mark(&self, inbox: &Path) -> Result<()> {
        let key = format!("marker:{}", inbox.display());
        self.lock()
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, now_ms()])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn marked_inboxes(&self) -> Result<Vec<PathBuf>> {
        let conn = self.read();
        let mut stmt =
            conn.prepare("SELECT substr(key, 8) FROM meta WHERE key LIKE 'marker:%'").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        rows.map(|r| r.map(PathBuf::from)).collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    fn pause_rows(&self) -> Result<Vec<(String, i64)>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare("SELECT key, value FROM meta WHERE key = 'held' OR key LIKE 'held:%'")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    fn put_pause_row(&self, key: &str, value: Option<i64>) -> Result<()> {
        let conn = self.lock();
        match value {
            Some(v) => conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, v]),
            None => conn.execute("DELETE FROM meta WHERE key = ?1", [key]),
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl Notices for Sqlite {
    fn queue_notices(&self, notices: &[(String, String)]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = now_ms();
        for (channel, body) in notices {
            tx.execute(
                "INSERT INTO notices (channel, body, next_at, created_at) VALUES (?1, ?2, ?3, ?3)",
                params![channel, body, now],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn claim_notice(&self, channel: &str, now_ms: i64, lease_ms: i64) -> Result<NoticeClaim> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let oldest = tx
            .query_row(
                "SELECT id, body, attempts, next_at FROM notices WHERE channel = ?1 ORDER BY id LIMIT 1",
                [channel],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let claim = match oldest {
            None => NoticeClaim::Empty,
            Some((_, _, _, next_at)) if next_at > now_ms => NoticeClaim::Later(next_at),
            Some((id, body, attempts, _)) => {
                tx.execute("UPDATE notices SET next_at = ?2 WHERE id = ?1", params![id, now_ms + lease_ms])
                    .map_err(|e| self.err(e))?;
                NoticeClaim::Due(QueuedNotice { id, channel: channel.to_string(), body, attempts })
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(claim)
    }

    fn notice_sent(&self, id: i64) -> Result<()> {
        self.lock().execute("DELETE FROM notices WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn notice_failed(&self, id: i64, retry_at: i64, error: &str) -> Result<()> {
        self.lock()
            .execute(
                "UPDATE notices SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, retry_at, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn notice_backlog(&self) -> Result<Vec<NoticeBacklog>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare(
                "SELECT channel, count(*), min(created_at),
                        (SELECT last_error FROM notices o WHERE o.channel = n.channel ORDER BY id LIMIT 1)
                   FROM notices n GROUP BY channel ORDER BY channel",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(NoticeBacklog {
                    channel: r.get(0)?,
                    waiting: r.get::<_, i64>(1)?.max(0) as u64,
                    oldest_at: r.get(2)?,
                    last_error: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }
}

/// A local journal has one node: the defaults (no leases).
impl Leases for Sqlite {}

impl Copying for Sqlite {
    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<Exported>> {
        let ids_and_histories: Vec<(JobId, String)> = {
            let conn = self.read();
            let mut stmt = conn
                .prepare("SELECT id, history FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))?
        };
        let Some(last) = ids_and_histories.last().map(|(id, _)| *id) else { return Ok(Vec::new()) };
        let jobs = self.query(&format!("{SELECT} WHERE id > ?1 AND id <= ?2 ORDER BY id"), params![after, last])?;
        Ok(jobs.into_iter().zip(ids_and_histories).map(|(job, (_, history))| Exported { job, history }).collect())
    }

    fn import(&self, jobs: &[Exported]) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO jobs (inbox, rel_path, size, mtime_ns, state, data, created_at, updated_at, progress, history)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(|e| self.err(e))?;
            for Exported { job, history } in jobs {
                let data = super::state_data(&job.state)
                    .map_err(|e| JournalError::BadRow { id: job.id, detail: e.to_string() })?;
                stmt.execute(params![
                    bytes(&job.source.inbox),
                    bytes(&job.source.rel_path),
                    job.source.stamp.size as i64,
                    job.source.stamp.mtime_ns,
                    job.state.name().as_str(),
                    data,
                    job.created_at,
                    job.updated_at,
                    job.progress,
                    history
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
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
        _ => JournalError::Database { path, detail: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> Source {
        Source { inbox: "/in".into(), rel_path: name.into(), stamp: Stamp { size: 10, mtime_ns: 5 } }
    }

    #[test]
    fn a_schema_1_journal_is_migrated_once_by_the_daemon_and_a_reader_changes_nothing() {
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
        // A newer `status` changes nothing: it asks for the daemon to migrate the journal first.
        let before = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let err = Sqlite::open_read_only(dir.path()).map(drop).unwrap_err();
        assert!(matches!(err, JournalError::Outdated { found: 1, .. }), "{err}");
        assert!(err.to_string().contains("retouchd run"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), before, "left as it was");
        let expected: BTreeMap<StateName, u64> = [(StateName::Done, 1), (StateName::Failed, 1)].into();
        // The daemon migrates it.
        let journal = Sqlite::open(dir.path()).unwrap();
        let schema: i64 =
            journal.lock().query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).unwrap();
        assert_eq!(schema, SCHEMA_VERSION);
        assert_eq!(journal.file_counts().unwrap(), expected);
        journal.insert(&source("b.jpg"), &JobState::Submitting { key: "k".into() }).unwrap();
        let after: BTreeMap<StateName, u64> = [(StateName::Done, 1), (StateName::Submitting, 1)].into();
        assert_eq!(journal.file_counts().unwrap(), after);
        drop(journal);
        assert_eq!(Sqlite::open(dir.path()).unwrap().file_counts().unwrap(), after, "migrated once");
        let reader = Sqlite::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.file_counts().unwrap(), after, "a reader reads the migrated journal");
    }

    #[test]
    fn progress_is_recorded_without_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Sqlite::open(dir.path()).unwrap();
        let id = journal.insert(&source("a.jpg"), &JobState::new("k".into())).unwrap();
        journal.write_batch(&[Write::Progress(id, 42.0)]).unwrap();
        assert_eq!(journal.get(id).unwrap().unwrap().progress, Some(42.0));
        let sync: i64 = journal.lock().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "full syncs are back on after a progress-only batch");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"this is not sqlite, and it is long enough to have a header........").unwrap();
        let err = Sqlite::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("left untouched"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not sqlite, and it is long enough to have a header........"
        );
    }
}
