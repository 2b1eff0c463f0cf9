//! The source file of a job: which file (inbox and path below it), which version of it
//! ([`Stamp`]: size and mtime), and the one answer to "is it still the file we took?"
//! ([`Source::check`]), used alike by the watcher, admission, the runner and the journal.
//!
//! An inbox that carries retouchd's marker file ([`crate::inbox::MARKER`]) and then loses it is
//! taken for an unmounted share: its files are then [`SourceCheck::Unreadable`], never
//! [`SourceCheck::Gone`], so that an empty mount point never looks like "every file was removed".

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

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
    pub fn check(&self, marked: bool) -> SourceCheck {
        match std::fs::symlink_metadata(self.path()) {
            Ok(meta) if !meta.is_file() => SourceCheck::Gone,
            Ok(meta) if Stamp::of(&meta) == self.stamp => SourceCheck::Same,
            Ok(meta) => SourceCheck::Changed(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match inbox_available(&self.inbox, marked) {
                Ok(()) => SourceCheck::Gone,
                Err(e) => SourceCheck::Unreadable(e),
            },
            Err(e) => SourceCheck::Unreadable(e),
        }
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
    fn a_folder_in_place_of_the_file_counts_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.jpg"), b"x").unwrap();
        let source = source_for(dir.path(), "x.jpg");
        std::fs::remove_file(dir.path().join("x.jpg")).unwrap();
        std::fs::create_dir(dir.path().join("x.jpg")).unwrap();
        assert!(matches!(source.check(false), SourceCheck::Gone));
    }
}
