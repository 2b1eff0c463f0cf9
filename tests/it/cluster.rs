//! Several daemons (nodes) on one PostgreSQL journal and one inbox, as real processes: random
//! SIGKILLs and restarts, one node cut off from the database (a TCP proxy the test controls),
//! and the database restarted mid-run. Every file must be delivered once, charged once, with no
//! duplicate output. Each test starts its own throwaway PostgreSQL server (see
//! `retouchd::testkit`) and prints its figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use retouchd::sim::{SimConfig, Simulator};
use retouchd::testkit::PgServer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::support::*;

/// One inbox, outbox, done and failed folder shared by every node; a state folder and a config
/// per node, all naming one database.
struct Cluster {
    ws: Workspace,
    nodes: Vec<String>,
}

impl Cluster {
    /// `urls`: the database address each node uses (a proxy's, for a node to be cut off).
    fn new(sim: &Simulator, urls: &[String], lease: &str) -> Cluster {
        let ws = Workspace::new(sim, "max_uploads = 4\nmax_in_flight = 32", "");
        let base = std::fs::read_to_string(&ws.config).unwrap();
        let mut nodes = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            let text = base.replace("[state]\ndir = \"state\"", &format!(
                "[state]\ndir = \"state-{name}\"\ndatabase = \"{url}\"\n\n[cluster]\nnode = \"{name}\"\nlease = \"{lease}\""
            ));
            assert_ne!(text, base, "the config template has a [state] section");
            let config = ws.path(&format!("{name}.toml"));
            std::fs::write(&config, text).unwrap();
            std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            nodes.push(name);
        }
        Cluster { ws, nodes }
    }

    fn config(&self, node: usize) -> PathBuf {
        self.ws.path(&format!("{}.toml", self.nodes[node]))
    }

    /// Starts node `node` (`retouchd run`), logging to `<node>-<run>.log`.
    fn start(&self, node: usize, run: u32) -> Daemon {
        let log = std::fs::File::create(self.ws.path(&format!("{}-{run}.log", self.nodes[node]))).unwrap();
        let mut cmd = bin();
        cmd.args(["run", "--config"]).arg(self.config(node)).current_dir(self.ws.dir.path());
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        Daemon(cmd.spawn().expect("retouchd starts"))
    }

    /// `retouchd status --json` as node `node` sees it.
    fn status(&self, node: usize) -> serde_json::Value {
        let mut cmd = bin();
        let out = cmd.args(["status", "--json", "--config"]).arg(self.config(node)).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn drop_files(&self, count: u32) -> Vec<String> {
        (0..count)
            .map(|i| {
                let bytes = distinct_jpeg(i);
                self.ws.drop_file(&format!("set{}/photo {i:03}.jpg", i % 5), &bytes);
                sha256(&bytes)
            })
            .collect()
    }

    /// Waits until every file is in done/ and none is in the inbox.
    async fn wait_all_done(&self, files: usize, limit: Duration) {
        let ok =
            wait_for_or_show(limit, async || self.ws.files("done").len() >= files && self.ws.files("inbox").is_empty())
                .await;
        let last_log = self.ws.log(&format!("{}-0", self.nodes[0]));
        let tail = &last_log[last_log.len().saturating_sub(3000)..];
        assert!(
            ok,
            "not every file reached done/ within {limit:?}: done {}, inbox {:?}, failed {:?}; {}'s log ends:\n{tail}",
            self.ws.files("done").len(),
            self.ws.files("inbox"),
            self.ws.files("failed"),
            self.nodes[0]
        );
    }

    /// Checks exactly-once: every file delivered once (no `name (2)`), every source in done/,
    /// nothing failed, each file charged once. Returns a line of figures.
    fn check_exactly_once(&self, sim: &Simulator, hashes: &[String]) -> String {
        let visible: Vec<String> =
            self.ws.files("outbox").into_iter().filter(|f| !f.contains(".retouchd-staging")).collect();
        // Delivered results; a staged copy left by a node that lost the job (taken over under a
        // new generation) is not an output, and start-up cleaning removes it.
        let results: Vec<&String> = visible.iter().filter(|f| f.ends_with("result.json")).collect();
        let left_staged = self
            .ws
            .files("outbox")
            .iter()
            .filter(|f| f.contains(".retouchd-staging") && f.ends_with("result.json"))
            .count();
        let duplicates: Vec<&String> = visible.iter().filter(|f| f.contains(" (2)")).collect();
        let stats = sim.stats();
        let charged_twice = hashes.iter().filter(|h| stats.charged_by_hash.get(*h).copied().unwrap_or(0) > 1).count();
        let never_charged = hashes.iter().filter(|h| !stats.charged_by_hash.contains_key(*h)).count();
        assert_eq!(results.len(), hashes.len(), "every file delivered once");
        assert!(duplicates.is_empty(), "no output twice: {duplicates:?}");
        assert_eq!(self.ws.files("done").len(), hashes.len(), "every source in done/");
        assert!(self.ws.files("failed").is_empty(), "nothing failed: {:?}", self.ws.files("failed"));
        assert_eq!((charged_twice, never_charged), (0, 0), "each file charged exactly once");
        assert_eq!(stats.charged_starts, hashes.len() as u64, "charged starts = files");
        format!(
            "results {}, duplicates 0, left staged by lost claims {left_staged}, charged starts {}, start requests {}",
            results.len(),
            stats.charged_starts,
            stats.start_requests
        )
    }

    /// Which node delivered how many jobs, from their logs.
    fn deliveries_by_node(&self) -> BTreeMap<String, usize> {
        let mut by_node = BTreeMap::new();
        for entry in std::fs::read_dir(self.ws.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(node) = self.nodes.iter().find(|n| name.starts_with(n.as_str()) && name.ends_with(".log")) {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                *by_node.entry(node.clone()).or_default() +=
                    log.lines().filter(|l| l.contains(" delivered") && l.contains("output=")).count();
            }
        }
        by_node
    }
}

