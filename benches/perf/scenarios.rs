//! The six scenarios of the benchmark. Each sets up its own rig, runs the real daemon, checks
//! that the work was really done (results delivered, credits charged once), and returns rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use retouchd::sim::SimConfig;

use crate::Row;
use crate::rig::{self, Inbox, Rig, TOKEN, instant_sim, mean, memory_root, quantile, sized_png, small_png};

const MB: f64 = 1e6;

/// Limits the throughput run sets: with a 2 s poll floor, files/s ≤ in-flight / 2 s.
const FAST_IN_FLIGHT: usize = 1024;
const FAST_UPLOADS: usize = 4;

pub fn throughput(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let fast = Some((FAST_IN_FLIGHT, FAST_UPLOADS));
    // The layers alone (the work the ≥ 300 files/s target was set for), then with the default
    // output: the finished photo made and delivered too.
    let mut rows = small_files(runtime, 2000, fast, None, Output::LayersOnly);
    rows.extend(small_files(runtime, 2000, fast, None, Output::Default));
    // The same with the daemon's folders in memory: what the disk costs.
    if let Some(root) = memory_root() {
        rows.extend(small_files(runtime, 2000, fast, Some(root), Output::Default));
    }
    rows.extend(small_files(runtime, 2000, None, None, Output::Default));
    rows.extend(large_files(runtime, 20, 20_000_000));
    rows.push(file_creation_cost());
    rows
}

/// What creating a small file costs on the bench disk (and on tmpfs): the bound of the
/// small-file run, where each job creates five (download, result folder, two layers, result.json).
fn file_creation_cost() -> Row {
    const FILES: usize = 2000;
    let cost = |root: &Path| {
        let dir = tempfile::Builder::new().prefix("creates-").tempdir_in(root).expect("temp folder");
        let start = Instant::now();
        for i in 0..FILES {
            std::fs::write(dir.path().join(format!("f{i}")), [7u8; 300]).expect("small file");
        }
        start.elapsed().as_secs_f64() * 1e6 / FILES as f64
    };
    let disk = cost(&rig::bench_root());
    let value = match memory_root() {
        Some(root) => format!("{disk:.0} µs on disk, {:.0} µs on tmpfs", cost(&root)),
        None => format!("{disk:.0} µs on disk"),
    };
    Row::info("throughput", format!("creating one small file (mean of {FILES}; a job creates 5)"), value)
}

/// What a small-file run delivers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// `[watch.output] flat = "none"`: the server's layers only.
    LayersOnly,
    /// The default: the layers and the finished photo.
    Default,
}

/// `count` small PNGs renamed into one inbox at once; drop to delivered. Folders below `root`
/// if given (a tmpfs), else on the project's disk.
fn small_files(
    runtime: &tokio::runtime::Runtime,
    count: usize,
    limits: Option<(usize, usize)>,
    root: Option<PathBuf>,
    output: Output,
) -> Vec<Row> {
    let rig = match &root {
        Some(root) => Rig::new_in(runtime, instant_sim(), root),
        None => Rig::new(runtime, instant_sim()),
    };
    let (server, label) = match limits {
        Some((in_flight, uploads)) => (
            format!("max_in_flight = {in_flight}\nmax_uploads = {uploads}"),
            format!("max_in_flight {in_flight}, max_uploads {uploads}"),
        ),
        None => (String::new(), "defaults: max_in_flight 64, max_uploads 2".to_string()),
    };
    let extra = match output {
        Output::LayersOnly => "[watch.output]\nflat = \"none\"",
        Output::Default => "",
    };
    let inbox = Inbox { extra, ..Inbox::new("a") };
    let config = rig.config(&format!("poll_interval = \"2s\"\n{server}"), std::slice::from_ref(&inbox));
    let staged = rig.stage("a", (0..count).map(|i| (format!("img-{i:05}.png"), small_png(i))));
    let (daemon, _) = rig.start_daemon(&config);
    let start = Instant::now();
    rig.drop_all("a", &staged);
    let end = rig.wait("every small file delivered", Duration::from_secs(900), || rig.done("a") >= count);
    let seconds = (end - start).as_secs_f64();
    let stats = rig.stats();
    assert_eq!(stats.charged_starts as usize, count, "each file charged once");
    let results = std::fs::read_dir(rig.path("a/outbox")).map_or(0, |d| d.count());
    assert!(results >= count, "a result for every file ({results} of {count})");
    let cpu = daemon.cpu().as_secs_f64();
    daemon.stop();
    let rate = count as f64 / seconds;
    let first = stats.timeline.values().map(|t| t.upload_started_us).min().unwrap_or(0);
    let last = stats.timeline.values().map(|t| t.upload_started_us).max().unwrap_or(0);
    let upload_rate = count as f64 / ((last - first) as f64 / 1e6);
    let place = if root.is_some() { "folders on tmpfs" } else { "folders on disk" };
    let what = match output {
        Output::LayersOnly => "layers only",
        Output::Default => "layers + finished photo",
    };
    let measure = format!(
        "{count} small PNGs, drop to delivered, {what} ({label}; settle {}, poll floor 2 s; {place})",
        inbox.settle
    );
    let mut rows = vec![];
    if limits.is_some() && root.is_none() && output == Output::LayersOnly {
        rows.push(Row::judged(
            "throughput",
            measure,
            format!("{rate:.0} files/s ({seconds:.1} s)"),
            "≥ 300 files/s",
            rate >= 300.0,
        ));
    } else {
        rows.push(Row::info("throughput", measure, format!("{rate:.0} files/s ({seconds:.1} s)")));
    }
    rows.push(Row::info(
        "throughput",
        format!("the same run: uploads started per second (first to last); daemon CPU for the {count} files"),
        format!("{upload_rate:.0} files/s; {:.2} s ({:.2} ms per file)", cpu, cpu * 1000.0 / count as f64),
    ));
    rows
}

