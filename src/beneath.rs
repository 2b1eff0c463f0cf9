//! File work that stays beneath a folder, whatever others swap in between two calls.
//!
//! Inboxes, outboxes, done and failed folders are written by other people (assistants, clients,
//! other machines). A path string such as `inbox/shoot/a.jpg` is resolved anew by every call,
//! so a folder swapped for a symbolic link between a check and a rename would send the daemon
//! outside the inbox. Here every operation starts from an opened folder ([`Dir`]) and resolves
//! the rest of the path relative to it, refusing every symbolic link and every `..` on the way
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; where the kernel lacks it, one
//! `openat(O_NOFOLLOW)` per component), and acts on the last component with the `*at` calls on
//! the folder that was opened. Files are created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`),
//! temporary ones under unpredictable names.
//!
//! The root's own path (the configured inbox, say) is the administrator's and is resolved as
//! usual, anew for each piece of work: holding it open for the daemon's life would keep an
//! unmounted share's old folder alive (and stop `umount`).

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};

/// Set once `openat2` turned out to be missing (old kernel, or a seccomp filter refusing it).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An opened folder; every path given to its methods is resolved beneath it without following
/// any symbolic link.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only; never resolved again.
    path: PathBuf,
}

/// A path that is refused because it would leave the folder or meets a symbolic link.
pub fn is_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR))
        || e.kind() == io::ErrorKind::InvalidInput
}

