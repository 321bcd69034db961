//! The one way Haven runs a program: [`run`].
//!
//! Everything the daemon runs (`hastctl`, `mount`, `fsck`, `service`, `ifconfig`, …) acts on
//! the machine as root, in the middle of an incident, and must neither be steered by anything
//! the daemon inherited nor hang the daemon. So every run is the same:
//!
//! - **No shell.** The program is an absolute path and its arguments are passed as they are;
//!   nothing is split, expanded or interpreted, so no argument can become a second command.
//! - **A known environment.** The environment is cleared and only `PATH` is set, to
//!   [`CHILD_PATH`] (rc scripts and the programs they call rely on it); stdin is `/dev/null`
//!   (nothing waits for input that will never come) and the working directory is `/` (no
//!   mountpoint is held busy by the child).
//! - **A process group of its own.** The child leads a new process group, so it and whatever
//!   it starts that does not detach itself can be killed at once.
//! - **A deadline.** A run that overruns its timeout, that prints more than [`MAX_OUTPUT`]
//!   bytes on either stream, whose output cannot be read, or whose caller asks it to stop
//!   (`should_stop`, looked at least every [`POLL_SLICE`]) has its whole process group killed
//!   with `SIGKILL` and the child reaped before [`run`] returns.
//! - **Never a child left behind.** The child is reaped on every path, including panics
//!   (the guard that owns it kills and reaps on drop).
//! - **The run ends when the child exits.** A program that exits normally may leave behind
//!   what it started on purpose, and that is neither waited for nor killed: the daemon a
//!   `service … start` launches, and also what such a script leaves holding its stdout and
//!   stderr. Debian's `/etc/init.d/mariadb start` runs
//!   `mysqld_safe … 2>&1 >/dev/null | logger &`, and that `logger` keeps the script's streams
//!   open for as long as MariaDB runs. Had the streams been pipes read to end-of-file, the run
//!   would have been held until its deadline and the group killed then, database included; so
//!   they are not pipes (next point).
//! - **Output captured and capped.** stdout and stderr are two anonymous in-memory files
//!   (`memfd_create`, Linux ≥ 3.17 and FreeBSD ≥ 13; not files under a `TMPDIR` the daemon
//!   inherited, nor on a disk that may be full or failing in an incident). The child writes
//!   into them without ever blocking; [`run`] waits for its exit (a `pidfd` wakes it at once
//!   on Linux; elsewhere, and on kernels without `pidfd_open`, it looks every 50 µs at first,
//!   then less often, up to every 2 ms), looks at both files' sizes each time it wakes (more
//!   than [`MAX_OUTPUT`] kills the group: a program printing flat out gets a few MiB past the
//!   cap at most before it is killed), and once the child has exited, before reaping it, reads
//!   what the files hold from their start. [`excerpt`] cuts text for messages.
//! - **What is left behind cannot grow.** A descendant still holding the files after the run
//!   shares them and their offset with the child. Unchecked, it could write into them for as
//!   long as it runs (MariaDB's `logger`: months), into memory nobody reads. So when the run
//!   ends, whatever the outcome, each file is sealed against growing (`F_SEAL_GROW`) and then
//!   emptied: its memory is freed at once, and a descendant's later writes fail with `EPERM`
//!   (no signal; the descendant is not otherwise disturbed, and a well-behaved daemon does not
//!   print to a stream its starter owned). A run leaves behind at most two empty files. (With
//!   pipes, writes after the reader has gone fail too, with `EPIPE` and a `SIGPIPE` that kills
//!   by default.) What a descendant writes before that point, while the child runs or in the
//!   microseconds between the child's exit and the sealing, is part of the output, as it was
//!   with pipes.
//!
//! [`command_line`] renders a program and its arguments for logs and the journal.
//! [`process_gone`] tells whether a process that was killed is gone.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::process::{WaitId, WaitIdOptions};
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// The only environment variable a child gets: the system directories, then the local ones
/// (FreeBSD's ports and their rc scripts live under `/usr/local`).
pub const CHILD_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";

/// The most output kept from either stream, in bytes; more is a failure
/// ([`CommandError::TooMuchOutput`]) and the run is killed.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// The most text [`excerpt`] keeps, in bytes.
pub const EXCERPT_LIMIT: usize = 512;

