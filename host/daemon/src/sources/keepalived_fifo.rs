//! The keepalived `notify_fifo` reader: VRRP transitions on a Linux peer, on a thread of its own.
//!
//! keepalived writes one line per VRRP transition to the FIFO named by `notify_fifo`
//! (`INSTANCE "VI_1" MASTER 100\n`), in order; its notify scripts are fire-and-forget and can
//! run out of order, so the FIFO is the channel Haven trusts. A dedicated std thread opens the
//! FIFO, reads it, splits what it reads into lines, turns each line into `carp-changed` with
//! [`haven_sources::notify_fifo_line_to_event`] through the config's map from instance (or
//! group) names to `(vhid, interface)`, and hands the outcome to a sink (in the daemon, the
//! sending half of a channel its event loop reads). Nothing here depends on tokio.
//!
//! - **Never blocked, never spinning**: the FIFO is opened `O_RDWR | O_NONBLOCK | O_CLOEXEC`.
//!   Holding a write end ourselves means the open does not wait for a writer and the read end
//!   never sees end-of-file when keepalived closes it or restarts, so there is no EOF to spin
//!   on; `poll` with a [`POLL_INTERVAL`] timeout waits for data and notices a stop request.
//!   (Linux documents `O_RDWR` on a FIFO in fifo(7); FreeBSD's fifofs counts such an open as
//!   both a reader and a writer, so it neither blocks nor fails with `ENXIO`. POSIX leaves it
//!   undefined.)
//! - **Lines are assembled across reads**: a partial tail is kept for the next read. A line
//!   longer than [`MAX_LINE`] bytes is reported as [`FifoMessage::BadInput`] and discarded up
//!   to the next `\n`. Empty lines are skipped.
//! - **Bad lines are reported, not fatal**: garbage, lines that are not VRRP transitions and
//!   instance names the config does not map come out as [`FifoMessage::BadInput`] with the
//!   parser's reason, and reading goes on.
//! - **The FIFO may be missing or wrong**: if the path does not exist or is not a FIFO the
//!   reader reports [`FifoMessage::Unavailable`] (once per distinct reason, not on every
//!   attempt) and retries with a backoff that doubles from [`FifoOptions::min_backoff`] to
//!   [`FifoOptions::max_backoff`].
//! - **keepalived recreating the FIFO is noticed**: keepalived creates the FIFO when it starts
//!   and removes it when it exits, so a restart leaves us holding an orphaned FIFO nobody will
//!   write to. Whenever the FIFO is idle for a [`POLL_INTERVAL`] the reader compares the path
//!   with the FIFO it holds (device and inode); if the path is gone or is another file, it
//!   reads what is left in the old FIFO and opens the path again.
//! - **Missed transitions are never silent**: [`FifoMessage::Opened`] says `reopen: true`
//!   whenever transitions may have been missed since the reader was spawned (an earlier FIFO
//!   was given up, or an earlier attempt failed); the daemon must then treat its view of the
//!   peer's VRRP state as stale.
//! - **Stopping is prompt and bounded**: [`KeepalivedFifo::stop`] (or dropping the reader)
//!   ends the thread within about [`POLL_INTERVAL`]; it waits at most [`STOP_TIMEOUT`] for it
//!   and then gives up on it (only possible if the sink itself blocks).

use crate::sources::source_thread::{Backoff, SourceThread};
use haven_core::Event;
use haven_sources::keepalived::KeepalivedError;
use haven_sources::notify_fifo_line_to_event;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::fs::{FileType, Mode, OFlags, Stat, fstat, open, stat};
use rustix::io::{Errno, read};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// The `source` Haven records for events read from keepalived.
pub const SOURCE: &str = "keepalived";

/// The longest line accepted, without its `\n` (keepalived's lines are well under 300 bytes).
pub const MAX_LINE: usize = 4096;

/// How much one `read` takes at most.
pub const READ_BUFFER: usize = 16 * 1024;