/// Whether an error means the process has run out of file descriptors: a passing condition
/// (wait and retry), never a verdict on a file.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn io_err(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// The normal components of `rel`, or an error for an absolute path, `..` or an empty one.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut parts = Vec::new();
    for part in rel.components() {
        match part {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{}` leaves its folder; refused", rel.display()),
                ));
            }
        }
    }
    if parts.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty path names no file"));
    }
    Ok(parts)
}

impl Dir {
    /// Opens a configured folder (its own path is trusted and resolved as usual).
    pub fn root(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err)?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// Opens a configured folder, making it (and its parents) first when it is missing.
    pub fn root_made(path: &Path) -> io::Result<Dir> {
        match Dir::root(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path)?;
                Dir::root(path)
            }
            other => other,
        }
    }

    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` beneath this folder with `flags`, refusing symbolic links and `..`.
    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let parts = components(rel)?;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let rel: PathBuf = parts.iter().collect();
            for _ in 0..8 {
                let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
                match rustix::fs::openat2(&self.fd, &rel, flags, mode, resolve) {
                    Ok(fd) => return Ok(fd),
                    // A rename elsewhere raced the lookup: try again.
                    Err(rustix::io::Errno::AGAIN) => continue,
                    Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                        NO_OPENAT2.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
        }
        resolve_by_components(&self.fd, &parts, flags, mode)
    }

    /// The folder that holds `rel`'s last component, and that component.
    fn parent_of<'p>(&self, rel: &'p Path) -> io::Result<(Option<Dir>, &'p OsStr)> {
        let parts = components(rel)?;
        let name = *parts.last().expect("components are never empty");
        if parts.len() == 1 {
            return Ok((None, name));
        }
        let parent: PathBuf = parts[..parts.len() - 1].iter().collect();
        let fd = self.resolve(&parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((Some(Dir { fd, path: self.path.join(parent) }), name))
    }

    /// Runs `work` on the folder holding `rel`'s last component and that component's name.
    fn at<T>(&self, rel: &Path, work: impl FnOnce(&Dir, &OsStr) -> io::Result<T>) -> io::Result<T> {
        let (parent, name) = self.parent_of(rel)?;
        work(parent.as_ref().unwrap_or(self), name)
    }

    /// The folder `rel` beneath this one.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        if rel.as_os_str().is_empty() {
            return self.try_clone();
        }
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Dir { fd, path: self.path.join(rel) })
    }

    /// Makes the folders of `rel` beneath this one where missing (never through a link), and
    /// opens the last. An empty `rel` is this folder.
    pub fn create_dirs(&self, rel: &Path) -> io::Result<Dir> {
        if rel.as_os_str().is_empty() {
            return self.try_clone();
        }
        let mut current = self.try_clone()?;
        for part in components(rel)? {
            match rustix::fs::mkdirat(&current.fd, part, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_err(e)),
            }
            current = current.dir(Path::new(part))?;
        }
        Ok(current)
    }

    fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()?, path: self.path.clone() })
    }

    /// Opens the regular file `rel` for reading. Anything else (a link, a FIFO that would block,
    /// a device) is refused.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.resolve(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY, Mode::empty())?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file; refused", self.path.join(rel).display()),
            ));
        }
        rustix::fs::fcntl_setfl(&file, OFlags::RDONLY).map_err(io_err)?;
        Ok(file)
    }

    /// What `rel` is, without following it if it is a link.
    pub fn metadata(&self, rel: &Path) -> io::Result<Metadata> {
        let fd = self.resolve(rel, OFlags::PATH, Mode::empty())?;
        File::from(fd).metadata()
    }

    /// Creates the file `rel` for writing; fails if anything (a link included) has that name.
    pub fn create_new(&self, rel: &Path) -> io::Result<File> {
        self.at(rel, |dir, name| {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&dir.fd, name, flags, Mode::from_raw_mode(0o666)).map_err(io_err)?;
            Ok(File::from(fd))
        })
    }

    /// A new file in this folder that has no name (O_TMPFILE), open for reading and writing:
    /// gone when closed, whatever happens to the process. Where the file system cannot make
    /// one, a named temporary file is made and unlinked at once.
    pub fn create_unnamed(&self) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, ".", flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(File::from(fd)),
            Err(_) => {
                for _ in 0..16 {
                    let name = OsString::from(format!(".unnamed-{:016x}.tmp", random_u64()));
                    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rustix::fs::openat(&self.fd, name.as_os_str(), flags, Mode::from_raw_mode(0o600)) {
                        Ok(fd) => {
                            rustix::fs::unlinkat(&self.fd, name.as_os_str(), rustix::fs::AtFlags::empty())
                                .map_err(io_err)?;
                            return Ok(File::from(fd));
                        }
                        Err(rustix::io::Errno::EXIST) => continue,
                        Err(e) => return Err(io_err(e)),
                    }
                }
                Err(io::Error::other(format!("no free temporary name in {}", self.path.display())))
            }
        }
    }

    /// Creates a new file in this folder under an unpredictable name starting with `prefix`.
    pub fn create_temp(&self, prefix: &str) -> io::Result<(File, OsString)> {
        for _ in 0..16 {
            let name = OsString::from(format!("{prefix}{:016x}.tmp", random_u64()));
            match self.create_new(Path::new(&name)) {
                Ok(file) => return Ok((file, name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!("no free temporary name in {}", self.path.display())))
    }

    /// Removes the file (or link) `rel`.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        self.at(rel, |dir, name| rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty()).map_err(io_err))
    }

    /// Removes `rel` and, if it is a folder, everything in it; a link is removed, never followed.
    /// Nothing there is fine.
    pub fn remove_all(&self, rel: &Path) -> io::Result<()> {
        self.at(rel, |dir, name| dir.remove_entry(name))
    }

    fn remove_entry(&self, name: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(io_err(e)),
        }
        let child = self.dir(Path::new(name))?;
        for (entry, _) in child.entries()? {
            child.remove_entry(&entry)?;
        }
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Renames `from` (beneath this folder) to `to` (beneath `to_dir`) unless `to` exists;
    /// atomic where the file system supports it.
    pub fn rename_noreplace(&self, from: &Path, to_dir: &Dir, to: &Path) -> io::Result<()> {
        self.at(from, |src, from_name| {
            to_dir.at(to, |dst, to_name| {
                match rustix::fs::renameat_with(&src.fd, from_name, &dst.fd, to_name, RenameFlags::NOREPLACE) {
                    Ok(()) => Ok(()),
                    // Some network file systems do not know the flag: check, then rename.
                    Err(rustix::io::Errno::INVAL)
                    | Err(rustix::io::Errno::NOSYS)
                    | Err(rustix::io::Errno::OPNOTSUPP) => {
                        if rustix::fs::statat(&dst.fd, to_name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                        }
                        rustix::fs::renameat(&src.fd, from_name, &dst.fd, to_name).map_err(io_err)
                    }
                    Err(e) => Err(io_err(e)),
                }
            })
        })
    }

    /// Renames `from` to `to` (both beneath this folder), replacing what `to` names (a link
    /// there is replaced, never followed).
    pub fn rename_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.at(from, |src, from_name| {
            self.at(to, |dst, to_name| rustix::fs::renameat(&src.fd, from_name, &dst.fd, to_name).map_err(io_err))
        })
    }

    /// The names in this folder (without `.` and `..`) and what each is.
    pub fn entries(&self) -> io::Result<Vec<(OsString, rustix::fs::FileType)>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push((OsString::from_vec(name.to_vec()), entry.file_type()));
        }
        Ok(out)
    }

    /// A path that names this opened folder itself (Linux's `/proc/self/fd/N`): resolving it
    /// reaches this very folder whatever was renamed or swapped since. For code that takes paths
    /// (the renderer) working inside a folder only this user may write.
    pub fn anchored(&self) -> PathBuf {
        anchored(&self.fd)
    }

    /// Flushes the folder's entries to disk (best effort), so a rename in it survives a power cut.
    pub fn sync(&self) {
        let _ = rustix::fs::fsync(&self.fd);
    }

    /// Writes `bytes` to `rel` as a whole: a new temporary file beside it, synced, then renamed
    /// over `rel`. A reader never sees half of it, and a link planted at either name is replaced,
    /// never followed.
    pub fn write_replace(&self, rel: &Path, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let (parent, name) = self.parent_of(rel)?;
        let dir = parent.as_ref().unwrap_or(self);
        let mut prefix = name.to_string_lossy().into_owned();
        prefix.truncate(prefix.floor_char_boundary(100));
        let (mut file, tmp) = dir.create_temp(&format!("{prefix}."))?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        let renamed = written.and_then(|()| rustix::fs::renameat(&dir.fd, &tmp, &dir.fd, name).map_err(io_err));
        if renamed.is_err() {
            let _ = dir.remove_file(Path::new(&tmp));
        }
        renamed
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A path naming the opened file or folder `fd` itself (see [`Dir::anchored`]).
pub fn anchored(fd: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The kernels without `openat2`: one component at a time, each opened without following a
/// link (`O_NOFOLLOW` on a link fails), so nothing is resolved twice.
fn resolve_by_components(root: &OwnedFd, parts: &[&OsStr], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let mut current: Option<OwnedFd> = None;
    let (last, dirs) = parts.split_last().expect("components are never empty");
    for part in dirs {
        let at = current.as_ref().unwrap_or(root);
        let next = rustix::fs::openat(
            at,
            *part,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        current = Some(next);
    }
    let at = current.as_ref().unwrap_or(root);
    let fd = rustix::fs::openat(at, *last, flags, mode).map_err(io_err)?;
    // `O_PATH | O_NOFOLLOW` opens a link itself; as a folder on the way it must be refused.
    if flags.contains(OFlags::DIRECTORY) && !File::from(fd.try_clone()?).metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(fd)
}

/// Unpredictable 64 bits from the operating system (falls back to the process's generator).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => fastrand::u64(..),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let private = dir.path().join("private");
        std::fs::create_dir_all(inbox.join("shoot")).unwrap();
        std::fs::create_dir_all(&private).unwrap();
        std::fs::write(inbox.join("shoot/a.jpg"), b"inbox").unwrap();
        std::fs::write(private.join("a.jpg"), b"secret").unwrap();
        (dir, inbox, private)
    }

    /// The folder `shoot` swapped for a link to the private folder.
    fn swap_for_link(inbox: &Path, private: &Path) {
        std::fs::rename(inbox.join("shoot"), inbox.join("old-shoot")).unwrap();
        symlink(private, inbox.join("shoot")).unwrap();
    }

    fn every_way(test: impl Fn()) {
        NO_OPENAT2.store(false, Ordering::Relaxed);
        test();
        NO_OPENAT2.store(true, Ordering::Relaxed);
        test();
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }

    #[test]
    fn a_folder_swapped_for_a_link_is_refused_by_every_operation() {
        every_way(|| {
            let (_dir, inbox, private) = setup();
            let root = Dir::root(&inbox).unwrap();
            let rel = Path::new("shoot/a.jpg");
            assert!(root.open_file(rel).is_ok());
            swap_for_link(&inbox, &private);
            let other = tempfile::tempdir().unwrap();
            let done = Dir::root(other.path()).unwrap();
            let refusals = [
                root.open_file(rel).map(drop),
                root.metadata(rel).map(drop),
                root.remove_file(rel),
                root.remove_all(rel),
                root.rename_noreplace(rel, &done, Path::new("a.jpg")),
                root.create_new(Path::new("shoot/new.txt")).map(drop),
                root.create_dirs(Path::new("shoot/sub")).map(drop),
                root.dir(Path::new("shoot")).map(drop),
                root.write_replace(Path::new("shoot/x"), b"x"),
            ];
            for (i, r) in refusals.into_iter().enumerate() {
                let e = r.expect_err(&format!("operation {i} went through the link"));
                assert!(is_refused(&e), "operation {i}: {e}");
            }
            assert_eq!(std::fs::read(private.join("a.jpg")).unwrap(), b"secret");
            let names: Vec<_> = std::fs::read_dir(&private).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["a.jpg"], "nothing written into the private folder");
            assert!(std::fs::read_dir(other.path()).unwrap().next().is_none(), "nothing moved out");
        });
    }

    #[test]
    fn a_file_swapped_for_a_link_or_a_fifo_is_not_opened_and_dotdot_is_refused() {
        every_way(|| {
            let (_dir, inbox, private) = setup();
            let root = Dir::root(&inbox).unwrap();
            symlink(private.join("a.jpg"), inbox.join("link.jpg")).unwrap();
            assert!(is_refused(&root.open_file(Path::new("link.jpg")).unwrap_err()));
            assert!(root.metadata(Path::new("link.jpg")).unwrap().is_symlink(), "seen as the link it is");
            rustix::fs::mknodat(&root, "fifo.jpg", rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
            assert!(root.open_file(Path::new("fifo.jpg")).is_err(), "a FIFO would block the reader");
            for bad in ["../private/a.jpg", "/etc/passwd", "", "shoot/../../private/a.jpg"] {
                assert!(is_refused(&root.open_file(Path::new(bad)).unwrap_err()), "{bad}");
            }
            // Removing or renaming a link acts on the link, never on its target.
            root.remove_file(Path::new("link.jpg")).unwrap();
            assert!(private.join("a.jpg").exists());
        });
    }

    #[test]
    fn files_are_created_exclusively_and_written_whole() {
        let (_dir, inbox, private) = setup();
        let root = Dir::root(&inbox).unwrap();
        symlink(private.join("a.jpg"), inbox.join("planted")).unwrap();
        let err = root.create_new(Path::new("planted")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        root.write_replace(Path::new("planted"), b"record").unwrap();
        assert_eq!(std::fs::read(private.join("a.jpg")).unwrap(), b"secret", "the link's target is untouched");
        assert_eq!(std::fs::read(inbox.join("planted")).unwrap(), b"record");
        assert!(!inbox.join("planted").symlink_metadata().unwrap().is_symlink());
        let (_, a) = root.create_temp("x.").unwrap();
        let (_, b) = root.create_temp("x.").unwrap();
        assert_ne!(a, b);
        assert!(a.len() > 16, "{a:?} is hard to guess");
    }

    #[test]
    fn folders_are_made_listed_renamed_and_removed_beneath() {
        let (_dir, inbox, private) = setup();
        let root = Dir::root(&inbox).unwrap();
        let made = root.create_dirs(Path::new("out/a/b")).unwrap();
        made.create_new(Path::new("f")).unwrap();
        symlink(&private, inbox.join("out/a/link")).unwrap();
        let mut names: Vec<_> = root.dir(Path::new("out/a")).unwrap().entries().unwrap();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(names.iter().map(|(n, _)| n.to_str().unwrap()).collect::<Vec<_>>(), ["b", "link"]);
        root.rename_noreplace(Path::new("shoot/a.jpg"), &made, Path::new("a.jpg")).unwrap();
        std::fs::write(inbox.join("shoot/a.jpg"), b"again").unwrap();
        let taken = root.rename_noreplace(Path::new("shoot/a.jpg"), &made, Path::new("a.jpg")).unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AlreadyExists);
        root.remove_all(Path::new("out")).unwrap();
        assert!(!inbox.join("out").exists());
        assert_eq!(std::fs::read(private.join("a.jpg")).unwrap(), b"secret", "a link inside is removed, not followed");
        root.remove_all(Path::new("out")).unwrap();
    }
}
