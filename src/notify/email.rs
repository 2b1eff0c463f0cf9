//! The e-mail channel: one plain-text message per notice (a batch is one notice, never one
//! message per photo) through an SMTP server, with STARTTLS, TLS from the first byte, or (for a
//! relay on this machine or LAN) none; login when a user is given. lettre does the protocol.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notice, SEND_TIMEOUT, SendError};
use crate::api::Token;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required; port 587).
    StartTls,
    /// TLS from the start (port 465).
    Tls,
    /// No encryption (a relay on this machine); login is refused over it.
    None,
}

impl Security {
    pub fn parse(text: &str) -> Option<Security> {
        match text {
            "starttls" => Some(Security::StartTls),
            "tls" => Some(Security::Tls),
            "none" => Some(Security::None),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// Where and how to send mail (`kind = "email"`).
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The login, if the server wants one.
    pub login: Option<(String, Token)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

/// The message for `notice`.
pub fn message(smtp: &Smtp, notice: &Notice) -> Result<Message, SendError> {
    let mut builder = Message::builder()
        .from(smtp.from.clone())
        .subject(format!("[retouchd] {}", notice.title))
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        builder = builder.to(to.clone());
    }
    let body = format!(
        "{}\n\n-- \nretouchd on {}, {}\nevent {}, id {}\n",
        notice.message,
        notice.host,
        notice.at,
        notice.event.kind().as_str(),
        notice.id
    );
    builder.body(body).map_err(|e| format!("the message cannot be made: {e}"))
}

pub async fn send(smtp: &Smtp, notice: &Notice) -> Result<(), SendError> {
    let message = message(smtp, notice)?;
    let relay = |e: lettre::transport::smtp::Error| format!("{}: {e}", smtp.host);
    let builder = match smtp.security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(relay)?,
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(relay)?,
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(SEND_TIMEOUT));
    if let Some((user, password)) = &smtp.login {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_string()));
    }
    let mailer = builder.build();
    match mailer.send(message).await {
        Ok(answer) if answer.is_positive() => Ok(()),
        Ok(answer) => Err(format!("{}:{} answered {}", smtp.host, smtp.port, answer.code())),
        Err(e) => Err(format!("{}:{}: {e}", smtp.host, smtp.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_becomes_one_plain_message_with_its_id() {
        let smtp = Smtp {
            host: "mail.lan".into(),
            port: 587,
            security: Security::StartTls,
            login: None,
            from: "retouchd <studio@example.com>".parse().unwrap(),
            to: vec!["a@example.com".parse().unwrap(), "b@example.com".parse().unwrap()],
        };
        let notice = Notice::new(super::super::Event::Test { note: "Hello from the studio".into() });
        let text = String::from_utf8(message(&smtp, &notice).unwrap().formatted()).unwrap();
        assert!(text.contains("Subject: [retouchd] retouchd test notification"), "{text}");
        assert!(text.contains("To: a@example.com, b@example.com"), "{text}");
        assert!(text.contains(&notice.id), "{text}");
        assert_eq!(Security::parse("tls").map(Security::default_port), Some(465));
    }
}
