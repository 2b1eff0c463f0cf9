//! Placement: where a result goes ([`Target`], journaled with the job), turning a download into
//! a staged result beside the outbox ([`stage_download`]), and publishing it without ever
//! showing half a file or overwriting one (fsync, then an atomic no-replace rename to a free
//! name, `name (2).ext` when taken). Also the safe extraction of result archives (entry names
//! checked, no links, bytes really written capped) and moving sources to done/ or failed/ with a
//! reason beside them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::formats::FileKind;

/// The hidden folder inside each outbox (and done/failed folder) where files are staged.
pub const STAGING_DIR: &str = ".retouchd-staging";

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The result cannot be delivered as it is (hostile or broken archive): retrying won't help.
    #[error("{0}")]
    Unsafe(String),
    /// A local file system problem (full disk, permissions, unmounted share): retry later.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Whether an I/O error means the disk is full (or over quota).
pub fn is_disk_full(e: &io::Error) -> bool {
    is_disk_full_code(e.raw_os_error())
}

/// Whether an OS error number means the disk is full (or over quota).
pub fn is_disk_full_code(code: Option<i32>) -> bool {
    matches!(code, Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The name `stem.ext`, or `stem (N).ext` for the first N ≥ 2 that is free in `dir`.
fn candidate(dir: &Path, stem: &str, ext: Option<&str>, n: u32) -> PathBuf {
    let base = if n < 2 { stem.to_string() } else { format!("{stem} ({n})") };
    match ext {
        Some(ext) => dir.join(format!("{base}.{ext}")),
        None => dir.join(base),
    }
}

/// Renames `from` to `to` unless `to` exists; atomic where the file system supports it.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (cf, ct) = (c(from)?, c(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, cf.as_ptr(), libc::AT_FDCWD, ct.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Some network file systems do not know the flag: check, then rename.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        _ => Err(err),
    }
}

/// Moves `from` into `dir` as `stem[.ext]`, or the first free ` (N)` variant. Returns the final path.
pub fn place(from: &Path, dir: &Path, stem: &str, ext: Option<&str>) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    for n in 1..10_000 {
        let to = candidate(dir, stem, ext, n);
        match rename_noreplace(from, &to) {
            Ok(()) => {
                sync_dir(dir);
                return Ok(to);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTEMPTY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("no free name for {stem} in {}", dir.display())))
}

/// Where a result is published: `dir/stem[.ext]`, or the first free `stem (N)[.ext]` there.
/// A zip result is a folder (`ext` is `None`); an image keeps the extension of its real kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub dir: PathBuf,
    pub stem: String,
    pub ext: Option<String>,
}

impl Target {
    /// The target for the result of `inbox/<rel>`: `outbox/<sub>/<stem>` for a zip, else
    /// `outbox/<sub>/<stem>.<ext of the result's real kind>`.
    pub fn for_result(outbox: &Path, rel: &Path, kind: FileKind) -> Target {
        let dir = rel.parent().map(|p| outbox.join(p)).unwrap_or_else(|| outbox.to_path_buf());
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "result".into());
        let stem = split_name(&name).0.to_string();
        let ext = match kind {
            FileKind::Zip => None,
            other => Some(other.extension().to_string()),
        };
        Target { dir, stem, ext }
    }

    /// The path it gets when the name is free.
    pub fn path(&self) -> PathBuf {
        candidate(&self.dir, &self.stem, self.ext.as_deref(), 1)
    }
}

/// A staged file or folder and where it is to be published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub staged: PathBuf,
    pub target: Target,
}

/// Journals written before targets had parts stored the path: read it as a name without an
/// extension (publishing it gives the same path; only a taken name is numbered after the
/// extension, `a.jpg (2)`).
impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Parts { dir: PathBuf, stem: String, ext: Option<String> },
            Path(PathBuf),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Parts { dir, stem, ext } => Target { dir, stem, ext },
            Stored::Path(path) => Target {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                stem: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                ext: None,
            },
        })
    }
}

/// Turns a job's download into a staged result named after `stem` in `staging` (the download's
/// folder, beside the outbox): a zip is extracted (at most `max_bytes`) into a folder, an image
/// renamed. Returns the staged path; the download is gone either way.
pub fn stage_download(
    download: &Path,
    kind: FileKind,
    target: &Target,
    stem: &str,
    max_bytes: u64,
) -> Result<PathBuf, DeliverError> {
    let staging = download.parent().map(Path::to_path_buf).unwrap_or_default();
    let staged =
        staging.join(staged_name(stem, target.ext.as_deref().map(|e| format!(".{e}")).as_deref().unwrap_or("")));
    remove_any(&staged)?;
    match kind {
        FileKind::Zip => {
            let result = extract_zip(download, &staged, max_bytes);
            let _ = fs::remove_file(download);
            if result.is_err() {
                let _ = remove_any(&staged);
            }
            result?;
            sync_dir(&staged);
        }
        FileKind::Png | FileKind::Jpeg => fs::rename(download, &staged)?,
        FileKind::Unknown => {
            let _ = fs::remove_file(download);
            return Err(DeliverError::Unsafe(
                "the server sent something that is neither a ZIP archive nor an image".into(),
            ));
        }
    }
    Ok(staged)
}

