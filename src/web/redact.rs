//! The config file as the dashboard shows it: every secret replaced by `<redacted>`. A secret
//! is the value of a key named like one (`token`, `password`, `secret`, … at any depth), the
//! password part of any URL, and a `password=` in a database's key=value settings. What cannot
//! be parsed is not shown at all.

const SECRET_KEYS: [&str; 5] = ["token", "password", "secret", "key", "credential"];
pub const REDACTED: &str = "<redacted>";

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    // A file that holds a secret is a path, not the secret.
    !key.ends_with("_file") && SECRET_KEYS.iter().any(|s| key == *s || key.ends_with(&format!("_{s}")))
}

/// The config text with its secrets redacted.
pub fn redact_config(text: &str) -> Result<String, String> {
    let mut table: toml::Table = text.parse().map_err(|e| format!("the file cannot be read as TOML: {e}"))?;
    redact_table(&mut table);
    toml::to_string_pretty(&table).map_err(|e| e.to_string())
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if is_secret_key(key) {
            *value = toml::Value::String(REDACTED.into());
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        toml::Value::String(s) => {
            if let Ok(mut url) = url::Url::parse(s)
                && url.password().is_some()
                && url.set_password(Some(REDACTED)).is_ok()
            {
                *s = url.to_string();
            } else if s.contains("password=") {
                *s = crate::config::redact_url(s);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are_and_the_rest_is_kept() {
        let text = r#"
[server]
url = "https://user:hunter2@api.example/api/v1"
token = "sk-live-123"
token_file = "/etc/retouchd/token"
[web]
password = "open sesame"
[[watch]]
inbox = "/in"
[state]
database = "host=db.lan user=rd password=pg-pass-1 dbname=studio"
[watch.payload]
api_key = "k-999"
tasks = [{ Plugin = "Heal", Alpha1 = 1 }]
"#;
        let shown = redact_config(text).unwrap();
        for secret in ["sk-live-123", "hunter2", "open sesame", "k-999", "pg-pass-1"] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        for kept in ["/etc/retouchd/token", "api.example", "Heal", "/in", "host=db.lan"] {
            assert!(shown.contains(kept), "{kept} missing from:\n{shown}");
        }
        assert!(redact_config("token = ").is_err(), "a broken file is not shown");
    }
}
