//! The shared journal: throughput of one node against three on one PostgreSQL and one inbox
//! (simulator at processing 0), start-up of a node on a journal of 1,000,000 jobs, and what one
//! journal read costs through each thread hop (`journal`). The
//! database is a throwaway PostgreSQL server on this machine, with synced commits as in
//! production (see `retouchd::testkit`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use retouchd::testkit::PgServer;

use crate::Row;
use crate::rig::{self, Daemon, Inbox, Rig, instant_sim, small_png};

pub fn cluster(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let server = match PgServer::start(true) {
        Ok(server) => server,
        Err(e) => return vec![Row::info("cluster", "PostgreSQL for the shared journal", format!("skipped: {e}"))],
    };
    let mut rows = Vec::new();
    let (one, one_usage) = nodes_throughput(runtime, &server, 1);
    let (three, split) = nodes_throughput(runtime, &server, 3);
    rows.push(Row::info(
        "cluster",
        format!(
            "{FILES} small PNGs, drop to delivered, 1 node (defaults: max_in_flight 64, max_uploads 2, poll floor 2 s: \
             bounded by its 64 slots)"
        ),
        format!("{one:.0} files/s ({one_usage})"),
    ));
    rows.push(Row::judged(
        "cluster",
        format!(
            "the same with 3 nodes on one PostgreSQL (synced commits) and one inbox, all on this {}-core machine \
             with the simulator and the database",
            cores()
        ),
        format!("{three:.0} files/s ({:.1}× one node; {split})", three / one),
        "≥ 2× one node",
        three >= 2.0 * one,
    ));
    rows.extend(startup(runtime, &server));
    rows
}

const FILES: usize = 1500;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Config text of node `name` on `url`: the rig's config with its own state folder and `[cluster]`.
fn node_config(rig: &Rig, base: &Path, url: &str, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(base).expect("config");
    let state = rig.path("state");
    let node_state = rig.path(&format!("state-{name}"));
    let text = text.replace(
        &format!("[state]\ndir = \"{}\"\n", state.display()),
        &format!("[state]\ndir = \"{}\"\ndatabase = \"{url}\"\n\n[cluster]\nnode = \"{name}\"\n", node_state.display()),
    );
    assert!(text.contains("[cluster]"), "the rig's config has a [state] section");
    let path = rig.path(&format!("{name}.toml"));
    std::fs::write(&path, text).expect("node config");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    path
}

/// Files per second delivered by `nodes` nodes on a new database, from the drop to the last
/// file in done/.
/// Also says how many files each node delivered.
fn nodes_throughput(runtime: &tokio::runtime::Runtime, server: &PgServer, nodes: usize) -> (f64, String) {
    let rig = Rig::new(runtime, instant_sim());
    let url = server.new_database().expect("a database");
    let inbox = Inbox { extra: "[watch.output]\nflat = \"none\"", ..Inbox::new("a") };
    let base = rig.config("poll_interval = \"2s\"", std::slice::from_ref(&inbox));
    let staged = rig.stage("a", (0..FILES).map(|i| (format!("img-{i:05}.png"), small_png(i))));
    let daemons: Vec<Daemon> = (0..nodes)
        .map(|n| {
            let name = format!("node-{n}");
            rig.start_named(&node_config(&rig, &base, &url, &name), &name).0
        })
        .collect();
    let start = Instant::now();
    rig.drop_all("a", &staged);
    let end = rig.wait("every file delivered", Duration::from_secs(900), || rig.done("a") >= FILES);
    let seconds = (end - start).as_secs_f64();
    let cpu: f64 = daemons.iter().map(|d| d.cpu().as_secs_f64()).sum();
    for daemon in daemons {
        daemon.stop();
    }
    let split: Vec<String> = (0..nodes)
        .map(|n| {
            let log = std::fs::read_to_string(rig.path(&format!("node-{n}.log"))).unwrap_or_default();
            log.lines().filter(|l| l.contains("state=delivered")).count().to_string()
        })
        .collect();
    let stats = rig.stats();
    assert_eq!(stats.charged_starts as usize, FILES, "each file charged once");
    let usage =
        format!("files per node {}; the daemons used {:.2} of the {} cores", split.join(" / "), cpu / seconds, cores());
    (FILES as f64 / seconds, usage)
}

/// A node starting on a journal of 1,000,000 finished jobs with 10,000 new files waiting.
fn startup(runtime: &tokio::runtime::Runtime, server: &PgServer) -> Vec<Row> {
    const JOBS: i64 = 1_000_000;
    const NEW: usize = 10_000;
    let rig = Rig::new(runtime, retouchd::sim::SimConfig { processing_ms: 3_600_000, ..instant_sim() });
    let url = server.new_database().expect("a database");
    let base = rig.config("poll_interval = \"2s\"", &[Inbox::new("a")]);
    let config = node_config(&rig, &base, &url, "node-0");
    // The schema, made by a node that starts and stops on the empty database.
    let (first, _) = rig.start_named(&config, "schema");
    first.stop();
    let building = Instant::now();
    fill(&url, &rig.path("a/inbox"), &rig.path("a/outbox"), JOBS);
    eprintln!("   PostgreSQL journal of {JOBS} jobs built in {:.0} s", building.elapsed().as_secs_f64());
    let bytes = small_png(3);
    for i in 0..NEW {
        std::fs::write(rig.path("a/inbox").join(format!("new-{i:05}.png")), &bytes).expect("inbox file");
    }
    let (daemon, ready) = rig.start_named(&config, "node-0");
    let peak = daemon.peak_rss_mb();
    daemon.stop();
    let status = rig::status_time(&config);
    vec![
        Row::judged(
            "cluster",
            format!("node launch → READY, PostgreSQL journal of {JOBS} jobs and {NEW} new files in the inbox"),
            format!("{:.2} s (peak RSS {peak:.1} MB)", ready.as_secs_f64()),
            "< 2 s",
            ready < Duration::from_secs(2),
        ),
        Row::info(
            "cluster",
            "`retouchd status --json` on that journal (whole command, best of 3)",
            format!("{:.0} ms", status.as_secs_f64() * 1000.0),
        ),
    ]
}

