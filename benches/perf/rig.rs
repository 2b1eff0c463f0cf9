//! The bench rig: a simulator in this process, a folder layout with a config, the real
//! `retouchd` binary as a child process, and readings of its CPU time and memory from /proc.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use retouchd::daemon::{LIVE_STATUS_FILE, LiveStatus};
use retouchd::sim::{SimConfig, SimStats, Simulator};

pub const TOKEN: &str = "bench-token-0123456789";

/// Plugins for payloads of 1..=6 tasks.
const PLUGINS: [&str; 6] = ["Heal", "Dodge Burn", "Skin Tone", "Eye Brilliance", "White Teeth", "Mattifier"];

/// A simulator knob set with no waiting anywhere.
pub fn instant_sim() -> SimConfig {
    SimConfig { token: TOKEN.into(), processing_ms: 0, completion_lag_ms: 0, store_lag_ms: 0, ..SimConfig::default() }
}

/// One inbox of the config: folders `<name>/{inbox,outbox,done,failed}`.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub name: &'static str,
    pub settle: &'static str,
    /// `notify` or `poll`.
    pub mode: &'static str,
    /// Tasks in the payload; `layers` asks for a ZIP of layers instead of one image.
    pub tasks: usize,
    pub layers: bool,
    /// More `key = value` lines for the watch.
    pub extra: &'static str,
}

impl Inbox {
    pub fn new(name: &'static str) -> Inbox {
        Inbox { name, settle: "500ms", mode: "notify", tasks: 2, layers: true, extra: "" }
    }
}

/// A simulator and a temporary folder tree for one scenario.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    runtime: tokio::runtime::Handle,
}

impl Rig {
    pub fn new(runtime: &tokio::runtime::Runtime, sim: SimConfig) -> Rig {
        Rig::new_in(runtime, sim, &bench_root())
    }