fn stop(daemon: &mut Daemon) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.0.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
async fn three_nodes_with_random_sigkills_deliver_every_file_once_and_charge_it_once() {
    const FILES: u32 = 300;
    const KILLS: u32 = 12;
    let server = PgServer::start(false).expect("a PostgreSQL server");
    let url = server.new_database().unwrap();
    let sim = start_sim(SimConfig { processing_ms: 300, processing_jitter_ms: 2000, delay_ms: 50, ..fast_sim() }).await;
    let cluster = Cluster::new(&sim, &[url.clone(), url.clone(), url], "2s");
    let hashes = cluster.drop_files(FILES);
    let started = Instant::now();
    let mut daemons: Vec<Daemon> = (0..3).map(|n| cluster.start(n, 0)).collect();
    let mut rng = fastrand::Rng::with_seed(13);
    for kill in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(500..2500))).await;
        let victim = rng.usize(..3);
        daemons[victim].kill().unwrap();
        // Sometimes the node stays down for longer than its lease: the others take its jobs over.
        if rng.bool() {
            tokio::time::sleep(Duration::from_millis(4000)).await;
        }
        daemons[victim] = cluster.start(victim, kill);
    }
    cluster.wait_all_done(FILES as usize, Duration::from_secs(240)).await;
    let nodes = cluster.status(0)["nodes"].as_array().cloned().unwrap_or_default();
    for daemon in &mut daemons {
        stop(daemon);
    }
    let figures = cluster.check_exactly_once(&sim, &hashes);
    let took_over: usize = std::fs::read_dir(cluster.ws.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().matches("took over jobs").count())
        .sum();
    println!(
        "cluster: {FILES} files, 3 nodes, {KILLS} SIGKILLs over {:.0?}; {figures}; takeovers {took_over}; outputs published by node {:?}",
        started.elapsed(),
        cluster.deliveries_by_node()
    );
    assert_eq!(nodes.len(), 3, "status shows every node: {nodes:?}");
    assert!(took_over > 0, "some node took over a killed node's jobs");
}

/// A TCP proxy in front of the database whose link the test can cut (every connection closed,
/// new ones refused) and restore.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    cutting: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cutting) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        let (c, n) = (cut.clone(), cutting.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let n = n.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = n.notified() => {}
                    }
                });
            }
        });
        Proxy { addr, cut, cutting }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.cutting.notify_waiters();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
