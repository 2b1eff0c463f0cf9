//! One daemon per state folder: an exclusive `flock` on `retouchd.lock`, released by the kernel
//! when the process ends (even by SIGKILL), so a stale lock never blocks a restart.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another retouchd{} already uses the state folder {dir}; stop it first, or give this one its own state.dir", .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held { dir: PathBuf, pid: Option<String> },
    #[error("cannot create the lock file in {dir}: {source}; check that the state folder exists and is writable")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a process with this pid runs on this machine (used to tell records left by a dead
/// process: the live status, an inbox's owner).
pub fn is_running(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let answered = unsafe { libc::kill(pid, 0) } == 0;
    answered || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("retouchd.lock"))
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = Some(pid.trim().to_string()).filter(|p| !p.is_empty());
            return Err(LockError::Held { dir: dir.to_path_buf(), pid });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
        drop(first);
        StateLock::acquire(dir.path()).expect("free again once the holder is gone");
    }
}
