//! Configuration: TOML parsed into a raw form, then validated into a ready [`Config`].
//!
//! Every problem is collected and reported at once, each naming its key and what to do; unknown
//! keys are errors (a typo must not silently fall back to a default). Durations are
//! human-readable ("5s", "2m", "1h 30m").

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::{self, Token};

/// No job is polled more often than this, whatever the config says.
pub const POLL_FLOOR: Duration = Duration::from_secs(2);

/// What happens to a source file once its result is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSuccess {
    Move,
    Delete,
    Keep,
}

/// What to do when the server no longer knows a task whose result was not fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExpired {
    /// Submit the file again (costs another credit).
    Resubmit,
    /// Send the file to failed/ with the reason.
    Fail,
}

/// How a watch notices new files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify on local disks, scanning on network file systems.
    Auto,
    Notify,
    Poll,
}

/// The server section, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub url: String,
    pub balance_url: String,
    pub token: Token,
    /// Where the token came from, for messages (never the token itself).
    pub token_source: String,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub allow_plain_http: bool,
    pub max_uploads: usize,
    pub max_in_flight: usize,
    pub max_job_age: Duration,
    pub on_expired: OnExpired,
    pub token_retry: Duration,
    pub quota_retry: Duration,
    pub max_result_bytes: u64,
    /// Warn when the server says fewer retouches than this are left.
    pub low_quota_warning: i64,
    /// The public address (approved by the vendor) under which the dashboard's listener
    /// receives completion callbacks: each start asks the server to call
    /// `{hook_url}/hook/<unguessable per-job token>` when the job finishes.
    pub hook_url: Option<String>,
}

impl ServerConfig {
    pub fn client_options(&self) -> api::ClientOptions {
        let mut options = api::ClientOptions::new(self.url.clone(), self.token.clone());
        options.balance_url = self.balance_url.clone();
        options.connect_timeout = self.connect_timeout;
        options.idle_timeout = self.idle_timeout;
        options.allow_plain_http = self.allow_plain_http;
        options.max_download_bytes = self.max_result_bytes;
        options
    }
}

/// One watched inbox, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    /// Where sources go after delivery (`on_success = "move"`); `None` when not moved.
    pub done_dir: Option<PathBuf>,
    /// Where failed sources go; `None` leaves them where they are (`retouchd process`).
    pub failed_dir: Option<PathBuf>,
    pub on_success: OnSuccess,
    pub settle: Duration,
    pub recursive: bool,
    pub ignore: Vec<String>,
    pub mode: WatchMode,
    pub scan_interval: Duration,
    pub rescan_interval: Duration,
    pub incomplete_grace: Duration,
    /// Commands (argv) run after a delivery and after a failure; empty for none.
    pub on_delivered: Vec<String>,
    pub on_failed: Vec<String>,
    pub hook_timeout: Duration,
    /// The payload JSON, sent verbatim as the `payload` field.
    pub payload: String,
    /// What is delivered: the layers, the finished photo, a PSD (`[watch.output]`).
    pub output: crate::render::OutputSettings,
    /// Send a photo whose bytes and payload match a delivered job's again (a new credit),
    /// instead of reusing that job's result.
    pub resend_identical: bool,
}

impl WatchConfig {
    /// The folders results and sources are delivered into, each with whether it is the outbox.
    pub fn delivery_folders(&self) -> Vec<(PathBuf, bool)> {
        let mut folders = vec![(self.outbox.clone(), true)];
        folders.extend([&self.done_dir, &self.failed_dir].into_iter().flatten().map(|d| (d.clone(), false)));
        folders
    }
}

/// A ready configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub state_dir: PathBuf,
    pub log_level: String,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How many finished photos are made at once (`render.max_renders`; each holds a photo
    /// in memory).
    pub max_renders: usize,
    /// The most the cache of paid results may hold (`state.result_cache_mb`; 0: none kept).
    pub result_cache_mb: u64,
    pub watches: Vec<WatchConfig>,
    /// The web dashboard, when `[web]` is present.
    pub web: Option<WebConfig>,
    /// The shared PostgreSQL journal and this node, when `[state] database` is set.
    pub cluster: Option<ClusterConfig>,
    /// Things worth telling the user that do not stop the daemon.
    pub warnings: Vec<String>,
    /// Loaded with [`Purpose::Inspect`]: why some inboxes cannot be read now.
    pub unavailable_inboxes: Vec<String>,
}

/// The `[web]` section, validated: where the dashboard listens and its password.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    pub listen: std::net::SocketAddr,
    /// `None` only on a loopback address: the page and API need no login there.
    pub password: Option<Token>,
    /// Where the password came from, for the config view (never the password itself).
    pub password_source: Option<String>,
}

/// `[state] database` and `[cluster]`: the shared journal, and this daemon as one of its nodes.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How to connect (the password included when one was given; its `Debug` hides it).
    pub database: postgres::Config,
    /// The database's address without the password, for messages.
    pub location: String,
    /// This daemon's name among the nodes (`cluster.node`; the host name by default).
    pub node: String,
    /// A node that stops renewing loses its jobs after this long (`cluster.lease`).
    pub lease: Duration,
}

/// A database address with any password in it replaced by `***` (for messages and logs).
pub fn redact_url(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return text.to_string();
    }
    // key=value settings: hide the value of `password=`.
    text.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The dashboard's address when `[web]` gives none.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8642";

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} has {} problem(s):", self.file, self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    render: RawRender,
    web: Option<RawWeb>,
    cluster: Option<RawCluster>,
    #[serde(default)]
    watch: Vec<RawWatch>,
}

