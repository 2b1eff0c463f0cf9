//! Results kept by content, so the same photo is never paid for twice: a shoot copied into the
//! inbox again, `IMG_1 copy.jpg`, a file touched by a sync tool. The key is the SHA-256 of the
//! payload and the file's bytes; a delivered job's staged result (its layers, or its one image)
//! is copied into `<state>/results/<key>/` with the number of the job that paid for it. A new job
//! whose key is found there is staged from that copy instead of the server. The folder is
//! capped in size: the entries used least recently go first.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::beneath::Dir;

/// The cache's folder in the state folder.
pub const DIR: &str = "results";
/// The default size cap, in megabytes.
pub const DEFAULT_CAP_MB: u64 = 2048;
/// In an entry: what was staged (a folder of layers, or one image).
const RESULT: &str = "result";
/// In an entry: the job that paid for it.
const JOB: &str = "job";

/// A result found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The job that paid for it.
    pub job: i64,
    result: PathBuf,
}

impl Cached {
    /// What the result is: a folder of layers (as from a zip), or one image.
    pub fn kind(&self) -> crate::formats::FileKind {
        if self.result.is_dir() {
            crate::formats::FileKind::Zip
        } else {
            crate::formats::sniff_file(&self.result).unwrap_or(crate::formats::FileKind::Unknown)
        }
    }
}

/// The cache of one state folder. Clones share the running size.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
    cap_bytes: u64,
    /// The cache's size, once measured (measured once, then kept up to date): the folder is
    /// only walked again when it is over its cap.
    size: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
}

impl ResultCache {
    /// The cache in `state_dir`, at most `cap_mb` megabytes (0: off).
    pub fn new(state_dir: &Path, cap_mb: u64) -> ResultCache {
        ResultCache { dir: state_dir.join(DIR), cap_bytes: cap_mb * 1024 * 1024, size: Default::default() }
    }

    pub fn enabled(&self) -> bool {
        self.cap_bytes > 0
    }

    /// The key of a photo sent with `payload`: the SHA-256 of both (read from the start of
    /// `file`, whatever its position).
    pub fn key(file: &fs::File, payload: &str) -> io::Result<String> {
        let mut hasher = Sha256::new();
        hasher.update((payload.len() as u64).to_le_bytes());
        hasher.update(payload.as_bytes());
        let mut reader = file.try_clone()?;
        io::Seek::rewind(&mut reader)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf)? {
                0 => break,
                n => hasher.update(&buf[..n]),
            }
        }
        io::Seek::rewind(&mut reader)?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// The result kept for `key`, if any (and marks it used).
    pub fn lookup(&self, key: &str) -> Option<Cached> {
        let entry = self.dir.join(key);
        let job = fs::read_to_string(entry.join(JOB)).ok()?.trim().parse().ok()?;
        let result = entry.join(RESULT);
        fs::symlink_metadata(&result).ok()?;
        let _ = fs::File::open(entry.join(JOB)).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Some(Cached { job, result })
    }

    /// Keeps a copy of `staged` (beneath `staging`) as the result for `key`, paid by `job`; then
    /// trims the cache to its cap. A copy that fails leaves nothing behind.
    pub fn store(&self, key: &str, staging: &Dir, staged: &Path, job: i64) -> io::Result<()> {
        if !self.enabled() || self.dir.join(key).join(JOB).exists() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        let copied = (|| {
            fs::create_dir(&tmp)?;
            copy_out(staging, staged, &tmp.join(RESULT))?;
            // Not synced: the cache is a help, and an entry lost to a power cut costs nothing.
            let mut note = fs::File::create_new(tmp.join(JOB))?;
            writeln!(note, "{job}")?;
            fs::rename(&tmp, self.dir.join(key))
        })();
        if copied.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        copied?;
        let added = tree_size(&self.dir.join(key));
        let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
        let total = size.get_or_insert_with(|| tree_size(&self.dir).saturating_sub(added));
        *total += added;
        if *total > self.cap_bytes {
            *total = self.trim();
        }
        Ok(())
    }

    /// Copies a cached result into `staging` as `name` (which must not exist yet).
    pub fn restore(&self, cached: &Cached, staging: &Dir, name: &Path) -> io::Result<()> {
        let _ = staging.remove_all(name);
        let copied = copy_in(&cached.result, staging, name);
        if copied.is_err() {
            let _ = staging.remove_all(name);
        }
        copied.map(|()| staging.sync())
    }

    /// Removes the least recently used entries until the cache fits its cap; returns its size.
    fn trim(&self) -> u64 {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut kept: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                let used = fs::metadata(e.path().join(JOB)).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                (used, tree_size(&e.path()), e.path())
            })
            .collect();
        let mut total: u64 = kept.iter().map(|k| k.1).sum();
        kept.sort();
        for (_, size, path) in kept {
            if total <= self.cap_bytes {
                break;
            }
            if fs::remove_dir_all(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
        total
    }
}

fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::read_dir(path).map(|es| es.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Copies `rel` beneath `from` (a file or a folder of files; links skipped) to `to`.
fn copy_out(from: &Dir, rel: &Path, to: &Path) -> io::Result<()> {
    if from.metadata(rel)?.is_dir() {
        fs::create_dir(to)?;
        let dir = from.dir(rel)?;
        for (name, _) in dir.entries()? {
            let meta = dir.metadata(Path::new(&name))?;
            if meta.is_dir() || meta.is_file() {
                copy_out(&dir, Path::new(&name), &to.join(&name))?;
            }
        }
        Ok(())
    } else {
        let mut out = fs::File::create_new(to)?;
        io::copy(&mut from.open_file(rel)?, &mut out).map(drop)
    }
}

/// Copies `from` (a file or a folder of files, in the state folder) to `rel` beneath `to`.
fn copy_in(from: &Path, to: &Dir, rel: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        let dir = to.create_dirs(rel)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_in(&entry.path(), &dir, Path::new(&entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        let mut out = to.create_new(rel)?;
        io::copy(&mut fs::File::open(from)?, &mut out)?;
        out.sync_all()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_kept_by_content_and_payload_found_again_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Dir::root_made(&dir.path().join("staging")).unwrap();
        staging
            .create_dirs(Path::new("job-1"))
            .unwrap()
            .create_new(Path::new("Heal.png"))
            .unwrap()
            .write_all(b"layer")
            .unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"photo bytes").unwrap();
        std::fs::write(dir.path().join("a copy.jpg"), b"photo bytes").unwrap();
        let open = |n: &str| fs::File::open(dir.path().join(n)).unwrap();
        let key = ResultCache::key(&open("a.jpg"), "{payload}").unwrap();
        assert_eq!(key, ResultCache::key(&open("a copy.jpg"), "{payload}").unwrap(), "the same bytes, the same key");
        assert_ne!(key, ResultCache::key(&open("a.jpg"), "{other}").unwrap(), "another payload, another result");

        let cache = ResultCache::new(&dir.path().join("state"), 1);
        assert_eq!(cache.lookup(&key), None);
        cache.store(&key, &staging, Path::new("job-1"), 1).unwrap();
        let found = cache.lookup(&key).unwrap();
        assert_eq!(found.job, 1);
        cache.restore(&found, &staging, Path::new("job-2")).unwrap();
        assert_eq!(fs::read(dir.path().join("staging/job-2/Heal.png")).unwrap(), b"layer");

        // Over the cap (1 MB), the entry used least recently goes.
        staging.create_new(Path::new("big.jpg")).unwrap().write_all(&vec![7u8; 900 * 1024]).unwrap();
        cache.store("other", &staging, Path::new("big.jpg"), 3).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.lookup("other").unwrap();
        staging.create_new(Path::new("big2.jpg")).unwrap().write_all(&vec![8u8; 900 * 1024]).unwrap();
        cache.store("third", &staging, Path::new("big2.jpg"), 4).unwrap();
        assert!(cache.lookup("third").is_some(), "the newest stays");
        assert!(cache.lookup("other").is_none(), "the older big one went to keep the cap");
        assert!(!ResultCache::new(dir.path(), 0).enabled());
    }
}