/// The longest a running command goes without looking at its deadline and at `should_stop`
/// (in fact it looks every 2 ms at most, with its output's size).
pub const POLL_SLICE: Duration = Duration::from_millis(50);

/// How long a run waits before it looks again at the child and at the size of its output: the
/// first look comes after [`EXIT_CHECK_FIRST`] (most commands a step runs are short) and the
/// wait doubles up to [`EXIT_CHECK`] for a child that runs longer. On Linux a `pidfd` ends the
/// wait as soon as the child exits, so these only pace the size and `should_stop` checks;
/// elsewhere they also bound how late an exit is seen. [`EXIT_CHECK`] also bounds how far a
/// program printing flat out gets past [`MAX_OUTPUT`] before it is killed.
const EXIT_CHECK_FIRST: Duration = Duration::from_micros(50);
const EXIT_CHECK: Duration = Duration::from_millis(2);

/// What a finished run left: how it ended and what it printed.
#[derive(Debug)]
pub struct Output {
    /// How the program ended (an exit code, or the signal that killed it).
    pub status: ExitStatus,
    /// Everything it printed on stdout (at most [`MAX_OUTPUT`] bytes).
    pub stdout: Vec<u8>,
    /// Everything it printed on stderr (at most [`MAX_OUTPUT`] bytes).
    pub stderr: Vec<u8>,
    /// From just before the spawn until the child was reaped.
    pub elapsed: Duration,
}

impl Output {
    /// The start of stderr for a message: invalid UTF-8 replaced, white space trimmed, at most
    /// [`EXCERPT_LIMIT`] bytes.
    pub fn stderr_excerpt(&self) -> String {
        excerpt(String::from_utf8_lossy(&self.stderr).trim())
    }

    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Why a run has no [`Output`]. In every case the child (if it was spawned) has been killed
/// with its process group and reaped.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (missing, not executable, …).
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program that was to run.
        program: PathBuf,
        /// What `fork`/`exec` said (or `memfd_create`, making the files for its output).
        #[source]
        source: io::Error,
    },
    /// Waiting for the child or reading its output failed.
    #[error("reading the output of {} failed: {source}", program.display())]
    Io {
        /// The program that ran.
        program: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The run overran its deadline.
    #[error("{} timed out after {timeout:?} and was killed", program.display())]
    Timeout {
        /// The program that ran.
        program: PathBuf,
        /// The deadline it was given.
        timeout: Duration,
    },
    /// The program printed more than [`MAX_OUTPUT`] bytes on stdout or on stderr.
    #[error("{} printed more than {MAX_OUTPUT} bytes and was killed", program.display())]
    TooMuchOutput {
        /// The program that ran.
        program: PathBuf,
    },
    /// `should_stop` said yes (the caller is shutting down).
    #[error("{} was killed because a stop was requested", program.display())]
    Stopped {
        /// The program that ran (or was about to).
        program: PathBuf,
    },
}