/// `count` PNGs of `size` bytes: end to end and upload speed, against `curl` uploading the same files.
fn large_files(runtime: &tokio::runtime::Runtime, count: usize, size: usize) -> Vec<Row> {
    let rig = Rig::new(runtime, instant_sim());
    let config = rig.config("poll_interval = \"2s\"", &[Inbox::new("a")]);
    let staged = rig.stage("a", (0..count).map(|i| (format!("big-{i:02}.png"), sized_png(size))));
    let (daemon, _) = rig.start_daemon(&config);
    let start = Instant::now();
    rig.drop_all("a", &staged);
    let end = rig.wait("every large file delivered", Duration::from_secs(900), || rig.done("a") >= count);
    daemon.stop();
    let total_mb = (count * size) as f64 / MB;
    let end_to_end = total_mb / (end - start).as_secs_f64();
    let stats = rig.stats();
    let first = stats.timeline.values().map(|t| t.upload_started_us).min().unwrap_or(0);
    let last = stats.timeline.values().map(|t| t.created_us).max().unwrap_or(0);
    let upload = total_mb / ((last - first) as f64 / 1e6);
    let each: Vec<f64> = stats
        .timeline
        .values()
        .map(|t| size as f64 / MB / ((t.created_us - t.upload_started_us) as f64 / 1e6))
        .collect();
    let done: Vec<PathBuf> = staged.iter().map(|s| rig.path("a/done").join(s.file_name().unwrap())).collect();
    let mut rows = vec![Row::info(
        "throughput",
        format!("{count} × {} MB PNGs, drop to delivered (settle 500 ms, poll floor 2 s)", size as f64 / MB),
        format!("{end_to_end:.0} MB/s"),
    )];
    match curl_upload(&rig, &done) {
        Some(curl) => rows.push(Row::judged(
            "throughput",
            format!("the same {count} uploads: retouchd (max_uploads 2; median of one upload) vs curl (one at a time)"),
            format!("{upload:.0} MB/s ({:.0} MB/s) vs {curl:.0} MB/s", quantile(&each, 0.5)),
            "≥ half of curl",
            upload >= curl / 2.0,
        )),
        None => rows.push(Row::info(
            "throughput",
            "upload speed (curl not found for comparison)",
            format!("{upload:.0} MB/s"),
        )),
    }
    rows
}

