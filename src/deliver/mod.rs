//! Placement: where a result goes ([`Target`], journaled with the job), turning a download into
//! a staged result beside the outbox ([`stage_download`]), and publishing it without ever
//! showing half a file or overwriting one (fsync, then an atomic no-replace rename to a free
//! name, `name (2).ext` when taken). Also the safe extraction of result archives (entry names
//! checked, no links, bytes really written capped) and moving sources to done/ or failed/ with a
//! reason beside them.
//!
//! Every file operation here runs relative to an opened inbox, outbox, done or failed folder
//! ([`crate::beneath::Dir`]): a subfolder someone swapped for a link is refused, never followed.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::beneath::Dir;
use crate::formats::FileKind;

/// The hidden folder inside each outbox (and done/failed folder) where files are staged.
mod layout;
mod name;

pub use layout::{Layout, STAGING_DIR, open_staging, output_name, staged_job, staging_path};
pub use name::{NameParts, NameTemplate};

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

/// The name `stem.ext`, or `stem (N).ext` for the first N ≥ 2 that is free in `dir`. The stem
/// is kept as its bytes (a name need not be UTF-8).
fn candidate(dir: &Path, stem: &OsStr, ext: Option<&str>, n: u32) -> PathBuf {
    let mut name = stem.to_os_string();
    if n >= 2 {
        name.push(format!(" ({n})"));
    }
    if let Some(ext) = ext {
        name.push(".");
        name.push(ext);
    }
    dir.join(name)
}

/// Renames `from` to `to` unless `to` exists; atomic where the file system supports it. For
/// paths the caller trusts (its own config files); the daemon's folders use [`place_beneath`].
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (from_dir, from_name) = split_path(from)?;
    let (to_dir, to_name) = split_path(to)?;
    Dir::root(from_dir)?.rename_noreplace(Path::new(from_name), &Dir::root(to_dir)?, Path::new(to_name))
}

fn split_path(path: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    let name = path.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// Moves `from` into `dir` as `stem[.ext]`, or the first free ` (N)` variant, for paths the caller
/// trusts (`retouchd retry` and `render`). Returns the final path.
pub fn place(from: &Path, dir: &Path, stem: &OsStr, ext: Option<&str>) -> io::Result<PathBuf> {
    let (from_dir, from_name) = split_path(from)?;
    place_beneath(&Dir::root(from_dir)?, Path::new(from_name), &Dir::root_made(dir)?, Path::new(""), stem, ext)
}

/// Moves `from` (beneath `from_root`) into the folder `dir` beneath `to_root` (made if missing)
/// as `stem[.ext]`, or the first free ` (N)` variant; never through a link. Returns the final path.
pub fn place_beneath(
    from_root: &Dir,
    from: &Path,
    to_root: &Dir,
    dir: &Path,
    stem: &OsStr,
    ext: Option<&str>,
) -> io::Result<PathBuf> {
    let to_dir = to_root.create_dirs(dir)?;
    for n in 1..10_000 {
        let name = candidate(Path::new(""), stem, ext, n);
        match from_root.rename_noreplace(from, &to_dir, &name) {
            Ok(()) => {
                to_dir.sync();
                return Ok(to_root.path().join(dir).join(name));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTEMPTY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("no free name for {} in {}", stem.display(), to_dir.path().display())))
}

/// `path` below `root`, or an error saying it is not there (a journaled path must stay inside
/// the folder it was made in).
pub fn below<'p>(root: &Path, path: &'p Path) -> io::Result<&'p Path> {
    path.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not inside {}; refused", path.display(), root.display()),
        )
    })
}

/// Where a result is published: `dir/stem[.ext]`, or the first free `stem (N)[.ext]` there.
/// A zip result is a folder (`ext` is `None`); an image keeps the extension of its real kind.
/// The stem keeps the source name's bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    #[serde(with = "crate::lossless::path")]
    pub dir: PathBuf,
    #[serde(with = "crate::lossless::name")]
    pub stem: OsString,
    pub ext: Option<String>,
    /// What is published here, once staged: a rename keeps it, so a publish cut off between
    /// its rename and the journal finds the name the result really got (`name (2)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<EntryId>,
}

