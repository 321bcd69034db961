//! The hastctl poller: runs `hastctl list` every so often on a thread of its own.
//!
//! hastd has no event that a reader could trust for "the peer connected", "the data is in
//! sync" or "the role changed behind our back", so the daemon also *asks*: a dedicated std
//! thread runs `<program> list` (`/sbin/hastctl list` on FreeBSD) every
//! [`HastctlOptions::interval`], parses the output with [`haven_sources::parse_hastctl_list`],
//! compares it with the previous successful poll and hands what changed to a sink (in the
//! daemon, the sending half of a channel its event loop reads). Nothing here depends on tokio.
//!
//! - **The command runs through [`haven_executor::command::run`]**: without a shell, with a
//!   cleared environment plus a fixed `PATH` ([`CHILD_PATH`]), stdin from `/dev/null`, the
//!   working directory `/`, stdout and stderr captured (at most [`MAX_OUTPUT`] bytes each), in
//!   a process group of its own.
//! - **Every run has a deadline** ([`HastctlOptions::timeout`]): a run that overruns it has its
//!   whole process group killed with `SIGKILL` and the child reaped; no child is ever left
//!   behind, whether the run succeeds, fails, times out or the poller is stopped meanwhile.
//! - **The first successful poll** is a [`HastMessage::Snapshot`] (for the daemon's startup
//!   reconciliation); later ones send a [`HastMessage::Changed`] for each resource that
//!   appeared or whose role, replication or dirty bytes changed, and a [`HastMessage::Vanished`]
//!   for each resource that is gone.
//! - **Failures are reported, not fatal**: unparsable output is a [`HastMessage::BadOutput`],
//!   a spawn failure, a non-zero exit or a timeout is a [`HastMessage::CommandFailed`]; polling
//!   goes on, and the next successful poll is compared with the last successful one.
//! - **Stopping is prompt and bounded**: the interval wait and a running command both notice
//!   a stop request within about [`POLL_SLICE`] (a running command is killed and reaped);
//!   [`HastctlPoller::stop`] waits at most [`STOP_TIMEOUT`] for the thread and then gives up on
//!   it (only possible if the sink itself blocks).
//!
//! [`poll_once`] runs the command once, the same way, for the daemon's startup.

use crate::sources::source_thread::SourceThread;
use haven_core::{Event, HastStatus};
use haven_executor::command::{self, CommandError, excerpt};
use haven_sources::{HastctlList, read_hastctl_list};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

#[cfg(test)]
mod tests;

/// The `source` Haven records for what this poller reports.
pub const SOURCE: &str = "hastctl";

/// hastctl on FreeBSD.
pub const DEFAULT_PROGRAM: &str = "/sbin/hastctl";

// The runner's limits, which apply to every hastctl run.
pub use haven_executor::command::{CHILD_PATH, EXCERPT_LIMIT, MAX_OUTPUT, POLL_SLICE};

pub use crate::sources::source_thread::STOP_TIMEOUT;

/// What to run and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HastctlOptions {
    /// The hastctl binary, run as `<program> list`; [`DEFAULT_PROGRAM`] by default.
    pub program: PathBuf,
    /// The wait between the end of one run and the start of the next (at least 1 ms is used).
    pub interval: Duration,
    /// The deadline for one run, after which the child is killed (at least 1 ms is used).
    pub timeout: Duration,
}