/// Run `program` with `args`, the safe way described in the [module docs](self): no shell,
/// cleared environment plus `PATH=`[`CHILD_PATH`], stdin `/dev/null`, working directory `/`,
/// its own process group, stdout and stderr captured.
///
/// The run ends with an [`Output`] when the program exits within `timeout` having printed at
/// most [`MAX_OUTPUT`] bytes on each stream, whatever its exit status, as soon as it exits:
/// what it started and left running (even holding its stdout or stderr) is neither waited for
/// nor killed. Otherwise the whole process group is killed with `SIGKILL`, the child is reaped
/// and the error says why. `should_stop` is called at least every [`POLL_SLICE`] (and once
/// before spawning); when it says yes the run is killed the same way and ends with
/// [`CommandError::Stopped`].
pub fn run(
    program: &Path,
    args: &[&str],
    timeout: Duration,
    should_stop: &dyn Fn() -> bool,
) -> Result<Output, CommandError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let stopped = || CommandError::Stopped {
        program: program.to_owned(),
    };
    let timed_out = || CommandError::Timeout {
        program: program.to_owned(),
        timeout,
    };
    let too_much = || CommandError::TooMuchOutput {
        program: program.to_owned(),
    };
    let io_error = |source| CommandError::Io {
        program: program.to_owned(),
        source,
    };
    let spawn_error = |source| CommandError::Spawn {
        program: program.to_owned(),
        source,
    };
    if should_stop() {
        return Err(stopped());
    }

    // Declared before the child's guard, so dropped after it: sealed and emptied once the
    // group was killed (on an error) or the child reaped.
    let out = Capture::new(c"haven-stdout").map_err(spawn_error)?;
    let err = Capture::new(c"haven-stderr").map_err(spawn_error)?;
    let child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.for_child().map_err(spawn_error)?)
        .stderr(err.for_child().map_err(spawn_error)?)
        .process_group(0)
        .spawn()
        .map_err(spawn_error)?;
    let mut reaper = Reaper {
        program,
        child,
        reaped: false,
    };
    let pid = rustix::process::Pid::from_child(&reaper.child);
    tracing::trace!(
        command = %command_line(program, args),
        pid = reaper.child.id(),
        "started"
    );

    let exit = ExitWatch::new(pid);
    let mut pause = EXIT_CHECK_FIRST;
    loop {
        // Whether the child exited, leaving it unreaped: until it is reaped its process group
        // id cannot be reused, so the group can still be killed if what follows fails.
        let exited = rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        )
        .map_err(|errno| io_error(errno.into()))?
        .is_some();
        if exited {
            break;
        }
        for capture in [&out, &err] {
            if capture.size().map_err(io_error)? > MAX_OUTPUT as u64 {
                return Err(too_much());
            }
        }
        if should_stop() {
            return Err(stopped());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        exit.wait((deadline - now).min(pause)).map_err(io_error)?;
        pause = (pause * 2).min(EXIT_CHECK);
    }

    // The child has exited: read what it printed, then reap it.
    let stdout = out
        .read()
        .map_err(|error| error.into_command_error(program))?;
    let stderr = err
        .read()
        .map_err(|error| error.into_command_error(program))?;
    let status = reaper.child.wait().map_err(io_error)?;
    reaper.reaped = true;
    Ok(Output {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    })
}

/// Whether the process `pid` is gone, so that it holds nothing any more: on Linux, when
/// `/proc/<pid>` is not there or the process is a zombie (dead, only its parent's wait is
/// missing, as for a killed grandchild whose new parent is slow to reap it or, in a
/// container, never does); elsewhere, when no process has the pid (a zombie counts as alive
/// until it is reaped).
///
/// The forced unmount waits with it for the processes it killed; tests wait with it for what
/// a killed run left.
pub fn process_gone(pid: Pid) -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // `pid (comm) state ...`; comm may hold spaces and parentheses: look after the
            // last `)`.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        nix::sys::signal::kill(pid, None) == Err(Errno::ESRCH)
    }
}

/// At most [`EXCERPT_LIMIT`] bytes of `text`, cut at a character boundary, `…` when cut.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_LIMIT {
        return text.to_owned();
    }
    let mut end = EXCERPT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `program` and `args` on one line, for logs and the journal: separated by spaces, each
/// quoted (Rust string syntax, `{:?}`) only when it is empty or holds white space, control
/// characters or quotes, so that the words stay apart and nothing invisible hides.
pub fn command_line(program: &Path, args: &[&str]) -> String {
    let mut line = String::new();
    push_word(&mut line, &program.to_string_lossy());
    for arg in args {
        line.push(' ');
        push_word(&mut line, arg);
    }
    line
}

fn push_word(line: &mut String, word: &str) {
    let needs_quotes = word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\''));
    if needs_quotes {
        // Writing to a String cannot fail.
        let _ = write!(line, "{word:?}");
    } else {
        line.push_str(word);
    }
}

/// A spawned child that is killed (with its whole process group) and reaped when dropped,
/// unless it was reaped already.
struct Reaper<'a> {
    program: &'a Path,
    child: Child,
    reaped: bool,
}