/// A file or folder on disk (device and inode), whatever its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryId {
    pub dev: u64,
    pub ino: u64,
}

impl EntryId {
    /// The entry `rel` beneath `root` (a link is not followed).
    pub fn of(root: &Dir, rel: &Path) -> Option<EntryId> {
        use std::os::unix::fs::MetadataExt;
        root.metadata(rel).ok().map(|m| EntryId { dev: m.dev(), ino: m.ino() })
    }
}

impl Target {
    /// The same target, for the staged entry `rel` beneath `root` (see [`Target::placed`]).
    pub fn placing(self, root: &Dir, rel: &Path) -> Target {
        Target { placed: EntryId::of(root, rel), ..self }
    }

    /// The target for the result of `inbox/<rel>`: `outbox/<sub>/<stem>` for a zip, else
    /// `outbox/<sub>/<stem>.<ext of the result's real kind>`.
    pub fn for_result(outbox: &Path, rel: &Path, kind: FileKind) -> Target {
        let dir = rel.parent().map(|p| outbox.join(p)).unwrap_or_else(|| outbox.to_path_buf());
        let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_else(|| "result".into());
        let stem = split_os_name(&name).0.to_os_string();
        let ext = match kind {
            FileKind::Zip => None,
            other => Some(other.extension().to_string()),
        };
        Target { dir, stem, ext, placed: None }
    }

    /// The path it gets when the name is free.
    pub fn path(&self) -> PathBuf {
        candidate(&self.dir, &self.stem, self.ext.as_deref(), 1)
    }
}

/// A staged file or folder and where it is to be published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    #[serde(with = "crate::lossless::path")]
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
            Parts {
                #[serde(with = "crate::lossless::path")]
                dir: PathBuf,
                #[serde(with = "crate::lossless::name")]
                stem: OsString,
                ext: Option<String>,
                #[serde(default)]
                placed: Option<EntryId>,
            },
            Path(PathBuf),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Parts { dir, stem, ext, placed } => Target { dir, stem, ext, placed },
            Stored::Path(path) => Target {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                stem: path.file_name().map(OsStr::to_os_string).unwrap_or_default(),
                ext: None,
                placed: None,
            },
        })
    }
}

/// Turns a job's download (`download`, a name in `staging`) into a staged result named after
/// `stem` there: a zip is extracted (at most `max_bytes`) into a folder, an image renamed.
/// Returns the staged path; the download is gone either way.
pub fn stage_download(
    staging: &Dir,
    download: &Path,
    kind: FileKind,
    target: &Target,
    stem: &str,
    max_bytes: u64,
) -> Result<PathBuf, DeliverError> {
    let staged = layout::staged_result_name(stem, target);
    staging.remove_all(&staged)?;
    match kind {
        FileKind::Zip => {
            let result = extract_zip_beneath(staging.open_file(download)?, staging, &staged, max_bytes);
            let _ = staging.remove_file(download);
            if result.is_err() {
                let _ = staging.remove_all(&staged);
            }
            result?;
        }
        FileKind::Png | FileKind::Jpeg => staging.rename_replace(download, &staged)?,
        // The server answers with PNG, JPEG or ZIP; anything else is not kept.
        FileKind::Tiff | FileKind::Unknown => {
            let _ = staging.remove_file(download);
            return Err(DeliverError::Unsafe(
                "the server sent something that is neither a ZIP archive nor an image".into(),
            ));
        }
    }
    staging.sync();
    Ok(staging.path().join(staged))
}