/// How long `poll` waits before looking for a stop request (and for a recreated FIFO).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub use crate::sources::source_thread::STOP_TIMEOUT;

/// How much of an over-long line [`FifoMessage::BadInput`] quotes.
const QUOTED_PREFIX: usize = 200;

/// Retry backoff for opening the FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FifoOptions {
    /// The first wait after a failure (at least 1 ms is used).
    pub min_backoff: Duration,
    /// The longest wait; the wait doubles from `min_backoff` up to this (at least
    /// `min_backoff` is used).
    pub max_backoff: Duration,
}

impl Default for FifoOptions {
    fn default() -> Self {
        FifoOptions {
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What the reader tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FifoMessage {
    /// A mapped VRRP transition, as `carp-changed` (`previous` left empty).
    Event(Event),
    /// A line that was refused (malformed, not a VRRP transition, an unmapped name, too
    /// long, not UTF-8); the reader keeps reading.
    BadInput {
        /// The line without its `\n` (invalid UTF-8 replaced by U+FFFD; an over-long line
        /// only its first 200 bytes or so).
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// A line keepalived writes that is not a transition (a priority change, a checker line):
    /// counted and passed over.
    Skipped { text: String, what: String },
    /// The FIFO was opened. `reopen: true` means transitions may have been missed since the
    /// reader was spawned; `false` only for a first attempt that succeeded.
    Opened { reopen: bool },
    /// The FIFO cannot be opened (missing, not a FIFO, no permission) or was lost; the reader
    /// retries with backoff. Sent once per distinct reason while attempts keep failing.
    Unavailable { reason: String },
}

/// A snapshot of the reader's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FifoStats {
    /// Non-empty lines read (events and bad lines).
    pub lines: u64,
    /// Lines passed on as events.
    pub events: u64,
    /// Lines passed on as [`FifoMessage::BadInput`].
    pub bad_lines: u64,
    /// Known lines that are not transitions ([`FifoMessage::Skipped`]).
    pub skipped: u64,
    /// Successful opens after the first one (the FIFO was recreated, lost, or missing at
    /// first).
    pub reopens: u64,
    /// Attempts to open the FIFO that failed.
    pub open_failures: u64,
    /// Bytes read from the FIFO.
    pub bytes: u64,
    /// Times `poll` reported the FIFO ready (timeouts not counted): a reader spinning on
    /// end-of-file would show here.
    pub wakeups: u64,
}

#[derive(Debug, Default)]
struct Counters {
    opens: AtomicU64,
    lines: AtomicU64,
    events: AtomicU64,
    bad_lines: AtomicU64,
    skipped: AtomicU64,
    open_failures: AtomicU64,
    bytes: AtomicU64,
    wakeups: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> FifoStats {
        FifoStats {
            lines: self.lines.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bad_lines: self.bad_lines.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            reopens: self.opens.load(Ordering::Relaxed).saturating_sub(1),
            open_failures: self.open_failures.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            wakeups: self.wakeups.load(Ordering::Relaxed),
        }
    }
}

/// A running keepalived FIFO reader. Dropping it stops it, like [`KeepalivedFifo::stop`].
#[derive(Debug)]
pub struct KeepalivedFifo {
    counters: Arc<Counters>,
    thread: SourceThread,
}

impl KeepalivedFifo {
    /// Start reading the FIFO at `path` on a new thread with the default backoff, mapping
    /// instance (or group) names to `(vhid, interface)` through `mapping` and handing every
    /// message to `sink`.
    pub fn spawn(
        path: PathBuf,
        mapping: BTreeMap<String, (u8, String)>,
        sink: impl FnMut(FifoMessage) + Send + 'static,
    ) -> KeepalivedFifo {
        Self::spawn_with(path, mapping, FifoOptions::default(), sink)
    }

    /// [`KeepalivedFifo::spawn`] with the given backoff.
    pub fn spawn_with(
        path: PathBuf,
        mapping: BTreeMap<String, (u8, String)>,
        options: FifoOptions,
        sink: impl FnMut(FifoMessage) + Send + 'static,
    ) -> KeepalivedFifo {
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let thread = SourceThread::spawn("keepalived-fifo", move |stop| {
            Worker {
                path,
                mapping,
                backoff: Backoff::new(options.min_backoff, options.max_backoff),
                counters: worker_counters,
                stop,
                sink,
            }
            .run()
        });
        KeepalivedFifo { counters, thread }
    }

    /// The counters so far.
    pub fn stats(&self) -> FifoStats {
        self.counters.snapshot()
    }

    /// Stop the thread and join it, waiting at most [`STOP_TIMEOUT`].
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

/// One piece of input out of [`LineBuffer::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line<'a> {
    /// A complete, non-empty line without its `\n`.
    Complete(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: its first bytes. The rest is discarded up to the next
    /// `\n`.
    TooLong(&'a [u8]),
}

/// Splits a byte stream into `\n`-terminated lines, keeping a partial tail between reads.
#[derive(Debug, Default)]
struct LineBuffer {
    /// The partial line so far (at most [`MAX_LINE`] bytes).
    partial: Vec<u8>,
    /// An over-long line was reported: skip up to the next `\n`.
    discarding: bool,
}

impl LineBuffer {
    /// Feed `data`, calling `out` for every complete line and every over-long one, in order.
    fn push(&mut self, mut data: &[u8], out: &mut impl FnMut(Line<'_>)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest) = match newline {
                Some(at) => (&data[..at], Some(&data[at + 1..])),
                None => (data, None),
            };
            if self.discarding {
                if rest.is_some() {
                    self.discarding = false;
                }
            } else if self.partial.len() + chunk.len() > MAX_LINE {
                let room = MAX_LINE - self.partial.len();
                self.partial.extend_from_slice(&chunk[..room]);
                out(Line::TooLong(&self.partial));
                self.partial.clear();
                self.discarding = rest.is_none();
            } else if rest.is_some() {
                if self.partial.is_empty() {
                    if !chunk.is_empty() {
                        out(Line::Complete(chunk));
                    }
                } else {
                    self.partial.extend_from_slice(chunk);
                    out(Line::Complete(&self.partial));
                    self.partial.clear();
                }
            } else {
                self.partial.extend_from_slice(chunk);
            }
            match rest {
                Some(rest) => data = rest,
                None => break,
            }
        }
    }

    /// Forget any partial line (the FIFO it came from is given up); it is returned if there
    /// was one.
    fn take_partial(&mut self) -> Option<Vec<u8>> {
        self.discarding = false;
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

/// The message for one complete line (without its `\n`).
fn line_message(line: &[u8], mapping: &BTreeMap<String, (u8, String)>) -> FifoMessage {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) => {
            return FifoMessage::BadInput {
                text: String::from_utf8_lossy(line).into_owned(),
                reason: format!("keepalived notify_fifo line is not valid UTF-8: {error}"),
            };
        }
    };
    match notify_fifo_line_to_event(text, mapping) {
        Ok(event) => FifoMessage::Event(event),
        Err(KeepalivedError::NotTransition { line, what }) => {
            FifoMessage::Skipped { text: line, what }
        }
        Err(error) => FifoMessage::BadInput {
            text: text.to_owned(),
            reason: error.to_string(),
        },
    }
}

/// The message for an over-long line, quoting its start.
fn too_long_message(prefix: &[u8]) -> FifoMessage {
    let quoted = &prefix[..prefix.len().min(QUOTED_PREFIX)];
    FifoMessage::BadInput {
        text: format!("{}…", String::from_utf8_lossy(quoted)),
        reason: format!(
            "keepalived notify_fifo line is longer than {MAX_LINE} bytes; discarded up to the \
             next newline"
        ),
    }
}

struct Worker<F> {
    path: PathBuf,
    mapping: BTreeMap<String, (u8, String)>,
    backoff: Backoff,
    counters: Arc<Counters>,
    stop: Receiver<()>,
    sink: F,
}

/// How reading one opened FIFO ended.
enum Ended {
    Stopped,
    /// The path no longer names the FIFO we hold (keepalived restarted, or the FIFO was
    /// removed): open the path again at once.
    Replaced,
    /// Reading failed: report it and retry with backoff.
    Lost(String),
}

/// Which file an open FIFO is.
type FileId = (u64, u64);

// The field types differ between platforms; both fit in u64.
#[allow(clippy::unnecessary_cast)]
fn file_id(st: &Stat) -> FileId {
    (st.st_dev as u64, st.st_ino as u64)
}

impl<F: FnMut(FifoMessage)> Worker<F> {
    fn run(mut self) {
        let span = tracing::info_span!(
            "keepalived_fifo",
            source = SOURCE,
            path = %self.path.display()
        );
        let _entered = span.enter();
        tracing::debug!("keepalived FIFO reader started");
        // Whether transitions may have been missed since we were spawned.
        let mut missed = false;
        // The last reason reported as Unavailable, while attempts keep failing.
        let mut reported: Option<String> = None;
        let mut lines = LineBuffer::default();
        loop {
            if self.stop_requested() {
                break;
            }
            let error = match open_fifo(&self.path) {
                Ok((fd, id)) => {
                    Counters::add(&self.counters.opens, 1);
                    self.backoff.reset();
                    reported = None;
                    tracing::info!(reopen = missed, "opened the keepalived FIFO");
                    (self.sink)(FifoMessage::Opened { reopen: missed });
                    missed = true;
                    let ended = self.read(&fd, id, &mut lines);
                    if let Some(partial) = lines.take_partial() {
                        self.emit(FifoMessage::BadInput {
                            text: String::from_utf8_lossy(&partial).into_owned(),
                            reason: "incomplete keepalived notify_fifo line (no newline) in a \
                                     FIFO that was given up"
                                .into(),
                        });
                    }
                    match ended {
                        Ended::Stopped => break,
                        Ended::Replaced => {
                            tracing::info!(
                                "the keepalived FIFO path was removed or replaced; reopening"
                            );
                            continue;
                        }
                        Ended::Lost(reason) => reason,
                    }
                }
                Err(reason) => {
                    Counters::add(&self.counters.open_failures, 1);
                    missed = true;
                    reason
                }
            };
            if reported.as_deref() != Some(error.as_str()) {
                tracing::warn!(reason = %error, "keepalived FIFO unavailable; retrying with backoff");
                (self.sink)(FifoMessage::Unavailable {
                    reason: error.clone(),
                });
                reported = Some(error);
            } else {
                tracing::debug!(reason = %error, "keepalived FIFO still unavailable");
            }
            let wait = self.backoff.take();
            if self.wait_or_stop(wait) {
                break;
            }
        }
        tracing::debug!("keepalived FIFO reader stopped");
    }

    /// Read the FIFO until a stop is requested, the path is replaced, or reading fails.
    fn read(&mut self, fd: &OwnedFd, id: FileId, lines: &mut LineBuffer) -> Ended {
        let mut buffer = vec![0u8; READ_BUFFER];
        // After the path was found replaced: drain what is left, then give the FIFO up.
        let mut draining = false;
        loop {
            if self.stop_requested() {
                return Ended::Stopped;
            }
            if !draining {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, poll_timeout()) {
                    Ok(0) => {
                        if !path_is(&self.path, id) {
                            draining = true;
                        }
                        continue;
                    }
                    Ok(_) => Counters::add(&self.counters.wakeups, 1),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(error) => return Ended::Lost(format!("poll on the FIFO failed: {error}")),
                }
            }
            match read(fd, &mut buffer[..]) {
                // We hold a write end, so this is not supposed to happen; never spin on it.
                Ok(0) => return Ended::Lost("unexpected end of file on the FIFO".into()),
                Ok(n) => {
                    Counters::add(&self.counters.bytes, n as u64);
                    self.take_bytes(&buffer[..n], lines);
                }
                Err(Errno::AGAIN) if draining => return Ended::Replaced,
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(error) => return Ended::Lost(format!("reading the FIFO failed: {error}")),
            }
        }
    }

    fn take_bytes(&mut self, data: &[u8], lines: &mut LineBuffer) {
        let mut messages = Vec::new();
        lines.push(data, &mut |line| {
            messages.push(match line {
                Line::Complete(line) => line_message(line, &self.mapping),
                Line::TooLong(prefix) => too_long_message(prefix),
            })
        });
        for message in messages {
            self.emit(message);
        }
    }

    /// Count and log a line's message, then hand it to the sink.
    fn emit(&mut self, message: FifoMessage) {
        match &message {
            FifoMessage::Event(event) => {
                Counters::add(&self.counters.lines, 1);
                Counters::add(&self.counters.events, 1);
                tracing::debug!(kind = event.kind(), "keepalived transition");
            }
            FifoMessage::BadInput { text, reason } => {
                Counters::add(&self.counters.lines, 1);
                Counters::add(&self.counters.bad_lines, 1);
                tracing::warn!(%text, %reason, "refused keepalived notify_fifo line");
            }
            FifoMessage::Skipped { text, what } => {
                Counters::add(&self.counters.lines, 1);
                Counters::add(&self.counters.skipped, 1);
                tracing::debug!(%text, %what, "keepalived line passed over");
            }
            FifoMessage::Opened { .. } | FifoMessage::Unavailable { .. } => {}
        }
        (self.sink)(message);
    }

    fn stop_requested(&self) -> bool {
        !matches!(self.stop.try_recv(), Err(TryRecvError::Empty))
    }

    /// Wait `wait`, or less if a stop is requested; true if it was.
    fn wait_or_stop(&self, wait: Duration) -> bool {
        !matches!(self.stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }
}

fn poll_timeout() -> PollTimeout {
    PollTimeout::try_from(POLL_INTERVAL).unwrap_or(PollTimeout::MAX)
}

/// A readable description of a file type, for refusals.
fn describe(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Fifo => "a FIFO",
        _ => "of an unknown type",
    }
}

/// Open the FIFO at `path` read+write and non-blocking, refusing anything that is not a FIFO.
fn open_fifo(path: &Path) -> Result<(OwnedFd, FileId), String> {
    // Look before opening: opening a device or a regular file is not ours to do.
    let before = stat(path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    let file_type = FileType::from_raw_mode(before.st_mode);
    if file_type != FileType::Fifo {
        return Err(format!(
            "{} is not a FIFO (it is {})",
            path.display(),
            describe(file_type)
        ));
    }
    let fd = open(
        path,
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // The path may have changed between stat and open.
    let opened = fstat(&fd).map_err(|e| format!("cannot fstat {}: {e}", path.display()))?;
    let file_type = FileType::from_raw_mode(opened.st_mode);
    if file_type != FileType::Fifo {
        return Err(format!(
            "{} is not a FIFO (it is {})",
            path.display(),
            describe(file_type)
        ));
    }
    if opened.st_mode & 0o002 != 0 {
        tracing::warn!(
            mode = format_args!("{:o}", opened.st_mode & 0o7777),
            "the keepalived FIFO is writable by anyone: anyone can fake VRRP transitions"
        );
    }
    Ok((fd, file_id(&opened)))
}

/// Whether `path` still names the file `id` (false if it is gone or is another file).
fn path_is(path: &Path, id: FileId) -> bool {
    stat(path).is_ok_and(|st| file_id(&st) == id)
}

#[cfg(test)]
mod tests;