    /// A rig whose folders are below `root`.
    pub fn new_in(runtime: &tokio::runtime::Runtime, sim: SimConfig, root: &Path) -> Rig {
        let dir = tempfile::Builder::new().prefix("retouchd-bench-").tempdir_in(root).expect("temp folder");
        let sim = runtime.block_on(Simulator::start("127.0.0.1:0".parse().unwrap(), sim)).expect("simulator starts");
        Rig { dir, sim, runtime: runtime.handle().clone() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn stats(&self) -> SimStats {
        let _guard = self.runtime.enter();
        self.sim.stats()
    }

    /// Writes `config.toml` with `server` lines added to `[server]` and one `[[watch]]` per inbox.
    pub fn config(&self, server: &str, inboxes: &[Inbox]) -> PathBuf {
        let mut text = format!(
            "[server]\nurl = \"{}\"\nbalance_url = \"{}\"\ntoken = \"{TOKEN}\"\n{server}\n\n[state]\ndir = \"{}\"\n",
            self.sim.base_url(),
            self.sim.balance_url(),
            self.path("state").display()
        );
        for inbox in inboxes {
            for sub in ["inbox", "outbox", "done", "failed"] {
                std::fs::create_dir_all(self.path(&format!("{}/{sub}", inbox.name))).expect("bench folders");
            }
            let layer = u8::from(inbox.layers);
            let tasks: Vec<String> = PLUGINS[..inbox.tasks.clamp(1, PLUGINS.len())]
                .iter()
                .map(|p| format!("{{ Plugin = \"{p}\", Alpha1 = 1, Layer = {layer} }}"))
                .collect();
            let root = self.path(inbox.name);
            text += &format!(
                "\n[[watch]]\ninbox = \"{r}/inbox\"\noutbox = \"{r}/outbox\"\ndone_dir = \"{r}/done\"\n\
                 failed_dir = \"{r}/failed\"\nsettle = \"{}\"\nmode = \"{}\"\n{}\n\n[watch.payload]\n\
                 mode = \"professional\"\ntasks = [ {} ]\n",
                inbox.settle,
                inbox.mode,
                inbox.extra,
                tasks.join(", "),
                r = root.display(),
            );
        }
        std::fs::create_dir_all(self.path("state")).expect("state folder");
        let path = self.path("config.toml");
        std::fs::write(&path, text).expect("config written");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        path
    }

    /// Fills the journal in `state/` with `jobs` delivered jobs of `inbox`, one a minute up to
    /// now (so about 60 in the last hour), every 50th one failed instead.
    pub fn million_jobs(&self, jobs: usize, inbox: &Path, outbox: &Path) {
        use retouchd::job::JobState;
        use retouchd::journal::{Journal, Source};
        let journal = Journal::open(&self.path("state")).expect("journal");
        for chunk in 0..jobs.div_ceil(100_000) {
            let rows: Vec<(Source, JobState)> = (chunk * 100_000..((chunk + 1) * 100_000).min(jobs))
                .map(|i| {
                    let rel = PathBuf::from(format!("2025/shoot-{:04}/IMG_{i:07}.jpg", i / 1000));
                    let source = Source {
                        inbox: inbox.to_path_buf(),
                        rel_path: rel,
                        stamp: retouchd::source::Stamp { size: 8_000_000, mtime_ns: i as i64 },
                    };
                    let state = if i % 50 == 49 {
                        JobState::Failed {
                            reason: "the server could not retouch it: no face found".into(),
                            moved_to: None,
                        }
                    } else {
                        let outputs = vec![outbox.join(format!("2025/shoot-{:04}/IMG_{i:07}.jpg", i / 1000))];
                        JobState::Done { outputs, moved_to: None, render_error: None, findings: None }
                    };
                    (source, state)
                })
                .collect();
            journal.insert_batch(&rows).expect("journal rows");
        }
        drop(journal);
        let conn = rusqlite::Connection::open(self.path("state/journal.sqlite")).expect("journal file");
        let now = retouchd::vocab::now_ms();
        conn.execute(
            "UPDATE jobs SET created_at = ?1 - (?2 - id) * 60000 - 30000, updated_at = ?1 - (?2 - id) * 60000",
            [now, jobs as i64],
        )
        .expect("job times spread");
    }

    /// Starts `retouchd run` and waits for READY; returns it and the time READY took.
    pub fn start_daemon(&self, config: &Path) -> (Daemon, Duration) {
        self.start_named(config, "daemon")
    }

    /// As [`Rig::start_daemon`], with its own notify socket and log `<name>.log` (one of
    /// several daemons).
    pub fn start_named(&self, config: &Path, name: &str) -> (Daemon, Duration) {
        let socket_path = self.path(&format!("{name}.sock"));
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("socket timeout");
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("log file");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_retouchd"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RETOUCHD_TOKEN")
            .env_remove("RUST_LOG")
            .env("NOTIFY_SOCKET", &socket_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("retouchd starts");
        let profiler = profile(self.dir.path(), child.id());
        let mut daemon = Daemon(child, profiler);
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = socket.recv(&mut buf)
                && buf[..n].starts_with(b"READY=1")
            {
                return (daemon, started.elapsed());
            }
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!("retouchd exited before READY ({status}); log:\n{}", self.log());
            }
            assert!(started.elapsed() < Duration::from_secs(300), "no READY within 300 s; log:\n{}", self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Writes files into `<name>/staging` (same file system as the inbox), ready to be renamed in.
    pub fn stage(&self, name: &str, files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<PathBuf> {
        let staging = self.path(&format!("{name}/staging"));
        std::fs::create_dir_all(&staging).expect("staging folder");
        files
            .into_iter()
            .map(|(file, bytes)| {
                let path = staging.join(file);
                std::fs::write(&path, bytes).expect("staged file");
                path
            })
            .collect()
    }

    /// Renames a staged file into the inbox; returns the Unix microseconds just before.
    pub fn drop_in(&self, name: &str, staged: &Path) -> u64 {
        let target = self.path(&format!("{name}/inbox")).join(staged.file_name().expect("file name"));
        let at = retouchd::sim::unix_us();
        std::fs::rename(staged, target).expect("rename into the inbox");
        at
    }

    /// Renames every staged file into the inbox, as fast as possible.
    pub fn drop_all(&self, name: &str, staged: &[PathBuf]) {
        for file in staged {
            self.drop_in(name, file);
        }
    }

    /// The running daemon's live status (rewritten every 10 s); `None` until there is one.
    pub fn live_status(&self) -> Option<LiveStatus> {
        let text = std::fs::read_to_string(self.path("state").join(LIVE_STATUS_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Files in `<name>/done`.
    pub fn done(&self, name: &str) -> usize {
        std::fs::read_dir(self.path(&format!("{name}/done"))).map_or(0, |d| d.count())
    }

    /// Waits until `check` holds, polling every 20 ms; panics with the log after `limit`.
    pub fn wait(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Instant {
        let until = Instant::now() + limit;
        loop {
            if check() {
                return Instant::now();
            }
            assert!(
                Instant::now() < until,
                "timed out after {limit:?} waiting for {what}; log tail:\n{}",
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    &text[start..]
}

/// The fastest of three whole `retouchd status --json` runs with `config`.
pub fn status_time(config: &Path) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_retouchd"))
                .args(["status", "--json", "--config"])
                .arg(config)
                .output()
                .expect("status runs");
            assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// A tmpfs to compare the disk with (`/dev/shm`), if this machine has one.
pub fn memory_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let tmpfs = mounts.lines().any(|l| l.split_whitespace().take(3).eq(["tmpfs", "/dev/shm", "tmpfs"]));
    let root = Path::new("/dev/shm/retouchd-bench");
    (tmpfs && std::fs::create_dir_all(root).is_ok()).then(|| root.to_path_buf())
}

/// Where rigs live: `$RETOUCHD_BENCH_DIR`, else `target/bench-tmp` (the disk the project is on:
/// the daemon's fsyncs, creates and renames should cost what they cost there).
pub fn bench_root() -> PathBuf {
    let root = std::env::var_os("RETOUCHD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-tmp"));
    std::fs::create_dir_all(&root).expect("bench folder");
    root
}

/// With `RETOUCHD_BENCH_PROFILE=DIR`, `perf record -g` attaches to every daemon the bench
/// starts, writing `DIR/<rig>.data` (read it with `perf report -i`).
fn profile(rig: &Path, pid: u32) -> Option<Child> {
    let dir = PathBuf::from(std::env::var_os("RETOUCHD_BENCH_PROFILE")?);
    let _ = std::fs::create_dir_all(&dir);
    let name = rig.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = dir.join(format!("{name}.data"));
    eprintln!("   profiling into {}", out.display());
    Command::new("perf")
        .arg("record")
        .arg("-g")
        .arg("-o")
        .arg(out)
        .arg("-p")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// A running daemon (and its profiler, if any); SIGKILLed when dropped.
pub struct Daemon(pub Child, Option<Child>);

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// CPU time (user + system) used so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
        let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64(ticks as f64 / per_second)
    }

    /// Peak resident memory so far (VmHWM), in MB (10^6 bytes).
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kb * 1024.0 / 1e6
    }

    /// SIGTERM, then wait (SIGKILL after 10 s).
    pub fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut perf) = self.1.take() {
            // SAFETY: signalling our own child; perf writes its file on SIGINT.
            unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
            let _ = perf.wait();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small PNG, different for each `n`.
pub fn small_png(n: usize) -> Vec<u8> {
    retouchd::imagegen::png_bytes(32 + (n % 32) as u32, 24, [(n % 251) as u8, (n / 251 % 251) as u8, 90])
}

/// A complete PNG of exactly `size` bytes (a small image plus a private chunk of random bytes).
pub fn sized_png(size: usize) -> Vec<u8> {
    let image = retouchd::imagegen::png_bytes(64, 48, [120, 90, 60]);
    let (head, iend) = image.split_at(image.len() - 12);
    let pad = size.saturating_sub(image.len() + 12).max(1);
    let mut chunk = Vec::with_capacity(pad + 12);
    chunk.extend_from_slice(&(pad as u32).to_be_bytes());
    chunk.extend_from_slice(b"rdPd");
    let start = chunk.len();
    chunk.resize(start + pad, 0);
    fastrand::fill(&mut chunk[start..]);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    [head, &chunk, iend].concat()
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> =
        (0..256u32).map(|n| (0..8).fold(n, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })).collect();
    !bytes.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}
