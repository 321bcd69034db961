//! The pid file of a daemonized `havend`: written once started, locked while it runs.
//!
//! rc.d scripts find the daemon through its pid file, so it must never name the wrong process.
//! The file is held under an exclusive `flock` for the daemon's whole life: a second `havend`
//! with the same pid file fails to start and names the first one's pid, and a file left behind
//! by a daemon that crashed (its lock gone with it) is simply taken over.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("pid file {}: another havend is running (pid {pid})", path.display())]
    Running { path: PathBuf, pid: String },
    #[error("pid file {}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A pid file we hold; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidFile {
    /// Take `path` for this process: lock it, and write our pid into it.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |op| {
            move |source| PidFileError::Io {
                path: path.to_owned(),
                op,
                source,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io("open"))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(PidFileError::Running {
                    path: path.to_owned(),
                    pid: pid.trim().to_owned(),
                });
            }
            Err((_, errno)) => return Err(io("lock")(errno.into())),
        };
        lock.set_len(0).map_err(io("truncate"))?;
        lock.rewind().map_err(io("rewind"))?;
        writeln!(lock, "{}", std::process::id()).map_err(io("write"))?;
        lock.sync_data().map_err(io("sync"))?;
        Ok(PidFile {
            path: path.to_owned(),
            _lock: lock,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked by us, so still ours to remove.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pid_file_refuses_a_second_daemon_and_a_stale_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("havend.pid");
        fs::write(&path, "999999\n").unwrap(); // left by a crashed daemon: no lock
        let held = PidFile::create(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let error = PidFile::create(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "another havend is running (pid {})",
                std::process::id()
            )),
            "{error}"
        );
        drop(held);
        assert!(!path.exists());
    }
}
