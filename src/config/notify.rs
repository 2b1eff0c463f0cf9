//! `[[notify]]` sections and `[batches]`, validated into [`crate::notify::Channel`]s: each kind's
//! keys, its secret (from the file, a file beside it or the systemd credential
//! `notify-<name>-<secret>`), the events it asks for.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Environment;
use super::raw::{RawBatches, RawNotify};
use super::validate::Validator;
use crate::notify::email::{Security, Smtp};
use crate::notify::{Channel, EventKind, Target};

/// How long an inbox folder must stay quiet before its batch may close (`[batches] quiet`).
pub const DEFAULT_BATCH_QUIET: &str = "2m";

impl Validator {
    pub(super) fn batch_quiet(&mut self, raw: Option<RawBatches>) -> Duration {
        let quiet = raw.and_then(|b| b.quiet);
        self.duration("batches.quiet", quiet, DEFAULT_BATCH_QUIET)
    }

    pub(super) fn channels(&mut self, raw: Vec<RawNotify>, env: &Environment) -> Vec<Channel> {
        let mut channels: Vec<Channel> = Vec::new();
        for (i, section) in raw.into_iter().enumerate() {
            if let Some(channel) = self.channel(i, section, env) {
                if channels.iter().any(|c| c.name == channel.name) {
                    self.problem(
                        format!("notify[{i}].name"),
                        format!("`{}` names another [[notify]] section too; give each its own name", channel.name),
                    );
                    continue;
                }
                channels.push(channel);
            }
        }
        channels
    }