#[derive(Debug, Default, Deserialize)]
struct RawWeb {
    listen: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRender {
    max_renders: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawOutput {
    layers: Option<bool>,
    flat: Option<String>,
    psd: Option<bool>,
    jpeg_quality: Option<i64>,
    metadata: Option<String>,
    name: Option<String>,
    #[serde(default)]
    opacity: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    url: Option<String>,
    balance_url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    poll_interval: Option<RawDuration>,
    connect_timeout: Option<RawDuration>,
    idle_timeout: Option<RawDuration>,
    allow_plain_http: Option<bool>,
    max_uploads: Option<i64>,
    max_in_flight: Option<i64>,
    max_job_age: Option<RawDuration>,
    on_expired: Option<String>,
    token_retry: Option<RawDuration>,
    quota_retry: Option<RawDuration>,
    max_result_mb: Option<i64>,
    low_quota_warning: Option<i64>,
    hook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawState {
    dir: Option<PathBuf>,
    result_cache_mb: Option<i64>,
    database: Option<String>,
    database_password: Option<String>,
    database_password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCluster {
    node: Option<String>,
    lease: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLog {
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawWatch {
    inbox: Option<PathBuf>,
    outbox: Option<PathBuf>,
    done_dir: Option<PathBuf>,
    failed_dir: Option<PathBuf>,
    on_success: Option<String>,
    settle: Option<RawDuration>,
    recursive: Option<bool>,
    #[serde(default)]
    ignore: Vec<String>,
    mode: Option<String>,
    scan_interval: Option<RawDuration>,
    rescan_interval: Option<RawDuration>,
    incomplete_grace: Option<RawDuration>,
    #[serde(default)]
    on_delivered: Vec<String>,
    #[serde(default)]
    on_failed: Vec<String>,
    hook_timeout: Option<RawDuration>,
    resend_identical: Option<bool>,
    allow_unknown_plugins: Option<bool>,
    payload: Option<toml::Table>,
    output: Option<RawOutput>,
}

/// Where the environment says things are: systemd's directories, the token variable.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub state_directory: Option<PathBuf>,
    pub credentials_directory: Option<PathBuf>,
    pub token_var: Option<String>,
    /// PostgreSQL's `PG*` variables that fill what `state.database` leaves out.
    pub pg_vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn from_process() -> Self {
        let first_path = |var: &str| {
            std::env::var_os(var).and_then(|v| std::env::split_paths(&v).next()).filter(|p| !p.as_os_str().is_empty())
        };
        Environment {
            state_directory: first_path("STATE_DIRECTORY"),
            credentials_directory: first_path("CREDENTIALS_DIRECTORY"),
            token_var: std::env::var("RETOUCHD_TOKEN").ok().filter(|t| !t.trim().is_empty()),
            pg_vars: ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"]
                .into_iter()
                .filter_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()).map(|v| (var.to_string(), v)))
                .collect(),
        }
    }
}

/// The config file used when none is given: `$CONFIGURATION_DIRECTORY/config.toml` under
/// systemd; for root where the system service is installed (`/etc/retouchd`, as the Debian
/// package makes it), its config; else the platform's config folder (e.g.
/// `~/.config/retouchd/config.toml`).
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONFIGURATION_DIRECTORY").and_then(|v| std::env::split_paths(&v).next()) {
        return Some(dir.join("config.toml"));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && Path::new("/etc/retouchd").is_dir() {
        return Some(PathBuf::from("/etc/retouchd/config.toml"));
    }
    directories::ProjectDirs::from("", "", "retouchd").map(|d| d.config_dir().join("config.toml"))
}

fn default_state_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "retouchd").map(|d| d.data_local_dir().to_path_buf())
}

/// Reads and validates a config file to run with.
pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    load_for(path, env, Purpose::Run)
}

/// Reads and validates a config file for `purpose`.
pub fn load_for(path: &Path, env: &Environment, purpose: Purpose) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            key: "(file)".into(),
            message: format!("cannot read it: {e}; run `retouchd init` to make one, or pass --config FILE"),
        }],
    })?;
    let mut config = parse_for(&text, path.parent().unwrap_or(Path::new(".")), env, purpose)
        .map_err(|problems| ConfigError { file: file.clone(), problems })?;
    if config_is_readable_by_others(path) && text.lines().any(|l| l.trim_start().starts_with("password ")) {
        config.warnings.push(format!(
            "{file} holds the dashboard's password and others can read it; run `chmod 600 {file}`, or move \
             it to web.password_file or a systemd credential"
        ));
    }
    if config_is_readable_by_others(path) && text.lines().any(|l| l.trim_start().starts_with("token ")) {
        config.warnings.push(format!(
            "{file} holds the token and others can read it; run `chmod 600 {file}`, or move the token to \
             token_file or a systemd credential"
        ));
    }
    Ok(config)
}

fn config_is_readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o044 != 0).unwrap_or(false)
}

/// What a config is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To run: an inbox that cannot be read is an error.
    Run,
    /// To look at the state (`status`, `retry`): an inbox that cannot be read now (an unmounted
    /// share) is noted in [`Config::unavailable_inboxes`], not an error.
    Inspect,
}

/// Validates config text to run with. Relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path, env: &Environment) -> Result<Config, Vec<Problem>> {
    parse_for(text, base, env, Purpose::Run)
}

/// Validates config text for `purpose`. Relative paths are taken from `base`.
pub fn parse_for(text: &str, base: &Path, env: &Environment, purpose: Purpose) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|e| vec![Problem { key: "(syntax)".into(), message: e.to_string().trim().replace('\n', " ") }])?;
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()))
        .map_err(|e| vec![Problem { key: "(type)".into(), message: e.to_string().trim().replace('\n', " ") }])?;
    for key in unknown {
        problems.push(Problem {
            key: bracket_indexes(&key),
            message: "unknown key; check its spelling against config.example.toml".into(),
        });
    }
    let mut v = Validator {
        problems,
        warnings: Vec::new(),
        base: base.to_path_buf(),
        purpose,
        unavailable_inboxes: Vec::new(),
    };
    // A config that watches nothing (the Debian package's default) is valid: the daemon idles
    // until one is added, and needs no token for that.
    let watches_nothing = raw.watch.is_empty();
    let server = v.server(raw.server, env, watches_nothing);
    let cluster = v.cluster(&raw.state, raw.cluster, env);
    let result_cache_mb = match raw.state.result_cache_mb {
        None => crate::result_cache::DEFAULT_CAP_MB,
        Some(mb) if (0..=10_000_000).contains(&mb) => mb as u64,
        Some(mb) => {
            v.problem("state.result_cache_mb", format!("{mb} is out of range; use 0 (off) to 10000000 megabytes"));
            0
        }
    };
    let state_dir = v.state_dir(raw.state, env);
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        v.problem("log.level", format!("`{log_level}` is not a level; use error, warn, info, debug or trace"));
    }
    let metrics_listen = raw.metrics.listen.and_then(|text| match text.parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            if !addr.ip().is_loopback() {
                v.warnings.push(format!("metrics.listen = {addr} exposes the metrics beyond this machine"));
            }
            Some(addr)
        }
        Err(e) => {
            v.problem("metrics.listen", format!("`{text}` is not an address like 127.0.0.1:9464 ({e})"));
            None
        }
    });
    if watches_nothing {
        v.warnings.push(
            "no [[watch]] section: retouchd watches nothing until one is added (`retouchd init` writes one; \
             config.example.toml shows inbox, outbox, done_dir, failed_dir and payload)"
                .into(),
        );
    }
    let web = raw.web.and_then(|w| v.web(w, env));
    if server.as_ref().is_some_and(|s| s.hook_url.is_some()) && web.is_none() {
        v.problem(
            "server.hook_url",
            "the completion hook is received on the dashboard's listener: add a [web] section (and put it \
             behind the reverse proxy that serves hook_url), or remove hook_url"
                .to_string(),
        );
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let max_renders = v.count("render.max_renders", raw.render.max_renders, cores);
    let watches: Vec<WatchConfig> = raw.watch.into_iter().enumerate().filter_map(|(i, w)| v.watch(i, w)).collect();
    v.cross_check(&watches);
    match (server, state_dir, v.problems.is_empty()) {
        (Some(server), Some(state_dir), true) => {
            let unavailable_inboxes = v.unavailable_inboxes;
            Ok(Config {
                server,
                state_dir,
                log_level,
                metrics_listen,
                max_renders,
                result_cache_mb,
                watches,
                web,
                cluster,
                warnings: v.warnings,
                unavailable_inboxes,
            })
        }
        _ => Err(v.problems),
    }
}

