//! The performance benchmark: runs the real `retouchd` (release build) against the simulator and
//! prints one table. `cargo bench --bench perf` runs every scenario; name some to run only
//! those: `cargo bench --bench perf -- latency idle`. Scenarios: throughput, latency,
//! politeness, batch, memory, startup, idle, render, dashboard, cluster, journal.

mod cluster;
mod compositing;
mod dashboard;
mod rig;
mod scenarios;

use std::time::Instant;

/// One line of the table.
pub struct Row {
    pub scenario: &'static str,
    pub measure: String,
    pub value: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` informational.
    pub met: Option<bool>,
}

impl Row {
    pub fn info(scenario: &'static str, measure: impl Into<String>, value: impl Into<String>) -> Row {
        Row { scenario, measure: measure.into(), value: value.into(), target: String::new(), met: None }
    }

    pub fn judged(
        scenario: &'static str,
        measure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Row {
        Row { scenario, measure: measure.into(), value: value.into(), target: target.into(), met: Some(met) }
    }
}

type Scenario = fn(&tokio::runtime::Runtime) -> Vec<Row>;

const SCENARIOS: [(&str, Scenario); 12] = [
    ("throughput", scenarios::throughput),
    ("latency", scenarios::latency),
    ("politeness", scenarios::politeness),
    ("batch", scenarios::batch),
    ("memory", scenarios::memory),
    ("startup", scenarios::startup),
    ("idle", scenarios::idle),
    ("render", compositing::render),
    ("render16", compositing::render16),
    ("dashboard", dashboard::dashboard),
    ("cluster", cluster::cluster),
    ("journal", cluster::journal_calls),
];

fn main() {
    // `cargo bench` passes `--bench`; anything else not starting with `-` names a scenario.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if let Some(unknown) = wanted.iter().find(|w| !SCENARIOS.iter().any(|(name, _)| name == w)) {
        let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
        eprintln!("unknown scenario `{unknown}`; choose from {}", names.join(", "));
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = Instant::now();
    let mut rows = Vec::new();
    for (name, scenario) in SCENARIOS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        eprintln!("== {name}");
        let scenario_start = Instant::now();
        for row in scenario(&runtime) {
            eprintln!(
                "   {}: {} (target {})",
                row.measure,
                row.value,
                if row.target.is_empty() { "-" } else { &row.target }
            );
            rows.push(row);
        }
        eprintln!("   ({:.0} s)", scenario_start.elapsed().as_secs_f64());
    }
    print_table(&rows);
    println!("\n{} CPUs, release build, {:.0} s in all.", cores(), started.elapsed().as_secs_f64());
}

fn print_table(rows: &[Row]) {
    println!("\n| Scenario | Measure | Result | Target | Met |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!("| {} | {} | {} | {} | {met} |", row.scenario, row.measure, row.value, row.target);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