/// Publishes a staged result (beneath `outbox`) at `target` (or its first free numbered name).
/// Returns the final path. When the staged result is gone from a staging folder that is there,
/// it was published before a restart: the path is the numbered name holding the very entry
/// staged ([`Target::placed`]), or `target`'s own name when that cannot be told (`Published`).
/// An outbox or staging folder that cannot be read (an unmounted share) is an error to retry,
/// never "published".
pub fn publish(outbox: &Path, staged: &Path, target: &Target) -> io::Result<Published> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", target.dir.display()));
    let root =
        Dir::root(outbox).map_err(|e| io::Error::new(e.kind(), format!("the outbox {}: {e}", outbox.display())))?;
    let (staged_rel, dir_rel) = (below(outbox, staged)?, below(outbox, &target.dir)?);
    // The staging folder itself must be there (a share that dropped has none); below it, a
    // staged result (or the work folder it was made in) that is gone was published before.
    let first = staged_rel.components().next().map(|c| Path::new(c.as_os_str())).unwrap_or(Path::new(STAGING_DIR));
    root.dir(first)
        .map_err(|e| io::Error::new(e.kind(), format!("the staging folder {}: {e}", outbox.join(first).display())))?;
    match root.metadata(staged_rel) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Published::Before(published_as(&root, target))),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    place_beneath(&root, staged_rel, &root, dir_rel, &target.stem, target.ext.as_deref())
        .map(Published::Now)
        .map_err(context)
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Renamed into the outbox now, at this path.
    Now(PathBuf),
    /// Published before a restart, at this path (as far as can be told).
    Before(PathBuf),
}

/// Where a result published before a restart is: the first of `target`'s names (plain, then
/// numbered, as long as they exist) that holds the entry staged; else the plain name.
fn published_as(root: &Dir, target: &Target) -> PathBuf {
    let found = target.placed.and_then(|placed| {
        let dir = below(root.path(), &target.dir).ok()?;
        (1..10_000)
            .map(|n| candidate(dir, &target.stem, target.ext.as_deref(), n))
            .map_while(|rel| EntryId::of(root, &rel).map(|id| (rel, id)))
            .find(|(_, id)| *id == placed)
            .map(|(rel, _)| root.path().join(rel))
    });
    found.unwrap_or_else(|| target.path())
}

/// The largest result.json read.
const MAX_RESULT_JSON: u64 = 8 << 20;

/// What the result.json in the first of `folders` (beneath `outbox`) that has one says; `None`
/// when none has one, or it is not a JSON object (the result is still delivered as it came).
pub fn findings_in(outbox: &Path, folders: &[PathBuf]) -> Option<crate::api::result_json::Findings> {
    use std::io::Read;
    let root = Dir::root(outbox).ok()?;
    folders.iter().find_map(|folder| {
        let rel = below(outbox, folder).ok()?.join("result.json");
        let mut bytes = Vec::new();
        root.open_file(&rel).ok()?.take(MAX_RESULT_JSON).read_to_end(&mut bytes).ok()?;
        let parsed = crate::api::result_json::ResultJson::parse(&bytes).ok()?;
        Some(parsed.findings(crate::plugins::is_face_aware))
    })
}

/// The extension of the note that says why no finished photo was made: `<name>.render-error.txt`.
pub const RENDER_NOTE_EXT: &str = "render-error.txt";

/// Writes the render-error note into `dir` (a job's own work folder); returns its path.
pub fn write_render_note(dir: &Path, reason: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("note.{RENDER_NOTE_EXT}"));
    let _ = fs::remove_file(&path);
    let text = format!(
        "retouchd could not make the finished photo from the layers beside this note.\n\
         Reason: {reason}\n\n\
         The layers are delivered as the server sent them; no credit is spent again.\n\
         After fixing the cause, `retouchd render <layers folder>` makes the finished photo without the server.\n"
    );
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(path)
}

/// Splits a file name into stem and extension (`a.b.jpg` → `a.b`, `jpg`).
pub fn split_name(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    }
}

/// A file name as the stem and extension it is placed under (`name (2).ext` when taken): an
/// extension that is not UTF-8 stays part of the stem, and the stem keeps its bytes.
pub fn stem_and_ext(name: &OsStr) -> (&OsStr, Option<&str>) {
    match split_os_name(name) {
        (stem, Some(ext)) if ext.to_str().is_some() => (stem, ext.to_str()),
        _ => (name, None),
    }
}