impl Reaper<'_> {
    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        // The child leads its own process group (`process_group(0)`) and is not reaped yet, so
        // the group id cannot have been reused: signalling it also kills whatever the child
        // started in the group, even when the child itself already exited.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => {
                tracing::debug!(program = %self.program.display(), %status, "killed and reaped");
            }
            Err(error) => {
                tracing::error!(
                    program = %self.program.display(),
                    %error,
                    "cannot reap a killed child"
                );
            }
        }
        self.reaped = true;
    }
}

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// One of the child's output streams: an anonymous in-memory file, the child's stdout or
/// stderr. Dropping it seals it against growing and empties it (see the module docs), then
/// closes [`run`]'s handle; a descendant of the child may still hold it.
struct Capture {
    file: File,
}

enum ReadError {
    TooMuch,
    Io(io::Error),
}

impl ReadError {
    fn into_command_error(self, program: &Path) -> CommandError {
        match self {
            ReadError::TooMuch => CommandError::TooMuchOutput {
                program: program.to_owned(),
            },
            ReadError::Io(source) => CommandError::Io {
                program: program.to_owned(),
                source,
            },
        }
    }
}

impl Capture {
    /// A new, empty file named `name` (shown as `/memfd:<name>` in `/proc/<pid>/fd` on
    /// Linux), closed on exec except where the child gets it as stdout or stderr.
    fn new(name: &std::ffi::CStr) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        Ok(Capture {
            file: File::from(fd),
        })
    }

    /// A second handle on the same file (same offset), for the child.
    fn for_child(&self) -> io::Result<Stdio> {
        Ok(Stdio::from(self.file.try_clone()?))
    }

    /// How many bytes the file holds (its size, from `fstat`).
    fn size(&self) -> io::Result<u64> {
        let stat = rustix::fs::fstat(&self.file)?;
        // A size is never negative.
        Ok(u64::try_from(stat.st_size).unwrap_or(0))
    }

    fn seal(&self) -> io::Result<()> {
        Ok(rustix::fs::fcntl_add_seals(&self.file, SealFlags::GROW)?)
    }

    /// Everything the file holds, from its start, once the child has exited; first sealed
    /// against growing, so that a descendant still writing cannot push it over the cap.
    fn read(&self) -> Result<Vec<u8>, ReadError> {
        self.seal().map_err(ReadError::Io)?;
        let size = self.size().map_err(ReadError::Io)?;
        if size > MAX_OUTPUT as u64 {
            return Err(ReadError::TooMuch);
        }
        // At most MAX_OUTPUT, which fits.
        let mut data = vec![0u8; usize::try_from(size).unwrap_or(MAX_OUTPUT)];
        let mut filled = 0;
        while filled < data.len() {
            match self.file.read_at(&mut data[filled..], filled as u64) {
                // Shrunk meanwhile by a descendant: keep what is there.
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadError::Io(error)),
            }
        }
        data.truncate(filled);
        Ok(data)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Sealed first, so that a descendant cannot grow it again once it is emptied.
        let sealed = self.seal();
        let emptied = rustix::fs::ftruncate(&self.file, 0).map_err(io::Error::from);
        if let Err(error) = sealed.and(emptied) {
            tracing::warn!(%error, "cannot seal and empty a command's output file");
        }
    }
}

/// Waits for the child's exit, up to a timeout: on Linux by polling a `pidfd` (readable once
/// the process has exited), so that the exit is seen at once; elsewhere, or when the kernel
/// has no `pidfd_open` (Linux < 5.3), by sleeping.
struct ExitWatch {
    #[cfg(target_os = "linux")]
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl ExitWatch {
    #[cfg(target_os = "linux")]
    fn new(pid: rustix::process::Pid) -> Self {
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty());
        if let Err(error) = &pidfd {
            tracing::debug!(%error, "no pidfd, the child's exit is polled");
        }
        ExitWatch { pidfd: pidfd.ok() }
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_pid: rustix::process::Pid) -> Self {
        ExitWatch {}
    }

    /// Returns after `timeout`, or earlier once the child has exited (or a signal came).
    fn wait(&self, timeout: Duration) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(pidfd) = &self.pidfd {
            use nix::poll::{PollFd, PollFlags, ppoll};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let timeout = nix::sys::time::TimeSpec::from_duration(timeout);
            return match ppoll(&mut fds, Some(timeout), None) {
                Ok(_) | Err(Errno::EINTR) => Ok(()),
                Err(errno) => Err(io::Error::from(errno)),
            };
        }
        std::thread::sleep(timeout);
        Ok(())
    }
}