/// A duration as written: text like "5s", or a mistake the validator explains (a bare number).
type RawDuration = toml::Value;

struct Validator {
    problems: Vec<Problem>,
    warnings: Vec<String>,
    base: PathBuf,
    purpose: Purpose,
    /// With [`Purpose::Inspect`]: inboxes that cannot be read now.
    unavailable_inboxes: Vec<String>,
}

impl Validator {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }

    fn duration(&mut self, key: &str, value: Option<RawDuration>, default: &str) -> Duration {
        let fallback = || humantime::parse_duration(default).unwrap_or_default();
        let text = match value {
            None => default.to_string(),
            Some(toml::Value::String(text)) => text,
            Some(toml::Value::Integer(n)) => {
                self.problem(key, format!("{n} is a bare number; a duration needs its unit: write it like \"{n}s\""));
                return fallback();
            }
            Some(other) => {
                self.problem(key, format!("{other} is not a duration; write it like \"5s\", \"2m\", \"1h\""));
                return fallback();
            }
        };
        if text.trim_start().starts_with('-') {
            self.problem(key, format!("`{text}` is negative; durations are like \"5s\", \"2m\", \"1h\""));
            return fallback();
        }
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.problem(key, format!("`{text}` is not a duration ({e}); write it like \"5s\", \"2m\", \"1h\""));
                fallback()
            }
        }
    }

    fn count(&mut self, key: &str, value: Option<i64>, default: usize) -> usize {
        match value {
            None => default,
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(key, format!("{n} is out of range; use a whole number from 1 to 10000"));
                default
            }
        }
    }

    /// A configured path, absolute: relative ones are taken from the config's folder, and that
    /// from the working folder, once, here (the watcher's events carry absolute paths).
    fn path(&self, p: PathBuf) -> PathBuf {
        let joined = if p.is_absolute() { p } else { self.base.join(p) };
        std::path::absolute(&joined).unwrap_or(joined)
    }

    fn server(&mut self, raw: RawServer, env: &Environment, watches_nothing: bool) -> Option<ServerConfig> {
        let url = raw.url.unwrap_or_else(|| api::DEFAULT_BASE_URL.to_string());
        let allow_plain_http = raw.allow_plain_http.unwrap_or(false);
        if let Err(e) = api::check_url(&url, allow_plain_http) {
            self.problem("server.url", e);
        }
        let balance_url = raw.balance_url.unwrap_or_else(|| api::default_balance_url(&url));
        if let Err(e) = api::check_url(&balance_url, allow_plain_http) {
            self.problem("server.balance_url", e);
        }
        let poll_interval = self.duration("server.poll_interval", raw.poll_interval, "5s");
        if poll_interval < POLL_FLOOR {
            self.problem(
                "server.poll_interval",
                format!(
                    "{} is too frequent; the server asks for no less than 2s",
                    humantime::format_duration(poll_interval)
                ),
            );
        }
        let on_expired = match raw.on_expired.as_deref() {
            None | Some("fail") => OnExpired::Fail,
            Some("resubmit") => OnExpired::Resubmit,
            Some(other) => {
                self.problem("server.on_expired", format!("`{other}` is not one of: fail, resubmit"));
                OnExpired::Fail
            }
        };
        let max_result_mb = match raw.max_result_mb {
            None => 4096,
            Some(n) if n > 0 => n as u64,
            Some(n) => {
                self.problem("server.max_result_mb", format!("{n} must be a positive number of megabytes"));
                4096
            }
        };
        let hook_url = raw.hook_url.map(|u| u.trim_end_matches('/').to_string());
        if let Some(hook) = &hook_url
            && let Err(e) = api::check_url(hook, allow_plain_http)
        {
            self.problem("server.hook_url", e);
        }
        let before = self.problems.len();
        let mut token = self.token(raw.token, raw.token_file, env);
        if watches_nothing && token.is_none() {
            // Nothing will be sent: a token problem waits until a watch is added.
            for p in self.problems.drain(before..).collect::<Vec<_>>() {
                self.warnings.push(format!("{}: {} (needed once a watch is added)", p.key, p.message));
            }
            token = Some((Token::new(""), "none yet (nothing is watched)".into()));
        }
        let server = ServerConfig {
            url: url.trim_end_matches('/').to_string(),
            balance_url,
            token: Token::new(""),
            token_source: String::new(),
            poll_interval,
            connect_timeout: self.duration("server.connect_timeout", raw.connect_timeout, "15s"),
            idle_timeout: self.duration("server.idle_timeout", raw.idle_timeout, "60s"),
            allow_plain_http,
            max_uploads: self.count("server.max_uploads", raw.max_uploads, 2),
            max_in_flight: self.count("server.max_in_flight", raw.max_in_flight, 64),
            max_job_age: self.duration("server.max_job_age", raw.max_job_age, "6h"),
            on_expired,
            token_retry: self.duration("server.token_retry", raw.token_retry, "1m"),
            quota_retry: self.duration("server.quota_retry", raw.quota_retry, "15m"),
            max_result_bytes: max_result_mb * 1024 * 1024,
            low_quota_warning: raw.low_quota_warning.unwrap_or(20),
            hook_url,
        };
        let (token, token_source) = token?;
        Some(ServerConfig { token, token_source, ..server })
    }

    /// A secret from (in order) `<section>.<name>`, `<section>.<name>_file` or the systemd
    /// credential `credential`, with where it came from; `Err` when a problem was recorded.
    fn secret(
        &mut self,
        (section, name): (&str, &str),
        value: Option<String>,
        file: Option<PathBuf>,
        credential: &str,
        env: &Environment,
    ) -> Result<Option<(Token, String)>, ()> {
        match (value, file) {
            (Some(_), Some(_)) => {
                self.problem(format!("{section}.{name}"), format!("both {name} and {name}_file are set; keep one"));
                Err(())
            }
            (Some(t), None) => Ok(Some((Token::new(t), format!("{section}.{name}")))),
            (None, Some(f)) => {
                let f = self.path(f);
                match std::fs::read_to_string(&f) {
                    Ok(t) => Ok(Some((Token::new(t), format!("{section}.{name}_file ({})", f.display())))),
                    Err(e) => {
                        self.problem(
                            format!("{section}.{name}_file"),
                            format!(
                                "cannot read {}: {e}; check the path and that retouchd's user may read it",
                                f.display()
                            ),
                        );
                        Err(())
                    }
                }
            }
            (None, None) => Ok(env
                .credentials_directory
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(credential)).ok())
                .map(|t| (Token::new(t), format!("systemd credential `{credential}`")))),
        }
    }

    /// The token, from (in order) `server.token`, `server.token_file`, the systemd credential
    /// `token`, or `RETOUCHD_TOKEN`.
    fn token(&mut self, token: Option<String>, file: Option<PathBuf>, env: &Environment) -> Option<(Token, String)> {
        if let Some(path) = file.as_ref().map(|f| self.path(f.clone()))
            && config_is_readable_by_others(&path)
        {
            let shown = path.display();
            self.warnings.push(format!(
                "server.token_file: {shown} holds the token and others can read it; run `chmod 600 {shown}`"
            ));
        }
        let found = match self.secret(("server", "token"), token, file, "token", env) {
            Err(()) => return None,
            Ok(Some(found)) => Some(found),
            Ok(None) => env.token_var.clone().map(|t| (Token::new(t), "RETOUCHD_TOKEN".to_string())),
        };
        match found {
            Some((token, _)) if token.is_empty() => {
                self.problem("server.token", "the token is empty; paste the token from your Retouch4me account");
                None
            }
            Some(found) => Some(found),
            None => {
                self.problem(
                    "server.token",
                    "no token; set server.token or server.token_file, a systemd credential named token, or RETOUCHD_TOKEN",
                );
                None
            }
        }
    }

    /// `[web]`: the address, and the password from (in order) `web.password`,
    /// `web.password_file` or the systemd credential `web-password`. Any address but loopback
    /// needs one.
    fn web(&mut self, raw: RawWeb, env: &Environment) -> Option<WebConfig> {
        let text = raw.listen.unwrap_or_else(|| DEFAULT_WEB_LISTEN.to_string());
        let listen = match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr,
            Err(e) => {
                self.problem("web.listen", format!("`{text}` is not an address like {DEFAULT_WEB_LISTEN} ({e})"));
                return None;
            }
        };
        let Ok(found) = self.secret(("web", "password"), raw.password, raw.password_file, "web-password", env) else {
            return None;
        };
        if let Some((password, source)) = &found {
            if password.is_empty() {
                self.problem("web.password", format!("the password from {source} is empty; set one"));
                return None;
            }
            if password.expose().chars().count() < 10 {
                self.warnings.push(format!(
                    "the dashboard's password ({source}) is shorter than 10 characters; a longer one is safer"
                ));
            }
        }
        if found.is_none() && !listen.ip().is_loopback() {
            self.problem(
                "web.password",
                format!(
                    "web.listen = {listen} can be reached from other machines, so the dashboard needs a password: \
                     set web.password_file (or web.password, or a systemd credential named web-password), or \
                     listen on 127.0.0.1 and reach it through an SSH tunnel"
                ),
            );
            return None;
        }
        let (password, password_source) = found.map_or((None, None), |(p, s)| (Some(p), Some(s)));
        Some(WebConfig { listen, password, password_source })
    }

    /// `[state] database` (a PostgreSQL URL or `key=value` settings; the password from the
    /// URL, `state.database_password(_file)`, the systemd credential `database-password` or
    /// `PGPASSWORD`; other `PG*` variables fill what the URL leaves out) and `[cluster]`.
    fn cluster(&mut self, state: &RawState, raw: Option<RawCluster>, env: &Environment) -> Option<ClusterConfig> {
        let Some(text) = state.database.clone() else {
            if raw.is_some() {
                self.problem(
                    "cluster",
                    "[cluster] needs a shared journal: set state.database to a PostgreSQL URL \
                     (postgres://user@host/dbname), or remove [cluster]",
                );
            }
            return None;
        };
        let raw = raw.unwrap_or_default();
        let mut database: postgres::Config = match text.parse() {
            Ok(config) => config,
            Err(e) => {
                self.problem(
                    "state.database",
                    format!(
                        "`{}` is not a PostgreSQL address ({e}); write it like postgres://retouchd@db.lan/retouchd",
                        redact_url(&text)
                    ),
                );
                return None;
            }
        };
        for (var, missing) in [
            ("PGHOST", database.get_hosts().is_empty()),
            ("PGPORT", database.get_ports().is_empty()),
            ("PGUSER", database.get_user().is_none()),
            ("PGDATABASE", database.get_dbname().is_none()),
        ] {
            let Some(value) = env.pg_vars.get(var).filter(|_| missing) else { continue };
            match var {
                "PGHOST" => _ = database.host(value),
                "PGPORT" => match value.parse() {
                    Ok(port) => _ = database.port(port),
                    Err(_) => self.problem("state.database", format!("PGPORT = `{value}` is not a port number")),
                },
                "PGUSER" => _ = database.user(value),
                _ => _ = database.dbname(value),
            }
        }
        let secret = self.secret(
            ("state", "database_password"),
            state.database_password.clone(),
            state.database_password_file.clone(),
            "database-password",
            env,
        );
        match secret {
            Err(()) => return None,
            Ok(Some((password, _))) => _ = database.password(password.expose()),
            Ok(None) if database.get_password().is_none() => {
                if let Some(password) = env.pg_vars.get("PGPASSWORD") {
                    database.password(password.as_str());
                }
            }
            Ok(None) => {}
        }
        if database.get_hosts().is_empty() {
            self.problem("state.database", "names no host; write it like postgres://retouchd@db.lan/retouchd");
            return None;
        }
        let node = raw.node.unwrap_or_else(crate::vocab::host_name);
        if node.trim().is_empty() || node.len() > 100 {
            self.problem("cluster.node", "give this daemon a name of 1 to 100 characters, unique among the nodes");
            return None;
        }
        let lease = self.duration("cluster.lease", raw.lease, "30s");
        if lease < Duration::from_secs(1) {
            self.problem("cluster.lease", "at least 1s (30s is the usual): a node renews three times per lease");
            return None;
        }
        if lease < Duration::from_secs(10) {
            self.warnings.push(format!(
                "cluster.lease = {} is short: a node whose network pauses that long loses its jobs to the others",
                humantime::format_duration(lease)
            ));
        }
        Some(ClusterConfig { database, location: redact_url(&text), node: node.trim().to_string(), lease })
    }

    fn state_dir(&mut self, raw: RawState, env: &Environment) -> Option<PathBuf> {
        let dir = raw.dir.map(|d| self.path(d)).or_else(|| env.state_directory.clone()).or_else(default_state_dir);
        if dir.is_none() {
            self.problem("state.dir", "no state folder could be found; set state.dir");
        }
        dir
    }

    fn watch(&mut self, i: usize, raw: RawWatch) -> Option<WatchConfig> {
        let key = |name: &str| format!("watch[{i}].{name}");
        let before = self.problems.len();
        let folder = |v: &mut Self, name: &str, value: Option<PathBuf>, required: bool| -> Option<PathBuf> {
            if value.is_none() && required {
                v.problem(key(name), "missing; give the folder's path");
            }
            value.map(|p| v.path(p))
        };
        // A missing inbox or outbox is a problem already recorded: the watch is never used.
        let inbox = folder(self, "inbox", raw.inbox, true).unwrap_or_default();
        let outbox = folder(self, "outbox", raw.outbox, true).unwrap_or_default();
        let on_success = match raw.on_success.as_deref() {
            None | Some("move") => OnSuccess::Move,
            Some("delete") => OnSuccess::Delete,
            Some("keep") => OnSuccess::Keep,
            Some(other) => {
                self.problem(key("on_success"), format!("`{other}` is not one of: move, delete, keep"));
                OnSuccess::Move
            }
        };
        let done_dir = folder(self, "done_dir", raw.done_dir, on_success == OnSuccess::Move);
        let failed_dir = folder(self, "failed_dir", raw.failed_dir, true);
        if !inbox.as_os_str().is_empty() {
            let looked_at = inbox.clone();
            let answer = crate::share::within(crate::share::ANSWER_WITHIN, move || std::fs::metadata(&looked_at));
            match answer.unwrap_or_else(|| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))) {
                // A share that does not answer: its watch waits for it, the others go on.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => self.unavailable_inboxes.push(format!(
                    "{}: does not answer within {}s (a hung network share?)",
                    inbox.display(),
                    crate::share::ANSWER_WITHIN.as_secs()
                )),
                Ok(m) if m.is_dir() => {}
                Ok(_) => self.problem(key("inbox"), format!("{} is a file, not a folder", inbox.display())),
                Err(e) if self.purpose == Purpose::Inspect => {
                    self.unavailable_inboxes.push(format!("{}: {e} (not mounted?)", inbox.display()))
                }
                Err(e) => self.problem(
                    key("inbox"),
                    format!("{} cannot be read ({e}); create it, or mount the share first", inbox.display()),
                ),
            }
        }
        let mode = match raw.mode.as_deref() {
            None | Some("auto") => WatchMode::Auto,
            Some("notify") => WatchMode::Notify,
            Some("poll") => WatchMode::Poll,
            Some(other) => {
                self.problem(key("mode"), format!("`{other}` is not one of: auto, notify, poll"));
                WatchMode::Auto
            }
        };
        for pattern in &raw.ignore {
            if let Err(e) = globset::Glob::new(pattern) {
                self.problem(key("ignore"), format!("`{pattern}` is not a glob: {e}"));
            }
        }
        for (name, argv) in [("on_delivered", &raw.on_delivered), ("on_failed", &raw.on_failed)] {
            if argv.first().is_some_and(|p| p.trim().is_empty()) {
                self.problem(key(name), "the command is empty; give [\"program\", \"arg\", ...]");
            }
        }
        let payload = self.payload(&key("payload"), raw.payload, raw.allow_unknown_plugins.unwrap_or(false));
        let watch = WatchConfig {
            inbox,
            outbox,
            done_dir,
            failed_dir,
            on_success,
            settle: self.duration(&key("settle"), raw.settle, "5s"),
            recursive: raw.recursive.unwrap_or(true),
            ignore: raw.ignore,
            mode,
            scan_interval: self.duration(&key("scan_interval"), raw.scan_interval, "10s"),
            rescan_interval: self.duration(&key("rescan_interval"), raw.rescan_interval, "5m"),
            incomplete_grace: self.duration(&key("incomplete_grace"), raw.incomplete_grace, "10m"),
            on_delivered: raw.on_delivered,
            on_failed: raw.on_failed,
            hook_timeout: self.duration(&key("hook_timeout"), raw.hook_timeout, "60s"),
            resend_identical: raw.resend_identical.unwrap_or(false),
            payload: payload.unwrap_or_default(),
            output: self.output(&key("output"), raw.output.unwrap_or_default()),
        };
        let payload_json = serde_json::from_str(&watch.payload).unwrap_or_default();
        if !watch.payload.is_empty() {
            let tasks = crate::plugins::task_plugins(&payload_json);
            let layers: Vec<&str> = tasks.iter().filter(|t| t.1).map(|t| t.0.as_str()).collect();
            let flattened: Vec<&str> = tasks.iter().filter(|t| !t.1).map(|t| t.0.as_str()).collect();
            for name in watch.output.opacity.keys() {
                if let Some(why) = crate::plugins::opacity_name_problem(name, &layers, &flattened) {
                    self.problem(key(&format!("output.opacity.\"{name}\"")), why);
                }
            }
        }
        if watch.output.psd && !watch.payload.is_empty() && !crate::plugins::asks_for_layers(&payload_json) {
            self.warnings.push(format!(
                "{}: psd = true, but no task has Layer = 1: the server sends one flattened image, so there \
                 are no layers for a PSD (only the finished photo is delivered)",
                key("output.psd")
            ));
        }
        (self.problems.len() == before).then_some(watch)
    }

    fn output(&mut self, key: &str, raw: RawOutput) -> crate::render::OutputSettings {
        use crate::render::{FlatFormat, MetadataPolicy, NameTemplate, OutputSettings};
        let mut out = OutputSettings::default();
        let at = |sub: &str| format!("{key}.{sub}");
        out.layers = raw.layers.unwrap_or(true);
        out.psd = raw.psd.unwrap_or(false);
        if let Some(text) = raw.flat {
            match FlatFormat::parse(&text) {
                Some(flat) => out.flat = flat,
                None => self.problem(at("flat"), format!("`{text}` is not one of: same, jpeg, png, none")),
            }
        }
        match raw.jpeg_quality {
            None => {}
            Some(q) if (1..=100).contains(&q) => out.jpeg_quality = q as u8,
            Some(q) => {
                self.problem(at("jpeg_quality"), format!("{q} is out of range; use 1 to 100 (95 is near lossless)"))
            }
        }
        match raw.metadata.as_deref() {
            None | Some("all") => {}
            Some("no-gps") => out.metadata = MetadataPolicy::NoGps,
            Some("none") => out.metadata = MetadataPolicy::None,
            Some(other) => self.problem(at("metadata"), format!("`{other}` is not one of: all, no-gps, none")),
        }
        if let Some(text) = raw.name {
            match NameTemplate::parse(&text) {
                Ok(name) => out.name = name,
                // The token error names the token: said once when the template is only that.
                Err(why) if why.starts_with(&format!("`{text}`")) => self.problem(at("name"), why),
                Err(why) => self.problem(at("name"), format!("`{text}` {why}")),
            }
        }
        for (plugin, value) in raw.opacity {
            let number = match value {
                toml::Value::Float(f) => Some(f),
                toml::Value::Integer(i) => Some(i as f64),
                _ => None,
            };
            let key = at(&format!("opacity.\"{plugin}\""));
            match number.map(crate::render::opacity) {
                Some(Ok(o)) => _ = out.opacity.insert(plugin, o),
                Some(Err(why)) => self.problem(key, why),
                None => self.problem(
                    key,
                    format!("{value} is not a number; write it without quotes, from 0 (off) to 1 (full strength)"),
                ),
            }
        }
        if !out.layers && !out.renders() {
            self.problem(
                key,
                "delivers nothing: layers = false with flat = \"none\" and psd = false; keep one of them",
            );
        }
        out
    }

    fn payload(&mut self, key: &str, raw: Option<toml::Table>, allow_unknown: bool) -> Option<String> {
        let Some(table) = raw else {
            self.problem(key, "missing; add [watch.payload] with mode = \"professional\" and a tasks list");
            return None;
        };
        let value = match serde_json::to_value(&table) {
            Ok(v) => v,
            Err(e) => {
                self.problem(key, format!("cannot be sent as JSON: {e}"));
                return None;
            }
        };
        let findings = crate::plugins::check_payload(&value, allow_unknown);
        let at = |sub: &str| if sub.is_empty() { key.to_string() } else { format!("{key}.{sub}") };
        for (sub, message) in findings.errors {
            self.problem(at(&sub), message);
        }
        for (sub, message) in findings.warnings {
            self.warnings.push(format!("{}: {message}", at(&sub)));
        }
        serde_json::to_string(&value).ok()
    }

    /// Checks across watches: no output folder inside an inbox, no inbox twice.
    fn cross_check(&mut self, watches: &[WatchConfig]) {
        let mut inboxes: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (i, w) in watches.iter().enumerate() {
            let inbox = normalize(&w.inbox);
            if let Some(j) = inboxes.insert(inbox.clone(), i) {
                self.problem(format!("watch[{i}].inbox"), format!("{} is also watch[{j}]'s inbox", w.inbox.display()));
            }
        }
        for (i, w) in watches.iter().enumerate() {
            let folders =
                [("outbox", Some(&w.outbox)), ("done_dir", w.done_dir.as_ref()), ("failed_dir", w.failed_dir.as_ref())];
            for (name, dir) in folders.into_iter().filter_map(|(n, d)| Some((n, d?))) {
                if dir.as_os_str().is_empty() {
                    continue;
                }
                let dir_n = normalize(dir);
                // What the watcher would find there and send again.
                let what = match name {
                    "outbox" => "results",
                    "done_dir" => "finished originals",
                    _ => "failed files",
                };
                for (inbox, j) in &inboxes {
                    let place = if &dir_n == inbox {
                        format!("is watch[{j}]'s inbox itself")
                    } else if dir_n.starts_with(inbox) {
                        format!("lies inside watch[{j}]'s inbox")
                    } else {
                        continue;
                    };
                    self.problem(
                        format!("watch[{i}].{name}"),
                        format!("{} {place}; {what} would be sent again. Put it beside the inbox", dir.display()),
                    );
                }
            }
        }
    }
}