impl Default for HastctlOptions {
    fn default() -> Self {
        HastctlOptions {
            program: PathBuf::from(DEFAULT_PROGRAM),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the poller tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HastMessage {
    /// The first successful poll: every resource, in hastctl's order.
    Snapshot(Vec<HastStatus>),
    /// Always an [`Event::HastStatusChanged`]: a resource appeared since the last successful
    /// poll, or its role, replication or dirty bytes changed.
    Changed(Event),
    /// A resource listed by the last successful poll is no longer listed.
    Vanished(String),
    /// hastctl succeeded but its output could not be read; polling goes on.
    BadOutput {
        /// The start of the output (at most [`EXCERPT_LIMIT`] bytes, invalid UTF-8 replaced).
        text_excerpt: String,
        /// Why it was refused.
        reason: String,
    },
    /// A successful run after `failures` failed ones (sent before that run's own messages).
    Recovered { failures: u64 },
    /// hastctl could not be run, exited non-zero (the reason has the exit status and the
    /// start of its stderr) or overran its deadline; polling goes on.
    CommandFailed { reason: String },
}

/// A snapshot of the poller's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HastctlStats {
    /// Runs finished, whatever their outcome (a count goes up after that run's messages were
    /// handed to the sink).
    pub polls: u64,
    /// [`HastMessage::Changed`] and [`HastMessage::Vanished`] messages sent.
    pub changes: u64,
    /// [`HastMessage::CommandFailed`] messages sent.
    pub failures: u64,
    /// [`HastMessage::BadOutput`] messages sent.
    pub bad_outputs: u64,
}

/// Why running `hastctl list` did not give a list of resources.
///
/// Not to be confused with [`haven_sources::HastctlError`], the parser's error, which
/// [`HastctlError::BadOutput`] carries.
#[derive(Debug, thiserror::Error)]
pub enum HastctlError {
    /// hastctl could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading its output or waiting for it failed.
    #[error("reading the output of {} list failed: {source}", program.display())]
    Io {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// It overran [`HastctlOptions::timeout`] and was killed with its process group.
    #[error("{} list timed out after {timeout:?} and was killed", program.display())]
    Timeout { program: PathBuf, timeout: Duration },
    /// It printed more than [`MAX_OUTPUT`] bytes on a stream and was killed.
    #[error("{} list printed more than {MAX_OUTPUT} bytes and was killed", program.display())]
    TooMuchOutput { program: PathBuf },
    /// It exited with a non-zero status (or was killed by a signal).
    #[error("{} list exited with {status}; stderr: {stderr_excerpt:?}", program.display())]
    Exit {
        program: PathBuf,
        status: ExitStatus,
        /// The start of stderr, trimmed (at most [`EXCERPT_LIMIT`] bytes).
        stderr_excerpt: String,
    },
    /// Its output is not UTF-8.
    #[error("hastctl list output is not valid UTF-8: {source}")]
    NotUtf8 {
        text_excerpt: String,
        #[source]
        source: std::str::Utf8Error,
    },
    /// It answered `list` with its usage: a hastctl from before `list` existed.
    #[error(
        "{} has no `list` command (it printed its usage): `hastctl list` exists from FreeBSD \
         9.2 and 10.0, the oldest releases Haven supports",
        program.display()
    )]
    NoListCommand { program: PathBuf },
}

impl HastctlError {
    /// The message the poller sends for this error.
    fn message(&self) -> HastMessage {
        match self {
            HastctlError::NotUtf8 { text_excerpt, .. } => HastMessage::BadOutput {
                text_excerpt: text_excerpt.clone(),
                reason: self.to_string(),
            },
            _ => HastMessage::CommandFailed {
                reason: self.to_string(),
            },
        }
    }
}

/// Run `<program> list` once (no shell, cleared environment, `timeout` deadline after which
/// it is killed and reaped) and parse its output.
pub fn poll_once(program: &Path, timeout: Duration) -> Result<Vec<HastStatus>, HastctlError> {
    match run_and_parse(program, timeout, &|| false) {
        Ok(list) => Ok(list.statuses),
        Err(Failure::Error(error)) => Err(error),
        // `should_stop` never says yes.
        Err(Failure::Stopped) => unreachable!("poll_once cannot be stopped"),
    }
}

#[derive(Debug, Default)]
struct Counters {
    polls: AtomicU64,
    changes: AtomicU64,
    failures: AtomicU64,
    bad_outputs: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HastctlStats {
        HastctlStats {
            polls: self.polls.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bad_outputs: self.bad_outputs.load(Ordering::Relaxed),
        }
    }
}

/// A running poller. Dropping it stops it, like [`HastctlPoller::stop`].
#[derive(Debug)]
pub struct HastctlPoller {
    counters: Arc<Counters>,
    thread: SourceThread,
}

impl HastctlPoller {
    /// Start polling on a new thread (the first run starts at once), handing every message to
    /// `sink`.
    pub fn spawn(
        options: HastctlOptions,
        sink: impl FnMut(HastMessage) + Send + 'static,
    ) -> HastctlPoller {
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let thread = SourceThread::spawn("hastctl-poller", move |stop| {
            Worker {
                program: options.program,
                interval: options.interval.max(Duration::from_millis(1)),
                timeout: options.timeout.max(Duration::from_millis(1)),
                counters: worker_counters,
                stop,
                sink,
            }
            .run()
        });
        HastctlPoller { counters, thread }
    }