async fn a_node_cut_off_from_the_database_hands_its_jobs_over_and_rejoins_without_a_duplicate() {
    const FILES: u32 = 90;
    let server = PgServer::start(false).expect("a PostgreSQL server");
    let url = server.new_database().unwrap();
    let proxy = Proxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap()).await;
    let proxied = url.replace(&format!(":{}/", server.port()), &format!(":{}/", proxy.addr.port()));
    let sim = start_sim(SimConfig { processing_ms: 2500, processing_jitter_ms: 1500, ..fast_sim() }).await;
    let cluster = Cluster::new(&sim, &[url.clone(), url, proxied], "3s");
    let hashes = cluster.drop_files(FILES);
    let mut daemons: Vec<Daemon> = (0..3).map(|n| cluster.start(n, 0)).collect();
    // Once node C holds a few jobs, pull its plug.
    let c_holds = wait_for("node-c to hold jobs", Duration::from_secs(60), async || {
        let nodes = cluster.status(0)["nodes"].as_array().cloned().unwrap_or_default();
        nodes.iter().find(|n| n["name"] == "node-c").and_then(|n| n["jobs"].as_u64()).filter(|jobs| *jobs >= 5)
    })
    .await;
    proxy.cut(true);
    let cut_at = Instant::now();
    // C's leases run out (A and B may take its jobs over), and C says so in its status file.
    wait_for("node-c's leases to run out", Duration::from_secs(30), async || {
        let nodes = cluster.status(0)["nodes"].as_array().cloned().unwrap_or_default();
        nodes.iter().find(|n| n["name"] == "node-c").filter(|n| n["jobs"] == 0).map(drop)
    })
    .await;
    let handed_over = cut_at.elapsed();
    let said = wait_for("node-c to say the database is unreachable", Duration::from_secs(30), async || {
        let text = std::fs::read_to_string(cluster.ws.path("state-node-c/daemon.json")).ok()?;
        let live: serde_json::Value = serde_json::from_str(&text).ok()?;
        live["database_unreachable"].as_str().map(str::to_string)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut(false);
    wait_for("node-c to rejoin", Duration::from_secs(30), async || {
        cluster.ws.log("node-c-0").contains("the journal database answers again").then_some(())
    })
    .await;
    cluster.wait_all_done(FILES as usize, Duration::from_secs(180)).await;
    let c_log = cluster.ws.log("node-c-0");
    for daemon in &mut daemons {
        stop(daemon);
    }
    let figures = cluster.check_exactly_once(&sim, &hashes);
    let let_go = c_log.matches("another node took this job over").count();
    println!(
        "cut-off: node-c held {c_holds} job(s) when cut; it said \"{said}\"; its leases had run out {:.1?} \
         after the cut (lease 3s); after rejoining it let go of {let_go} job(s); {figures}; outputs published by node {:?}",
        handed_over,
        cluster.deliveries_by_node()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
async fn the_database_restarted_mid_run_pauses_the_nodes_and_loses_nothing() {
    const FILES: u32 = 60;
    let server = PgServer::start(false).expect("a PostgreSQL server");
    let url = server.new_database().unwrap();
    let sim = start_sim(SimConfig { processing_ms: 1500, processing_jitter_ms: 1500, ..fast_sim() }).await;
    let cluster = Cluster::new(&sim, &[url.clone(), url], "3s");
    // Node A serves the dashboard: it lists both nodes.
    let config = std::fs::read_to_string(cluster.config(0)).unwrap();
    std::fs::write(cluster.config(0), format!("[web]\nlisten = \"127.0.0.1:0\"\n{config}")).unwrap();
    let hashes = cluster.drop_files(FILES);
    let mut daemons: Vec<Daemon> = (0..2).map(|n| cluster.start(n, 0)).collect();
    let dashboard = wait_for("node-a's dashboard", Duration::from_secs(30), async || {
        retouchd::daemon::LiveStatus::read(&cluster.ws.path("state-node-a")).and_then(|s| s.dashboard)
    })
    .await;
    let overview = wait_for("both nodes on the dashboard", Duration::from_secs(30), async || {
        let body = reqwest::get(format!("{dashboard}api/overview")).await.ok()?.text().await.ok()?;
        let overview: serde_json::Value = serde_json::from_str(&body).ok()?;
        (overview["nodes"].as_array()?.len() == 2).then_some(overview)
    })
    .await;
    assert_eq!(overview["daemon"]["node"], "node-a");
    let page = reqwest::get(&dashboard).await.unwrap().text().await.unwrap();
    assert!(page.contains("<h2>Nodes</h2>") && page.contains("node-b"), "the overview page lists the nodes");
    wait_for("some deliveries", Duration::from_secs(60), async || (cluster.ws.files("done").len() >= 5).then_some(()))
        .await;
    let done_before = cluster.ws.files("done").len();
    server.stop();
    let stopped = Instant::now();
    let paused = wait_for_or_show(Duration::from_secs(20), async || {
        ["node-a", "node-b"].iter().all(|n| {
            std::fs::read_to_string(cluster.ws.path(&format!("state-{n}/daemon.json")))
                .is_ok_and(|t| t.contains("\"database_unreachable\": \""))
        })
    })
    .await;
    let said_within = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let done_while_down = cluster.ws.files("done").len();
    let down_page = reqwest::get(&dashboard).await.unwrap().text().await.unwrap();
    server.start_again().unwrap();
    cluster.wait_all_done(FILES as usize, Duration::from_secs(180)).await;
    let logs = cluster.ws.log("node-a-0") + &cluster.ws.log("node-b-0");
    for daemon in &mut daemons {
        stop(daemon);
    }
    let figures = cluster.check_exactly_once(&sim, &hashes);
    println!(
        "database restart: {done_before} done before the stop, {done_while_down} when it came back; both nodes said \
         so within {said_within:.1?}; {figures}"
    );
    assert!(paused, "both nodes said the database was unreachable");
    assert!(down_page.contains("Journal database unreachable"), "the dashboard says so too");
    assert!(logs.contains("the journal database answers again"), "the nodes carried on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs (Debian's postgresql); CI installs them"]
async fn migrate_journal_carries_a_single_daemons_history_and_unfinished_jobs_into_the_cluster() {
    let server = PgServer::start(false).expect("a PostgreSQL server");
    let url = server.new_database().unwrap();
    let sim = start_sim(SimConfig { processing_ms: 4000, ..fast_sim() }).await;
    let cluster = Cluster::new(&sim, &[url], "3s");
    // A daemon on its own (the workspace's config: SQLite in state/) delivers two files, and
    // is killed with a third at the server.
    let mut own = cluster.ws.spawn(&[], "single");
    let hashes = cluster.drop_files(2);
    wait_for("two deliveries", Duration::from_secs(60), async || (cluster.ws.files("done").len() == 2).then_some(()))
        .await;
    cluster.ws.drop_file("late.jpg", &distinct_jpeg(500));
    wait_for("the third at the server", Duration::from_secs(30), async || {
        (sim.stats().charged_starts == 3).then_some(())
    })
    .await;
    own.kill().unwrap();
    // Copy its journal into the shared one, then start a node: it resumes the third job.
    let migrate = || {
        let mut cmd = bin();
        cmd.args(["migrate-journal", "--config"]).arg(cluster.config(0)).arg("--from").arg(cluster.ws.path("state"));
        cmd.output().unwrap()
    };
    let check = || {
        let mut cmd = bin();
        let out = cmd.args(["check", "--config"]).arg(cluster.config(0)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let before = check();
    assert!(before.contains("database: answers; no tables yet"), "{before}");
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("copied 3 jobs (1 unfinished"), "{said}");
    let twice = migrate();
    assert!(!twice.status.success(), "a second copy is refused");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("empty journal only"), "it says why");
    let mut node = cluster.start(0, 0);
    cluster.wait_all_done(3, Duration::from_secs(60)).await;
    let after = check();
    assert!(after.contains("1 node(s) known"), "{after}");
    let status = cluster.status(0);
    stop(&mut node);
    let mut all = hashes;
    all.push(sha256(&distinct_jpeg(500)));
    cluster.check_exactly_once(&sim, &all);
    assert_eq!(status["counts"]["done"], 3, "{status}");
}
