//! `retouchd notify-test`: a test event sent at once to every `[[notify]]` channel (or the one
//! named), each answer said in words; nothing is queued, so a failure here is seen here.

use std::path::PathBuf;

use super::{Failure, load_config_for};
use crate::config;
use crate::exit;
use crate::notify::{Event, Notice};

pub async fn notify_test(config_file: Option<PathBuf>, only: Option<String>) -> Result<(), Failure> {
    let config = load_config_for(config_file.as_deref(), config::Purpose::Inspect)?;
    let channels: Vec<_> = config.notify.iter().filter(|c| only.as_ref().is_none_or(|n| *n == c.name)).collect();
    if channels.is_empty() {
        let why = match only {
            Some(name) => format!("no [[notify]] section is named `{name}`"),
            None => "no [[notify]] section in the config; config.example.toml shows webhook, ntfy and email".into(),
        };
        return Err(Failure::new(exit::CONFIG, why));
    }
    let http = crate::notify::http_client();
    let mut failed = 0;
    for channel in channels {
        let notice = Notice::new(Event::Test {
            note: format!("A test from retouchd on {} to the channel `{}`.", crate::vocab::host_name(), channel.name),
        });
        let body = serde_json::to_string(&notice).map_err(|e| Failure::new(exit::FAILURE, e))?;
        match crate::notify::send(&http, channel, &notice, &body).await {
            Ok(()) => say!("{} ({}): sent, id {}", channel.name, channel.target.kind(), notice.id),
            Err(why) => {
                failed += 1;
                say!("{} ({}): NOT sent: {why}", channel.name, channel.target.kind());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(Failure::new(exit::FAILURE, format!("{n} channel(s) did not take the test event"))),
    }
}