/// Uploads `files` one by one with curl; MB/s, or `None` without curl.
fn curl_upload(rig: &Rig, files: &[PathBuf]) -> Option<f64> {
    let url = format!("{}/retoucher/start", rig.sim.base_url());
    let payload = r#"{"mode":"professional","tasks":[{"Plugin":"Heal","Alpha1":1,"Layer":1}]}"#;
    let mut bytes = 0u64;
    let start = Instant::now();
    for file in files {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--form-string"])
            .arg(format!("token={TOKEN}"))
            .arg("--form-string")
            .arg(format!("payload={payload}"))
            .arg("-F")
            .arg(format!("file=@{}", file.display()))
            .arg(&url)
            .output()
            .ok()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl upload of {}", file.display());
        bytes += std::fs::metadata(file).map_or(0, |m| m.len());
    }
    Some(bytes as f64 / MB / start.elapsed().as_secs_f64())
}

pub fn latency(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let mut rows = pickup(runtime, "notify", 40, Duration::from_millis(150));
    rows.extend(pickup(runtime, "poll", 40, Duration::from_millis(500)));
    rows
}

/// Renames `count` files into the inbox, `spacing` (plus up to 100 ms) apart; the time from each
/// rename to the simulator seeing its upload begin.
fn pickup(runtime: &tokio::runtime::Runtime, mode: &'static str, count: usize, spacing: Duration) -> Vec<Row> {
    let rig = Rig::new(runtime, instant_sim());
    let inbox = Inbox { settle: "1s", mode, ..Inbox::new("a") };
    let config = rig.config("poll_interval = \"2s\"", std::slice::from_ref(&inbox));
    let staged = rig.stage("a", (0..count).map(|i| (format!("lat-{i:03}.png"), small_png(i))));
    let (daemon, _) = rig.start_daemon(&config);
    let mut dropped = HashMap::new();
    for file in &staged {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        dropped.insert(name, rig.drop_in("a", file));
        std::thread::sleep(spacing + Duration::from_millis(fastrand::u64(..100)));
    }
    rig.wait("every upload started", Duration::from_secs(120), || rig.stats().timeline.len() >= count);
    daemon.stop();
    let latencies: Vec<f64> = rig
        .stats()
        .timeline
        .values()
        .filter_map(|t| Some((t.upload_started_us as f64 - *dropped.get(&t.file_name)? as f64) / 1000.0))
        .collect();
    assert_eq!(latencies.len(), count, "every file's upload seen once");
    let (p50, p95) = (quantile(&latencies, 0.5), quantile(&latencies, 0.95));
    let value = format!("p50 {p50:.0} ms, p95 {p95:.0} ms");
    if mode == "notify" {
        let measure = format!("rename into inbox → upload starts, notify mode, settle 1 s ({count} files)");
        vec![Row::judged("latency", measure, value, "p95 ≤ settle + 100 ms = 1100 ms", p95 <= 1100.0)]
    } else {
        let measure = format!("same, scan mode (scan_interval 10 s), settle 1 s ({count} files)");
        vec![Row::info("latency", measure, format!("{value} (bound: settle + up to one scan_interval)"))]
    }
}

