//! `retouchd sim`: the simulator on an address until Ctrl-C.

use crate::sim::{SimConfig, Simulator};

/// Serves the simulator with `config` on `listen` until Ctrl-C.
pub async fn run(listen: std::net::SocketAddr, config: SimConfig) -> anyhow::Result<()> {
    let sim =
        Simulator::start(listen, config).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", listen))?;
    println!("retoucher simulator serving {}", sim.base_url());
    println!("balance route: {}", sim.balance_url());
    if !sim.addr().ip().is_loopback() {
        tracing::warn!(addr = %sim.addr(), "the simulator listens beyond loopback");
    }
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
