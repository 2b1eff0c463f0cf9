//! The shared journal: a PostgreSQL database several daemons (nodes) use at once.
//!
//! A new job is a claim on one version of a file: a unique index over the watch, the path and
//! the file's size and time among unfinished jobs lets exactly one node's insert through, and a
//! delivered version is not claimed again. Each job names the node that holds it, a lease
//! (database time, renewed by [`Store::renew`]) and a generation. A node whose lease ran out
//! (it died, or lost the database) has its jobs taken over ([`Store::take_over`], `FOR UPDATE
//! SKIP LOCKED`, the generation raised); every later write carries the generation it was made
//! under and is refused once that is stale, so a node that lost a job can change nothing of it.
//!
//! The connections are [`connection`]'s. The schema is created and migrated here: versioned,
//! forward-only, each step in one transaction under an advisory lock, so nodes starting together
//! migrate once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postgres::types::ToSql;
use postgres::{Client, Row};

use super::{
    Copying, Exported, InboxMarks, JobId, JobQueries, JobQuery, JobRecord, JobWrites, JournalError, Leases, NodeInfo,
    NoticeBacklog, NoticeClaim, Notices, QueuedNotice, Result, Source, Step, Store, Write, WriteOutcome, bytes,
    delivered_outputs, first_with_output, like_pattern, output_needle, parse_state, path_of, step_code, stored_state,
    timeline_of,
};
use crate::config::ClusterConfig;
use crate::job::{JobState, StateName};
use crate::source::Stamp;
use crate::vocab::now_ms;

mod connection;

use connection::{Connection, Failure};

/// The schema steps, in order; step N brings the database to version N+1.
const MIGRATIONS: &[&str] = &[SCHEMA_1, SCHEMA_2];
/// The version this retouchd writes.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// Serializes schema changes between nodes starting at once (an arbitrary constant).
const MIGRATION_LOCK: i64 = 0x7265_746f_7563_6864;

const SCHEMA_1: &str = "
CREATE FUNCTION retouchd_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    inbox bytea NOT NULL,
    rel_path bytea NOT NULL,
    size bigint NOT NULL,
    mtime_ns bigint NOT NULL,
    state text NOT NULL,
    data text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    progress double precision,
    latest boolean NOT NULL DEFAULT true,
    history text NOT NULL DEFAULT '',
    owner text,
    generation bigint NOT NULL DEFAULT 1,
    lease_until bigint NOT NULL DEFAULT 0
);
-- One unfinished job per version of a file across the cluster: the claim.
CREATE UNIQUE INDEX jobs_claim ON jobs (inbox, rel_path, size, mtime_ns) WHERE state NOT IN (@TERMINAL@);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state NOT IN (@TERMINAL@);
CREATE INDEX jobs_by_source ON jobs (inbox, rel_path, id);
CREATE INDEX jobs_latest_by_id ON jobs (state, id) WHERE latest;
-- Files per inbox and state, kept in one share per writer (a node, or an import) so that nodes
-- never wait on each other's counts; the count is the sum of the shares (one may go negative).
CREATE TABLE file_counts (
    shard text NOT NULL,
    inbox bytea NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (shard, inbox, state)
);
CREATE FUNCTION retouchd_shard() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('retouchd.shard', true), '') $$;
CREATE TABLE nodes (
    name text PRIMARY KEY,
    host text NOT NULL,
    pid bigint NOT NULL,
    started_at bigint NOT NULL,
    heartbeat bigint NOT NULL
);
-- A new job supersedes its file's earlier ones and counts in its state.
CREATE FUNCTION jobs_counted_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    UPDATE jobs SET latest = false
     WHERE inbox = NEW.inbox AND rel_path = NEW.rel_path AND latest AND id <> NEW.id;
    INSERT INTO file_counts (shard, inbox, state, n) VALUES (retouchd_shard(), NEW.inbox, NEW.state, 1)
        ON CONFLICT (shard, inbox, state) DO UPDATE SET n = file_counts.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_counted_on_insert();
CREATE FUNCTION jobs_uncounted_when_superseded() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    INSERT INTO file_counts (shard, inbox, state, n) VALUES (retouchd_shard(), OLD.inbox, OLD.state, -1)
        ON CONFLICT (shard, inbox, state) DO UPDATE SET n = file_counts.n - 1;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_uncounted_when_superseded AFTER UPDATE OF latest ON jobs
    FOR EACH ROW WHEN (OLD.latest AND NOT NEW.latest) EXECUTE FUNCTION jobs_uncounted_when_superseded();
CREATE FUNCTION jobs_recounted_on_state() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    INSERT INTO file_counts (shard, inbox, state, n) VALUES (retouchd_shard(), OLD.inbox, OLD.state, -1)
        ON CONFLICT (shard, inbox, state) DO UPDATE SET n = file_counts.n - 1;
    INSERT INTO file_counts (shard, inbox, state, n) VALUES (retouchd_shard(), NEW.inbox, NEW.state, 1)
        ON CONFLICT (shard, inbox, state) DO UPDATE SET n = file_counts.n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_recounted_on_state AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.latest AND NEW.latest AND OLD.state <> NEW.state)
    EXECUTE FUNCTION jobs_recounted_on_state();