pub fn politeness(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    // Processing grows with the payload's tasks and the file's size: 5 s per task, 8 s per MB,
    // plus up to 3 s at random, so these jobs take between 6.6 s and 57 s.
    let sim = SimConfig {
        token: TOKEN.into(),
        processing_ms: 0,
        processing_ms_per_task: 5000,
        processing_ms_per_mb: 8000,
        processing_jitter_ms: 3000,
        ..SimConfig::default()
    };
    let rig = Rig::new(runtime, sim);
    let inboxes: Vec<Inbox> = [("t1", 1), ("t3", 3), ("t6", 6)]
        .into_iter()
        .map(|(name, tasks)| Inbox { tasks, layers: false, ..Inbox::new(name) })
        .collect();
    let config = rig.config("poll_interval = \"2s\"", &inboxes);
    let sizes = [200_000, 1_500_000, 3_000_000];
    fastrand::seed(42);
    let mut plan: Vec<(usize, usize)> = (0..200).map(|i| (i % 3, i / 3 % 3)).collect();
    fastrand::shuffle(&mut plan);
    let staged: Vec<(usize, PathBuf)> = plan
        .iter()
        .enumerate()
        .map(|(n, &(inbox, size))| {
            let name = inboxes[inbox].name;
            (inbox, rig.stage(name, [(format!("job-{n:03}.png"), sized_png(sizes[size]))]).remove(0))
        })
        .collect();
    let (daemon, _) = rig.start_daemon(&config);
    // A shoot arriving over 100 s: one file every 500 ms, in mixed order.
    for (inbox, file) in &staged {
        rig.drop_in(inboxes[*inbox].name, file);
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_done = || inboxes.iter().map(|i| rig.done(i.name)).sum::<usize>() >= staged.len();
    rig.wait("all 200 jobs delivered", Duration::from_secs(900), all_done);
    daemon.stop();
    let stats = rig.stats();
    assert_eq!(stats.charged_starts, 200, "each job charged once");
    let polls: Vec<f64> =
        stats.timeline.keys().map(|id| stats.polls_by_job.get(id).copied().unwrap_or(0) as f64).collect();
    let processing: Vec<f64> = stats.timeline.values().map(|t| t.processing_ms as f64 / 1000.0).collect();
    let delays: Vec<f64> = stats
        .timeline
        .values()
        .map(|t| t.first_get_file_us.unwrap_or(u64::MAX).saturating_sub(t.completed_us) as f64 / 1e6)
        .collect();
    let shares: Vec<f64> = delays.iter().zip(&processing).map(|(d, p)| d / p * 100.0).collect();
    if std::env::var_os("RETOUCHD_BENCH_VERBOSE").is_some() {
        let mut jobs: Vec<_> = stats.timeline.iter().collect();
        jobs.sort_by_key(|(_, t)| t.created_us);
        for (id, t) in jobs {
            let delay = t.first_get_file_us.unwrap_or(0).saturating_sub(t.completed_us) as f64 / 1e6;
            let polls = stats.polls_by_job.get(id).copied().unwrap_or(0);
            eprintln!(
                "   {} {:5.1} s: {polls} polls, fetched {delay:.2} s after completion",
                t.file_name,
                t.processing_ms as f64 / 1e3
            );
        }
    }
    let average_polls = mean(&polls);
    let mean_share = mean(&shares);
    vec![
        Row::info(
            "politeness",
            "200 jobs, 3 payloads × 3 sizes, one every 500 ms; processing (simulated, real time)",
            format!(
                "{:.1}–{:.1} s, mean {:.1} s",
                quantile(&processing, 0.0),
                quantile(&processing, 1.0),
                mean(&processing)
            ),
        ),
        Row::judged(
            "politeness",
            "status requests per job (poll_interval 2 s)",
            format!("mean {average_polls:.2}, p95 {:.0}, max {:.0}", quantile(&polls, 0.95), quantile(&polls, 1.0)),
            "mean < 2.5",
            average_polls < 2.5,
        ),
        Row::judged(
            "politeness",
            "completed on the server → download starts, as a share of processing time",
            format!("mean {mean_share:.1}%, p95 {:.1}% (mean {:.2} s)", quantile(&shares, 0.95), mean(&delays)),
            "mean < 20%",
            mean_share < 20.0,
        ),
    ]
}

/// A batch dropped at once: its makespan (first upload → last download starts) against the ideal
/// (first upload → the last result fetchable: each job fetched the moment the server has it),
/// and the status requests it cost, without and with the completion hook.
pub fn batch(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let mut rows = batch_run(runtime, false);
    rows.extend(batch_run(runtime, true));
    rows
}

fn batch_run(runtime: &tokio::runtime::Runtime, hook: bool) -> Vec<Row> {
    let sim = SimConfig { token: TOKEN.into(), processing_ms: 3000, ..SimConfig::default() };
    let rig = Rig::new(runtime, sim);
    let inbox = Inbox { tasks: 2, layers: false, ..Inbox::new("batch") };
    let server = match hook {
        false => "poll_interval = \"2s\"\nmax_uploads = 4".to_string(),
        true => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port());
            format!(
                "poll_interval = \"2s\"\nmax_uploads = 4\nhook_url = \"http://127.0.0.1:{port}\"\n\n[web]\nlisten = \"127.0.0.1:{port}\""
            )
        }
    };
    let config = rig.config(&server, std::slice::from_ref(&inbox));
    let staged = rig.stage(inbox.name, (0..60).map(|n| (format!("shot-{n:02}.png"), sized_png(200_000))));
    let (daemon, _) = rig.start_daemon(&config);
    rig.drop_all(inbox.name, &staged);
    rig.wait("the batch delivered", Duration::from_secs(300), || rig.done(inbox.name) >= staged.len());
    daemon.stop();
    let stats = rig.stats();
    assert_eq!(stats.charged_starts, 60, "each job charged once");
    let first_upload = stats.timeline.values().map(|t| t.upload_started_us).min().unwrap_or(0);
    let last_completion = stats.timeline.values().map(|t| t.completed_us).max().unwrap_or(0);
    let last_fetch = stats.timeline.values().filter_map(|t| t.first_served_us).max().unwrap_or(0);
    // A result can be fetched once the server has stored it (its store lag after completion).
    let stored_lag_us = SimConfig::default().store_lag_ms * 1000;
    let ideal = (last_completion + stored_lag_us).saturating_sub(first_upload) as f64 / 1e6;
    let makespan = last_fetch.saturating_sub(first_upload) as f64 / 1e6;
    let ratio = makespan / ideal;
    let polls = stats.polls_by_job.values().sum::<u64>() as f64 / 60.0;
    let (what, target, met) = match hook {
        false => ("without the hook", "≤ 1.2x at ≤ 2 requests per job", ratio <= 1.2 && polls <= 2.0),
        true => ("with the completion hook", "≤ 1.1x", ratio <= 1.1),
    };
    vec![Row::judged(
        "batch",
        format!(
            "60 files dropped at once, 3 s processing each, {what} (poll_interval 2 s): makespan / ideal (each result fetched once stored); status requests per job"
        ),
        format!("{makespan:.1} s / {ideal:.1} s = {ratio:.2}x; {polls:.2} per job"),
        target,
        met,
    )]
}

