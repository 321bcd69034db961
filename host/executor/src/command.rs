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
//!   (`should_stop`, looked at every [`POLL_SLICE`]) has its whole process group killed with
//!   `SIGKILL` and the child reaped before [`run`] returns.
//! - **Never a child left behind.** The child is reaped on every path, including panics
//!   (the guard that owns it kills and reaps on drop). A program that exits normally may leave
//!   behind what it started on purpose (the daemon a `service … start` launches, which detaches
//!   itself); anything that keeps the output pipes open holds the run up until the deadline
//!   and is then killed with the group.
//! - **Output captured and capped**: stdout and stderr are read as they come (a full pipe would
//!   block the child), at most [`MAX_OUTPUT`] bytes each; [`excerpt`] cuts text for messages.
//!
//! [`command_line`] renders a program and its arguments for logs and the journal.
//! [`process_gone`] tells whether a process that was killed is gone.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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

/// How often a running command looks at its deadline and at `should_stop` while it waits for
/// output.
pub const POLL_SLICE: Duration = Duration::from_millis(50);

/// How soon to look again whether the child exited once it closed its output: the first look
/// comes after [`EXIT_CHECK_FIRST`] (an exiting child is usually reapable ~150 µs after its
/// pipes close), and the wait doubles up to [`EXIT_CHECK`] for a child that lingers.
const EXIT_CHECK_FIRST: Duration = Duration::from_micros(50);
const EXIT_CHECK: Duration = Duration::from_millis(2);

/// The size of one read from a pipe.
const CHUNK: usize = 16 * 1024;

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
        /// What `fork`/`exec` said.
        #[source]
        source: io::Error,
    },
    /// Waiting for or reading from the child failed.
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
/// The run ends with an [`Output`] when the program exits and closed both streams within
/// `timeout`, whatever its exit status. Otherwise the whole process group is killed with
/// `SIGKILL`, the child is reaped and the error says why. `should_stop` is called about every
/// [`POLL_SLICE`] (and once before spawning); when it says yes the run is killed the same way
/// and ends with [`CommandError::Stopped`].
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
    let io_error = |source| CommandError::Io {
        program: program.to_owned(),
        source,
    };
    if should_stop() {
        return Err(stopped());
    }

    let child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let mut reaper = Reaper {
        program,
        child,
        reaped: false,
    };
    tracing::trace!(
        command = %command_line(program, args),
        pid = reaper.child.id(),
        "started"
    );

    // Read both streams to their end (a full pipe would block the child).
    let mut out = Stream::new(reaper.child.stdout.take().map(OwnedFd::from));
    let mut err = Stream::new(reaper.child.stderr.take().map(OwnedFd::from));
    let mut chunk = vec![0u8; CHUNK];
    while out.pipe.is_some() || err.pipe.is_some() {
        if should_stop() {
            return Err(stopped());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        let slice = (deadline - now).min(POLL_SLICE);
        let (out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(2);
            for pipe in [out.fd(), err.fd()].into_iter().flatten() {
                fds.push(PollFd::new(pipe, PollFlags::POLLIN));
            }
            let poll_timeout = PollTimeout::try_from(slice).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, poll_timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(io_error(io::Error::from(errno))),
            }
            // Unknown flags: read anyway, which does not block once poll reported something.
            let mut ready = fds.iter().map(|fd| fd.any().unwrap_or(true));
            let out_ready = out.pipe.is_some() && ready.next() == Some(true);
            let err_ready = err.pipe.is_some() && ready.next() == Some(true);
            (out_ready, err_ready)
        };
        for (ready, stream) in [(out_ready, &mut out), (err_ready, &mut err)] {
            if ready {
                match stream.read_some(&mut chunk) {
                    Ok(()) => {}
                    Err(ReadError::TooMuch) => {
                        return Err(CommandError::TooMuchOutput {
                            program: program.to_owned(),
                        });
                    }
                    Err(ReadError::Io(error)) => return Err(io_error(error)),
                }
            }
        }
    }

    // Both streams are closed; wait for the exit, still within the deadline.
    let mut pause = EXIT_CHECK_FIRST;
    let status = loop {
        match reaper.child.try_wait() {
            Ok(Some(status)) => {
                reaper.reaped = true;
                break status;
            }
            Ok(None) => {}
            Err(error) => return Err(io_error(error)),
        }
        if should_stop() {
            return Err(stopped());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        std::thread::sleep((deadline - now).min(pause));
        pause = (pause * 2).min(EXIT_CHECK);
    };
    Ok(Output {
        status,
        stdout: out.data,
        stderr: err.data,
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

/// One of the child's output pipes and what was read from it; `pipe` is `None` after EOF.
struct Stream {
    pipe: Option<File>,
    data: Vec<u8>,
}

enum ReadError {
    TooMuch,
    Io(io::Error),
}

impl Stream {
    fn new(pipe: Option<OwnedFd>) -> Self {
        Stream {
            pipe: pipe.map(File::from),
            data: Vec::new(),
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }

    /// One read, after poll said the pipe is readable (or closed).
    fn read_some(&mut self, chunk: &mut [u8]) -> Result<(), ReadError> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(());
        };
        match pipe.read(chunk) {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                if self.data.len() + n > MAX_OUTPUT {
                    return Err(ReadError::TooMuch);
                }
                self.data.extend_from_slice(&chunk[..n]);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadError::Io(error)),
        }
        Ok(())
    }
}
