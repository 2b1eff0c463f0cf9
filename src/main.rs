//! The `retouchd` binary: parses the command line, runs the chosen command, and maps failures
//! to documented exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use retouchd::config::{self, Config, Environment};
use retouchd::daemon::{self, DaemonError, RunOptions};
use retouchd::journal::Journal;
use retouchd::sim::{SimConfig, Simulator};

mod cli;

use cli::{Cli, Command, ConfigArg, SimArgs};

use retouchd::exit;

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Failure { code, message: message.to_string() }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::new(exit::FAILURE, format!("{e:#}"))
    }
}

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Self {
        let code = match e {
            DaemonError::Lock(retouchd::lock::LockError::Held { .. }) => exit::LOCKED,
            DaemonError::Lock(_) => exit::JOURNAL,
            DaemonError::Journal(_) => exit::JOURNAL,
            DaemonError::Client(_) => exit::CONFIG,
            DaemonError::InboxOwned(_) => exit::LOCKED,
            DaemonError::Web { .. } => exit::CONFIG,
        };
        Failure::new(code, e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only print end quietly when their reader goes away (`retouchd man | head`),
    // as Unix tools do. Commands that run jobs or talk to a server (`check`: a server closing the
    // connection would kill it silently) keep SIGPIPE ignored and stop properly instead.
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::Retry { .. }
            | Command::Render { .. }
            | Command::Completions { .. }
            | Command::Man
    ) {
        // SAFETY: restoring the default disposition of one signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // File work (checks, extraction, moves) runs on blocking threads; a bound keeps a burst of
    // a thousand jobs from starting hundreds of threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(32).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("retouchd: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let log_format = cli.log_format;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { config, once } => run(config, once, log_format).await,
            Command::Status { config, json } => status(config, json),
            Command::MigrateJournal { config, from } => migrate_journal(config, from),
            Command::Retry { config, job, failed, refused } => retry(config, job, failed, refused),
            Command::Check { config } => check(config).await,
            Command::Init {
                config,
                inbox,
                outbox,
                done,
                failed,
                token_file,
                preset,
                strength,
                outputs,
                server_url,
                force,
                no_check,
            } => {
                use retouchd::commands::init::{self, InitError, Request};
                let Some(path) = config.config.or_else(config::default_path) else {
                    return Err(Failure::new(exit::CONFIG, "no default config location; pass --config FILE"));
                };
                let request = Request {
                    config: path,
                    inbox,
                    outbox,
                    done,
                    failed,
                    token_file,
                    preset,
                    strength,
                    outputs,
                    server_url,
                    force,
                    no_check,
                };
                match init::run(request, &mut std::io::stdin().lock()).await {
                    Ok(path) => write_out(format!("{}\n", init::next_step(&path)).as_bytes()),
                    Err(e @ InitError::Invalid(_)) => Err(Failure::new(exit::CONFIG, e)),
                    Err(e @ InitError::Check(_)) => Err(Failure::new(exit::SERVER, e)),
                    Err(e) => Err(Failure::new(exit::FAILURE, e)),
                }
            }
            Command::Process { config, out, watch, again, paths } => {
                let config = load_config(&config)?;
                retouchd::logging::init(log_format, "error");
                let request = retouchd::commands::process::Request { paths: &paths, out: out.as_deref(), watch, again };
                let summary = retouchd::commands::process::run(config, request).await.map_err(process_failure)?;
                outcome(&summary)
            }
            Command::Render { config, opacity, flat, psd, out, source, paths } => {
                retouchd::logging::init(log_format, "warn");
                render(config, opacity, flat, psd, out, source, paths)
            }
            Command::Demo { dir } => {
                retouchd::logging::init(log_format, "error");
                retouchd::commands::demo::run(&dir).await.map(drop).map_err(Failure::from)
            }
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "retouchd", &mut script);
                write_out(&script)
            }
            Command::Man => {
                let command = <Cli as clap::CommandFactory>::command();
                let page = retouchd::commands::man::render(command)
                    .map_err(|e| Failure::new(exit::FAILURE, format!("cannot make the man page: {e}")))?;
                write_out(&page)
            }
            Command::Sim(args) => {
                retouchd::logging::init(log_format, "info");
                run_sim(args).await.map_err(Failure::from)
            }
        }
    });
    // Work still running (a file check, a hook) gets a moment, never longer than the unit's
    // stop timeout allows: everything it did is journaled or repeatable.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("retouchd: {}", f.message.trim_end());
            ExitCode::from(f.code)
        }
    }
}

