//! The config file as written: serde structs that take every key (unknown ones are errors) and
//! nothing more. [`super::validate`] turns them into the ready types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) render: RawRender,
    pub(super) web: Option<RawWeb>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) schedule: Option<RawSchedule>,
    pub(super) budget: Option<RawBudget>,
    pub(super) batches: Option<RawBatches>,
    #[serde(default)]
    pub(super) notify: Vec<RawNotify>,
    #[serde(default)]
    pub(super) watch: Vec<RawWatch>,
}

/// `[batches]`: when files dropped apart still belong together.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawBatches {
    pub(super) quiet: Option<RawDuration>,
}

/// One `[[notify]]` section: a channel, with the keys of every kind (the validator says which
/// belong to which).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawNotify {
    pub(super) name: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) events: Option<Vec<String>>,
    pub(super) url: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) smtp_host: Option<String>,
    pub(super) smtp_port: Option<i64>,
    pub(super) security: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) from: Option<String>,
    pub(super) to: Option<Vec<String>>,
}

/// `[budget]` (or a watch's `budget`): credits per local day and month.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawBudget {
    pub(super) per_day: Option<i64>,
    pub(super) per_month: Option<i64>,
    pub(super) timezone: Option<String>,
}

/// `[schedule]` (or a watch's `schedule`): upload windows.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawSchedule {
    pub(super) uploads: Option<Vec<String>>,
    pub(super) timezone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawWeb {
    pub(super) listen: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRender {
    pub(super) max_renders: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawOutput {
    pub(super) layers: Option<bool>,
    pub(super) flat: Option<String>,
    pub(super) psd: Option<bool>,
    pub(super) jpeg_quality: Option<i64>,
    pub(super) tiff_compression: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) opacity: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawServer {
    pub(super) url: Option<String>,
    pub(super) balance_url: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) poll_interval: Option<RawDuration>,
    pub(super) connect_timeout: Option<RawDuration>,
    pub(super) idle_timeout: Option<RawDuration>,
    pub(super) allow_plain_http: Option<bool>,
    pub(super) max_uploads: Option<i64>,
    pub(super) max_in_flight: Option<i64>,
    pub(super) max_job_age: Option<RawDuration>,
    pub(super) on_expired: Option<String>,
    pub(super) token_retry: Option<RawDuration>,
    pub(super) quota_retry: Option<RawDuration>,
    pub(super) max_result_mb: Option<i64>,
    pub(super) low_quota_warning: Option<i64>,
    pub(super) hook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawState {
    pub(super) dir: Option<PathBuf>,
    pub(super) result_cache_mb: Option<i64>,
    pub(super) database: Option<String>,
    pub(super) database_password: Option<String>,
    pub(super) database_password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCluster {
    pub(super) node: Option<String>,
    pub(super) lease: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawWatch {
    pub(super) inbox: Option<PathBuf>,
    pub(super) outbox: Option<PathBuf>,
    pub(super) done_dir: Option<PathBuf>,
    pub(super) failed_dir: Option<PathBuf>,
    pub(super) on_success: Option<String>,
    pub(super) settle: Option<RawDuration>,
    pub(super) recursive: Option<bool>,
    #[serde(default)]
    pub(super) ignore: Vec<String>,
    pub(super) mode: Option<String>,
    pub(super) scan_interval: Option<RawDuration>,
    pub(super) rescan_interval: Option<RawDuration>,
    pub(super) incomplete_grace: Option<RawDuration>,
    #[serde(default)]
    pub(super) on_delivered: Vec<String>,
    #[serde(default)]
    pub(super) on_failed: Vec<String>,
    pub(super) hook_timeout: Option<RawDuration>,
    pub(super) resend_identical: Option<bool>,
    pub(super) allow_unknown_plugins: Option<bool>,
    pub(super) payload: Option<toml::Table>,
    pub(super) output: Option<RawOutput>,
    pub(super) schedule: Option<RawSchedule>,
    pub(super) budget: Option<RawBudget>,
}

/// A duration as written: text like "5s", or a mistake the validator explains (a bare number).
pub(super) type RawDuration = toml::Value;
