//! The source file of a job: which file (inbox and path below it), which version of it
//! ([`Stamp`]: size and mtime), and the one answer to "is it still the file we took?"
//! ([`Source::check`]), used alike by the watcher, admission, the runner and the journal.
//!
//! An inbox that carries retouchd's marker file ([`crate::inbox::MARKER`]) and then loses it is
//! taken for an unmounted share: its files are then [`SourceCheck::Unreadable`], never
//! [`SourceCheck::Gone`], so that an empty mount point never looks like "every file was removed".

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::beneath::{self, Dir};
use crate::inbox::inbox_available;

/// One version of a file: its size and modification time. Two stamps differ when the file was
/// rewritten (or replaced by another of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp { size: meta.len(), mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec() }
    }

    /// The same from a raw `stat` (the watcher's scans, which stat each name beneath its folder).
    pub fn of_stat(stat: &rustix::fs::Stat) -> Stamp {
        Stamp { size: stat.st_size as u64, mtime_ns: stat.st_mtime * 1_000_000_000 + stat.st_mtime_nsec as i64 }
    }
}

/// Which file a job is for, and which version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub inbox: PathBuf,
    /// Path below the inbox.
    pub rel_path: PathBuf,
    pub stamp: Stamp,
}

/// What became of a job's source file.
#[derive(Debug)]
pub enum SourceCheck {
    /// Still there, unchanged.
    Same,
    /// Still there under its name, but rewritten since (the new version is another job).
    Changed(Stamp),
    /// No longer in the inbox (removed or renamed), and the inbox itself is readable.
    Gone,
    /// Cannot be told: the inbox is unreadable or looks unmounted, or the file cannot be looked
    /// at. This may pass; it never counts as gone.
    Unreadable(std::io::Error),
}

impl Source {
    pub fn path(&self) -> PathBuf {
        self.inbox.join(&self.rel_path)
    }

    /// The file's name, for uploads and messages.
    pub fn file_name(&self) -> String {
        self.rel_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Whether the file is still the one this job was made for. `marked`: whether the inbox
    /// carries the marker file (the daemon's inboxes; not `retouchd process`'s folders).
    /// The path is resolved beneath the inbox: a folder on the way that became a link means the
    /// file is no longer in the inbox.
    pub fn check(&self, marked: bool) -> SourceCheck {
        let meta = Dir::root(&self.inbox).and_then(|inbox| inbox.metadata(&self.rel_path));
        self.judge(meta, marked)
    }

    /// Opens the file for reading, beneath its inbox with no link on the way, if it is still
    /// the version this job was made for. The version is read from the opened file itself, so
    /// nothing swapped in after the check is read instead.
    pub fn open_same(&self, marked: bool) -> Result<File, SourceCheck> {
        let file = Dir::root(&self.inbox).and_then(|inbox| inbox.open_file(&self.rel_path));
        let meta = file.as_ref().map_err(clone_error).and_then(|f| f.metadata());
        match self.judge(meta, marked) {
            SourceCheck::Same => Ok(file.expect("a file whose metadata was read is open")),
            other => Err(other),
        }
    }

    fn judge(&self, meta: std::io::Result<std::fs::Metadata>, marked: bool) -> SourceCheck {
        match meta {
            Ok(meta) if !meta.is_file() => SourceCheck::Gone,
            Ok(meta) if Stamp::of(&meta) == self.stamp => SourceCheck::Same,
            Ok(meta) => SourceCheck::Changed(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || beneath::is_refused(&e) => {
                match inbox_available(&self.inbox, marked) {
                    Ok(()) => SourceCheck::Gone,
                    Err(e) => SourceCheck::Unreadable(e),
                }
            }
            Err(e) => SourceCheck::Unreadable(e),
        }
    }
}

fn clone_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::MARKER;
    use std::path::Path;

    fn source_for(inbox: &Path, name: &str) -> Source {
        let meta = std::fs::symlink_metadata(inbox.join(name)).unwrap();
        Source { inbox: inbox.to_path_buf(), rel_path: name.into(), stamp: Stamp::of(&meta) }
    }

    #[test]
    fn a_file_is_same_changed_gone_or_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path();
        std::fs::write(inbox.join(MARKER), b"").unwrap();
        std::fs::write(inbox.join("a.jpg"), b"one").unwrap();
        let source = source_for(inbox, "a.jpg");
        assert!(matches!(source.check(true), SourceCheck::Same));

        std::fs::write(inbox.join("a.jpg"), b"longer now").unwrap();
        assert!(matches!(source.check(true), SourceCheck::Changed(s) if s.size == 10));

        std::fs::remove_file(inbox.join("a.jpg")).unwrap();
        assert!(matches!(source.check(true), SourceCheck::Gone));

        // The marker went too: an unmounted share, not a removed file.
        std::fs::remove_file(inbox.join(MARKER)).unwrap();
        assert!(matches!(source.check(true), SourceCheck::Unreadable(_)));
        assert!(matches!(source.check(false), SourceCheck::Gone), "folders without a marker need none");

        let missing = Source { inbox: inbox.join("nowhere"), ..source };
        assert!(matches!(missing.check(false), SourceCheck::Unreadable(_)));
    }

    #[test]
    fn a_folder_on_the_way_swapped_for_a_link_means_the_file_left_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let (inbox, private) = (dir.path().join("inbox"), dir.path().join("private"));
        std::fs::create_dir_all(inbox.join("shoot")).unwrap();
        std::fs::create_dir_all(&private).unwrap();
        std::fs::write(inbox.join(MARKER), b"").unwrap();
        std::fs::write(inbox.join("shoot/a.jpg"), b"photo").unwrap();
        let source = source_for(&inbox, "shoot/a.jpg");
        assert!(source.open_same(true).is_ok());
        // The same bytes and times in a private folder, and the subfolder swapped for a link to it.
        std::fs::copy(inbox.join("shoot/a.jpg"), private.join("a.jpg")).unwrap();
        let file = File::options().write(true).open(private.join("a.jpg")).unwrap();
        file.set_modified(std::fs::metadata(inbox.join("shoot/a.jpg")).unwrap().modified().unwrap()).unwrap();
        std::fs::rename(inbox.join("shoot"), inbox.join("was")).unwrap();
        std::os::unix::fs::symlink(&private, inbox.join("shoot")).unwrap();
        assert!(matches!(source.check(true), SourceCheck::Gone));
        assert!(matches!(source.open_same(true), Err(SourceCheck::Gone)));
    }

    #[test]
    fn a_folder_in_place_of_the_file_counts_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.jpg"), b"x").unwrap();
        let source = source_for(dir.path(), "x.jpg");
        std::fs::remove_file(dir.path().join("x.jpg")).unwrap();
        std::fs::create_dir(dir.path().join("x.jpg")).unwrap();
        assert!(matches!(source.check(false), SourceCheck::Gone));
    }
}
