//! Configuration: TOML parsed into a raw form ([`raw`]), then validated ([`validate`]) into a
//! ready [`Config`]; secrets (token, passwords) come from the file, files beside it or systemd
//! credentials ([`secrets`]).
//!
//! Every problem is collected and reported at once, each naming its key and what to do; unknown
//! keys are errors (a typo must not silently fall back to a default). Durations are
//! human-readable ("5s", "2m", "1h 30m").

mod notify;
mod raw;
mod secrets;
mod validate;

pub use notify::DEFAULT_BATCH_QUIET;
pub use secrets::redact_url;
pub use validate::{parse, parse_for};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The finished outputs' file name without extension (`[watch.output] name`).
    pub output_name: crate::deliver::NameTemplate,
    /// When uploads may start (`[schedule]`, or the watch's own `schedule`); `None`: any time.
    pub schedule: Option<crate::schedule::Windows>,
    /// This watch's own credit budget (`[watch.budget]`), counted over its inbox alone.
    pub budget: Option<crate::budget::Budget>,
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
    /// The credit budget over every inbox (`[budget]`).
    pub budget: Option<crate::budget::Budget>,
    pub watches: Vec<WatchConfig>,
    /// The web dashboard, when `[web]` is present.
    pub web: Option<WebConfig>,
    /// Where events are sent (`[[notify]]`).
    pub notify: Vec<crate::notify::Channel>,
    /// A batch closes once its folder was quiet this long and every file settled (`[batches] quiet`).
    pub batch_quiet: Duration,
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

pub(super) fn config_is_readable_by_others(path: &Path) -> bool {
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
    fn notify_channels_take_their_kinds_keys_secrets_and_events_and_bad_ones_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook-secret"), "0123456789abcdef0123\n").unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join("notify-mail-password"), "from-credential").unwrap();
        let env = Environment { credentials_directory: Some(creds), ..env() };
        let with = |sections: &str| format!("[batches]\nquiet = \"30s\"\n{sections}\n{}", base_config(dir.path()));
        let good = r#"
[[notify]]
kind = "webhook"
url = "https://hooks.example.com/retouchd"
secret_file = "hook-secret"
events = ["batch_done", "failed"]
[[notify]]
kind = "ntfy"
url = "https://ntfy.sh/studio-42"
[[notify]]
name = "mail"
kind = "email"
smtp_host = "smtp.example.com"
username = "studio"
from = "retouchd <studio@example.com>"
to = ["me@example.com"]
"#;
        let config = parse(&with(good), dir.path(), &env).unwrap();
        assert_eq!(config.batch_quiet, Duration::from_secs(30));
        let names: Vec<(&str, &str)> = config.notify.iter().map(|c| (c.name.as_str(), c.target.kind())).collect();
        assert_eq!(names, [("webhook-1", "webhook"), ("ntfy-2", "ntfy"), ("mail", "email")]);
        assert_eq!(config.notify[0].events.len(), 2);
        assert_eq!(config.notify[1].events.len(), 6, "all by default");
        assert!(
            !config.notify[2].events.contains(&crate::notify::EventKind::Failed),
            "e-mail: per batch, not per photo"
        );
        match &config.notify[2].target {
            crate::notify::Target::Email(smtp) => {
                assert_eq!((smtp.port, smtp.login.as_ref().unwrap().1.expose()), (587, "from-credential"));
            }
            other => panic!("{other:?}"),
        }
        match &config.notify[0].target {
            crate::notify::Target::Webhook { secret, .. } => assert_eq!(secret.expose(), "0123456789abcdef0123"),
            other => panic!("{other:?}"),
        }
        for (section, key) in [
            ("[[notify]]\nkind = \"pager\"", "notify[0].kind"),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example/h\"", "notify[0].secret"),
            ("[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example/h\"\nsecret = \"short\"", "notify[0].secret"),
            ("[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/\"", "notify[0].url"),
            ("[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/a\"\nsmtp_host = \"x\"", "notify[0].smtp_host"),
            ("[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/a\"\nevents = [\"done\"]", "notify[0].events"),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\nevents = [\"failed\"]",
                "notify[0].events",
            ),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nsecurity = \"none\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]",
                "notify[0].security",
            ),
            (
                "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nfrom = \"not an address\"\nto = [\"d@e.f\"]",
                "notify[0].from",
            ),
            (
                "[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/a\"\n[[notify]]\nname = \"ntfy-1\"\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/b\"",
                "notify[1].name",
            ),
        ] {
            let problems = parse(&with(section), dir.path(), &env).unwrap_err();
            assert!(problems.iter().any(|p| p.key == key), "{section}: {problems:?}");
        }
    }

    #[test]
    fn upload_windows_come_from_schedule_or_the_watch_and_bad_ones_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        // [schedule] must come before [[watch]] in the file: put it first.
        let with = |global: &str, own: &str| format!("{global}\n{}{own}", base_config(dir.path()));
        let config =
            parse(&with("[schedule]\nuploads = [\"Sat,Sun\"]\ntimezone = \"UTC\"", ""), dir.path(), &env()).unwrap();
        let windows = config.watches[0].schedule.as_ref().expect("the watch takes [schedule]");
        assert_eq!(windows.text, ["Sat,Sun"]);
        let own = "[watch.schedule]\nuploads = [\"Mon-Fri 20:00-07:00\"]\n";
        let config =
            parse(&with("[schedule]\nuploads = [\"Sat,Sun\"]\ntimezone = \"UTC\"", own), dir.path(), &env()).unwrap();
        assert_eq!(config.watches[0].schedule.as_ref().unwrap().text, ["Mon-Fri 20:00-07:00"]);
        assert!(parse(&base_config(dir.path()), dir.path(), &env()).unwrap().watches[0].schedule.is_none());
        let bad = with(
            "[schedule]\nuploads = [\"Mo 20:00-07:00\"]",
            "[watch.schedule]\nuploads = [\"Sat\"]\ntimezone = \"Nowhere/Here\"\n",
        );
        let problems = parse(&bad, dir.path(), &env()).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"schedule.uploads") && keys.contains(&"watch[0].schedule.timezone"), "{problems:?}");
        let missing = parse(&with("[schedule]\ntimezone = \"UTC\"", ""), dir.path(), &env()).unwrap_err();
        assert!(missing.iter().any(|p| p.key == "schedule.uploads" && p.message.contains("Mon-Fri")), "{missing:?}");
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
        let text = include_str!("../../config.example.toml").replace("/srv", &dir.path().display().to_string());
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