fn load_config(arg: &ConfigArg) -> Result<Config, Failure> {
    load_config_for(arg, config::Purpose::Run)
}

fn load_config_for(arg: &ConfigArg, purpose: config::Purpose) -> Result<Config, Failure> {
    let path: PathBuf = match arg.config.clone().or_else(config::default_path) {
        Some(p) => p,
        None => {
            return Err(Failure::new(exit::CONFIG, "no config file given and no default location; pass --config FILE"));
        }
    };
    config::load_for(&path, &Environment::from_process(), purpose).map_err(|e| Failure::new(exit::CONFIG, e))
}

async fn run(arg: ConfigArg, once: bool, log_format: retouchd::logging::LogFormat) -> Result<(), Failure> {
    let config = load_config(&arg)?;
    retouchd::logging::init(log_format, &config.log_level);
    retouchd::daemon::raise_open_file_limit();
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    let config_file = arg.config.clone().or_else(config::default_path);
    let reload_source: daemon::control::ReloadSource = {
        let arg = arg.clone();
        std::sync::Arc::new(move || load_config(&arg).map_err(|f| f.message))
    };
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            match load_config(&arg) {
                Ok(config) => {
                    if reload_tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(f) => tracing::error!("the new configuration is refused; the old one keeps running. {}", f.message),
            }
        }
    });
    let options =
        RunOptions { once, reloads: Some(reloads), reload_source: Some(reload_source), ..RunOptions::default() };
    let summary = retouchd::serve::run(config, options, config_file, shutdown).await?;
    if once {
        return outcome(&summary);
    }
    Ok(())
}

/// `process` uses the daemon's journal, so it cannot run beside a daemon of the same state
/// folder: say so plainly, with the code for a held state folder.
fn process_failure(e: anyhow::Error) -> Failure {
    match e.downcast::<DaemonError>() {
        Ok(DaemonError::Lock(retouchd::lock::LockError::Held { pid, .. })) => Failure::new(
            exit::LOCKED,
            format!(
                "the daemon{} is running with this state folder, and `retouchd process` uses the same journal, \
                 so it cannot run beside it. Drop the files into one of its inboxes instead, or stop it \
                 first (`systemctl stop retouchd`)",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        ),
        Ok(other) => Failure::from(other),
        Err(e) => Failure::from(e),
    }
}

/// Writes bytes to standard output; a reader that went away ends the output quietly.
fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::new(exit::FAILURE, format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Prints what a run to the end did; a run in which files failed or were refused fails.
fn outcome(summary: &daemon::Summary) -> Result<(), Failure> {
    let line = format!("{} delivered, {} failed, {} refused\n", summary.done, summary.failed, summary.rejected);
    write_out(line.as_bytes())?;
    match summary.failed + summary.rejected {
        0 => Ok(()),
        n => Err(Failure::new(exit::FAILURE, format!("{n} file(s) could not be retouched; see the reasons above"))),
    }
}

fn open_journal(config: &Config) -> Result<Journal, Failure> {
    Journal::for_config(config, false).map_err(|e| Failure::new(exit::JOURNAL, e))
}

fn status(arg: ConfigArg, json: bool) -> Result<(), Failure> {
    let config = load_config_for(&arg, config::Purpose::Inspect)?;
    if config.cluster.is_none() && !config.state_dir.join(retouchd::journal::FILE_NAME).exists() {
        println!("no journal yet in {}; start `retouchd run` first", config.state_dir.display());
        return Ok(());
    }
    let journal = open_journal(&config)?;
    let report = retouchd::report::report(&journal, &config).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Failure::new(exit::FAILURE, e))?);
    } else {
        print!("{}", retouchd::report::render(&report));
    }
    Ok(())
}

fn migrate_journal(arg: ConfigArg, from: Option<PathBuf>) -> Result<(), Failure> {
    use retouchd::journal::migrate;
    let config = load_config_for(&arg, config::Purpose::Inspect)?;
    let Some(cluster) = &config.cluster else {
        return Err(Failure::new(
            exit::CONFIG,
            "the config has no shared journal to copy into: set state.database to a PostgreSQL URL first",
        ));
    };
    let state_dir = from.unwrap_or_else(|| config.state_dir.clone());
    // The daemon that writes this journal must be stopped: its lock says whether it runs.
    let _lock = retouchd::lock::StateLock::acquire(&state_dir).map_err(|e| Failure::new(exit::LOCKED, e))?;
    let source = migrate::source_journal(&state_dir).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    let target = migrate::target_journal(cluster).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    let copied = migrate::copy(&source, &target, |n| eprint!("\rcopied {n} jobs"))
        .map_err(|e| Failure::new(exit::JOURNAL, e))?;
    eprintln!();
    println!(
        "copied {} jobs ({} unfinished: the first node to start takes them over) from {} into {}",
        copied.jobs,
        copied.unfinished,
        source.path().display(),
        target.path().display()
    );
    Ok(())
}

