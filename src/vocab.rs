//! Words every layer shares and nothing of ours below them: the clock, the host's name, the
//! generation of a job's first claim, when two plugin names are the same. This module imports nothing from the crate, so anything
//! may use it without tying the layers into a cycle.

use std::time::{SystemTime, UNIX_EPOCH};

/// The generation of a job's first claim (see [`crate::journal::JobRecord::generation`]); a node
/// that takes a job over claims it under the next one.
pub const FIRST_GENERATION: i64 = 1;

/// Whether two plugin names (from the config, a flag, a layer file, result.json or the plugin
/// table) name the same plugin: without regard to ASCII case, as the server's spelling varies.
pub fn same_plugin(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Now, in Unix milliseconds (the journal's timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The Unix time now, in seconds.
pub fn now_secs() -> u64 {
    (now_ms() / 1000).max(0) as u64
}

/// This machine's name, as the kernel has it ("localhost" when it cannot be read): names a
/// cluster node by default and says where an inbox's owner runs.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