    /// The counters so far.
    pub fn stats(&self) -> HastctlStats {
        self.counters.snapshot()
    }

    /// Stop the thread (killing a running hastctl) and join it, waiting at most
    /// [`STOP_TIMEOUT`].
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

struct Worker<F> {
    program: PathBuf,
    interval: Duration,
    timeout: Duration,
    counters: Arc<Counters>,
    stop: Receiver<()>,
    sink: F,
}

impl<F: FnMut(HastMessage)> Worker<F> {
    fn run(mut self) {
        let span = tracing::info_span!(
            "hastctl_poller",
            source = SOURCE,
            program = %self.program.display()
        );
        let _entered = span.enter();
        tracing::debug!(interval = ?self.interval, timeout = ?self.timeout, "hastctl poller started");
        // The last successful poll; `None` until the first one (which is a snapshot).
        let mut previous: Option<Vec<HastStatus>> = None;
        let mut failures_in_a_row = 0u64;
        // What was last reported as wrong, so that a problem that lasts is said once, when it
        // appears, and not on every poll.
        let mut last_failure: Option<String> = None;
        let mut last_refusals: HashSet<String> = HashSet::new();
        loop {
            let stop = &self.stop;
            let outcome = run_and_parse(&self.program, self.timeout, &|| stop_requested(stop));
            match outcome {
                Err(Failure::Stopped) => break,
                Ok(list) => {
                    if failures_in_a_row > 0 {
                        tracing::info!(failures = failures_in_a_row, "hastctl list works again");
                        (self.sink)(HastMessage::Recovered {
                            failures: failures_in_a_row,
                        });
                    }
                    failures_in_a_row = 0;
                    last_failure = None;
                    let refusals = self.report_refusals(&list, &last_refusals);
                    last_refusals = refusals;
                    let current = with_refused_kept(list, previous.as_deref());
                    match &previous {
                        None => {
                            tracing::info!(resources = current.len(), "first hastctl snapshot");
                            (self.sink)(HastMessage::Snapshot(current.clone()));
                        }
                        Some(previous) => {
                            for message in diff(previous, &current) {
                                Counters::bump(&self.counters.changes);
                                tracing::info!(?message, "HAST status changed");
                                (self.sink)(message);
                            }
                        }
                    }
                    previous = Some(current);
                }
                Err(Failure::Error(error)) => {
                    failures_in_a_row += 1;
                    let message = error.message();
                    match &message {
                        HastMessage::BadOutput { .. } => {
                            Counters::bump(&self.counters.bad_outputs);
                        }
                        _ => Counters::bump(&self.counters.failures),
                    }
                    let reason = error.to_string();
                    if last_failure.as_ref() != Some(&reason) {
                        tracing::warn!(%error, "hastctl list failed; polling goes on");
                        (self.sink)(message);
                        last_failure = Some(reason);
                    } else {
                        tracing::debug!(%error, attempt = failures_in_a_row, "hastctl list failed");
                    }
                }
            }
            Counters::bump(&self.counters.polls);
            if !matches!(
                self.stop.recv_timeout(self.interval),
                Err(RecvTimeoutError::Timeout)
            ) {
                break;
            }
        }
        tracing::debug!("hastctl poller stopped");
    }

