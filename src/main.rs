//! The `retouchd` binary: parses the command line and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;
use retouchd::sim::{SimConfig, Simulator};

mod cli;

use cli::{Cli, Command, SimArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    retouchd::logging::init(cli.log_format, "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("retouchd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sim(args) => run_sim(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retouchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let config = SimConfig {
        token: args.token,
        quota: args.quota,
        processing_ms: ms(args.processing_time),
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