";

/// The notifications' outbox (see [`super::Notices`]).
const SCHEMA_2: &str = "
CREATE TABLE notices (
    id bigserial PRIMARY KEY,
    channel text NOT NULL,
    body text NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    next_at bigint NOT NULL,
    created_at bigint NOT NULL,
    last_error text
);
CREATE INDEX notices_by_channel ON notices (channel, id);
";

const COLUMNS: &str = "id, inbox, rel_path, size, mtime_ns, data, created_at, updated_at, progress, generation";

/// A claim: a new job, unless another node's unfinished job has this version of the file (the
/// unique index) or, for a job to be sent, a delivered job had it.
const INSERT: &str = "INSERT INTO jobs (inbox, rel_path, size, mtime_ns, state, data, created_at, updated_at, history,
                                       owner, generation, lease_until)
    SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8 || '0;', $9, 1, retouchd_now_ms() + $10
     WHERE $5 <> 'submitting' OR NOT EXISTS (
         SELECT 1 FROM jobs WHERE inbox = $1 AND rel_path = $2 AND size = $3 AND mtime_ns = $4 AND state = 'done')
    ON CONFLICT DO NOTHING
    RETURNING id";

/// A new state, written only under the generation the job is held with.
const UPDATE: &str = "UPDATE jobs SET state = $2, data = $3, updated_at = $4, progress = NULL,
                             history = history || $5 || ($4 - created_at) || ';'
                       WHERE id = $1 AND generation = $6";

/// How a connection uses the shared journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A daemon: one of the nodes.
    Node,
    /// `status`, the dashboard: reads only.
    Reader,
    /// `migrate-journal`: writes jobs, but is no node.
    Admin,
}

/// The PostgreSQL journal.
#[derive(Debug)]
pub struct Postgres {
    /// The database's address without its password (for messages).
    location: PathBuf,
    /// This node (a daemon); `None` for a reader (`status`, the dashboard, `migrate-journal`).
    node: Option<String>,
    lease_ms: i64,
    writer: Connection,
    reader: Connection,
}

impl Postgres {
    /// Connects. A [`Role::Node`] creates or migrates the schema and joins the cluster (refused
    /// while another live daemon on another host uses the same node name); [`Role::Admin`]
    /// creates or migrates the schema only; a [`Role::Reader`] checks it.
    pub fn connect(cluster: &ClusterConfig, role: Role) -> Result<Postgres> {
        let writable = role != Role::Reader;
        let location = PathBuf::from(&cluster.location);
        // Each node counts files in its own share; an import in one of its own.
        let shard = match role {
            Role::Node => cluster.node.clone(),
            _ => format!("import-{}", crate::vocab::host_name()),
        };
        let writer = Connection::open(cluster.database.clone(), location.clone(), "writer", &shard);
        let reader = Connection::open(cluster.database.clone(), location.clone(), "reader", &shard);
        let lease_ms = cluster.lease.as_millis() as i64;
        let node = (role == Role::Node).then(|| cluster.node.clone());
        let journal = Postgres { location, node, lease_ms, writer, reader };
        journal.prepare(writable)?;
        if let Some(node) = journal.node.clone() {
            journal.join(node)?;
        }
        Ok(journal)
    }