pub fn memory(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let mut rows = round_trip(runtime, 100_000_000);
    rows.extend(waiting_files(runtime, 100_000));
    rows
}

/// One file of `size` bytes up and (as a one-image result of the same size) down again.
fn round_trip(runtime: &tokio::runtime::Runtime, size: usize) -> Vec<Row> {
    let rig = Rig::new(runtime, SimConfig { processing_ms: 1000, ..instant_sim() });
    let config = rig.config("poll_interval = \"2s\"", &[Inbox { tasks: 1, layers: false, ..Inbox::new("a") }]);
    let staged = rig.stage("a", [("huge.png".to_string(), sized_png(size))]);
    let (daemon, _) = rig.start_daemon(&config);
    let idle = daemon.peak_rss_mb();
    rig.drop_in("a", &staged[0]);
    rig.wait("the large file delivered", Duration::from_secs(600), || rig.done("a") >= 1);
    let peak = daemon.peak_rss_mb();
    daemon.stop();
    let result = rig.path("a/outbox/huge.png");
    let delivered = std::fs::metadata(&result).map_or(0, |m| m.len());
    assert_eq!(delivered as usize, size, "the {} MB result delivered whole", size as f64 / MB);
    vec![Row::judged(
        "memory",
        format!(
            "peak RSS, {:.0} MB file uploaded and its {:.0} MB result downloaded",
            size as f64 / MB,
            size as f64 / MB
        ),
        format!("{peak:.1} MB (idle {idle:.1} MB)"),
        "< 40 MB",
        peak < 40.0,
    )]
}

/// `count` files in the inbox at start; the server holds every job for an hour, so all but
/// `max_in_flight` of them wait.
fn waiting_files(runtime: &tokio::runtime::Runtime, count: usize) -> Vec<Row> {
    let rig = Rig::new(runtime, SimConfig { processing_ms: 3_600_000, ..instant_sim() });
    let config = rig.config("poll_interval = \"2s\"", &[Inbox::new("a")]);
    let bytes = small_png(7);
    let inbox = rig.path("a/inbox");
    for i in 0..count {
        std::fs::write(inbox.join(format!("wait-{i:06}.png")), &bytes).expect("inbox file");
    }
    let (daemon, ready) = rig.start_daemon(&config);
    let start = Instant::now();
    let known = || {
        rig.live_status()
            .is_some_and(|live| live.in_flight + live.waiting + (live.done + live.refused) as usize >= count)
    };
    let end = rig.wait("every file queued", Duration::from_secs(600), known);
    std::thread::sleep(Duration::from_secs(2));
    let peak = daemon.peak_rss_mb();
    daemon.stop();
    vec![
        Row::judged(
            "memory",
            format!("peak RSS with {count} files waiting in the inbox"),
            format!("{peak:.1} MB"),
            "< 150 MB",
            peak < 150.0,
        ),
        Row::info(
            "memory",
            format!("{count} waiting files: READY, then all queued (status file every 10 s)"),
            format!("{:.2} s, then {:.0} s", ready.as_secs_f64(), (end - start).as_secs_f64()),
        ),
    ]
}

