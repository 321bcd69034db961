//! Processes, Linux's way, from `/proc`: which have a given title, which hold files under a
//! mountpoint, and killing those (with `SIGKILL`) and waiting for them to die.
//!
//! Nothing here runs a command or goes through a shell. A process that exits while it is
//! being looked at is skipped.

use crate::command::process_gone;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The pids in `/proc`, as numbers.
pub(super) fn pids() -> Result<Vec<i32>, String> {
    let entries = fs::read_dir("/proc").map_err(|error| format!("cannot list /proc: {error}"))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .collect())
}

/// A process's command line as `ps` shows it: `/proc/<pid>/cmdline` with the NULs between
/// (and after) the arguments made spaces, trimmed. A process that renamed itself with
/// setproctitle shows its title.
pub(super) fn cmdline(pid: i32) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c == '\0' { ' ' } else { c })
        .collect();
    Some(text.trim().to_owned())
}

/// A process's arguments, `/proc/<pid>/cmdline` split at its NULs; `None` for a process gone
/// or a kernel thread.
pub(super) fn argv_of(pid: i32) -> Option<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv: Vec<String> = bytes
        .split(|byte| *byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    (!argv.is_empty()).then_some(argv)
}

/// A process's command name (`/proc/<pid>/comm`), or `?`.
pub(super) fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// The processes whose command line is exactly `title`, as `pid <n>` for messages.
pub(super) fn linux_pids_titled(title: &str) -> Result<Vec<String>, String> {
    Ok(pids()?
        .into_iter()
        .filter(|pid| cmdline(*pid).is_some_and(|line| line == title))
        .map(|pid| format!("pid {pid}"))
        .collect())
}

/// A process that holds something under a mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pub pid: i32,
    pub comm: String,
    /// What it holds: its working directory, root, executable, an open file or a mapping.
    pub path: PathBuf,
}

/// Whether `path` is `mountpoint` or under it.
fn is_under(path: &Path, mountpoint: &Path) -> bool {
    path.starts_with(mountpoint)
}

/// A symbolic link's target in `/proc`, without the ` (deleted)` the kernel adds for a file
/// that was removed.
fn proc_link(path: &Path) -> Option<PathBuf> {
    let target = fs::read_link(path).ok()?;
    let text = target.to_str()?;
    Some(PathBuf::from(
        text.strip_suffix(" (deleted)").unwrap_or(text),
    ))
}

/// What of `pid` is under `mountpoint`: the first of its working directory, root directory,
/// executable, open files (`/proc/<pid>/fd/*`) and mapped files (`/proc/<pid>/maps`).
fn held_by(pid: i32, mountpoint: &Path) -> Option<PathBuf> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    for link in ["cwd", "root", "exe"] {
        if let Some(target) = proc_link(&base.join(link))
            && is_under(&target, mountpoint)
        {
            return Some(target);
        }
    }
    if let Ok(fds) = fs::read_dir(base.join("fd")) {
        for fd in fds.filter_map(Result::ok) {
            if let Some(target) = proc_link(&fd.path())
                && is_under(&target, mountpoint)
            {
                return Some(target);
            }
        }
    }
    if let Ok(maps) = fs::read_to_string(base.join("maps")) {
        // `address perms offset dev inode path`: the path, if any, is all from the first `/`
        // (no field before it has one).
        for line in maps.lines() {
            let Some(start) = line.find('/') else {
                continue;
            };
            let path = line[start..].trim_end();
            let path = Path::new(path.strip_suffix(" (deleted)").unwrap_or(path));
            if is_under(path, mountpoint) {
                return Some(path.to_owned());
            }
        }
    }
    None
}

/// A process's mount namespace (`mnt:[4026531841]`), if it can be read.
fn mount_namespace(pid: &str) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// The processes (but this one) that hold anything under `mountpoint`, which must be an
/// absolute path without symbolic links (the kernel's links in `/proc` have none). Processes
/// in another mount namespace (containers) are left alone: their links are paths in their
/// own namespace, which may look like the mountpoint without being it.
pub(super) fn holders(mountpoint: &Path) -> Result<Vec<Holder>, String> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let namespace = mount_namespace("self");
    Ok(pids()?
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| namespace.is_none() || mount_namespace(&pid.to_string()) == namespace)
        .filter_map(|pid| {
            let path = held_by(pid, mountpoint)?;
            Some(Holder {
                pid,
                comm: comm(pid),
                path,
            })
        })
        .collect())
}

/// Kill each process with `SIGKILL` and wait, looking every `poll`, until all are dead or
/// `deadline`; `Err` names those still alive, or one that could not be signalled. Process 1
/// is never killed.
pub(super) fn kill_and_wait(pids: &[i32], deadline: Instant, poll: Duration) -> Result<(), String> {
    for &pid in pids {
        if pid <= 1 {
            return Err(format!(
                "process {pid} holds the mountpoint and is never killed"
            ));
        }
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => return Err(format!("cannot kill process {pid}: {errno}")),
        }
    }
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|pid| !process_gone(Pid::from_raw(*pid)))
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            let alive: Vec<String> = alive.iter().map(i32::to_string).collect();
            return Err(format!(
                "process(es) {} still alive after SIGKILL",
                alive.join(", ")
            ));
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}