/// [`split_name`] for a name as it is on disk (not necessarily UTF-8).
pub fn split_os_name(name: &OsStr) -> (&OsStr, Option<&OsStr>) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    match bytes.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 && dot + 1 < bytes.len() => {
            (OsStr::from_bytes(&bytes[..dot]), Some(OsStr::from_bytes(&bytes[dot + 1..])))
        }
        _ => (name, None),
    }
}

/// Best-effort fsync of a folder, so that a rename in it survives a power cut.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The most entries a result archive may have (a photo's layers are a handful; an input zip's
/// results a few per photo).
pub const MAX_RESULT_ENTRIES: usize = 3 * crate::inspect::MAX_ZIP_ENTRIES + 100;

/// Extracts a result archive into `dest` (which must not exist yet), for paths the caller
/// trusts; the daemon uses [`extract_zip_beneath`].
pub fn extract_zip(archive_path: &Path, dest: &Path, max_bytes: u64) -> Result<Vec<PathBuf>, DeliverError> {
    let (parent, name) = split_path(dest)?;
    extract_zip_beneath(File::open(archive_path)?, &Dir::root(parent)?, Path::new(name), max_bytes)
}

/// Extracts a result archive into the new folder `dest` beneath `root`. Refuses entries that
/// would land outside `dest` (`..`, absolute paths), links, duplicate names, more than
/// [`MAX_RESULT_ENTRIES`] entries, and stops once more than `max_bytes` would be written,
/// whatever the archive declares. Every file is created exclusively, beneath `dest`'s handle.
pub fn extract_zip_beneath(
    archive_file: File,
    root: &Dir,
    dest: &Path,
    max_bytes: u64,
) -> Result<Vec<PathBuf>, DeliverError> {
    let unsafe_ = |m: String| DeliverError::Unsafe(m);
    let declared = declared_entries(&archive_file)?;
    let mut archive =
        zip::ZipArchive::new(archive_file).map_err(|e| unsafe_(format!("the result archive cannot be read: {e}")))?;
    // The reader keeps one entry per name; a central directory listing more means duplicates.
    if let Some(declared) = declared
        && declared != archive.len()
    {
        return Err(unsafe_(format!(
            "the result archive lists {declared} entries but only {} distinct names (duplicates); refused",
            archive.len()
        )));
    }
    if archive.len() > MAX_RESULT_ENTRIES {
        return Err(unsafe_(format!(
            "the result archive has {} entries, more than the {MAX_RESULT_ENTRIES} retouchd takes; refused",
            archive.len()
        )));
    }
    let dest_name = dest.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let parent = root.dir(dest.parent().unwrap_or(Path::new("")))?;
    rustix::fs::mkdirat(&parent, dest_name, rustix::fs::Mode::from_raw_mode(0o777))
        .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
    let out_dir = parent.dir(Path::new(dest_name))?;
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
        if entry.is_dir() {
            out_dir.create_dirs(&rel)?;
            continue;
        }
        let folder = out_dir.create_dirs(rel.parent().unwrap_or(Path::new("")))?;
        let file_name = rel.file_name().map(Path::new).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut out = match folder.create_new(file_name) {
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
        outputs.push(root.path().join(dest).join(&rel));
    }
    out_dir.sync();
    Ok(outputs)
}

/// The entry count a zip's end-of-central-directory record declares (`None` for zip64 archives,
/// whose 16-bit field is a placeholder, or when the record is not found).
fn declared_entries(file: &File) -> io::Result<Option<usize>> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(22 + 65_535);
    let mut tail = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut tail, start)?;
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

