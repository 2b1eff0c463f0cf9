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
