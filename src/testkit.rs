//! A throwaway PostgreSQL server for the tests and benchmarks of the shared journal: `initdb`
//! in a temporary folder, `postgres` as a child process on a free port of 127.0.0.1 (as the
//! `postgres` user, or `nobody`, when run as root: PostgreSQL refuses root), stopped when
//! dropped or when this process dies. Nothing here is used by the daemon.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why the server could not be made.
pub type Error = String;

/// The folder of PostgreSQL's server programs (`initdb`, `postgres`), if installed: on the
/// `PATH`, or Debian's `/usr/lib/postgresql/<version>/bin`.
pub fn server_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// A running PostgreSQL server.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    durable: bool,
    /// Who the server runs as, when this process is root.
    user: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// Starts a new server. `durable`: commits are synced to disk as in production (for
    /// benchmarks); otherwise fsync is off (tests).
    pub fn start(durable: bool) -> Result<PgServer, Error> {
        let bin = server_bin_dir().ok_or("PostgreSQL's server programs (initdb) are not installed")?;
        let dir = tempfile::Builder::new().prefix("retouchd-pg-").tempdir().map_err(|e| e.to_string())?;
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(unprivileged_user).flatten();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let port = free_port()?;
        let server = PgServer { dir, bin, port, durable, user, child: Mutex::new(None) };
        let mut initdb = server.command("initdb");
        initdb
            .args(["-D"])
            .arg(server.data_dir())
            .args(["-U", "retouchd", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = initdb.output().map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        server.start_again()?;
        Ok(server)
    }

    /// One server for the whole test process, started on first use.
    pub fn shared() -> Result<&'static PgServer, Error> {
        static SHARED: OnceLock<Result<PgServer, Error>> = OnceLock::new();
        // Started from a thread that lives as long as the process: the server is told to stop
        // when the thread that started it ends (see `command`).
        SHARED
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(PgServer::start(false));
                    loop {
                        std::thread::park();
                    }
                });
                rx.recv().unwrap_or_else(|_| Err("the server thread stopped".into()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe; it runs in the child before exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        command
    }

    /// Starts the server (again, after [`PgServer::stop`]) and waits until it takes connections.
    pub fn start_again(&self) -> Result<(), Error> {
        let mut postgres = self.command("postgres");
        let sync = if self.durable { "on" } else { "off" };
        postgres
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c"])
            .arg(format!("fsync={sync}"))
            .args(["-c", &format!("synchronous_commit={sync}"), "-c", &format!("full_page_writes={sync}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = postgres.spawn().map_err(|e| format!("cannot start postgres: {e}"))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.connect("postgres").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("postgres did not take connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (a fast shutdown: open connections are cut).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// The address of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://retouchd@127.0.0.1:{}/{name}", self.port)
    }

    /// Whether database `name` takes connections.
    fn connect(&self, name: &str) -> Result<(), Error> {
        execute(&self.url(name), "")
    }

    /// Creates a new, empty database; returns its address.
    pub fn new_database(&self) -> Result<String, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        execute(&self.url("postgres"), &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// The data folder's parent (for logs a test wants to keep).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `sql` (statements separated by `;`; none for a bare connection) on the database at
/// `url`, from a thread of its own: the `postgres` client cannot be used inside an async runtime.
pub fn execute(url: &str, sql: &str) -> Result<(), Error> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        client.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("panicked".into()))
}

/// A cluster config for a database address (tests).
pub fn cluster_config(url: &str, node: &str, lease: Duration) -> crate::config::ClusterConfig {
    crate::config::ClusterConfig {
        database: url.parse().expect("a test database address"),
        location: url.to_string(),
        node: node.to_string(),
        lease,
    }
}

fn unprivileged_user() -> Option<(u32, u32)> {
    ["postgres", "nobody"].iter().find_map(|name| {
        let name = std::ffi::CString::new(*name).ok()?;
        // SAFETY: getpwnam returns a pointer to static storage or null; read at once.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        (!entry.is_null()).then(|| unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
    })
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
