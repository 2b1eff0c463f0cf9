//! Validation: the raw config checked key by key into a ready [`Config`], every problem
//! collected with its key and what to do, warnings beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::*;
use super::*;
use crate::api;
use crate::deliver::NameTemplate;

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
    let zone = raw
        .budget
        .as_ref()
        .and_then(|b| b.timezone.clone())
        .or_else(|| raw.schedule.as_ref().and_then(|s| s.timezone.clone()));
    let budget = raw.budget.clone().and_then(|b| v.budget("budget", b, zone.as_deref()));
    let global_schedule = raw.schedule.clone();
    let schedule = raw.schedule.and_then(|s| v.schedule("schedule", s, None));
    let watches: Vec<WatchConfig> = raw
        .watch
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| v.watch(i, w, schedule.as_ref(), global_schedule.as_ref(), zone.as_deref()))
        .collect();
    v.cross_check(&watches);
    let notify = v.channels(raw.notify, env);
    let batch_quiet = v.batch_quiet(raw.batches);
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
                budget,
                web,
                notify,
                batch_quiet,
                cluster,
                warnings: v.warnings,
                unavailable_inboxes,
            })
        }
        _ => Err(v.problems),
    }
}

pub(super) struct Validator {
    pub(super) problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
    pub(super) base: PathBuf,
    pub(super) purpose: Purpose,
    /// With [`Purpose::Inspect`]: inboxes that cannot be read now.
    unavailable_inboxes: Vec<String>,
}

impl Validator {
    pub(super) fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }

    pub(super) fn duration(&mut self, key: &str, value: Option<RawDuration>, default: &str) -> Duration {
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

    pub(super) fn count(&mut self, key: &str, value: Option<i64>, default: usize) -> usize {
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
    pub(super) fn path(&self, p: PathBuf) -> PathBuf {
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
}

impl Validator {
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

    /// Upload windows from `[schedule]` or a watch's `schedule` (`global`: `[schedule]`, whose
    /// time zone a watch's windows take unless they name their own).
    fn schedule(
        &mut self,
        key: &str,
        raw: RawSchedule,
        global: Option<&RawSchedule>,
    ) -> Option<crate::schedule::Windows> {
        let Some(uploads) = raw.uploads else {
            self.problem(format!("{key}.uploads"), "missing; give windows like [\"Mon-Fri 20:00-07:00\", \"Sat,Sun\"]");
            return None;
        };
        let timezone = raw.timezone.or_else(|| global.and_then(|g| g.timezone.clone()));
        match crate::schedule::Windows::parse(&uploads, timezone.as_deref()) {
            Ok(windows) => Some(windows),
            Err(e) => {
                let which = if e.starts_with("timezone") { "timezone" } else { "uploads" };
                self.problem(format!("{key}.{which}"), e);
                None
            }
        }
    }

    /// A credit budget; `zone`: `[budget]`'s (or `[schedule]`'s) time zone, unless it names one.
    fn budget(&mut self, key: &str, raw: RawBudget, zone: Option<&str>) -> Option<crate::budget::Budget> {
        let mut count = |name: &str, value: Option<i64>| match value {
            None => None,
            Some(n) if n >= 0 => Some(n as u64),
            Some(n) => {
                self.problem(format!("{key}.{name}"), format!("{n} is below zero; give the most credits to spend"));
                None
            }
        };
        let (per_day, per_month) = (count("per_day", raw.per_day), count("per_month", raw.per_month));
        if raw.per_day.is_none() && raw.per_month.is_none() {
            self.problem(key.to_string(), "sets no limit; give per_day, per_month or both");
            return None;
        }
        match crate::budget::Budget::new(per_day, per_month, raw.timezone.as_deref().or(zone)) {
            Ok(budget) => Some(budget),
            Err(e) => {
                self.problem(format!("{key}.timezone"), e);
                None
            }
        }
    }

    fn watch(
        &mut self,
        i: usize,
        raw: RawWatch,
        schedule: Option<&crate::schedule::Windows>,
        global_schedule: Option<&RawSchedule>,
        zone: Option<&str>,
    ) -> Option<WatchConfig> {
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
        let (output, output_name) = self.output(&key("output"), raw.output.unwrap_or_default());
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
            output,
            output_name,
            budget: raw.budget.and_then(|b| self.budget(&key("budget"), b, zone)),
            schedule: match raw.schedule {
                Some(own) => self.schedule(&key("schedule"), own, global_schedule),
                None => schedule.cloned(),
            },
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

    /// `[watch.output]`: what is made, and the name it is given.
    fn output(&mut self, key: &str, raw: RawOutput) -> (crate::render::OutputSettings, NameTemplate) {
        use crate::render::{FlatFormat, MetadataPolicy, OutputSettings};
        let mut out = OutputSettings::default();
        let mut name = NameTemplate::default();
        let at = |sub: &str| format!("{key}.{sub}");
        out.layers = raw.layers.unwrap_or(true);
        out.psd = raw.psd.unwrap_or(false);
        if let Some(text) = raw.flat {
            match FlatFormat::parse(&text) {
                Some(flat) => out.flat = flat,
                None => self.problem(at("flat"), format!("`{text}` is not one of: same, jpeg, png, tiff, none")),
            }
        }
        if let Some(text) = raw.tiff_compression {
            match crate::render::TiffCompression::parse(&text) {
                Some(c) => out.tiff_compression = c,
                None => self.problem(
                    at("tiff_compression"),
                    format!("`{text}` is not one of: {}", crate::render::TiffCompression::NAMES),
                ),
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
                Ok(parsed) => name = parsed,
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
        (out, name)
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