pub fn startup(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    const JOBS: usize = 1_000_000;
    const FILES: usize = 10_000;
    let rig = Rig::new(runtime, SimConfig { processing_ms: 3_600_000, ..instant_sim() });
    let config = rig.config("poll_interval = \"2s\"", &[Inbox::new("a")]);
    let inbox = rig.path("a/inbox");
    let outbox = rig.path("a/outbox");
    let building = Instant::now();
    rig.million_jobs(JOBS, &inbox, &outbox);
    let journal_mb = std::fs::metadata(rig.path("state/journal.sqlite")).map_or(0, |m| m.len()) as f64 / MB;
    eprintln!("   journal of {JOBS} jobs built in {:.0} s", building.elapsed().as_secs_f64());
    let bytes = small_png(3);
    for i in 0..FILES {
        std::fs::write(inbox.join(format!("new-{i:05}.png")), &bytes).expect("inbox file");
    }
    // The journal and the files come from disk cache, as on a machine that was just running.
    let (daemon, ready) = rig.start_daemon(&config);
    let peak = daemon.peak_rss_mb();
    daemon.stop();
    // `retouchd status` on that journal: the file counts come from the counts the journal keeps.
    let status = rig::status_time(&config);
    vec![
        Row::judged(
            "startup",
            format!("launch → READY, journal of {JOBS} jobs ({journal_mb:.0} MB) and {FILES} new files in the inbox"),
            format!("{:.2} s (peak RSS {peak:.1} MB)", ready.as_secs_f64()),
            "< 2 s",
            ready < Duration::from_secs(2),
        ),
        Row::info(
            "startup",
            "`retouchd status --json` on that journal (whole command, best of 3)",
            format!("{:.0} ms", status.as_secs_f64() * 1000.0),
        ),
    ]
}

pub fn idle(runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let mut rows = idle_cost(runtime, "notify");
    rows.extend(idle_cost(runtime, "poll"));
    rows
}

/// CPU over 60 s of a daemon watching 1,000 files it has already processed (kept in the inbox),
/// from 15 s after the last of them was done.
fn idle_cost(runtime: &tokio::runtime::Runtime, mode: &'static str) -> Vec<Row> {
    const FILES: usize = 1000;
    let rig = Rig::new(runtime, instant_sim());
    let inbox = Inbox { mode, extra: "on_success = \"keep\"", ..Inbox::new("a") };
    let config = rig.config("poll_interval = \"2s\"\nmax_in_flight = 1024", &[inbox]);
    for i in 0..FILES {
        std::fs::write(rig.path("a/inbox").join(format!("kept-{i:04}.png")), small_png(i)).expect("inbox file");
    }
    let (daemon, _) = rig.start_daemon(&config);
    let all_done = || rig.live_status().is_some_and(|live| live.done >= FILES as u64);
    rig.wait("the 1000 files processed", Duration::from_secs(600), all_done);
    // Idle means idle for a while: threads left from the burst end after 10 s unused.
    std::thread::sleep(Duration::from_secs(15));
    let before = daemon.cpu();
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let used = (daemon.cpu() - before).as_secs_f64() * 60.0 / since.elapsed().as_secs_f64();
    let peak = daemon.peak_rss_mb();
    daemon.stop();
    assert_eq!(rig.stats().charged_starts as usize, FILES, "each file charged once, none again while idle");
    let measure = format!("CPU per minute, idle, watching {FILES} processed files, {mode} mode");
    // /proc counts CPU in clock ticks (10 ms).
    let cpu = if used > 0.0 { format!("{used:.2} s") } else { "0 s (no 10 ms clock tick)".to_string() };
    let value = format!("{cpu} (peak RSS {peak:.1} MB)");
    if mode == "notify" {
        vec![Row::judged("idle", measure, value, "< 0.1 s", used < 0.1)]
    } else {
        vec![Row::info("idle", format!("{measure} (full scan every 10 s)"), value)]
    }
}