/// Removes a file or a folder tree, if there.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Publishes a staged result at `target` (or its first free numbered name). Returns the final
/// path; `Ok(None)` when nothing is staged any more (it was published before a restart).
pub fn publish(staged: &Path, target: &Target) -> io::Result<Option<PathBuf>> {
    if staged.symlink_metadata().is_err() {
        return Ok(None);
    }
    place(staged, &target.dir, &target.stem, target.ext.as_deref()).map(Some)
}

/// The extension of the note that says why no finished photo was made: `<name>.render-error.txt`.
pub const RENDER_NOTE_EXT: &str = "render-error.txt";

/// Writes the render-error note into `dir`; returns its path.
pub fn write_render_note(dir: &Path, reason: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("note.{RENDER_NOTE_EXT}"));
    let text = format!(
        "retouchd could not make the finished photo from the layers beside this note.\n\
         Reason: {reason}\n\n\
         The layers are delivered as the server sent them; no credit is spent again.\n\
         After fixing the cause, `retouchd render <layers folder>` makes the finished photo without the server.\n"
    );
    let mut file = File::create(&path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

/// Where a job's finished outputs are made: `job-N.render`, beside its staged result.
const RENDER_SUFFIX: &str = ".render";

/// What a job's staged things are named after: `job-N` for its first claim, `job-N.gG` when
/// node took it over under generation G (so no two nodes ever stage under one name).
pub fn stage_stem(job: i64, generation: i64) -> String {
    if generation <= crate::journal::FIRST_GENERATION {
        format!("job-{job}")
    } else {
        format!("job-{job}.g{generation}")
    }
}

/// The job a staged name belongs to (`job-N…`), if it is one.
pub fn staged_job(name: &std::ffi::OsStr) -> Option<i64> {
    let rest = name.to_str()?.strip_prefix("job-")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

/// The name of something staged under `stem` (see [`stage_stem`]), followed by `suffix`.
fn staged_name(stem: &str, suffix: &str) -> String {
    format!("{stem}{suffix}")
}

/// The folder a job's finished outputs are made in, beside its staged result.
pub fn render_dir(staged: &Path, stem: &str) -> PathBuf {
    staged.with_file_name(staged_name(stem, RENDER_SUFFIX))
}

/// Removes what may still be staged under `stem` in `staging` once its outputs are published:
/// its result (`job-N`, or `job-N.jpg|png` for one image) when the finished photo replaced it,
/// and its work folder `job-N.render`. Named, not searched: the staging folder may hold
/// thousands of other jobs.
pub fn discard_job_staging(staging: &Path, stem: &str) {
    for suffix in ["", RENDER_SUFFIX, ".jpg", ".png"] {
        let name = staged_name(stem, suffix);
        let _ = remove_any(&staging.join(name));
    }
}

/// Splits a file name into stem and extension (`a.b.jpg` → `a.b`, `jpg`).
pub fn split_name(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    }
}

/// Best-effort fsync of a folder, so that a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Extracts a result archive into `dest` (which must not exist yet). Refuses entries that would
/// land outside `dest` (`..`, absolute paths), links, duplicate names, and stops once more than
/// `max_bytes` would be written, whatever the archive declares.
pub fn extract_zip(archive_path: &Path, dest: &Path, max_bytes: u64) -> Result<Vec<PathBuf>, DeliverError> {
    let unsafe_ = |m: String| DeliverError::Unsafe(m);
    let mut archive = zip::ZipArchive::new(File::open(archive_path)?)
        .map_err(|e| unsafe_(format!("the result archive cannot be read: {e}")))?;
    // The reader keeps one entry per name; a central directory listing more means duplicates.
    if let Some(declared) = declared_entries(archive_path)?
        && declared != archive.len()
    {
        return Err(unsafe_(format!(
            "the result archive lists {declared} entries but only {} distinct names (duplicates); refused",
            archive.len()
        )));
    }
    fs::create_dir(dest)?;
    let mut written = 0u64;
    let mut outputs = Vec::new();
    for i in 0..archive.len() {
        let mut entry =
            archive.by_index(i).map_err(|e| unsafe_(format!("entry {i} of the result archive cannot be read: {e}")))?;
        let raw_name = entry
            .name()
            .map(|n| n.into_owned())
            .map_err(|e| unsafe_(format!("entry {i} of the result archive has an unreadable name: {e}")))?;
        if entry.is_symlink() {
            return Err(unsafe_(format!("the result archive holds a link `{raw_name}`; refused")));
        }
        let rel = safe_relative(&raw_name).ok_or_else(|| {
            unsafe_(format!("the result archive has an entry `{raw_name}` that points outside its folder; refused"))
        })?;
        let path = dest.join(&rel);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(unsafe_(format!("the result archive has `{raw_name}` twice; refused")));
            }
            Err(e) => return Err(e.into()),
        };
        let budget = max_bytes.saturating_sub(written);
        let copied = io::copy(&mut (&mut entry).take(budget + 1), &mut out).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other if !is_disk_full(&e) => {
                unsafe_(format!("entry `{raw_name}` of the result archive is damaged: {e}"))
            }
            _ => DeliverError::Io(e),
        })?;
        written += copied;
        if copied > budget {
            return Err(unsafe_(format!(
                "the result archive expands to more than {} MB; refused as a possible zip bomb",
                max_bytes / (1024 * 1024)
            )));
        }
        out.sync_all()?;
        outputs.push(path);
    }
    Ok(outputs)
}

