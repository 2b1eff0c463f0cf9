//! The finished outputs' name: a watch's template (`[watch.output] name`) and what its tokens
//! stand for.

/// The name of the finished outputs: text with `{stem}`, `{ext}`, `{watch}`, `{date}` and
/// `{time}` (UTC, `2026-11-29` and `193005`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(String);

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate("{stem}".into())
    }
}

/// What a name's tokens stand for: names as they are on disk (not necessarily UTF-8).
pub struct NameParts<'a> {
    pub stem: &'a std::ffi::OsStr,
    pub ext: &'a std::ffi::OsStr,
    /// The watch's inbox folder name.
    pub watch: &'a std::ffi::OsStr,
    pub now: std::time::SystemTime,
}

impl NameTemplate {
    pub const TOKENS: [&'static str; 5] = ["stem", "ext", "watch", "date", "time"];

    /// Checks a template: known tokens only, and no folder separators.
    pub fn parse(text: &str) -> Result<NameTemplate, String> {
        if text.trim().is_empty() {
            return Err("is empty; use \"{stem}\" for the source's name".into());
        }
        if text.contains('/') || text.contains('\0') {
            return Err("must be a file name, without `/`".into());
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or("has a `{` without its `}`")? + open;
            let token = &rest[open + 1..close];
            if !Self::TOKENS.contains(&token) {
                return Err(format!(
                    "`{{{token}}}` is not a token; use {}",
                    Self::TOKENS.map(|t| format!("{{{t}}}")).join(" ")
                ));
            }
            rest = &rest[close + 1..];
        }
        Ok(NameTemplate(text.to_string()))
    }

    /// The name, with each token's value as its bytes (a stem that is not UTF-8 stays as it is).
    pub fn apply(&self, parts: &NameParts) -> std::ffi::OsString {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let stamp = humantime::format_rfc3339_seconds(parts.now).to_string(); // 2026-11-29T19:30:05Z
        let (date, time) = (&stamp[..10], stamp[11..19].replace(':', ""));
        let mut name: Vec<u8> = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            name.extend_from_slice(&rest.as_bytes()[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
            let value: &[u8] = match &rest[open + 1..close] {
                "stem" => parts.stem.as_bytes(),
                "ext" => parts.ext.as_bytes(),
                "watch" => parts.watch.as_bytes(),
                "date" => date.as_bytes(),
                "time" => time.as_bytes(),
                // Checked at parse: never reached; kept as written.
                _ => rest.as_bytes().get(open..=close).unwrap_or_default(),
            };
            // A token's value may itself hold a separator (an odd inbox name): never a path.
            name.extend(value.iter().map(|&b| if b == b'/' { b'_' } else { b }));
            rest = rest.get(close + 1..).unwrap_or("");
        }
        name.extend_from_slice(rest.as_bytes());
        std::ffi::OsString::from_vec(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_template_takes_its_tokens_and_refuses_others() {
        use std::os::unix::ffi::OsStrExt;
        let parts = NameParts {
            stem: "IMG_1".as_ref(),
            ext: "jpg".as_ref(),
            watch: "inbox".as_ref(),
            now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 3_723),
        };
        let name = NameTemplate::parse("{watch}-{stem}-{date}-{time}.{ext}").unwrap();
        assert_eq!(name.apply(&parts), "inbox-IMG_1-1970-01-02-010203.jpg");
        let odd = NameParts { stem: std::ffi::OsStr::from_bytes(b"Fr\xe9d/x"), ..parts };
        assert_eq!(NameTemplate::default().apply(&odd).as_bytes(), b"Fr\xe9d_x", "bytes kept, never a path");
        assert!(NameTemplate::parse("{stme}").unwrap_err().contains("`{stme}` is not a token"));
        assert!(NameTemplate::parse("a/{stem}").is_err());
        assert!(NameTemplate::parse("  ").is_err());
        assert!(NameTemplate::parse("{stem").is_err());
    }
}