/// Moves the source `rel` of `inbox` to `<dest>/<rel>` (a free name there), beneath both
/// folders' handles; across file systems by copying to a temporary name in `dest`'s staging
/// folder, syncing, renaming and only then removing the original.
pub fn move_source(inbox: &Path, rel: &Path, dest: &Path) -> io::Result<PathBuf> {
    let (from, to) = (Dir::root(inbox)?, Dir::root_made(dest)?);
    // Only a file is moved (a link swapped in meanwhile stays where it is).
    if !from.metadata(rel)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is no longer a regular file", inbox.join(rel).display()),
        ));
    }
    let sub = rel.parent().unwrap_or(Path::new(""));
    let (stem, ext) = stem_and_ext(rel.file_name().unwrap_or_default());
    match place_beneath(&from, rel, &to, sub, stem, ext) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let staging = to.create_dirs(Path::new(STAGING_DIR))?;
            let (mut tmp, tmp_name) = staging.create_temp("move-")?;
            let result = (|| {
                io::copy(&mut from.open_file(rel)?, &mut tmp)?;
                tmp.sync_all()?;
                place_beneath(&staging, Path::new(&tmp_name), &to, sub, stem, ext)
            })();
            match result {
                Ok(moved) => {
                    from.remove_file(rel)?;
                    Ok(moved)
                }
                Err(e) => {
                    let _ = staging.remove_file(Path::new(&tmp_name));
                    Err(e)
                }
            }
        }
        other => other,
    }
}

/// Proves that results can be delivered into `dir` (an outbox, done or failed folder): makes
/// it if missing, then creates, renames and removes a probe file in it, beneath its handle. An
/// outbox is probed through its staging folder, as publishing uses it. The error names the
/// folder, the user retouchd runs as, and what to do.
pub fn probe_folder(dir: &Path, is_outbox: bool) -> Result<(), String> {
    let probe = || -> io::Result<()> {
        let root = Dir::root_made(dir)?;
        let place = if is_outbox { open_staging(dir)? } else { root.dir(Path::new(""))? };
        let (file, name) = place.create_temp(".retouchd-probe-")?;
        drop(file);
        let renamed = format!("{}.moved", name.to_string_lossy());
        let result = place.rename_noreplace(Path::new(&name), &root, Path::new(&renamed));
        let _ = place.remove_file(Path::new(&name));
        result?;
        root.remove_file(Path::new(&renamed))
    };
    probe().map_err(|e| {
        let uid = rustix::process::getuid().as_raw();
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| format!("uid {uid}"));
        format!(
            "{} cannot be written by {user} (uid {uid}): {e}; give that user write access to it (e.g. \
             `chown -R {user} {}`), or configure another folder",
            dir.display(),
            dir.display()
        )
    })
}

/// Removes the source `rel` of `inbox` (`on_success = "delete"`), beneath the inbox's handle.
pub fn remove_source(inbox: &Path, rel: &Path) -> io::Result<()> {
    Dir::root(inbox)?.remove_file(rel)
}

/// The longest file name most file systems take, in bytes.
const NAME_MAX: usize = 255;

/// The note's name for the failed file `name`: `<name>.error.txt`, with the name shortened (at a
/// character boundary, when it is UTF-8) when the whole would be longer than a file system allows.
fn error_note_name(name: &OsStr) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    const SUFFIX: &str = ".error.txt";
    let limit = NAME_MAX - SUFFIX.len();
    let keep = match name.to_str() {
        Some(text) => text.floor_char_boundary(limit),
        None => name.len().min(limit),
    };
    let mut note = OsStr::from_bytes(&name.as_bytes()[..keep]).to_os_string();
    note.push(SUFFIX);
    note
}