/// The entry count a zip's end-of-central-directory record declares (`None` for zip64 archives,
/// whose 16-bit field is a placeholder, or when the record is not found).
fn declared_entries(path: &Path) -> io::Result<Option<usize>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(22 + 65_535);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let Some(at) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else { return Ok(None) };
    let Some(field) = tail.get(at + 10..at + 12) else { return Ok(None) };
    let total = u16::from_le_bytes([field[0], field[1]]);
    Ok((total != u16::MAX).then_some(total as usize))
}

/// An archive entry name as a path that stays inside its folder, or `None`.
fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.contains('\0') || name.starts_with('/') || name.starts_with('\\') {
        return None;
    }
    let name = name.replace('\\', "/");
    let mut out = PathBuf::new();
    for part in Path::new(&name).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Moves a source file to `dir/<rel>` (a free name there), across file systems if needed by
/// copying to a staging name, syncing, renaming and only then removing the original.
pub fn move_source(src: &Path, dir: &Path, rel: &Path) -> io::Result<PathBuf> {
    let target_dir = rel.parent().map(|p| dir.join(p)).unwrap_or_else(|| dir.to_path_buf());
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (stem, ext) = split_name(&name);
    match place(src, &target_dir, stem, ext) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let staging = dir.join(STAGING_DIR);
            fs::create_dir_all(&staging)?;
            let tmp = staging.join(format!("move-{}", fastrand::u64(..)));
            let result = (|| {
                fs::copy(src, &tmp)?;
                File::open(&tmp)?.sync_all()?;
                place(&tmp, &target_dir, stem, ext)
            })();
            match result {
                Ok(to) => {
                    fs::remove_file(src)?;
                    Ok(to)
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        other => other,
    }
}

/// Writes `<failed file>.error.txt` with the reason and what to do.
pub fn write_error_note(failed_file: &Path, source: &Path, reason: &str) -> io::Result<PathBuf> {
    let mut note = failed_file.as_os_str().to_owned();
    note.push(".error.txt");
    let note = PathBuf::from(note);
    let text = format!(
        "retouchd could not retouch this file.\n\nFile:   {}\nReason: {}\nWhen:   {}\n\n\
         What to do: fix what the reason says, then move the file back into the inbox \
         (or run `retouchd retry --failed`).\n",
        source.display(),
        reason,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    );
    let mut f = File::create(&note)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagegen;

    #[test]
    fn taken_names_get_a_numbered_suffix() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            let src = dir.path().join(format!("src{i}"));
            fs::write(&src, [i]).unwrap();
            place(&src, &dir.path().join("out"), "photo", Some("jpg")).unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["photo (2).jpg", "photo (3).jpg", "photo.jpg"]);
        assert_eq!(fs::read(dir.path().join("out/photo.jpg")).unwrap(), [0], "the first is never overwritten");
    }

    #[test]
    fn targets_keep_subfolders_and_take_the_real_extension() {
        let image = Target::for_result(Path::new("/out"), Path::new("a/b/IMG 1.JPEG"), FileKind::Jpeg);
        assert_eq!(image, Target { dir: "/out/a/b".into(), stem: "IMG 1".into(), ext: Some("jpg".into()) });
        assert_eq!(image.path(), PathBuf::from("/out/a/b/IMG 1.jpg"));
        let layers = Target::for_result(Path::new("/out"), Path::new("x.png"), FileKind::Zip);
        assert_eq!((layers.stem.as_str(), layers.ext), ("x", None));
        assert_eq!(split_name(".hidden"), (".hidden", None));
        assert_eq!(split_name("a.tar.gz"), ("a.tar", Some("gz")));
    }

    #[test]
    fn a_staged_result_is_published_once_and_a_second_publish_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(STAGING_DIR);
        fs::create_dir_all(&staging).unwrap();
        let download = staging.join("download-1");
        fs::write(&download, imagegen::jpeg_bytes(4, 4, [1, 2, 3])).unwrap();
        let target = Target::for_result(&dir.path().join("out"), Path::new("sub/p.jpeg"), FileKind::Jpeg);
        let staged = stage_download(&download, FileKind::Jpeg, &target, &stage_stem(7, 1), 1 << 20).unwrap();
        assert_eq!(staged, staging.join("job-7.jpg"));
        assert!(!download.exists());
        let published = publish(&staged, &target).unwrap();
        assert_eq!(published, Some(dir.path().join("out/sub/p.jpg")));
        assert_eq!(publish(&staged, &target).unwrap(), None, "after a restart: already published");

        fs::write(&download, b"<html>").unwrap();
        let refused = stage_download(&download, FileKind::Unknown, &target, &stage_stem(8, 3), 1 << 20);
        assert!(matches!(refused, Err(DeliverError::Unsafe(_))));
        assert!(!download.exists(), "nothing is left behind");
    }

    #[test]
    fn a_node_that_took_a_job_over_stages_under_a_name_of_its_own() {
        assert_eq!(stage_stem(7, 1), "job-7");
        assert_eq!(stage_stem(7, 3), "job-7.g3");
        assert_eq!(render_dir(Path::new("/o/.s/job-7.g3"), &stage_stem(7, 3)), Path::new("/o/.s/job-7.g3.render"));
        for (name, job) in [("job-7", Some(7)), ("job-7.g3.render", Some(7)), ("job-12.jpg", Some(12))] {
            assert_eq!(staged_job(std::ffi::OsStr::new(name)), job, "{name}");
        }
        for name in [".retouchd-download-5.part", "job-", "jobs-1", "notes"] {
            assert_eq!(staged_job(std::ffi::OsStr::new(name)), None, "{name}");
        }
    }

    #[test]
    fn entry_names_that_escape_are_refused() {
        for bad in ["../x.png", "/etc/passwd", "a/../../x", "\\evil", "a\0b", ""] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
        assert_eq!(safe_relative("a/./b.png"), Some(PathBuf::from("a/b.png")));
    }

    fn zip_file(dir: &Path, entries: &[(&str, Vec<u8>)]) -> PathBuf {
        let path = dir.join("r.zip");
        fs::write(&path, imagegen::zip_of(entries)).unwrap();
        path
    }

    #[test]
    fn extraction_writes_entries_and_refuses_traversal_duplicates_and_bombs() {
        let dir = tempfile::tempdir().unwrap();
        let good = zip_file(
            dir.path(),
            &[("index=0&blendmode=normal&name=Heal.png", vec![1, 2, 3]), ("result.json", b"{}".to_vec())],
        );
        let outputs = extract_zip(&good, &dir.path().join("ok"), 1 << 20).unwrap();
        assert_eq!(outputs.len(), 2);

        let evil = zip_file(dir.path(), &[("../escaped.png", vec![1])]);
        assert!(matches!(extract_zip(&evil, &dir.path().join("e1"), 1 << 20), Err(DeliverError::Unsafe(_))));
        assert!(!dir.path().join("escaped.png").exists());

        let dup = zip_file(dir.path(), &[("a.png", vec![1]), ("./a.png", vec![2])]);
        assert!(matches!(extract_zip(&dup, &dir.path().join("e2"), 1 << 20), Err(DeliverError::Unsafe(_))));

        let bomb = zip_file(dir.path(), &[("zeros.png", vec![0u8; 5 << 20])]);
        let err = extract_zip(&bomb, &dir.path().join("e3"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("zip bomb"), "{err}");
        let written: u64 =
            fs::read_dir(dir.path().join("e3")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(written <= (1 << 20) + 1, "wrote {written} bytes");
    }

    #[test]
    fn sources_move_into_subfolders_and_error_notes_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.jpg");
        fs::write(&src, b"x").unwrap();
        let moved = move_source(&src, &dir.path().join("failed"), Path::new("sub/in.jpg")).unwrap();
        assert_eq!(moved, dir.path().join("failed/sub/in.jpg"));
        assert!(!src.exists());
        let note = write_error_note(&moved, Path::new("/inbox/sub/in.jpg"), "the file is empty").unwrap();
        assert_eq!(note, dir.path().join("failed/sub/in.jpg.error.txt"));
        assert!(fs::read_to_string(note).unwrap().contains("the file is empty"));
    }
}