    /// Report each refused resource of `list` that `before` did not already report; returns
    /// what this poll refused, for the next one.
    fn report_refusals(&mut self, list: &HastctlList, before: &HashSet<String>) -> HashSet<String> {
        let mut now = HashSet::new();
        for refusal in &list.refused {
            // The line and the problem, without the line number, which shifts when other
            // resources come and go.
            let key = format!("{:?}: {}", refusal.line, refusal.problem);
            if !before.contains(&key) {
                Counters::bump(&self.counters.bad_outputs);
                tracing::warn!(%refusal, "hastctl list: resource refused; the others are read");
                (self.sink)(HastMessage::BadOutput {
                    text_excerpt: excerpt(&refusal.line),
                    reason: refusal.to_string(),
                });
            }
            now.insert(key);
        }
        now
    }
}

/// The statuses of a poll, with each resource it refused (but could name) keeping its
/// status from the poll before: its status is not known now, which does not make it gone.
fn with_refused_kept(list: HastctlList, previous: Option<&[HastStatus]>) -> Vec<HastStatus> {
    let mut current = list.statuses;
    if let Some(previous) = previous {
        let refused: HashSet<&str> = list.refused_names.iter().map(String::as_str).collect();
        current.extend(
            previous
                .iter()
                .filter(|status| refused.contains(status.resource.as_str()))
                .cloned(),
        );
    }
    current
}

fn stop_requested(stop: &Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(TryRecvError::Empty))
}

/// The messages for going from `previous` to `current` (both successful polls): a
/// [`HastMessage::Changed`] for each resource of `current` that is new or differs, in
/// `current`'s order, then a [`HastMessage::Vanished`] for each resource of `previous` that is
/// gone, in `previous`'s order. Linear in the number of resources.
fn diff(previous: &[HastStatus], current: &[HastStatus]) -> Vec<HastMessage> {
    let before: HashMap<&str, &HastStatus> = previous
        .iter()
        .map(|status| (status.resource.as_str(), status))
        .collect();
    let now: HashSet<&str> = current.iter().map(|s| s.resource.as_str()).collect();
    let changed = current
        .iter()
        .filter(|status| before.get(status.resource.as_str()) != Some(status))
        .map(|status| HastMessage::Changed(Event::HastStatusChanged(status.clone())));
    let vanished = previous
        .iter()
        .filter(|status| !now.contains(status.resource.as_str()))
        .map(|status| HastMessage::Vanished(status.resource.clone()));
    changed.chain(vanished).collect()
}

/// Why a run gave no list.
enum Failure {
    /// A stop was requested meanwhile; the child was killed and reaped.
    Stopped,
    Error(HastctlError),
}

impl From<HastctlError> for Failure {
    fn from(error: HastctlError) -> Self {
        Failure::Error(error)
    }
}

impl From<CommandError> for Failure {
    fn from(error: CommandError) -> Self {
        let error = match error {
            CommandError::Stopped { .. } => return Failure::Stopped,
            CommandError::Spawn { program, source } => HastctlError::Spawn { program, source },
            CommandError::Io { program, source } => HastctlError::Io { program, source },
            CommandError::Timeout { program, timeout } => {
                HastctlError::Timeout { program, timeout }
            }
            CommandError::TooMuchOutput { program } => HastctlError::TooMuchOutput { program },
        };
        Failure::Error(error)
    }
}

fn run_and_parse(
    program: &Path,
    timeout: Duration,
    should_stop: &dyn Fn() -> bool,
) -> Result<HastctlList, Failure> {
    let output = command::run(program, &["list"], timeout, should_stop)?;
    if !output.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // hastctl.c: an unknown command calls usage(), which prints `usage: hastctl ...` and
        // exits with EX_USAGE.
        if output.status.code() == Some(64) && stderr.trim_start().starts_with("usage:") {
            return Err(HastctlError::NoListCommand {
                program: program.to_owned(),
            }
            .into());
        }
        return Err(HastctlError::Exit {
            program: program.to_owned(),
            status: output.status,
            stderr_excerpt: output.stderr_excerpt(),
        }
        .into());
    }
    let text = std::str::from_utf8(&output.stdout).map_err(|source| HastctlError::NotUtf8 {
        text_excerpt: excerpt(&String::from_utf8_lossy(&output.stdout)),
        source,
    })?;
    Ok(read_hastctl_list(text))
}