/// Writes `<failed file>.error.txt` beside `moved` (a file beneath `failed_dir`) with the reason
/// and what to do. A link planted under that name is replaced, never followed.
pub fn write_error_note(failed_dir: &Path, moved: &Path, source: &Path, reason: &str) -> io::Result<PathBuf> {
    let rel = below(failed_dir, moved)?;
    let note = rel.with_file_name(error_note_name(rel.file_name().unwrap_or_default()));
    let text = format!(
        "retouchd could not retouch this file.\n\nFile:   {}\nReason: {}\nWhen:   {}\n\n\
         What to do: fix what the reason says, then move the file back into the inbox \
         (or run `retouchd retry --failed`).\n",
        crate::logging::escaped(source.display()),
        reason,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
    );
    Dir::root(failed_dir)?.write_replace(&note, text.as_bytes())?;
    Ok(failed_dir.join(note))
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
            place(&src, &dir.path().join("out"), "photo".as_ref(), Some("jpg")).unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["photo (2).jpg", "photo (3).jpg", "photo.jpg"]);
        assert_eq!(fs::read(dir.path().join("out/photo.jpg")).unwrap(), [0], "the first is never overwritten");
    }

    #[test]
    fn targets_keep_subfolders_and_take_the_real_extension() {
        let image = Target::for_result(Path::new("/out"), Path::new("a/b/IMG 1.JPEG"), FileKind::Jpeg);
        assert_eq!(
            image,
            Target { dir: "/out/a/b".into(), stem: "IMG 1".into(), ext: Some("jpg".into()), placed: None }
        );
        assert_eq!(image.path(), PathBuf::from("/out/a/b/IMG 1.jpg"));
        let layers = Target::for_result(Path::new("/out"), Path::new("x.png"), FileKind::Zip);
        assert_eq!((layers.stem.to_str(), layers.ext), (Some("x"), None));
        assert_eq!(split_name(".hidden"), (".hidden", None));
        assert_eq!(split_name("a.tar.gz"), ("a.tar", Some("gz")));
    }

    #[test]
    fn a_staged_result_is_published_once_and_a_second_publish_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staging_dir = open_staging(dir.path()).unwrap();
        let staging = dir.path().join(STAGING_DIR);
        let download = staging.join("download-1");
        fs::write(&download, imagegen::jpeg_bytes(4, 4, [1, 2, 3])).unwrap();
        let target = Target::for_result(&dir.path().join("out"), Path::new("sub/p.jpeg"), FileKind::Jpeg);
        let name = Path::new("download-1");
        let staged = stage_download(&staging_dir, name, FileKind::Jpeg, &target, "job-7", 1 << 20).unwrap();
        assert_eq!(staged, staging.join("job-7.jpg"));
        assert!(!download.exists());
        let published = publish(dir.path(), &staged, &target).unwrap();
        let plain = dir.path().join("out/sub/p.jpg");
        assert_eq!(published, Published::Now(plain.clone()));
        let again = publish(dir.path(), &staged, &target).unwrap();
        assert_eq!(again, Published::Before(plain.clone()), "after a restart: already published");
        let in_work = staging.join("job-7.render/flat.jpg");
        let again = publish(dir.path(), &in_work, &target).unwrap();
        assert_eq!(again, Published::Before(plain), "its work folder went too: published");
        // An outbox whose staging folder is gone (an unmounted share) is not "published".
        let gone = tempfile::tempdir().unwrap();
        let elsewhere = gone.path().join(STAGING_DIR).join("job-9.jpg");
        let there = Target::for_result(gone.path(), Path::new("p.jpeg"), FileKind::Jpeg);
        let err = publish(gone.path(), &elsewhere, &there).unwrap_err();
        assert!(err.to_string().contains("staging folder"), "{err}");

        fs::write(&download, b"<html>").unwrap();
        let refused = stage_download(&staging_dir, name, FileKind::Unknown, &target, "job-8.g3", 1 << 20);
        assert!(matches!(refused, Err(DeliverError::Unsafe(_))));
        assert!(!download.exists(), "nothing is left behind");
    }

    #[test]
    fn a_publish_cut_off_before_the_journal_finds_the_numbered_name_the_result_really_got() {
        let dir = tempfile::tempdir().unwrap();
        let staging = open_staging(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/result.json"), b"{}").unwrap();
        for (staged, bytes) in [("job-1.jpg", &b"x"[..]), ("job-2", b"")] {
            match bytes.is_empty() {
                true => fs::create_dir(staging.path().join(staged)).unwrap(),
                false => fs::write(staging.path().join(staged), bytes).unwrap(),
            }
        }
        fs::write(dir.path().join("p.jpg"), b"someone else's").unwrap();
        let outbox = Dir::root(dir.path()).unwrap();
        let image = Target { dir: dir.path().into(), stem: "p".into(), ext: Some("jpg".into()), placed: None };
        let layers = Target { dir: dir.path().into(), stem: "a".into(), ext: None, placed: None };
        for (staged, target, taken) in [("job-1.jpg", image, "p (2).jpg"), ("job-2", layers, "a (2)")] {
            let rel = Path::new(STAGING_DIR).join(staged);
            let target = target.placing(&outbox, &rel);
            assert!(target.placed.is_some());
            let path = dir.path().join(&rel);
            assert_eq!(publish(dir.path(), &path, &target).unwrap(), Published::Now(dir.path().join(taken)));
            // A restart before the journal said so: the name it really got, not the plain one.
            assert_eq!(publish(dir.path(), &path, &target).unwrap(), Published::Before(dir.path().join(taken)));
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
        let src = dir.path().join("inbox/sub/in.jpg");
        fs::create_dir_all(src.parent().unwrap()).unwrap();
        fs::write(&src, b"x").unwrap();
        let failed = dir.path().join("failed");
        let moved = move_source(&dir.path().join("inbox"), Path::new("sub/in.jpg"), &failed).unwrap();
        assert_eq!(moved, dir.path().join("failed/sub/in.jpg"));
        assert!(!src.exists());
        let note = write_error_note(&failed, &moved, Path::new("/inbox/sub/in.jpg"), "the file is empty").unwrap();
        assert_eq!(note, dir.path().join("failed/sub/in.jpg.error.txt"));
        assert!(fs::read_to_string(note).unwrap().contains("the file is empty"));
    }

    #[test]
    fn a_name_at_the_length_limit_still_gets_its_note_and_a_planted_link_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let failed = dir.path().join("failed");
        fs::create_dir_all(&failed).unwrap();
        let long = format!("{}é.jpg", "x".repeat(249));
        assert_eq!(long.len(), 255);
        fs::write(failed.join(&long), b"x").unwrap();
        let note = write_error_note(&failed, &failed.join(&long), Path::new("/in/x.jpg"), "why").unwrap();
        let name = note.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255 && name.ends_with(".error.txt") && name.starts_with("xxxx"), "{name}");
        assert!(fs::read_to_string(&note).unwrap().contains("why"));

        let victim = dir.path().join("victim.txt");
        fs::write(&victim, b"keep me").unwrap();
        fs::write(failed.join("b.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(&victim, failed.join("b.jpg.error.txt")).unwrap();
        write_error_note(&failed, &failed.join("b.jpg"), Path::new("/in/b.jpg"), "why").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me", "the note went through the planted link");
        assert!(fs::read_to_string(failed.join("b.jpg.error.txt")).unwrap().contains("why"));
    }

    #[test]
    fn a_folder_that_cannot_be_written_fails_the_probe_with_its_name_and_the_user() {
        let dir = tempfile::tempdir().unwrap();
        probe_folder(&dir.path().join("out"), true).unwrap();
        probe_folder(&dir.path().join("done"), false).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join("done")).unwrap().collect();
        assert!(left.is_empty(), "the probe leaves nothing behind");
        // A file where the staging folder belongs: nobody, root included, can deliver there.
        fs::create_dir(dir.path().join("out2")).unwrap();
        fs::write(dir.path().join("out2").join(STAGING_DIR), b"").unwrap();
        let why = probe_folder(&dir.path().join("out2"), true).unwrap_err();
        assert!(why.contains("out2") && why.contains("uid") && why.contains("write access"), "{why}");
    }

    #[test]
    fn a_result_archive_with_too_many_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(String, Vec<u8>)> = (0..=MAX_RESULT_ENTRIES).map(|i| (format!("{i}.png"), vec![])).collect();
        let path = dir.path().join("r.zip");
        fs::write(&path, imagegen::zip_of(&entries)).unwrap();
        let err = extract_zip(&path, &dir.path().join("out"), 1 << 30).unwrap_err();
        assert!(err.to_string().contains("entries"), "{err}");
        assert!(!dir.path().join("out").exists());
    }
}
