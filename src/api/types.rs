//! What the server answers, parsed tolerantly: unknown fields are ignored, unknown states are
//! kept as text, numbers may come as integers or floats, optional fields may be missing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The user's token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into().trim().to_string())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A job the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Started {
    pub id: String,
    /// Retouches left today, when the server said.
    pub quota: Option<i64>,
}

/// Where a task is, in the server's job-queue vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TaskState {
    Waiting,
    Active,
    Delayed,
    Completed,
    Failed,
    /// A state the docs do not list (e.g. `paused`): not finished yet.
    Other(String),
}

impl TaskState {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "waiting" => TaskState::Waiting,
            "active" => TaskState::Active,
            "delayed" => TaskState::Delayed,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            _ => TaskState::Other(text.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Active => "active",
            TaskState::Delayed => "delayed",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Other(s) => s,
        }
    }

    /// Only `completed` means the result can be fetched; `progress == 100` does not.
    pub fn is_finished(&self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed)
    }
}

/// The answer to `status/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// 0..=100, when given.
    pub progress: Option<f64>,
    /// Why the task failed; `None` when empty.
    pub reason: Option<String>,
    pub attempt: Option<u64>,
    pub max_attempts: Option<u64>,
    pub current_step: Option<String>,
    pub plugin_name: Option<String>,
    /// When the result will be deleted (ISO-8601 text, as sent).
    pub expire_date: Option<String>,
}

impl TaskStatus {
    /// Builds a status from a JSON object; `None` when there is no `state` at all.
    pub fn from_json(body: &Value) -> Option<TaskStatus> {
        let state = TaskState::parse(body.get("state")?.as_str()?);
        Some(TaskStatus {
            state,
            progress: number(body.get("progress")).map(|p| p.clamp(0.0, 100.0)),
            reason: text(body.get("reason")).filter(|r| !r.trim().is_empty()),
            attempt: number(body.get("attempt")).map(|n| n as u64),
            max_attempts: number(body.get("maxAttempts")).map(|n| n as u64),
            current_step: text(body.get("currentStep")),
            plugin_name: text(body.get("pluginName")),
            expire_date: text(body.get("expireDate")),
        })
    }
}

/// A number that may come as an integer, a float, or a numeric string.
pub(crate) fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// Text from a string, or any scalar rendered as text.
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// The server's input limits (`/info/limits`), or the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub image_formats: Vec<String>,
    pub max_file_size_mb: f64,
    pub max_megapixels: f64,
    pub archive_formats: Vec<String>,
}

impl Default for Limits {
    /// The values the docs give, used when the route answers 404 (as in production).
    fn default() -> Self {
        Limits {
            image_formats: vec!["png".into(), "jpg".into(), "jpeg".into()],
            max_file_size_mb: 100.0,
            max_megapixels: 250.0,
            archive_formats: vec!["zip".into()],
        }
    }
}

impl Limits {
    /// Reads the documented shape; missing parts keep their defaults.
    pub fn from_json(body: &Value) -> Limits {
        let defaults = Limits::default();
        let list = |v: Option<&Value>| -> Option<Vec<String>> {
            Some(v?.as_array()?.iter().filter_map(|f| f.as_str().map(|s| s.to_ascii_lowercase())).collect())
        };
        let image = body.get("image");
        let archive = body.get("archive");
        Limits {
            image_formats: list(image.and_then(|i| i.get("formats"))).unwrap_or(defaults.image_formats),
            max_file_size_mb: number(image.and_then(|i| i.get("maxFileSizeInMB")))
                .filter(|n| *n > 0.0)
                .unwrap_or(defaults.max_file_size_mb),
            max_megapixels: number(image.and_then(|i| i.get("maxMegapixels")))
                .filter(|n| *n > 0.0)
                .unwrap_or(defaults.max_megapixels),
            archive_formats: list(archive.and_then(|a| a.get("formats"))).unwrap_or(defaults.archive_formats),
        }
    }

    pub fn max_file_bytes(&self) -> u64 {
        (self.max_file_size_mb * 1024.0 * 1024.0) as u64
    }

    pub fn max_pixels(&self) -> u64 {
        (self.max_megapixels * 1_000_000.0) as u64
    }
}

/// Credits left on the account, from the balance route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balance {
    pub professional: Option<i64>,
}

impl Balance {
    /// `{"remaining": {"professional": N}}` (both balance routes answer so).
    pub fn from_json(body: &Value) -> Balance {
        let remaining = body.get("remaining");
        Balance { professional: number(remaining.and_then(|r| r.get("professional"))).map(|n| n as i64) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_tolerates_unknown_fields_states_and_float_progress() {
        let s = TaskStatus::from_json(&json!({
            "status": 200, "state": "paused", "progress": 42.5, "reason": "", "newField": [1]
        }))
        .unwrap();
        assert_eq!(s.state, TaskState::Other("paused".into()));
        assert!(!s.state.is_finished());
        assert_eq!(s.progress, Some(42.5));
        assert_eq!(s.reason, None);
    }

    #[test]
    fn status_reads_every_documented_field() {
        let s = TaskStatus::from_json(&json!({
            "status": 200, "state": "failed", "progress": 100, "reason": "no face",
            "attempt": 2, "maxAttempts": 3, "currentStep": "Heal", "pluginName": "Heal",
            "expireDate": "2026-11-29T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.progress, Some(100.0));
        assert_eq!(s.reason.as_deref(), Some("no face"));
        assert_eq!((s.attempt, s.max_attempts), (Some(2), Some(3)));
        assert_eq!(s.expire_date.as_deref(), Some("2026-11-29T10:00:00Z"));
    }

    #[test]
    fn status_without_state_is_not_a_status() {
        assert_eq!(TaskStatus::from_json(&json!({"status": 200})), None);
    }

    #[test]
    fn limits_fill_gaps_with_documented_defaults() {
        let l = Limits::from_json(&json!({"image": {"maxFileSizeInMB": 50}}));
        assert_eq!(l.max_file_size_mb, 50.0);
        assert_eq!(l.max_megapixels, 250.0);
        assert_eq!(l.image_formats, vec!["png", "jpg", "jpeg"]);
    }

    #[test]
    fn token_debug_and_display_are_redacted() {
        let t = Token::new("sekrit-123");
        assert!(!format!("{t:?} {t}").contains("sekrit"));
    }
}