/// Fills the journal at `url` with `jobs` finished jobs, one a minute up to now, every 50th
/// failed, in one statement on the server (triggers off, the kept counts made once after).
fn fill(url: &str, inbox: &Path, outbox: &Path, jobs: i64) {
    let (url, inbox, outbox) = (url.to_string(), inbox.display().to_string(), outbox.display().to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("bench database");
        let now = retouchd::vocab::now_ms();
        client
            .batch_execute(&format!(
                "ALTER TABLE jobs DISABLE TRIGGER USER;
                 INSERT INTO jobs (inbox, rel_path, size, mtime_ns, state, data, created_at, updated_at, history)
                 SELECT convert_to('{inbox}', 'UTF8'),
                        convert_to(format('2025/shoot-%s/IMG_%s.jpg', lpad((i / 1000)::text, 4, '0'), lpad(i::text, 7, '0')), 'UTF8'),
                        8000000, i,
                        CASE WHEN i % 50 = 49 THEN 'failed' ELSE 'done' END,
                        CASE WHEN i % 50 = 49
                             THEN '{{\"state\":\"failed\",\"reason\":\"the server could not retouch it: no face found\"}}'
                             ELSE format('{{\"state\":\"done\",\"outputs\":[\"{outbox}/2025/shoot-%s/IMG_%s.jpg\"]}}',
                                         lpad((i / 1000)::text, 4, '0'), lpad(i::text, 7, '0')) END,
                        {now} - ({jobs} - i) * 60000 - 30000, {now} - ({jobs} - i) * 60000, 'a0;'
                   FROM generate_series(0::bigint, {jobs} - 1) AS i;
                 ALTER TABLE jobs ENABLE TRIGGER USER;
                 INSERT INTO file_counts (shard, inbox, state, n)
                     SELECT 'bench', inbox, state, count(*) FROM jobs WHERE latest GROUP BY inbox, state;"
            ))
            .expect("bench journal filled");
        client.batch_execute("VACUUM ANALYZE jobs").expect("bench journal analyzed");
    })
    .join()
    .expect("filling thread");
}

/// What a journal read costs from the daemon's async code: called on a blocking thread (as the
/// daemon does, through `spawn_blocking`) against called from a plain thread, for the shared
/// journal (whose calls also cross to the connection's own thread) and for SQLite. Measured to
/// decide whether PostgreSQL's two thread hops per call are worth replacing with an async client.
pub fn journal_calls(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    use retouchd::job::JobState;
    use retouchd::journal::{Journal, Source};
    const CALLS: u32 = 2000;
    let source = |n: u32| Source {
        inbox: PathBuf::from("/in"),
        rel_path: PathBuf::from(format!("{n}.jpg")),
        stamp: retouchd::source::Stamp { size: 1, mtime_ns: 1 },
    };
    let measure = |name: &str, journal: Journal| -> Row {
        let id = journal.insert(&source(1), &JobState::new("key".into())).expect("a job");
        let journal = std::sync::Arc::new(journal);
        let direct = {
            let started = Instant::now();
            for _ in 0..CALLS {
                journal.get(id).expect("a read");
            }
            started.elapsed() / CALLS
        };
        let from_async = runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..CALLS {
                let journal = journal.clone();
                tokio::task::spawn_blocking(move || journal.get(id)).await.expect("joined").expect("a read");
            }
            started.elapsed() / CALLS
        });
        Row::info(
            "journal",
            format!("one job read ({name}), mean of {CALLS}: from a plain thread / from async code via spawn_blocking"),
            format!("{:.0} µs / {:.0} µs", direct.as_secs_f64() * 1e6, from_async.as_secs_f64() * 1e6),
        )
    };
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("a temp folder");
    rows.push(measure("SQLite", Journal::open(dir.path()).expect("a SQLite journal")));
    match PgServer::start(true) {
        Ok(server) => {
            let url = server.new_database().expect("a database");
            let cluster = retouchd::testkit::cluster_config(&url, "bench", Duration::from_secs(30));
            rows.push(measure(
                "PostgreSQL, its connection on a thread of its own",
                Journal::for_cluster(&cluster, true).expect("a shared journal"),
            ));
            // The floor: the same row read by a client on the calling thread (no hop at all).
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("a connection");
            let statement = client.prepare("SELECT data FROM jobs WHERE id = $1").expect("a statement");
            let started = Instant::now();
            for _ in 0..CALLS {
                client.query_opt(&statement, &[&1i64]).expect("a read");
            }
            let floor = started.elapsed() / CALLS;
            rows.push(Row::info(
                "journal",
                format!("the same row read by a client on the calling thread (no hop), mean of {CALLS}"),
                format!("{:.0} µs", floor.as_secs_f64() * 1e6),
            ));
        }
        Err(e) => rows.push(Row::info("journal", "PostgreSQL for the shared journal", format!("skipped: {e}"))),
    }
    rows
}