/// `watch.0.what` (serde_ignored's form) as `watch[0].what` (the form users read); the `?`
/// serde_ignored puts in for an optional section is left out.
fn bracket_indexes(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| *p != "?") {
        if part.chars().all(|c| c.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// An absolute, lexically normalized path (symlinks resolved where the folder exists).
pub fn normalize(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment { token_var: None, ..Environment::default() }
    }

    fn base_config(dir: &Path) -> String {
        std::fs::create_dir_all(dir.join("in")).unwrap();
        format!(
            r#"
[server]
url = "http://127.0.0.1:9/api/v1"
token = "abc"
[state]
dir = "{d}/state"
[[watch]]
inbox = "{d}/in"
outbox = "{d}/out"
done_dir = "{d}/done"
failed_dir = "{d}/failed"
[watch.payload]
mode = "professional"
tasks = [{{ Plugin = "Heal", Alpha1 = 1, Layer = 1 }}]
"#,
            d = dir.display()
        )
    }

    #[test]
    fn the_completion_hook_needs_the_dashboards_listener_and_a_tls_address_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let with = |hook: &str, web: &str| {
            let text =
                base_config(dir.path()).replace("token = \"abc\"", &format!("token = \"abc\"\nhook_url = \"{hook}\""));
            parse(&(text + web), dir.path(), &env())
        };
        let problems = with("https://studio.example.com/retouchd", "").unwrap_err();
        assert!(problems.iter().any(|p| p.key == "server.hook_url" && p.message.contains("[web]")), "{problems:?}");
        let ok = with("https://studio.example.com/retouchd/", "[web]\n").unwrap();
        assert_eq!(ok.server.hook_url.as_deref(), Some("https://studio.example.com/retouchd"));
        let plain = with("http://studio.example.com/hook", "[web]\n").unwrap_err();
        assert!(plain.iter().any(|p| p.key == "server.hook_url"), "{plain:?}");
    }

    #[test]
    fn relative_paths_become_absolute_at_load_even_from_a_relative_config_folder() {
        // A config given as `--config photos/config.toml`: its folder is relative too.
        let rel = PathBuf::from("target").join(format!("relative-config-{}", std::process::id()));
        let text = base_config(&rel).replace(&format!("{}/", rel.display()), "");
        let config = parse(&text, &rel, &env());
        let _ = std::fs::remove_dir_all(&rel);
        let config = config.unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.watches[0].inbox, cwd.join(&rel).join("in"));
        assert!(config.watches[0].outbox.is_absolute() && config.state_dir.is_absolute());
    }

    #[test]
    fn the_dashboard_needs_a_password_beyond_loopback_and_takes_it_from_a_file_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let local = parse(
            &(base_config(dir.path())
                + "[web]
"),
            dir.path(),
            &env(),
        )
        .unwrap();
        let web = local.web.unwrap();
        assert_eq!((web.listen.to_string(), web.password), (DEFAULT_WEB_LISTEN.to_string(), None));
        assert!(parse(&base_config(dir.path()), dir.path(), &env()).unwrap().web.is_none(), "off without [web]");

        let open = base_config(dir.path())
            + "[web]
listen = \"0.0.0.0:8642\"
";
        let problems = parse(&open, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "web.password");
        assert!(problems[0].message.contains("SSH tunnel"), "{problems:?}");

        std::fs::write(dir.path().join("pw"), "correct horse battery\n").unwrap();
        let with_file = base_config(dir.path())
            + "[web]
listen = \"[::]:8642\"
password_file = \"pw\"
";
        let web = parse(&with_file, dir.path(), &env()).unwrap().web.unwrap();
        assert_eq!(web.password.unwrap().expose(), "correct horse battery");
        assert!(web.password_source.unwrap().starts_with("web.password_file"));

        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("web-password"), "from-credential").unwrap();
        let with_credential = Environment { credentials_directory: Some(creds), ..env() };
        let web = parse(&open, dir.path(), &with_credential).unwrap().web.unwrap();
        assert_eq!(web.password.unwrap().expose(), "from-credential");

        let short = base_config(dir.path())
            + "[web]
