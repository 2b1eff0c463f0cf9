//! Which files in an inbox are never jobs: the built-in junk list (which users can add to but not
//! shrink), the user's globs, and the daemon's own folders.

use std::ffi::OsStr;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Folder names never descended into (NAS metadata, recycle bins, snapshots, macOS leftovers).
const IGNORED_DIRS: &[&str] = &["@eadir", "#recycle", "#snapshot", "@recycle", ".zfs", ".trashes", "__macosx"];

/// File names never taken, compared case-insensitively.
const IGNORED_NAMES: &[&str] = &["thumbs.db", "desktop.ini"];

/// Endings of files still being written by some tool.
const PARTIAL_SUFFIXES: &[&str] = &[".tmp", ".part", ".partial", ".crdownload"];

/// The inbox's ignore rules.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    user: GlobSet,
}

impl IgnoreRules {
    /// Builds the rules; patterns were checked when the config was validated.
    pub fn new(patterns: &[String]) -> IgnoreRules {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            if let Ok(glob) = GlobBuilder::new(p).case_insensitive(true).literal_separator(false).build() {
                builder.add(glob);
            }
        }
        IgnoreRules { user: builder.build().unwrap_or_else(|_| GlobSet::empty()) }
    }

    /// Whether a folder (by name) is skipped entirely.
    pub fn skips_dir(&self, name: &OsStr, rel_path: &Path) -> bool {
        let lower = name.to_string_lossy().to_lowercase();
        lower.starts_with('.') || IGNORED_DIRS.contains(&lower.as_str()) || self.user.is_match(rel_path)
    }

    /// Whether a file is skipped. `rel_path` is below the inbox.
    pub fn skips_file(&self, rel_path: &Path) -> bool {
        let Some(name) = rel_path.file_name() else { return true };
        let lower = name.to_string_lossy().to_lowercase();
        lower.starts_with('.')
            || lower.starts_with('~')
            || IGNORED_NAMES.contains(&lower.as_str())
            || PARTIAL_SUFFIXES.iter().any(|s| lower.ends_with(s))
            || lower.ends_with(".error.txt")
            || self.user.is_match(rel_path)
            || self.user.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_junk_is_ignored() {
        let rules = IgnoreRules::new(&[]);
        for junk in [
            ".DS_Store",
            "._IMG.jpg",
            ".syncthing.a.jpg.tmp",
            "~lock.jpg",
            "x.jpg.part",
            "X.JPG.PARTIAL",
            "a.crdownload",
            "b.tmp",
            "Thumbs.db",
            "DESKTOP.INI",
            "sub/.hidden.png",
        ] {
            assert!(rules.skips_file(Path::new(junk)), "{junk} should be ignored");
        }
        for photo in ["IMG_1.jpg", "a.JPEG", "sub/b.png", "batch.zip", "with space.jpg"] {
            assert!(!rules.skips_file(Path::new(photo)), "{photo} should be taken");
        }
    }

    #[test]
    fn nas_folders_are_skipped() {
        let rules = IgnoreRules::new(&[]);
        for dir in ["@eaDir", "#recycle", "#snapshot", "@Recycle", ".zfs", ".Trashes", "__MACOSX", ".retouchd-staging"]
        {
            assert!(rules.skips_dir(OsStr::new(dir), Path::new(dir)), "{dir}");
        }
        assert!(!rules.skips_dir(OsStr::new("2026-11 wedding"), Path::new("2026-11 wedding")));
    }

    #[test]
    fn user_globs_add_to_the_list_case_insensitively() {
        let rules = IgnoreRules::new(&["*_raw.*".into(), "drafts/**".into()]);
        assert!(rules.skips_file(Path::new("a_RAW.JPG")));
        assert!(rules.skips_file(Path::new("drafts/x.jpg")));
        assert!(!rules.skips_file(Path::new("final/x.jpg")));
    }
}
