//! Secrets in the config: the token and passwords, each from the file itself, a file beside it
//! or a systemd credential (never logged), and database addresses with their password hidden.

use std::path::PathBuf;

use super::validate::Validator;
use super::{Environment, config_is_readable_by_others};
use crate::api::Token;

/// A database address with any password in it replaced by `***` (for messages and logs).
pub fn redact_url(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return text.to_string();
    }
    // key=value settings: hide the value of `password=`.
    text.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Validator {
    /// A secret from (in order) `<section>.<name>`, `<section>.<name>_file` or the systemd
    /// credential `credential`, with where it came from; `Err` when a problem was recorded.
    pub(super) fn secret(
        &mut self,
        (section, name): (&str, &str),
        value: Option<String>,
        file: Option<PathBuf>,
        credential: &str,
        env: &Environment,
    ) -> Result<Option<(Token, String)>, ()> {
        match (value, file) {
            (Some(_), Some(_)) => {
                self.problem(format!("{section}.{name}"), format!("both {name} and {name}_file are set; keep one"));
                Err(())
            }
            (Some(t), None) => Ok(Some((Token::new(t), format!("{section}.{name}")))),
            (None, Some(f)) => {
                let f = self.path(f);
                match std::fs::read_to_string(&f) {
                    Ok(t) => Ok(Some((Token::new(t), format!("{section}.{name}_file ({})", f.display())))),
                    Err(e) => {
                        self.problem(
                            format!("{section}.{name}_file"),
                            format!(
                                "cannot read {}: {e}; check the path and that retouchd's user may read it",
                                f.display()
                            ),
                        );
                        Err(())
                    }
                }
            }
            (None, None) => Ok(env
                .credentials_directory
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(credential)).ok())
                .map(|t| (Token::new(t), format!("systemd credential `{credential}`")))),
        }
    }

    /// The token, from (in order) `server.token`, `server.token_file`, the systemd credential
    /// `token`, or `RETOUCHD_TOKEN`.
    pub(super) fn token(
        &mut self,
        token: Option<String>,
        file: Option<PathBuf>,
        env: &Environment,
    ) -> Option<(Token, String)> {
        if let Some(path) = file.as_ref().map(|f| self.path(f.clone()))
            && config_is_readable_by_others(&path)
        {
            let shown = path.display();
            self.warnings.push(format!(
                "server.token_file: {shown} holds the token and others can read it; run `chmod 600 {shown}`"
            ));
        }
        let found = match self.secret(("server", "token"), token, file, "token", env) {
            Err(()) => return None,
            Ok(Some(found)) => Some(found),
            Ok(None) => env.token_var.clone().map(|t| (Token::new(t), "RETOUCHD_TOKEN".to_string())),
        };
        match found {
            Some((token, _)) if token.is_empty() => {
                self.problem("server.token", "the token is empty; paste the token from your Retouch4me account");
                None
            }
            Some(found) => Some(found),
            None => {
                self.problem(
                    "server.token",
                    "no token; set server.token or server.token_file, a systemd credential named token, or RETOUCHD_TOKEN",
                );
                None
            }
        }
    }
}