fn retry(arg: ConfigArg, job: Option<i64>, failed: bool, refused: bool) -> Result<(), Failure> {
    use retouchd::retry::{self, Retried, Which};
    let which = match (job, failed) {
        (Some(id), _) => Which::Job(id),
        (None, true) => Which::Failed { refused },
        (None, false) => {
            return Err(Failure::new(
                exit::USAGE,
                "say what to retry: a job number (from `retouchd status`), or --failed for every failed file",
            ));
        }
    };
    let config = load_config_for(&arg, config::Purpose::Inspect)?;
    let journal = open_journal(&config)?;
    let outcomes = retry::retry(&config, &journal, which).map_err(|e| Failure::new(exit::JOURNAL, e))?;
    if let (Which::Job(_), [Retried::Skipped { id, why }]) = (which, &outcomes[..]) {
        return Err(Failure::new(exit::FAILURE, format!("#{id} not retried: {why}")));
    }
    write_out(retry::report(&outcomes).as_bytes())
}

fn render(
    arg: ConfigArg,
    opacity: Vec<(String, f32)>,
    flat: Option<retouchd::render::FlatFormat>,
    psd: bool,
    out: Option<PathBuf>,
    source: Option<PathBuf>,
    paths: Vec<PathBuf>,
) -> Result<(), Failure> {
    use retouchd::commands::render::{self, Request};
    // The config tells the journal and the watch's settings; with --source it may be absent.
    let config = match (load_config_for(&arg, config::Purpose::Inspect), &source) {
        (Ok(config), _) => Some(config),
        (Err(_), Some(_)) => None,
        (Err(e), None) => return Err(e),
    };
    let request =
        Request { paths: &paths, source: source.as_deref(), opacity: &opacity, flat, psd, out: out.as_deref() };
    let mut failed = 0;
    for done in render::run(config.as_ref(), &request) {
        match done.outcome {
            Ok(outputs) => {
                let list: Vec<String> = outputs.iter().map(|p| p.display().to_string()).collect();
                println!("{}: wrote {}", done.folder.display(), list.join(", "));
            }
            Err(why) => {
                failed += 1;
                eprintln!("{}: {why}", done.folder.display());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure::new(exit::FAILURE, format!("{n} of {} folder(s) could not be rendered", paths.len()))),
    }
}

async fn check(arg: ConfigArg) -> Result<(), Failure> {
    let config = load_config(&arg)?;
    retouchd::commands::check::run(&config).await.map_err(|e| match e {
        retouchd::commands::check::CheckError::Client(e) => Failure::new(exit::CONFIG, e),
        retouchd::commands::check::CheckError::Server(message) => Failure::new(exit::SERVER, message),
        retouchd::commands::check::CheckError::Database(message) => Failure::new(exit::JOURNAL, message),
        retouchd::commands::check::CheckError::Folders(message) => Failure::new(exit::CONFIG, message),
    })
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let config = SimConfig {
        token: args.token,
        quota: args.quota,
        processing_ms: ms(args.processing_time),
        processing_ms_per_task: ms(args.time_per_task),
        processing_ms_per_mb: ms(args.time_per_mb),
        processing_jitter_ms: ms(args.jitter),
        completion_lag_ms: ms(args.completion_lag),
        store_lag_ms: ms(args.store_lag),
        retention_ms: ms(args.retention),
        limits_enabled: args.limits,
        fail_rate: args.fail_rate,
        start_error_rate: args.error_rate,
        status_error_rate: args.error_rate,
        get_file_error_rate: args.error_rate,
        drop_rate: args.drop_rate,
        delay_ms: ms(args.delay),
        codes_in_body: args.codes_in_body,
        ..SimConfig::default()
    };
    let sim = Simulator::start(args.listen, config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    println!("retoucher simulator serving {}", sim.base_url());
    println!("balance route: {}", sim.balance_url());
    if !sim.addr().ip().is_loopback() {
        tracing::warn!(addr = %sim.addr(), "the simulator listens beyond loopback");
    }
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