    /// Creates or migrates the schema (a node), or checks that it is there and not newer.
    fn prepare(&self, writable: bool) -> Result<()> {
        let location = self.location.clone();
        self.writer.call(move |client| {
            let found = schema_version(client)?;
            if found > SCHEMA_VERSION {
                return Err(Failure::Refused(JournalError::TooNew {
                    path: location.clone(),
                    found,
                    knows: SCHEMA_VERSION,
                }));
            }
            if !writable && found == 0 {
                return Err(Failure::Refused(JournalError::NotSetUp { path: location.clone() }));
            }
            if !writable || found == SCHEMA_VERSION {
                return Ok(());
            }
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS retouchd_schema (version bigint NOT NULL)")?;
            let now: Option<i64> =
                tx.query_opt("SELECT max(version) FROM retouchd_schema", &[])?.and_then(|r| r.get(0));
            let now = now.unwrap_or(0);
            for (index, step) in MIGRATIONS.iter().enumerate().skip(now as usize) {
                tx.batch_execute(&step.replace("@TERMINAL@", &StateName::terminal_sql_list()))?;
                tx.execute("INSERT INTO retouchd_schema (version) VALUES ($1)", &[&(index as i64 + 1)])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Registers this node (or renews its record after a restart).
    fn join(&self, node: String) -> Result<()> {
        let (host, pid, lease_ms) = (crate::vocab::host_name(), i64::from(std::process::id()), self.lease_ms);
        let location = self.location.clone();
        self.writer.call(move |client| {
            let mut tx = client.transaction()?;
            let other = tx.query_opt(
                "SELECT host, pid, retouchd_now_ms() - heartbeat FROM nodes WHERE name = $1 FOR UPDATE",
                &[&node],
            )?;
            if let Some(row) = other {
                let (other_host, other_pid, age): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
                // Another host renewing, or another live process of this one (a second daemon
                // with another state folder and the same default name).
                let same_host_alive = other_host == host
                    && other_pid != pid
                    && u32::try_from(other_pid).is_ok_and(crate::lock::is_running);
                if (other_host != host || same_host_alive) && age < lease_ms {
                    return Err(Failure::Refused(JournalError::Database {
                        path: location.clone(),
                        detail: format!(
                            "the node name `{node}` is in use by a live daemon on {other_host} (heartbeat {}s ago); \
                             give each daemon its own cluster.node",
                            age / 1000
                        ),
                    }));
                }
            }
            tx.execute(
                "INSERT INTO nodes (name, host, pid, started_at, heartbeat)
                 VALUES ($1, $2, $3, retouchd_now_ms(), retouchd_now_ms())
                 ON CONFLICT (name) DO UPDATE SET host = $2, pid = $3, started_at = retouchd_now_ms(),
                                                  heartbeat = retouchd_now_ms()",
                &[&node, &host, &pid],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn me(&self) -> Option<String> {
        self.node.clone()
    }

    /// Runs a query that returns jobs, on the reader.
    fn jobs(&self, sql: String, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Result<Vec<JobRecord>> {
        let rows = self.reader.call(move |client| {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            Ok(client.query(&sql, &refs)?)
        })?;
        rows.iter().map(record).collect()
    }

    fn count_states(&self, sql: &'static str) -> Result<BTreeMap<StateName, u64>> {
        let rows = self.reader.call(move |client| Ok(client.query(sql, &[])?))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let (name, n): (String, i64) = (row.get(0), row.get(1));
            counts.insert(stored_state(&name)?, n.max(0) as u64);
        }
        Ok(counts)
    }
}

fn schema_version(client: &mut Client) -> std::result::Result<i64, Failure> {
    let exists: bool = client.query_one("SELECT to_regclass('retouchd_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> = client.query_one("SELECT max(version) FROM retouchd_schema", &[])?.get(0);
    Ok(version.unwrap_or(0))
}

/// A job row (selected with [`COLUMNS`]).
fn record(row: &Row) -> Result<JobRecord> {
    let id: JobId = row.get(0);
    let data: String = row.get(5);
    Ok(JobRecord {
        id,
        source: Source {
            inbox: path_of(row.get(1)),
            rel_path: path_of(row.get(2)),
            stamp: Stamp { size: row.get::<_, i64>(3).max(0) as u64, mtime_ns: row.get(4) },
        },
        state: parse_state(id, &data)?,
        created_at: row.get(6),
        updated_at: row.get(7),
        progress: row.get(8),
        generation: row.get(9),
    })
}

fn unfinished_sql() -> String {
    format!("state NOT IN ({})", StateName::terminal_sql_list())
}

impl Store for Postgres {
    fn path(&self) -> &Path {
        &self.location
    }
}

impl JobWrites for Postgres {
    fn write_batch(&self, writes: &[Write<'_>]) -> Result<Vec<WriteOutcome>> {
        enum Owned {
            Insert(Source, JobState),
            Update(JobId, i64, JobState),
            Progress(JobId, f64),
        }
        let owned: Vec<Owned> = writes
            .iter()
            .map(|w| match *w {
                Write::Insert(source, state) => Owned::Insert(source.clone(), state.clone()),
                Write::Update { id, generation, state } => Owned::Update(id, generation, state.clone()),
                Write::Progress(id, progress) => Owned::Progress(id, progress),
            })
            .collect();
        let (node, lease_ms) = (self.me(), self.lease_ms);
        self.writer.call(move |client| {
            let now = now_ms();
            let mut tx = client.transaction()?;
            let insert = tx.prepare(INSERT)?;
            let update = tx.prepare(UPDATE)?;
            // Claims in one order on every node (by file), so that two nodes claiming the same
            // files in one batch each never wait on each other in a circle.
            let mut order: Vec<usize> = (0..owned.len()).collect();
            order.sort_by(|a, b| match (&owned[*a], &owned[*b]) {
                (Owned::Insert(x, _), Owned::Insert(y, _)) => {
                    (&x.inbox, &x.rel_path, x.stamp.mtime_ns).cmp(&(&y.inbox, &y.rel_path, y.stamp.mtime_ns))
                }
                (Owned::Insert(..), _) => std::cmp::Ordering::Less,
                (_, Owned::Insert(..)) => std::cmp::Ordering::Greater,
                _ => a.cmp(b),
            });
            let mut outcomes: Vec<Option<WriteOutcome>> = (0..owned.len()).map(|_| None).collect();
            for index in order {
                let write = &owned[index];
                outcomes[index] = Some(match write {
                    Owned::Insert(source, state) => {
                        let data = match super::state_data(state) {
                            Ok(data) => data,
                            Err(e) => {
                                outcomes[index] = Some(Err(JournalError::BadRow {
                                    id: 0,
                                    detail: format!("{}: {e}", source.path().display()),
                                }));
                                continue;
                            }
                        };
                        let row = tx.query_opt(
                            &insert,
                            &[
                                &bytes(&source.inbox),
                                &bytes(&source.rel_path),
                                &(source.stamp.size as i64),
                                &source.stamp.mtime_ns,
                                &state.name().as_str(),
                                &data,
                                &now,
                                &step_code(state.name()),
                                &node,
                                &lease_ms,
                            ],
                        )?;
                        match row {
                            Some(row) => Ok(row.get(0)),
                            None => Err(JournalError::Taken { file: source.path() }),
                        }
                    }
                    Owned::Update(id, generation, state) => {
                        let data = match super::state_data(state) {
                            Ok(data) => data,
                            Err(e) => {
                                outcomes[index] = Some(Err(JournalError::BadRow { id: *id, detail: e.to_string() }));
                                continue;
                            }
                        };
                        let code = step_code(state.name());
                        let n = tx.execute(&update, &[id, &state.name().as_str(), &data, &now, &code, generation])?;
                        if n == 1 { Ok(*id) } else { Err(JournalError::LostLease { id: *id }) }
                    }
                    Owned::Progress(id, progress) => {
                        tx.execute("UPDATE jobs SET progress = $2 WHERE id = $1", &[id, progress])?;
                        Ok(*id)
                    }
                });
            }
            tx.commit()?;
            Ok(outcomes.into_iter().map(|o| o.expect("every write has an outcome")).collect())
        })
    }
}

impl JobQueries for Postgres {
    fn unfinished(&self) -> Result<Vec<JobRecord>> {
        self.jobs(format!("SELECT {COLUMNS} FROM jobs WHERE {} ORDER BY id", unfinished_sql()), vec![])
    }

    fn latest_for(&self, inbox: &Path, rel_path: &Path) -> Result<Option<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE inbox = $1 AND rel_path = $2 ORDER BY id DESC LIMIT 1");
        Ok(self.jobs(sql, vec![Box::new(bytes(inbox)), Box::new(bytes(rel_path))])?.pop())
    }

    fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        Ok(self.jobs(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), vec![Box::new(id)])?.pop())
    }

    fn recent_latest(&self, state: StateName, limit: usize) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE state = $1 AND latest ORDER BY updated_at DESC LIMIT $2");
        self.jobs(sql, vec![Box::new(state.as_str().to_string()), Box::new(limit.min(i64::MAX as usize) as i64)])
    }

    fn file_counts(&self) -> Result<BTreeMap<StateName, u64>> {
        self.count_states("SELECT state, sum(n)::bigint FROM file_counts GROUP BY state HAVING sum(n) > 0")
    }

    fn file_counts_by_inbox(&self) -> Result<BTreeMap<PathBuf, BTreeMap<StateName, u64>>> {
        let rows = self.reader.call(|client| {
            Ok(client.query(
                "SELECT inbox, state, sum(n)::bigint FROM file_counts GROUP BY inbox, state HAVING sum(n) > 0",
                &[],
            )?)
        })?;
        let mut counts: BTreeMap<PathBuf, BTreeMap<StateName, u64>> = BTreeMap::new();
        for row in rows {
            let (inbox, name, n): (Vec<u8>, String, i64) = (row.get(0), row.get(1), row.get(2));
            counts.entry(path_of(inbox)).or_default().insert(stored_state(&name)?, n.max(0) as u64);
        }
        Ok(counts)
    }

    fn counts(&self) -> Result<BTreeMap<StateName, u64>> {
        self.count_states("SELECT state, count(*) FROM jobs GROUP BY state")
    }

    fn outputs_in(&self, inbox: &Path) -> Result<Vec<PathBuf>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE inbox = $1 AND state = 'done'");
        Ok(delivered_outputs(self.jobs(sql, vec![Box::new(bytes(inbox))])?))
    }

    fn recent_render_errors(&self, limit: usize) -> Result<Vec<JobRecord>> {
        let sql = format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM jobs WHERE state = 'done' AND latest ORDER BY id DESC LIMIT 10000) AS d
              WHERE strpos(data, '\"render_error\"') > 0 LIMIT $1"
        );
        self.jobs(sql, vec![Box::new(limit as i64)])
    }

    fn page(&self, query: &JobQuery) -> Result<Vec<JobRecord>> {
        let before = query.before.unwrap_or(JobId::MAX);
        let pattern = query.name.as_deref().map(like_pattern).unwrap_or_else(|| "%".into());
        let limit = query.limit.min(i64::MAX as usize) as i64;
        // ASCII letters in either case, as SQLite's LIKE; names that are not UTF-8 are read as Latin-1.
        let name = "convert_from(rel_path, 'LATIN1') ILIKE $2 ESCAPE '\\'";
        if query.states.is_empty() {
            let sql =
                format!("SELECT {COLUMNS} FROM jobs WHERE latest AND id < $1 AND {name} ORDER BY id DESC LIMIT $3");
            return self.jobs(sql, vec![Box::new(before), Box::new(pattern), Box::new(limit)]);
        }
        let mut jobs = Vec::new();
        for state in &query.states {
            let sql = format!(
                "SELECT {COLUMNS} FROM jobs WHERE latest AND state = $4 AND id < $1 AND {name} ORDER BY id DESC LIMIT $3"
            );
            let params: Vec<Box<dyn ToSql + Sync + Send>> = vec![
                Box::new(before),
                Box::new(pattern.clone()),
                Box::new(limit),
                Box::new(state.as_str().to_string()),
            ];
            jobs.extend(self.jobs(sql, params)?);
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
        jobs.truncate(query.limit);
        Ok(jobs)
    }

    fn timeline(&self, id: JobId) -> Result<Vec<Step>> {
        let row = self.reader.call(move |client| {
            Ok(client.query_opt("SELECT history, state, created_at, updated_at FROM jobs WHERE id = $1", &[&id])?)
        })?;
        Ok(row
            .map(|r| timeline_of(&r.get::<_, String>(0), &r.get::<_, String>(1), r.get(2), r.get(3)))
            .unwrap_or_default())
    }

    fn charge_rows(&self, since_ms: i64) -> Result<Vec<(PathBuf, String, i64)>> {
        let code = super::charge_code();
        self.reader.call(move |client| {
            let rows = client.query(
                "SELECT inbox, history, created_at FROM jobs WHERE updated_at >= $1 AND position($2 in history) > 0",
                &[&since_ms, &code],
            )?;
            Ok(rows.iter().map(|r| (super::path_of(r.get(0)), r.get(1), r.get(2))).collect())
        })
    }

    fn delivered_since(&self, since_ms: i64) -> Result<u64> {
        self.reader.call(move |client| {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM jobs WHERE state = 'done' AND latest AND updated_at >= $1",
                    &[&since_ms],
                )?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn job_with_output(&self, output: &Path) -> Result<Option<JobRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE state = 'done' AND strpos(data, $1) > 0 ORDER BY id DESC");
        Ok(first_with_output(self.jobs(sql, vec![Box::new(output_needle(output)?)])?, output))
    }
}

impl InboxMarks for Postgres {
    fn is_marked(&self, inbox: &Path) -> Result<bool> {
        let key = format!("marker:{}", inbox.display());
        self.reader.call(move |client| Ok(client.query_opt("SELECT 1 FROM meta WHERE key = $1", &[&key])?.is_some()))
    }

    fn mark(&self, inbox: &Path) -> Result<()> {
        let key = format!("marker:{}", inbox.display());
        self.writer.call(move |client| {
            client.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
                &[&key, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn marked_inboxes(&self) -> Result<Vec<PathBuf>> {
        let rows = self
            .reader
            .call(|client| Ok(client.query("SELECT substr(key, 8) FROM meta WHERE key LIKE 'marker:%'", &[])?))?;
        Ok(rows.iter().map(|r| PathBuf::from(r.get::<_, String>(0))).collect())
    }

    fn pause_rows(&self) -> Result<Vec<(String, i64)>> {
        self.reader.call(|client| {
            let rows = client.query("SELECT key, value FROM meta WHERE key = 'held' OR key LIKE 'held:%'", &[])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn put_pause_row(&self, key: &str, value: Option<i64>) -> Result<()> {
        let key = key.to_string();
        self.writer.call(move |client| {
            match value {
                Some(v) => client.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
                    &[&key, &v],
                )?,
                None => client.execute("DELETE FROM meta WHERE key = $1", &[&key])?,
            };
            Ok(())
        })
    }
}

impl Notices for Postgres {
    fn queue_notices(&self, notices: &[(String, String)]) -> Result<()> {
        let notices = notices.to_vec();
        self.writer.call(move |client| {
            let mut tx = client.transaction()?;
            for (channel, body) in &notices {
                tx.execute(
                    "INSERT INTO notices (channel, body, next_at, created_at)
                     VALUES ($1, $2, retouchd_now_ms(), retouchd_now_ms())",
                    &[channel, body],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The oldest row is locked while it is looked at, so two nodes never both claim it (and
    /// neither skips to a younger one: each channel stays in order).
    fn claim_notice(&self, channel: &str, now_ms: i64, lease_ms: i64) -> Result<NoticeClaim> {
        let channel = channel.to_string();
        self.writer.call(move |client| {
            let mut tx = client.transaction()?;
            let oldest = tx.query_opt(
                "SELECT id, body, attempts, next_at FROM notices WHERE channel = $1 ORDER BY id LIMIT 1 FOR UPDATE",
                &[&channel],
            )?;
            let claim = match oldest {
                None => NoticeClaim::Empty,
                Some(row) if row.get::<_, i64>(3) > now_ms => NoticeClaim::Later(row.get(3)),
                Some(row) => {
                    let id: i64 = row.get(0);
                    tx.execute("UPDATE notices SET next_at = $2 WHERE id = $1", &[&id, &(now_ms + lease_ms)])?;
                    NoticeClaim::Due(QueuedNotice {
                        id,
                        channel: channel.clone(),
                        body: row.get(1),
                        attempts: row.get(2),
                    })
                }
            };
            tx.commit()?;
            Ok(claim)
        })
    }

    fn notice_sent(&self, id: i64) -> Result<()> {
        self.writer.call(move |client| {
            client.execute("DELETE FROM notices WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn notice_failed(&self, id: i64, retry_at: i64, error: &str) -> Result<()> {
        let error = error.to_string();
        self.writer.call(move |client| {
            client.execute(
                "UPDATE notices SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
                &[&id, &retry_at, &error],
            )?;
            Ok(())
        })
    }

    fn notice_backlog(&self) -> Result<Vec<NoticeBacklog>> {
        self.reader.call(|client| {
            let rows = client.query(
                "SELECT channel, count(*), min(created_at),
                        (SELECT last_error FROM notices o WHERE o.channel = n.channel ORDER BY id LIMIT 1)
                   FROM notices n GROUP BY channel ORDER BY channel",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| NoticeBacklog {
                    channel: r.get(0),
                    waiting: r.get::<_, i64>(1).max(0) as u64,
                    oldest_at: r.get(2),
                    last_error: r.get(3),
                })
                .collect())
        })
    }
}

impl Copying for Postgres {
    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<Exported>> {
        let sql = format!("SELECT {COLUMNS}, history FROM jobs WHERE id > $1 ORDER BY id LIMIT $2");
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.reader.call(move |client| Ok(client.query(&sql, &[&after, &limit])?))?;
        rows.iter().map(|r| Ok(Exported { job: record(r)?, history: r.get(10) })).collect()
    }

    fn import(&self, jobs: &[Exported]) -> Result<()> {
        let jobs = jobs.to_vec();
        self.writer.call(move |client| {
            let mut tx = client.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO jobs (inbox, rel_path, size, mtime_ns, state, data, created_at, updated_at, progress,
                                   history, owner, generation, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 1, 0)",
            )?;
            for Exported { job, history } in &jobs {
                let data = super::state_data(&job.state)
                    .map_err(|e| Failure::Refused(JournalError::BadRow { id: job.id, detail: e.to_string() }))?;
                tx.execute(
                    &insert,
                    &[
                        &bytes(&job.source.inbox),
                        &bytes(&job.source.rel_path),
                        &(job.source.stamp.size as i64),
                        &job.source.stamp.mtime_ns,
                        &job.state.name().as_str(),
                        &data,
                        &job.created_at,
                        &job.updated_at,
                        &job.progress,
                        history,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

impl Leases for Postgres {
    fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    fn resume_mine(&self) -> Result<Vec<JobRecord>> {
        let Some(node) = self.me() else { return self.unfinished() };
        let lease_ms = self.lease_ms;
        let sql = format!(
            "UPDATE jobs SET generation = generation + 1, lease_until = retouchd_now_ms() + $2
              WHERE owner = $1 AND {} RETURNING {COLUMNS}",
            unfinished_sql()
        );
        let rows = self.writer.call(move |client| Ok(client.query(&sql, &[&node, &lease_ms])?))?;
        let mut jobs: Vec<JobRecord> = rows.iter().map(record).collect::<Result<_>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    fn renew(&self, running: &[JobId]) -> Result<()> {
        let Some(node) = self.me() else { return Ok(()) };
        let (running, lease_ms) = (running.to_vec(), self.lease_ms);
        let (host, pid) = (crate::vocab::host_name(), i64::from(std::process::id()));
        let sql = format!(
            "UPDATE jobs SET lease_until = retouchd_now_ms() + $3 WHERE id = ANY($1) AND owner = $2 AND {}",
            unfinished_sql()
        );
        self.writer.call(move |client| {
            let mut tx = client.transaction()?;
            tx.execute(&sql, &[&running, &node, &lease_ms])?;
            tx.execute(
                "INSERT INTO nodes (name, host, pid, started_at, heartbeat)
                 VALUES ($1, $2, $3, retouchd_now_ms(), retouchd_now_ms())
                 ON CONFLICT (name) DO UPDATE SET heartbeat = retouchd_now_ms()",
                &[&node, &host, &pid],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn take_over(&self, running: &[JobId], limit: usize) -> Result<Vec<JobRecord>> {
        let Some(node) = self.me() else { return Ok(Vec::new()) };
        let (running, lease_ms, limit) = (running.to_vec(), self.lease_ms, limit.min(100_000) as i64);
        let sql = format!(
            "UPDATE jobs SET owner = $1, generation = generation + 1, lease_until = retouchd_now_ms() + $2
              WHERE id IN (SELECT id FROM jobs WHERE {} AND lease_until < retouchd_now_ms() AND NOT (id = ANY($3))
                           ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
              RETURNING {COLUMNS}",
            unfinished_sql()
        );
        let rows = self.writer.call(move |client| Ok(client.query(&sql, &[&node, &lease_ms, &running, &limit])?))?;
        let mut jobs: Vec<JobRecord> = rows.iter().map(record).collect::<Result<_>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    fn holds(&self, job: &JobRecord, margin_ms: i64) -> Result<bool> {
        let Some(node) = self.me() else { return Ok(true) };
        let (id, generation) = (job.id, job.generation);
        self.writer.call(move |client| {
            let row = client.query_opt(
                "SELECT 1 FROM jobs WHERE id = $1 AND owner = $2 AND generation = $3
                    AND lease_until >= retouchd_now_ms() + $4",
                &[&id, &node, &generation, &margin_ms],
            )?;
            Ok(row.is_some())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let sql = format!(
            "SELECT n.name, n.host, n.pid, n.started_at, n.heartbeat,
                    (SELECT count(*) FROM jobs j WHERE j.owner = n.name AND j.{} AND j.lease_until >= retouchd_now_ms())
               FROM nodes n ORDER BY n.name",
            unfinished_sql()
        );
        let rows = self.reader.call(move |client| Ok(client.query(&sql, &[])?))?;
        Ok(rows
            .iter()
            .map(|r| NodeInfo {
                name: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                started_at: r.get(3),
                heartbeat: r.get(4),
                jobs: r.get::<_, i64>(5).max(0) as u64,
            })
            .collect())
    }

    fn leave(&self) {
        let Some(node) = self.me() else { return };
        let sql = format!("UPDATE jobs SET lease_until = 0 WHERE owner = $1 AND {}", unfinished_sql());
        let left = self.writer.call(move |client| {
            client.execute(&sql, &[&node])?;
            Ok(())
        });
        if let Err(e) = left {
            tracing::warn!(error = %e, "cannot release this node's jobs; other nodes take them over after the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{PgServer, cluster_config, execute};
    use std::time::Duration;

    fn node(url: &str, name: &str, lease: Duration) -> Journal {
        Journal::for_cluster(&cluster_config(url, name, lease), true).unwrap()
    }

    fn database() -> String {
        PgServer::shared().expect("a PostgreSQL server for the tests").new_database().unwrap()
    }

    fn source(name: &str, mtime_ns: i64) -> Source {
        Source { inbox: "/nas/in".into(), rel_path: name.into(), stamp: Stamp { size: 10, mtime_ns } }
    }

    fn done() -> JobState {
        JobState::Done { outputs: vec![], moved_to: None, render_error: None, findings: None }
    }

    use super::super::Journal;

    #[test]
    #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
    fn a_version_of_a_file_is_claimed_by_one_node_and_never_again_once_delivered() {
        let url = database();
        let (a, b) = (node(&url, "a", Duration::from_secs(30)), node(&url, "b", Duration::from_secs(30)));
        let id = a.insert(&source("x.jpg", 1), &JobState::new("k1".into())).unwrap();
        let taken = b.insert(&source("x.jpg", 1), &JobState::new("k2".into())).unwrap_err();
        assert!(matches!(taken, JournalError::Taken { .. }), "{taken}");
        // In a batch, only the refused write fails.
        let other = source("y.jpg", 1);
        let outcomes = b
            .write_batch(&[
                Write::Insert(&source("x.jpg", 1), &JobState::new("k3".into())),
                Write::Insert(&other, &done()),
            ])
            .unwrap();
        assert!(outcomes[0].is_err() && outcomes[1].is_ok(), "{outcomes:?}");
        let job = a.get(id).unwrap().unwrap();
        a.update(&job, &done()).unwrap();
        let again = b.insert(&source("x.jpg", 1), &JobState::new("k4".into())).unwrap_err();
        assert!(matches!(again, JournalError::Taken { .. }), "a delivered version is not paid for again: {again}");
        b.insert(&source("x.jpg", 2), &JobState::new("k5".into())).expect("a new version is a new job");
    }

    #[test]
    #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
    fn a_silent_nodes_jobs_are_taken_over_and_its_late_writes_refused() {
        let url = database();
        let lease = Duration::from_millis(300);
        let (a, b) = (node(&url, "a", lease), node(&url, "b", lease));
        let id = a.insert(&source("x.jpg", 1), &JobState::new("k1".into())).unwrap();
        let held = a.get(id).unwrap().unwrap();
        assert_eq!(held.generation, 1);
        assert!(a.holds(&held, 0).unwrap());
        assert!(b.take_over(&[], 10).unwrap().is_empty(), "a fresh lease is not taken");
        a.renew(&[id]).unwrap();
        std::thread::sleep(lease + Duration::from_millis(100));
        assert!(!a.holds(&held, 0).unwrap(), "the lease ran out");
        let taken = b.take_over(&[], 10).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].id, taken[0].generation), (id, 2));
        assert_eq!(taken[0].state, JobState::new("k1".into()), "the same Idempotency-Key");
        assert!(b.take_over(&[], 10).unwrap().is_empty(), "taken once");
        // The old holder can neither write nor publish, nor renew the lease back.
        let refused = a.update(&held, &done()).unwrap_err();
        assert!(matches!(refused, JournalError::LostLease { id: i } if i == id), "{refused}");
        a.renew(&[id]).unwrap();
        assert!(!a.holds(&held, 0).unwrap());
        assert!(b.holds(&taken[0], 0).unwrap());
        b.update(&taken[0], &done()).unwrap();
        let nodes = b.nodes().unwrap();
        assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
    fn a_restarted_node_resumes_its_own_jobs_under_a_new_generation_and_leaving_frees_them() {
        let url = database();
        let lease = Duration::from_secs(30);
        let a = node(&url, "a", lease);
        let id = a.insert(&source("x.jpg", 1), &JobState::new("k1".into())).unwrap();
        drop(a);
        let a = node(&url, "a", lease);
        let mine = a.resume_mine().unwrap();
        assert_eq!((mine.len(), mine[0].id, mine[0].generation), (1, id, 2));
        let b = node(&url, "b", lease);
        assert!(b.resume_mine().unwrap().is_empty(), "not b's");
        assert!(b.take_over(&[], 10).unwrap().is_empty(), "a's lease is fresh");
        assert_eq!(b.nodes().unwrap()[0].jobs, 1);
        a.leave();
        assert_eq!(b.take_over(&[], 10).unwrap().len(), 1, "a clean stop frees its jobs at once");
    }

    #[test]
    #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
    fn a_node_name_in_use_on_another_host_is_refused_and_a_newer_schema_too() {
        let url = database();
        let a = node(&url, "a", Duration::from_secs(30));
        execute(&url, "UPDATE nodes SET host = 'elsewhere' WHERE name = 'a'").unwrap();
        let err = Journal::for_cluster(&cluster_config(&url, "a", Duration::from_secs(30)), true).unwrap_err();
        assert!(err.to_string().contains("cluster.node"), "{err}");
        // Another live process of this host under the same name (pid 1 always lives).
        let host = crate::vocab::host_name().replace('\'', "''");
        execute(&url, &format!("UPDATE nodes SET host = '{host}', pid = 1 WHERE name = 'a'")).unwrap();
        let err = Journal::for_cluster(&cluster_config(&url, "a", Duration::from_secs(30)), true).unwrap_err();
        assert!(err.to_string().contains("cluster.node"), "{err}");
        drop(a);
        execute(&url, "INSERT INTO retouchd_schema (version) VALUES (99)").unwrap();
        let err = Journal::for_cluster(&cluster_config(&url, "b", Duration::from_secs(30)), false).unwrap_err();
        assert!(matches!(err, JournalError::TooNew { found: 99, .. }), "{err}");
        let empty = database();
        let err = Journal::for_cluster(&cluster_config(&empty, "b", Duration::from_secs(30)), false).unwrap_err();
        assert!(err.to_string().contains("start `retouchd run` on a node first"), "{err}");
    }

    #[test]
    fn a_database_that_does_not_answer_is_unreachable_not_an_error_of_the_journal() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://retouchd@127.0.0.1:{port}/nothing");
        let err = Journal::for_cluster(&cluster_config(&url, "a", Duration::from_secs(30)), true).unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("cannot be reached"), "{err}");
    }

    #[test]
    #[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
    fn a_sqlite_journal_is_copied_with_its_history_and_its_unfinished_jobs_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let local = Journal::open(dir.path()).unwrap();
        let first = local.insert(&source("a.jpg", 1), &JobState::new("k1".into())).unwrap();
        let job = local.get(first).unwrap().unwrap();
        local.update(&job, &JobState::Processing { task_id: "t1".into(), host: "h".into() }).unwrap();
        local.update(&job, &done()).unwrap();
        local.insert(&source("b.jpg", 1), &JobState::Processing { task_id: "t2".into(), host: "h".into() }).unwrap();
        local.mark(Path::new("/nas/in")).unwrap();
        let url = database();
        let cluster = cluster_config(&url, "a", Duration::from_secs(30));
        let target = super::super::migrate::target_journal(&cluster).unwrap();
        let mut seen = Vec::new();
        let copied = super::super::migrate::copy(&local, &target, |n| seen.push(n)).unwrap();
        assert_eq!((copied.jobs, copied.unfinished), (2, 1));
        assert_eq!(seen, [2]);
        assert_eq!(target.file_counts().unwrap(), local.file_counts().unwrap());
        assert!(target.is_marked(Path::new("/nas/in")).unwrap());
        let copied_first = target.latest_for(Path::new("/nas/in"), Path::new("a.jpg")).unwrap().unwrap();
        let steps = |j: &Journal, id| j.timeline(id).unwrap().iter().map(|s| s.state).collect::<Vec<_>>();
        assert_eq!(steps(&target, copied_first.id), steps(&local, first));
        assert!(super::super::migrate::copy(&local, &target, |_| {}).is_err(), "copied once");
        let a = node(&url, "a", Duration::from_secs(30));
        let taken = a.take_over(&[], 10).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].state.task().map(|(t, _)| t.to_string()), Some("t2".into()), "the same task id");
    }
}
