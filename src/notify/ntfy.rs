//! The ntfy channel: a notice published to a topic with ntfy's JSON publishing format (a POST
//! to the server's root of `{"topic", "title", "message", "priority", "tags"}`), which carries
//! any characters (headers would need encoding for a non-ASCII file name). The topic URL is
//! what people copy from the ntfy app: `https://ntfy.sh/my-studio`; an access token, if the
//! server wants one, goes as `Authorization: Bearer`.

use serde::Serialize;

use super::{Notice, SendError};
use crate::api::Token;

/// What ntfy takes (the documented field names).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub title: String,
    pub message: String,
    /// 1 (min) to 5 (max); 3 is the default.
    pub priority: u8,
    pub tags: Vec<String>,
}

/// The server's root and the topic of a topic URL (`https://ntfy.sh/studio` → `https://ntfy.sh/`,
/// `studio`); `None` when the URL names no topic.
pub fn split_topic(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    let mut segments: Vec<&str> = parsed.path_segments()?.filter(|s| !s.is_empty()).collect();
    let topic = segments.pop()?.to_string();
    let valid = topic.len() <= 64 && topic.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return None;
    }
    let mut root = parsed.clone();
    root.set_path(&format!("{}/", segments.iter().map(|s| format!("/{s}")).collect::<String>()));
    root.set_query(None);
    Some((root.to_string(), topic))
}

/// What `notice` becomes for `topic`.
pub fn publish(topic: &str, notice: &Notice) -> Publish {
    Publish {
        topic: topic.to_string(),
        title: notice.title.clone(),
        message: notice.message.clone(),
        priority: notice.event.priority(),
        tags: notice.event.tags().into_iter().map(str::to_string).collect(),
    }
}

pub async fn send(http: &reqwest::Client, url: &str, token: Option<&Token>, notice: &Notice) -> Result<(), SendError> {
    let (root, topic) = split_topic(url).ok_or_else(|| format!("{url} is not an ntfy topic URL"))?;
    let mut request = http.post(&root).json(&publish(&topic, notice));
    if let Some(token) = token {
        request = request.bearer_auth(token.expose());
    }
    let answer = request.send().await.map_err(super::transport_words)?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text: String = answer.text().await.unwrap_or_default().chars().take(200).collect();
    Err(format!("{root} answered {status}: {}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_url_splits_into_the_servers_root_and_the_topic() {
        assert_eq!(split_topic("https://ntfy.sh/studio-42"), Some(("https://ntfy.sh/".into(), "studio-42".into())));
        assert_eq!(
            split_topic("http://nas.lan:8080/ntfy/studio/"),
            Some(("http://nas.lan:8080/ntfy/".into(), "studio".into()))
        );
        assert_eq!(split_topic("https://ntfy.sh/"), None, "no topic");
        assert_eq!(split_topic("https://ntfy.sh/a b"), None, "not a topic name");
    }

    #[test]
    fn a_notice_becomes_ntfys_fields() {
        let notice = Notice::new(super::super::Event::Paused { reason: "token".into(), detail: "Token issue".into() });
        let json = serde_json::to_value(publish("studio", &notice)).unwrap();
        assert_eq!(json["topic"], "studio");
        assert_eq!(json["title"], "retouchd paused uploads");
        assert_eq!(json["priority"], 4);
        assert_eq!(json["tags"][0], "pause_button");
    }
}
