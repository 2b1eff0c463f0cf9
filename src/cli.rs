//! The command line: one subcommand per thing a person does with retouchd.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use retouchd::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "retouchd", version, about = "Hot-folder daemon for the Retouch4me cloud retouching API")]
pub struct Cli {
    /// Log format: auto (plain under systemd, coloured on a terminal), text, or json.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the inboxes and process every new file (the daemon).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Process what is there now (and what the journal holds) to the end, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Show jobs per state, jobs in flight and recent failures.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Only say whether the running daemon is well (exit 0) or not (exit 1, with why): it
        /// reported within a minute, no disk is full, the journal answers, and the token and
        /// server setup work. For a container's HEALTHCHECK or a monitoring script.
        #[arg(long, conflicts_with = "json")]
        health: bool,
    },
    /// Send failed files again: moves them from failed/ back into their inbox. Give a job
    /// number (from `retouchd status`), or --failed for every failed file.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// The job number (from `retouchd status`).
        #[arg(conflicts_with = "failed")]
        job: Option<i64>,
        /// Every file whose newest job failed and whose file is in failed/.
        #[arg(long)]
        failed: bool,
        /// With --failed: also files refused before sending (not a photo, over the limits),
        /// which are otherwise left, since they would be refused again.
        #[arg(long, requires = "failed")]
        refused: bool,
    },
    /// Send files or folders once, with progress, and write the results next to them (or into
    /// --out). Uses the daemon's journal: a second run resumes instead of paying again, and says
    /// which files were done before (--again sends them anew). Cannot run while the daemon runs
    /// with the same state folder.
    Process {
        #[command(flatten)]
        config: ConfigArg,
        /// Write results here instead of next to each file.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Take the payload from this [[watch]] of the config (0 is the first).
        #[arg(long, default_value_t = 0)]
        watch: usize,
        /// Send files that were retouched (or refused) before again. Each costs a new credit.
        #[arg(long)]
        again: bool,
        /// Files and folders (folders are searched recursively; only .jpg, .jpeg, .png, .tif,
        /// .tiff and .zip files are taken from them, junk skipped). One run is one batch
        /// (`batch_done` is notified when it ends).
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// A first setup: asks for the inbox, outbox, done and failed folders, the token (stored
    /// in its own file, mode 0600) and a payload preset, checks them as `check` does (no
    /// credit), and writes the config (mode 0600). With --inbox it asks nothing, and reads the
    /// token from standard input unless --token-file is given. Never replaces a config
    /// without --force.
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// The folder photos are dropped into (asks nothing else then: scripts).
        #[arg(long, value_name = "DIR")]
        inbox: Option<std::path::PathBuf>,
        /// Where results go (default: `outbox` beside the inbox).
        #[arg(long, value_name = "DIR")]
        outbox: Option<std::path::PathBuf>,
        /// Where originals go once retouched (default: `done` beside the inbox).
        #[arg(long, value_name = "DIR")]
        done: Option<std::path::PathBuf>,
        /// Where files that cannot be retouched go (default: `failed` beside the inbox).
        #[arg(long, value_name = "DIR")]
        failed: Option<std::path::PathBuf>,
        /// A file holding the token already (else the token is asked for, or read from stdin).
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        /// The payload: portrait, portrait-flat, light, eyes-teeth or studio-backdrop.
        #[arg(long, value_name = "NAME")]
        preset: Option<String>,
        /// How strongly the preset's plugins work: subtle, normal (default) or extreme (the
        /// vendor's suggested values).
        #[arg(long, value_name = "NAME")]
        strength: Option<String>,
        /// What to deliver: layers+photo (default), photo, photo+psd, all, or layers.
        #[arg(long, value_name = "NAME")]
        outputs: Option<String>,
        /// The API base, with /api/v1 (default: the service's main host).
        #[arg(long, value_name = "URL")]
        server_url: Option<String>,
        /// Replace an existing config (and token file).
        #[arg(long)]
        force: bool,
        /// Do not ask the server (no network during setup); run `retouchd check` later.
        #[arg(long)]
        no_check: bool,
    },
    /// Pause uploads from every inbox, or from one (--watch), until `retouchd resume` or for a
    /// while (--for 2h). Jobs already at the server go on. Kept across restarts; a running
    /// daemon (or every node of a shared journal) takes it within seconds.
    Pause {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this inbox (one of the config's).
        #[arg(long, value_name = "INBOX")]
        watch: Option<std::path::PathBuf>,
        /// End the pause by itself after this long (e.g. 2h, 90m).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// End a pause: every one, or only that of an inbox (--watch).
    Resume {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this inbox's pause.
        #[arg(long, value_name = "INBOX")]
        watch: Option<std::path::PathBuf>,
    },
    /// Send a test event to every [[notify]] channel (or the one named), at once, and say what
    /// each answered.
    NotifyTest {
        #[command(flatten)]
        config: ConfigArg,
        /// Only the channel with this name.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Validate the config, then probe the server and the token (spends no credit).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy this daemon's SQLite journal into the shared PostgreSQL journal that
    /// `[state] database` names (once, into an empty one), so that its history and its
    /// unfinished jobs carry over to the cluster. Stop the daemon first.
    MigrateJournal {
        #[command(flatten)]
        config: ConfigArg,
        /// The state folder whose journal to copy (default: the config's state.dir).
        #[arg(long, value_name = "DIR")]
        from: Option<std::path::PathBuf>,
    },
    /// Make new finished photos from delivered layers folders, without the server (spends
    /// nothing, never overwrites): another plugin strength, a PSD, another format. The photo
    /// is found through the journal (in done/ or the inbox), or given with --source.
    Render {
        #[command(flatten)]
        config: ConfigArg,
        /// A plugin's strength, PLUGIN=0..1 (e.g. "Dodge Burn=0.5"); repeat for several.
        #[arg(long, value_name = "PLUGIN=STRENGTH", value_parser = retouchd::commands::render::parse_opacity)]
        opacity: Vec<(String, f32)>,
        /// The finished photo's format: same, jpeg, png, tiff or none (default: the watch's).
        #[arg(long, value_name = "FORMAT", value_parser = parse_flat)]
        flat: Option<retouchd::render::FlatFormat>,
        /// Also write a layered PSD.
        #[arg(long)]
        psd: bool,
        /// Write here instead of beside each folder.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// The source photo (else found through the journal).
        #[arg(long, value_name = "FILE")]
        source: Option<std::path::PathBuf>,
        /// Delivered layers folders (outbox/<name>/).
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// Try retouchd end to end against a built-in simulator: no token, network or config needed.
    Demo {
        /// Where to make the demo workspace.
        #[arg(long, default_value = "retouchd-demo")]
        dir: std::path::PathBuf,
    },
    /// Serve a local simulator of the retoucher server (no token or credits needed).
    Sim(SimArgs),
    /// Print a shell completion script (e.g. `retouchd completions bash > /etc/bash_completion.d/retouchd`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `retouchd man > /usr/local/share/man/man1/retouchd.1`.
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Config file; default: $CONFIGURATION_DIRECTORY/config.toml or ~/.config/retouchd/config.toml.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 5s or 2m: {e}"))
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on. Loopback by default; anything else exposes it to the network.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The token it accepts.
    #[arg(long, default_value = "demo-token")]
    pub token: String,
    /// Time from start to completed.
    #[arg(long, value_parser = duration, default_value = "3s")]
    pub processing_time: Duration,
    /// Extra processing time per task in the payload.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub time_per_task: Duration,
    /// Extra processing time per MB of upload.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub time_per_mb: Duration,
    /// A random extra 0..this added to each job's processing time.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub jitter: Duration,
    /// progress reaches 100 this long before completed.
    #[arg(long, value_parser = duration, default_value = "500ms")]
    pub completion_lag: Duration,
    /// getFile answers 404 this long after completed.
    #[arg(long, value_parser = duration, default_value = "300ms")]
    pub store_lag: Duration,
    /// How long results are kept.
    #[arg(long, value_parser = duration, default_value = "24h")]
    pub retention: Duration,
    /// Accepted starts before it answers 461 (processing limit reached).
    #[arg(long)]
    pub quota: Option<u64>,
    /// Serve /info/limits (production answers 404).
    #[arg(long)]
    pub limits: bool,
    /// Share of jobs that end failed (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of requests answered with 500 on every route (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests whose connection is dropped mid-answer (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Delay before every answer.
    #[arg(long, value_parser = duration, default_value = "0s")]
    pub delay: Duration,
    /// Answer 460/461/462 as HTTP 200 with the code in the body.
    #[arg(long)]
    pub codes_in_body: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("a pause of no time; give a duration like 2h or 90m".into()),
        Err(e) => Err(format!("`{text}` is not a duration ({e}); give one like 2h or 90m")),
    }
}

fn parse_flat(text: &str) -> Result<retouchd::render::FlatFormat, String> {
    retouchd::render::FlatFormat::parse(text)
        .ok_or_else(|| format!("`{text}` is not one of: same, jpeg, png, tiff, none"))
}
