//! Paths and names as they are on disk, in the journal's JSON: a name that is not UTF-8 (old NAS
//! shares, copies from other code pages) is stored as its bytes, never replaced by U+FFFD and
//! never a reason to fail. UTF-8 paths are stored as plain strings, as before, so older
//! journals read unchanged: `"a/b.jpg"`, or `{"bytes": [97, 255]}`.
//!
//! Use with `#[serde(with = "crate::lossless::path")]` (also `opt_path`, `paths`, `name`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stored form of one path or name.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Text(String),
    Bytes { bytes: Vec<u8> },
}

fn store(name: &OsStr) -> Stored {
    match name.to_str() {
        Some(text) => Stored::Text(text.to_string()),
        None => Stored::Bytes { bytes: name.as_bytes().to_vec() },
    }
}

fn load(stored: Stored) -> OsString {
    match stored {
        Stored::Text(text) => OsString::from(text),
        Stored::Bytes { bytes } => OsString::from_vec(bytes),
    }
}

/// One `PathBuf`.
pub mod path {
    use super::*;

    pub fn serialize<S: Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        store(path.as_os_str()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(PathBuf::from(load(Stored::deserialize(d)?)))
    }
}

/// An `Option<PathBuf>`.
pub mod opt_path {
    use super::*;

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        path.as_ref().map(|p| store(p.as_os_str())).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Stored>::deserialize(d)?.map(|s| PathBuf::from(load(s))))
    }
}

/// A `Vec<PathBuf>`.
pub mod paths {
    use super::*;

    pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        paths.iter().map(|p| store(p.as_os_str())).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        Ok(Vec::<Stored>::deserialize(d)?.into_iter().map(|s| PathBuf::from(load(s))).collect())
    }
}

/// One `OsString` (a file name).
pub mod name {
    use super::*;

    pub fn serialize<S: Serializer>(name: &OsStr, s: S) -> Result<S::Ok, S::Error> {
        store(name).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OsString, D::Error> {
        Ok(load(Stored::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "path")]
        one: PathBuf,
        #[serde(with = "opt_path")]
        maybe: Option<PathBuf>,
        #[serde(with = "paths")]
        many: Vec<PathBuf>,
        #[serde(with = "name")]
        stem: OsString,
    }

    #[test]
    fn names_that_are_not_utf8_survive_the_journal_and_utf8_ones_stay_plain_strings() {
        let odd = OsString::from_vec(b"Fr\xe9d\xe9ric \x81".to_vec());
        let sample = Sample {
            one: PathBuf::from("/in").join(&odd).join("a.jpg"),
            maybe: Some(PathBuf::from(&odd)),
            many: vec![PathBuf::from("plain.jpg"), PathBuf::from(&odd)],
            stem: odd.clone(),
        };
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), sample);
        let plain = r#"{"one":"/in/a.jpg","maybe":null,"many":["x"],"stem":"a"}"#;
        let read: Sample = serde_json::from_str(plain).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), plain, "UTF-8 paths are stored as before");
    }
}