password = \"abc\"
";
        assert!(parse(&short, dir.path(), &env()).unwrap().warnings.iter().any(|w| w.contains("shorter")));
        for (bad, key) in [
            ("[web]\nlisten = \"localhost\"\n", "web.listen"),
            ("[web]\npassword = \" \"\n", "web.password"),
            ("[web]\npassword = \"a\"\npassword_file = \"pw\"\n", "web.password"),
            ("[web]\npassword_file = \"missing\"\n", "web.password_file"),
            ("[web]\npasword = \"x\"\n", "web.pasword"),
        ] {
            let problems = parse(&(base_config(dir.path()) + bad), dir.path(), &env()).unwrap_err();
            assert!(problems.iter().any(|p| p.key == key), "{bad}: {problems:?}");
        }
    }

    #[test]
    fn output_settings_are_read_and_every_mistake_named_by_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = base_config(dir.path())
            + "[watch.output]\nflat = \"jpeg\"\npsd = true\njpeg_quality = 90\nmetadata = \"no-gps\"\n\
               name = \"{stem}-{date}\"\n[watch.output.opacity]\n\"Dodge Burn\" = 0.5\nHeal = 1\n[render]\nmax_renders = 3\n";
        let good = good.replace(
            "tasks = [{ Plugin = \"Heal\", Alpha1 = 1, Layer = 1 }]",
            "tasks = [{ Plugin = \"Heal\", Alpha1 = 1, Layer = 1 }, { Plugin = \"Dodge Burn\", Alpha1 = 1, Layer = 1 }]",
        );
        let config = parse(&good, dir.path(), &env()).unwrap();
        let output = &config.watches[0].output;
        assert_eq!((output.flat, output.psd, output.jpeg_quality), (crate::render::FlatFormat::Jpeg, true, 90));
        assert_eq!(output.metadata, crate::render::MetadataPolicy::NoGps);
        assert_eq!(
            (output.opacity_for("dodge burn"), output.opacity_for("Heal"), output.opacity_for("Other")),
            (0.5, 1.0, 1.0)
        );
        assert_eq!(config.max_renders, 3);
        let bad = base_config(dir.path())
            + "[watch.output]\nlayers = false\nflat = \"none\"\njpeg_quality = 0\nmetadata = \"some\"\n\
               name = \"{stme}\"\n[watch.output.opacity]\n\"Dodge Burn\" = 2\n";
        let problems = parse(&bad, dir.path(), &env()).unwrap_err();
        let name = problems.iter().find(|p| p.key == "watch[0].output.name").unwrap();
        assert_eq!(name.message.matches("{stme}").count(), 1, "said once: {}", name.message);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "watch[0].output",
            "watch[0].output.jpeg_quality",
            "watch[0].output.metadata",
            "watch[0].output.name",
            "watch[0].output.opacity.\"Dodge Burn\"",
        ] {
            assert!(keys.contains(&key), "{key} missing from {problems:?}");
        }
        let typos = base_config(dir.path())
            + "[watch.output.opacity]\n\"Hael\" = 0.5\n\"Dodge Burn\" = 0.5\n\"Eye Vessels\" = \"1\"\n";
        let problems = parse(&typos, dir.path(), &env()).unwrap_err();
        let text = |k: &str| problems.iter().find(|p| p.key == k).map(|p| p.message.clone()).unwrap_or_default();
        assert!(text("watch[0].output.opacity.\"Hael\"").contains("did you mean \"Heal\"?"), "{problems:?}");
        assert!(text("watch[0].output.opacity.\"Dodge Burn\"").contains("not among the layers"), "{problems:?}");
        assert!(text("watch[0].output.opacity.\"Eye Vessels\"").contains("without quotes"), "{problems:?}");
        let flat_psd = base_config(dir.path()).replace("Layer = 1", "Layer = 0") + "[watch.output]\npsd = true\n";
        let config = parse(&flat_psd, dir.path(), &env()).unwrap();
        assert!(config.warnings.iter().any(|w| w.contains("no task has Layer = 1")), "{:?}", config.warnings);
    }

    #[test]
    fn a_config_that_watches_nothing_is_valid_and_needs_no_token_yet() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[server]\ntoken_file = \"token\"\n[state]\ndir = \"{}/state\"\n", dir.path().display());
        std::fs::write(dir.path().join("token"), "").unwrap();
        let config = parse(&text, dir.path(), &env()).unwrap();
        assert!(config.watches.is_empty());
        assert!(config.warnings.iter().any(|w| w.contains("watches nothing")), "{:?}", config.warnings);
        assert!(config.warnings.iter().any(|w| w.contains("token is empty")), "{:?}", config.warnings);
    }

    #[test]
    fn a_good_config_validates_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = parse(&base_config(dir.path()), dir.path(), &env()).unwrap();
        assert_eq!(config.server.poll_interval, Duration::from_secs(5));
        assert_eq!(config.watches[0].settle, Duration::from_secs(5));
        assert_eq!(config.watches[0].on_success, OnSuccess::Move);
        assert!(config.watches[0].payload.contains("\"Plugin\":\"Heal\""));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn durations_written_as_numbers_name_their_key_and_how_to_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path())
            .replace("token = \"abc\"", "token = \"abc\"\npoll_interval = 5\nmax_job_age = 1.5")
            .replace("outbox = ", "settle = 2\noutbox = ");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        let find = |key: &str| problems.iter().find(|p| p.key == key).map(|p| p.message.clone());
        assert_eq!(
            find("server.poll_interval").as_deref(),
            Some("5 is a bare number; a duration needs its unit: write it like \"5s\"")
        );
        assert!(find("watch[0].settle").is_some_and(|m| m.contains("write it like \"2s\"")), "{problems:?}");
        assert!(find("server.max_job_age").is_some_and(|m| m.contains("\"5s\"")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.key == "(type)"), "no raw TOML type error: {problems:?}");
    }

    #[test]
    fn an_inbox_that_cannot_be_read_is_an_error_to_run_and_a_note_to_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path());
        std::fs::remove_dir(dir.path().join("in")).unwrap();
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert!(problems.iter().any(|p| p.key == "watch[0].inbox"), "{problems:?}");
        let config = parse_for(&text, dir.path(), &env(), Purpose::Inspect).unwrap();
        assert_eq!(config.unavailable_inboxes.len(), 1);
        assert!(config.unavailable_inboxes[0].contains("not mounted?"), "{:?}", config.unavailable_inboxes);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path())
            .replace("token = \"abc\"", "token = \"abc\"\ntokn = 1\npoll_interval = \"1s\"\nmax_uploads = 0")
            .replace("outbox = ", "settle = \"-5s\"\nwhat = 3\noutbox = ")
            .replace(&format!("inbox = \"{}/in\"", dir.path().display()), "inbox = \"/nonexistent/inbox\"");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "server.tokn",
            "watch[0].what",
            "server.poll_interval",
            "server.max_uploads",
            "watch[0].settle",
            "watch[0].inbox",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {problems:?}");
        }
    }

    #[test]
    fn an_outbox_inside_the_inbox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path()).replace("/out\"", "/in/out\"");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert!(problems.iter().any(|p| p.key == "watch[0].outbox" && p.message.contains("inside")), "{problems:?}");
        assert!(problems.iter().any(|p| p.message.contains("results would be sent again")), "{problems:?}");

        let same = base_config(dir.path()).replace("/out\"", "/in\"").replace("/done\"", "/in/done\"");
        let problems = parse(&same, dir.path(), &env()).unwrap_err();
        let message = |key: &str| problems.iter().find(|p| p.key == key).map(|p| p.message.clone()).unwrap_or_default();
        assert!(message("watch[0].outbox").contains("is watch[0]'s inbox itself"), "{problems:?}");
        assert!(message("watch[0].done_dir").contains("finished originals would be sent again"), "{problems:?}");
    }

    #[test]
    fn a_shared_journal_takes_its_password_from_the_url_a_file_a_credential_or_pgpassword() {
        let dir = tempfile::tempdir().unwrap();
        let with = |extra: &str| base_config(dir.path()).replace("[state]\n", &format!("[state]\n{extra}\n"));
        let cluster = |text: &str, env: &Environment| parse(text, dir.path(), env).map(|c| c.cluster);
        // Absent: the local journal.
        assert!(cluster(&base_config(dir.path()), &env()).unwrap().is_none());
        // In the URL: used, and never shown.
        let c = cluster(&with("database = \"postgres://rd:s3cret@db.lan:5433/studio\""), &env()).unwrap().unwrap();
        assert_eq!(c.database.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.location, "postgres://rd:***@db.lan:5433/studio");
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        assert_eq!((c.node.as_str(), c.lease), (crate::vocab::host_name().as_str(), Duration::from_secs(30)));
        // From a file, the credential or PGPASSWORD; PG* variables fill what the URL leaves out.
        std::fs::write(dir.path().join("dbpass"), "from-file\n").unwrap();
        let text = with("database = \"postgres://db.lan/studio\"\ndatabase_password_file = \"dbpass\"");
        assert_eq!(cluster(&text, &env()).unwrap().unwrap().database.get_password(), Some(&b"from-file"[..]));
        let creds = dir.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("database-password"), "from-credential").unwrap();
        let pg = |k: &str, v: &str| (k.to_string(), v.to_string());
        let with_env = Environment {
            credentials_directory: Some(creds),
            pg_vars: [pg("PGUSER", "studio-user"), pg("PGPASSWORD", "from-env")].into(),
            ..env()
        };
        let bare = with("database = \"postgres://db.lan/studio\"");
        let c = cluster(&bare, &with_env).unwrap().unwrap();
        assert_eq!(c.database.get_password(), Some(&b"from-credential"[..]));
        assert_eq!(c.database.get_user(), Some("studio-user"));
        let only_env = Environment { pg_vars: [pg("PGPASSWORD", "from-env")].into(), ..env() };
        assert_eq!(cluster(&bare, &only_env).unwrap().unwrap().database.get_password(), Some(&b"from-env"[..]));
        // [cluster] names the node and the lease.
        let named = format!("{bare}\n[cluster]\nnode = \"nas-2\"\nlease = \"45s\"\n");
        let c = cluster(&named, &env()).unwrap().unwrap();
        assert_eq!((c.node.as_str(), c.lease), ("nas-2", Duration::from_secs(45)));
    }

    #[test]
    fn a_bad_shared_journal_setting_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let with = |extra: &str| base_config(dir.path()).replace("[state]\n", &format!("[state]\n{extra}\n"));
        let problems = |text: &str| parse(text, dir.path(), &env()).unwrap_err();
        let keys = |text: &str| problems(text).iter().map(|p| p.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&with("database = \"postgres://a:b@db.lan:notaport/x\"")), ["state.database"]);
        let bad = problems(&with("database = \"postgres://a:secret@db.lan:notaport/x\""));
        assert!(!bad[0].message.contains("secret"), "the password is not repeated: {}", bad[0].message);
        let orphan = format!("{}\n[cluster]\nnode = \"a\"\n", base_config(dir.path()));
        assert_eq!(keys(&orphan), ["cluster"]);
        let short = format!("{}\n[cluster]\nlease = \"100ms\"\n", with("database = \"postgres://db.lan/x\""));
        assert_eq!(keys(&short), ["cluster.lease"]);
        let warned = parse(
            &format!("{}\n[cluster]\nlease = \"3s\"\n", with("database = \"postgres://db.lan/x\"")),
            dir.path(),
            &env(),
        )
        .unwrap();
        assert!(warned.warnings.iter().any(|w| w.contains("cluster.lease")), "{:?}", warned.warnings);
        let missing = with("database_password_file = \"nope\"\ndatabase = \"postgres://db.lan/x\"");
        assert_eq!(keys(&missing), ["state.database_password_file"]);
    }

    #[test]
    fn the_token_comes_from_a_file_a_credential_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "from-file\n").unwrap();
        let text = base_config(dir.path()).replace("token = \"abc\"", "token_file = \"tok\"");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("tok"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = parse(&text, dir.path(), &env()).unwrap();
        assert_eq!(config.server.token.expose(), "from-file");
        assert!(config.warnings.iter().any(|w| w.contains("others can read it") && w.contains("chmod 600")));
        std::fs::set_permissions(dir.path().join("tok"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(parse(&text, dir.path(), &env()).unwrap().warnings.is_empty(), "a private token file is fine");

        let creds = dir.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("token"), "from-credential").unwrap();
        let text = base_config(dir.path()).replace("token = \"abc\"", "");
        let env2 = Environment { credentials_directory: Some(creds), token_var: Some("from-env".into()), ..env() };
        assert_eq!(parse(&text, dir.path(), &env2).unwrap().server.token.expose(), "from-credential");
        let env3 = Environment { token_var: Some("from-env".into()), ..env() };
        assert_eq!(parse(&text, dir.path(), &env3).unwrap().server.token.expose(), "from-env");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "server.token");
    }

    #[test]
    fn an_unreadable_token_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path()).replace("token = \"abc\"", "token_file = \"missing-token\"");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "server.token_file");
    }

    #[test]
    fn unknown_plugins_are_refused_unless_allowed_and_missing_tasks_fail() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path()).replace("Plugin = \"Heal\"", "Plugin = \"Hyper Heal\"");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "watch[0].payload.tasks[0].Plugin");
        assert!(problems[0].message.contains("Hyper Heal") && problems[0].message.contains("allow_unknown_plugins"));
        let allowed = text.replace("[watch.payload]", "allow_unknown_plugins = true\n[watch.payload]");
        let config = parse(&allowed, dir.path(), &env()).unwrap();
        assert!(config.warnings[0].contains("Hyper Heal") && config.warnings[0].contains("sent anyway"));
        let text =
            base_config(dir.path()).replace("tasks = [{ Plugin = \"Heal\", Alpha1 = 1, Layer = 1 }]", "tasks = []");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "watch[0].payload.tasks");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("photos/inbox")).unwrap();
        let text = include_str!("../config.example.toml").replace("/srv", &dir.path().display().to_string());
        let config = parse(&text, dir.path(), &env()).unwrap();
        assert_eq!(config.watches.len(), 1);
        assert_eq!(config.server.url, api::DEFAULT_BASE_URL);
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = base_config(dir.path()).replace("http://127.0.0.1:9", "http://example.com");
        let problems = parse(&text, dir.path(), &env()).unwrap_err();
        assert_eq!(problems[0].key, "server.url");
    }
}
