//! Helpers shared by the integration tests: simulators, clients, sample files, and waiting for
//! a condition with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use retouchd::api::{Client, ClientOptions, Token};
use retouchd::sim::{SimConfig, Simulator};

pub const TOKEN: &str = "test-token-0123456789";

pub const LAYERED: &str = r#"{"mode":"professional","tasks":[{"Plugin":"Heal","Alpha1":1,"Scale":0,"Layer":1},{"Plugin":"Dodge Burn","Alpha1":1,"Alpha2":0,"Layer":1}]}"#;
pub const FLAT: &str = r#"{"mode":"professional","tasks":[{"Plugin":"Heal","Alpha1":1,"Layer":0}]}"#;

/// Simulator knobs for fast tests: short processing, the given token.
pub fn fast_sim() -> SimConfig {
    SimConfig {
        token: TOKEN.into(),
        processing_ms: 300,
        completion_lag_ms: 100,
        store_lag_ms: 100,
        ..SimConfig::default()
    }
}

pub async fn start_sim(config: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), config).await.expect("simulator starts")
}

pub fn client_for(sim: &Simulator, token: &str) -> Client {
    let mut options = ClientOptions::new(sim.base_url(), Token::new(token));
    options.balance_url = sim.balance_url();
    options.idle_timeout = Duration::from_secs(5);
    Client::new(options).expect("client builds")
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn jpeg() -> Vec<u8> {
    retouchd::imagegen::jpeg_bytes(64, 48, [200, 120, 90])
}

/// A JPEG whose bytes differ for each `i` (the same bytes are one photo: retouchd reuses its
/// result instead of paying again).
pub fn distinct_jpeg(i: u32) -> Vec<u8> {
    retouchd::imagegen::jpeg_bytes(16 + (i % 97) as u16, 16 + (i / 97) as u16, [(i * 37 % 256) as u8, 80, 80])
}

pub fn png() -> Vec<u8> {
    retouchd::imagegen::png_bytes(40, 30, [10, 200, 90])
}

/// Polls `check` until it returns `Some`, or panics after `deadline` with `what` and the last
/// value `describe` gives.
pub async fn wait_for<T>(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it is true or `deadline` passes; returns whether it became true (for
/// callers that print what they saw on failure).
pub async fn wait_for_or_show(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

/// The real `retouchd` binary.
pub fn bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_retouchd"));
    cmd.env_remove("RETOUCHD_TOKEN").env_remove("CREDENTIALS_DIRECTORY").env_remove("STATE_DIRECTORY");
    cmd.env("RUST_LOG", "retouchd=debug");
    cmd
}

/// A temporary inbox/outbox/done/failed/state layout with a config pointing at a simulator.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Workspace {
    pub fn new(sim: &Simulator, extra_server: &str, extra_watch: &str) -> Workspace {
        Self::with_token(sim, TOKEN, extra_server, extra_watch)
    }

    pub fn with_token(sim: &Simulator, token: &str, extra_server: &str, extra_watch: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        for d in ["inbox", "outbox", "done", "failed", "state"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let config = dir.path().join("config.toml");
        let text = format!(
            r#"[server]
url = "{url}"
balance_url = "{balance}"
token = "{token}"
poll_interval = "2s"
{extra_server}

[state]
dir = "state"

[[watch]]
inbox = "inbox"
outbox = "outbox"
done_dir = "done"
failed_dir = "failed"
settle = "400ms"
{extra_watch}

[watch.payload]
mode = "professional"
tasks = [ {{ Plugin = "Heal", Alpha1 = 1, Layer = 1 }}, {{ Plugin = "Dodge Burn", Alpha1 = 1, Alpha2 = 0, Layer = 1 }} ]
"#,
            url = sim.base_url(),
            balance = sim.balance_url(),
        );
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Workspace { dir, config }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces the watch's payload tasks with `tasks` (a TOML array).
    pub fn set_tasks(&self, tasks: &str) {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let start = config.find("tasks = [").unwrap();
        let end = start + config[start..].find('\n').unwrap();
        std::fs::write(&self.config, format!("{}tasks = {tasks}{}", &config[..start], &config[end..])).unwrap();
    }

    /// Drops a file into the inbox.
    pub fn drop_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        write(&self.path("inbox"), rel, bytes)
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = bin();
        cmd.args(args).arg("--config").arg(&self.config).current_dir(self.dir.path());
        cmd
    }

    /// Starts `retouchd run` in the background, logging to `<name>.log`.
    pub fn spawn(&self, extra: &[&str], name: &str) -> Daemon {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let mut cmd = self.command(&["run"]);
        cmd.args(extra).stdout(log.try_clone().unwrap()).stderr(log);
        Daemon(cmd.spawn().expect("retouchd starts"))
    }

    /// Runs `retouchd run --once` to the end (or kills it after `limit`).
    pub async fn run_once(&self, limit: Duration) -> std::process::Output {
        let daemon = self.spawn(&["--once"], "once");
        self.wait_once(daemon, limit).await
    }

    /// Makes the whole workspace `nobody`'s (for [`Workspace::run_once_as_nobody`]).
    pub fn give_to_nobody(&self) {
        let status = std::process::Command::new("chown").args(["-R", "nobody:nogroup"]).arg(self.dir.path()).status();
        assert!(status.is_ok_and(|s| s.success()), "chown -R nobody {}", self.dir.path().display());
    }

    /// As [`Workspace::run_once`], with the daemon running as `nobody` (needs root; `setpriv`
    /// from util-linux drops the privileges).
    pub async fn run_once_as_nobody(&self, limit: Duration) -> std::process::Output {
        let log = std::fs::File::create(self.path("once.log")).unwrap();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
        cmd.arg(env!("CARGO_BIN_EXE_retouchd")).args(["run", "--once", "--config"]).arg(&self.config);
        cmd.env_remove("RETOUCHD_TOKEN").env_remove("CREDENTIALS_DIRECTORY").env_remove("STATE_DIRECTORY");
        cmd.env("RUST_LOG", "retouchd=debug").current_dir(self.dir.path());
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let daemon = Daemon(cmd.spawn().expect("setpriv starts retouchd"));
        self.wait_once(daemon, limit).await
    }

    async fn wait_once(&self, mut daemon: Daemon, limit: Duration) -> std::process::Output {
        let status = wait_exit(&mut daemon.0, limit).await;
        let log = std::fs::read_to_string(self.path("once.log")).unwrap_or_default();
        std::process::Output { status, stdout: log.into_bytes(), stderr: Vec::new() }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Every file below `rel`, relative to it, sorted; the inbox marker left out.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let root = self.path(rel);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !e.file_name().to_string_lossy().starts_with(retouchd::watch::MARKER) {
                    out.push(p.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }
}

/// Every path below `root` (folders and files; links are listed, not followed), sorted.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A running `retouchd`; killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// process behind.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    /// SIGKILL, then wait for the process to be gone.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a child to exit; kills it (and fails) after `limit`.
pub async fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("retouchd did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..])
}

/// A PNG whose header declares `w` × `h` (the pixel data is a 1×1 image's; the file is complete).
pub fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut v = retouchd::imagegen::png_bytes(1, 1, [0, 0, 0]);
    v[16..20].copy_from_slice(&w.to_be_bytes());
    v[20..24].copy_from_slice(&h.to_be_bytes());
    v
}

/// The Python with the test tools (psd-tools, numpy, schemathesis): `RETOUCHD_TEST_PYTHON`, else
/// the venv `tests/run` makes under target/, else `python3`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("RETOUCHD_TEST_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.exists() { venv.to_string_lossy().into_owned() } else { "python3".into() }
}

/// Whether the retry table sends `err`'s request again (as an upload's would be).
pub fn retried(err: &retouchd::api::ApiError) -> bool {
    use retouchd::api::{Action, Route, policy};
    policy::action(Route::Start, err.kind) == Action::Retry
}
