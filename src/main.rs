//! The `retouchd` binary: parses the command line, hands each command to [`retouchd::commands`],
//! and maps failures to documented exit codes.

use std::process::ExitCode;

use clap::Parser;
use retouchd::commands::{self, Failure};
use retouchd::exit;
use retouchd::sim::SimConfig;

mod cli;

use cli::{Cli, Command, SimArgs};

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
            Command::Run { config, once } => commands::run::run(config.config, once, log_format).await,
            Command::Status { config, json, health } => commands::status::status(config.config, json, health),
            Command::MigrateJournal { config, from } => commands::migrate::migrate_journal(config.config, from),
            Command::Retry { config, job, failed, refused } => {
                commands::status::retry(config.config, job, failed, refused)
            }
            Command::Check { config } => commands::check::cli(config.config).await,
            Command::NotifyTest { config, channel } => commands::notify_test::notify_test(config.config, channel).await,
            Command::Pause { config, watch, duration } => commands::pause::pause(config.config, watch, duration),
            Command::Resume { config, watch } => commands::pause::resume(config.config, watch),
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
                use commands::init::{self, InitError, Request};
                let path = commands::config_path(config.config.as_deref())?;
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
                    Ok(path) => commands::write_out(format!("{}\n", init::next_step(&path)).as_bytes()),
                    Err(e @ InitError::Invalid(_)) => Err(Failure::new(exit::CONFIG, e)),
                    Err(e @ InitError::Check(_)) => Err(Failure::new(exit::SERVER, e)),
                    Err(e) => Err(Failure::new(exit::FAILURE, e)),
                }
            }
            Command::Process { config, out, watch, again, paths } => {
                let config = commands::load_config(config.config.as_deref())?;
                retouchd::logging::init(log_format, "error");
                let request = commands::process::Request { paths: &paths, out: out.as_deref(), watch, again };
                let summary = commands::process::run(config, request).await.map_err(commands::process::failure)?;
                commands::outcome(&summary)
            }
            Command::Render { config, opacity, flat, psd, out, source, paths } => {
                retouchd::logging::init(log_format, "warn");
                commands::render::cli(config.config, opacity, flat, psd, out, source, paths)
            }
            Command::Demo { dir } => {
                retouchd::logging::init(log_format, "error");
                commands::demo::run(&dir).await.map(drop).map_err(Failure::from)
            }
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "retouchd", &mut script);
                commands::write_out(&script)
            }
            Command::Man => {
                let command = <Cli as clap::CommandFactory>::command();
                let page = commands::man::render(command)
                    .map_err(|e| Failure::new(exit::FAILURE, format!("cannot make the man page: {e}")))?;
                commands::write_out(&page)
            }
            Command::Sim(args) => {
                retouchd::logging::init(log_format, "info");
                commands::sim::run(args.listen, sim_config(args)).await.map_err(Failure::from)
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

/// The simulator's knobs from `retouchd sim`'s flags.
fn sim_config(args: SimArgs) -> SimConfig {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    SimConfig {
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
    }
}