    fn channel(&mut self, i: usize, raw: RawNotify, env: &Environment) -> Option<Channel> {
        let section = format!("notify[{i}]");
        let key = |k: &str| format!("{section}.{k}");
        let Some(kind) = raw.kind.clone() else {
            self.problem(key("kind"), "missing; use \"webhook\", \"ntfy\" or \"email\"");
            return None;
        };
        let name = raw.name.clone().unwrap_or_else(|| format!("{kind}-{}", i + 1));
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.problem(key("name"), format!("`{name}` is not a name; use letters, digits, - and _"));
            return None;
        }
        // Keys of another kind are a mistake worth saying (a copied section, a typo in `kind`).
        let given: [(&str, bool); 10] = [
            ("url", raw.url.is_some()),
            ("secret", raw.secret.is_some() || raw.secret_file.is_some()),
            ("token", raw.token.is_some() || raw.token_file.is_some()),
            ("smtp_host", raw.smtp_host.is_some()),
            ("smtp_port", raw.smtp_port.is_some()),
            ("security", raw.security.is_some()),
            ("username", raw.username.is_some()),
            ("password", raw.password.is_some() || raw.password_file.is_some()),
            ("from", raw.from.is_some()),
            ("to", raw.to.is_some()),
        ];
        let belongs: &[&str] = match kind.as_str() {
            "webhook" => &["url", "secret"],
            "ntfy" => &["url", "token"],
            "email" => &["smtp_host", "smtp_port", "security", "username", "password", "from", "to"],
            other => {
                self.problem(key("kind"), format!("`{other}` is not a kind; use \"webhook\", \"ntfy\" or \"email\""));
                return None;
            }
        };
        for (k, set) in given {
            if set && !belongs.contains(&k) {
                self.problem(key(k), format!("does not belong to kind = \"{kind}\" (it takes {})", belongs.join(", ")));
            }
        }
        let events = self.events(&section, &kind, raw.events.clone())?;
        let credential = |what: &str| format!("notify-{name}-{what}");
        let target = match kind.as_str() {
            "webhook" => {
                let url = self.http_url(&key("url"), raw.url.clone())?;
                let secret =
                    match self.secret((&section, "secret"), raw.secret, raw.secret_file, &credential("secret"), env) {
                        Ok(Some((secret, _))) if secret.expose().len() >= 16 => secret,
                        Ok(Some(_)) => {
                            self.problem(
                                key("secret"),
                                "shorter than 16 characters; use a long random one (`openssl rand -hex 32`)",
                            );
                            return None;
                        }
                        Ok(None) => {
                            self.problem(
                            key("secret"),
                            format!(
                                "a webhook is signed with a shared secret: set secret_file (or secret, or the systemd \
                                 credential {}); make one with `openssl rand -hex 32`",
                                credential("secret")
                            ),
                        );
                            return None;
                        }
                        Err(()) => return None,
                    };
                Target::Webhook { url, secret }
            }
            "ntfy" => {
                let url = self.http_url(&key("url"), raw.url.clone())?;
                if crate::notify::ntfy::split_topic(&url).is_none() {
                    self.problem(
                        key("url"),
                        format!("`{url}` names no topic; use the topic's URL, like https://ntfy.sh/my-studio"),
                    );
                    return None;
                }
                let token = match self.secret((&section, "token"), raw.token, raw.token_file, &credential("token"), env)
                {
                    Ok(found) => found.map(|(t, _)| t),
                    Err(()) => return None,
                };
                Target::Ntfy { url, token }
            }
            _ => Target::Email(self.smtp(&section, raw, &credential("password"), env)?),
        };
        Some(Channel { name, events, target })
    }

    /// The events a channel asks for: by default all it can take.
    fn events(&mut self, section: &str, kind: &str, raw: Option<Vec<String>>) -> Option<BTreeSet<EventKind>> {
        let choices = EventKind::CHOICES.map(EventKind::as_str).join(", ");
        let per_photo = |k: &EventKind| kind == "email" && *k == EventKind::Failed;
        let Some(names) = raw else {
            return Some(EventKind::CHOICES.into_iter().filter(|k| !per_photo(k)).collect());
        };
        let mut events = BTreeSet::new();
        for name in names {
            match EventKind::parse(&name) {
                Some(k) if per_photo(&k) => self.problem(
                    format!("{section}.events"),
                    "e-mail sends one message per batch, never one per photo: the batch_done message lists the files \
                     that failed; remove `failed` here (a webhook or ntfy channel can take it)",
                ),
                Some(k) => {
                    events.insert(k);
                }
                None => self
                    .problem(format!("{section}.events"), format!("`{name}` is not an event; choose from {choices}")),
            }
        }
        if events.is_empty() {
            self.problem(format!("{section}.events"), format!("empty; choose from {choices}, or leave it out for all"));
            return None;
        }
        Some(events)
    }

    fn http_url(&mut self, key: &str, url: Option<String>) -> Option<String> {
        let Some(url) = url else {
            self.problem(key, "missing; give the receiver's address (https://…)");
            return None;
        };
        match url::Url::parse(&url) {
            Ok(u) if u.scheme() == "https" => Some(url),
            Ok(u) if u.scheme() == "http" => {
                let local = u.host_str().is_some_and(|h| {
                    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                });
                if !local {
                    self.warnings.push(format!(
                        "{key} = {url} is plain HTTP: events travel unencrypted (webhooks stay signed); use https \
                         beyond this machine"
                    ));
                }
                Some(url)
            }
            _ => {
                self.problem(key, format!("`{url}` is not an http(s) address"));
                None
            }
        }
    }

    fn smtp(&mut self, section: &str, raw: RawNotify, credential: &str, env: &Environment) -> Option<Smtp> {
        let key = |k: &str| format!("{section}.{k}");
        let security = match raw.security.as_deref().map(|s| (s, Security::parse(s))) {
            None => Security::StartTls,
            Some((_, Some(s))) => s,
            Some((text, None)) => {
                self.problem(key("security"), format!("`{text}` is not one of starttls, tls, none"));
                return None;
            }
        };
        let Some(host) = raw.smtp_host.filter(|h| !h.is_empty()) else {
            self.problem(key("smtp_host"), "missing; give the SMTP server's name, like smtp.example.com");
            return None;
        };
        let port = match raw.smtp_port {
            None => security.default_port(),
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.problem(key("smtp_port"), format!("{p} is not a port"));
                    return None;
                }
            },
        };
        let password = match self.secret((section, "password"), raw.password, raw.password_file, credential, env) {
            Ok(found) => found.map(|(p, _)| p),
            Err(()) => return None,
        };
        let login = match (raw.username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    key("password"),
                    format!(
                        "username is set but no password: set password_file (or the systemd credential {credential})"
                    ),
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(key("username"), "a password is set but no username");
                return None;
            }
        };
        if login.is_some() && security == Security::None {
            self.problem(
                key("security"),
                "a login is never sent unencrypted: use starttls or tls, or a relay without login",
            );
            return None;
        }
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if security == Security::None && !local {
            self.warnings.push(format!(
                "{}: security = \"none\" to {host}: the messages travel unencrypted; use starttls or tls beyond this machine",
                key("security")
            ));
        }
        let mut address = |k: &str, text: &str| match text.parse::<lettre::message::Mailbox>() {
            Ok(mailbox) => Some(mailbox),
            Err(e) => {
                self.problem(key(k), format!("`{text}` is not an e-mail address ({e})"));
                None
            }
        };
        let from = match raw.from.as_deref() {
            Some(text) => address("from", text)?,
            None => {
                self.problem(key("from"), "missing; the sender's address, like \"retouchd <studio@example.com>\"");
                return None;
            }
        };
        let to: Vec<_> = raw.to.unwrap_or_default().iter().filter_map(|t| address("to", t)).collect();
        if to.is_empty() {
            self.problem(key("to"), "give at least one recipient, like [\"me@example.com\"]");
            return None;
        }
        Some(Smtp { host, port, security, login, from, to })
    }
}
