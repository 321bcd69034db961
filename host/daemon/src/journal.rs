//! The daemon's journal: append-only JSON lines under the state directory.
//!
//! The journal exists so that the daemon can be killed at any moment (power loss, OOM killer,
//! a panic) and still know, when it starts again, what it was doing. Every event, every
//! policy's decision (with the policy's name and module hash), every step's start and end and
//! every refusal is appended *before* the daemon acts on it, and each line is `fsync`'d
//! ([`std::fs::File::sync_data`]) before [`Journal::append`] returns. After a crash,
//! [`Journal::interrupted`] finds the step that was in progress so the startup event can carry
//! it ([`haven_core::InterruptedStep`]) and the policy can decide what to do; nothing is ever
//! re-run blindly. It is also the operator's record: `havenctl log` will read it with
//! [`Journal::read_all`].
//!
//! Format: one JSON object per line, `{"seq":N,"at":<unix ms>,"kind":"...",...}`, where `seq`
//! increases by one per line across files and restarts, and the rest is an [`Entry`]
//! (internally tagged by `kind`, kebab-case like the rest of Haven's JSON).
//!
//! Files: `journal.jsonl` is written; when the next line would take it over the size bound it
//! is rotated to `journal.jsonl.1`, the older `.1` to `.2` and so on, and files beyond
//! `keep_files` rotated ones are deleted. So the journal takes at most
//! `(keep_files + 1) × max_bytes_per_file` bytes (a single line larger than the bound is still
//! written, alone in its file: losing a record would be worse).
//!
//! A crash in the middle of a write can leave a torn last line. Readers skip it and report it
//! ([`Contents::torn`]); [`Journal::open`] cuts it off before appending, so that the next line
//! does not get glued to it, and reports it ([`Journal::torn_tail`]) so the daemon can note it.
//! A line that does not parse anywhere but at the end of a file is corruption, and an error.

use haven_core::{AlertSeverity, Event, InterruptedStep, Plan, Step};
use haven_runtime::{Decision, DecisionInputs, Outcome as RuntimeOutcome};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file being written.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The most characters of a torn line kept in a [`TornLine`] report.
const TORN_TEXT_LIMIT: usize = 512;

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The limits make no sense.
    #[error("journal limits: {0}")]
    Limits(&'static str),
    /// A file system operation failed.
    #[error("journal: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry could not be encoded (it cannot happen with Haven's types).
    #[error("journal: cannot encode an entry: {0}")]
    Encode(#[from] serde_json::Error),
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What a policy decided, as the journal says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionOutcome {
    /// It asked for nothing.
    NoAction,
    /// A plan that passed the grants check.
    Plan,
    /// A plan refused for a step outside the grants.
    Refused,
    /// The call trapped, timed out, overflowed or returned an error.
    Failed,
}

impl DecisionOutcome {
    /// The outcome as the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::NoAction => "no-action",
            DecisionOutcome::Plan => "plan",
            DecisionOutcome::Refused => "refused",
            DecisionOutcome::Failed => "failed",
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum Entry {
    /// An event taken off the queue to be handed to the policies.
    Event {
        event_id: u64,
        source: String,
        event: Event,
        /// How many older events it superseded in the queue.
        coalesced: u32,
    },
    /// One policy's decision about one event.
    Decision {
        event_id: u64,
        policy: String,
        module_hash: String,
        outcome: DecisionOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan_id: Option<u64>,
        /// The checked plan, for outcome `plan`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<Plan>,
        /// Why, for outcomes `refused` and `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        elapsed_us: u64,
        /// What the call saw (`[daemon] journal-inputs`, on by default): what `havenctl
        /// replay` gives a candidate module to decide the same event again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<DecisionInputs>,
    },
    /// A step is about to run.
    StepStart {
        plan_id: u64,
        policy: String,
        index: u32,
        step: Step,
    },
    /// A step ended.
    StepEnd {
        plan_id: u64,
        policy: String,
        index: u32,
        ok: bool,
        /// The step's effect was already in place, so nothing ran.
        skipped_as_done: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The witness's fencing token the step ran under (a step that made this host a
        /// writer, with `[witness]` configured).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fencing_token: Option<u64>,
        duration_us: u64,
    },
    /// A plan is over: every step done (`completed`), or abandoned after a failure.
    PlanEnd {
        plan_id: u64,
        policy: String,
        completed: bool,
    },
    /// An operator alert, from a policy's plan or from the host (`policy` absent).
    Alert {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        severity: AlertSeverity,
        message: String,
    },
    /// Input a source could not parse.
    BadInput {
        source: String,
        reason: String,
        text: String,
    },
    /// A reload of the config and policies: `loaded` (with what changed and the policies now
    /// in force, as `name@module-hash`) or `rejected` (with the reason; the old ones stay).
    Reload {
        why: String,
        result: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        policies: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Anything else worth recording: start, stop, queue overflow.
    Note { message: String },
}

impl Entry {
    /// The journal entry for a policy's decision about event `event_id`, with what the call
    /// saw when `with_inputs`.
    pub fn from_decision(event_id: u64, decision: &Decision, with_inputs: bool) -> Entry {
        let (outcome, plan_id, plan, reason) = match &decision.outcome {
            RuntimeOutcome::NoAction => (DecisionOutcome::NoAction, None, None, None),
            RuntimeOutcome::Plan { plan_id, plan } => (
                DecisionOutcome::Plan,
                Some(*plan_id),
                Some(plan.clone()),
                None,
            ),
            RuntimeOutcome::Refused(refusal) => (
                DecisionOutcome::Refused,
                None,
                None,
                Some(refusal.to_string()),
            ),
            RuntimeOutcome::Failed(failure) => (
                DecisionOutcome::Failed,
                None,
                None,
                Some(failure.to_string()),
            ),
        };
        Entry::Decision {
            event_id,
            policy: decision.policy.clone(),
            module_hash: decision.module_hash.clone(),
            outcome,
            plan_id,
            plan,
            reason,
            elapsed_us: u64::try_from(decision.elapsed.as_micros()).unwrap_or(u64::MAX),
            inputs: with_inputs.then(|| decision.inputs.clone()),
        }
    }

    /// The entry's `kind`, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Event { .. } => "event",
            Entry::Decision { .. } => "decision",
            Entry::StepStart { .. } => "step-start",
            Entry::StepEnd { .. } => "step-end",
            Entry::PlanEnd { .. } => "plan-end",
            Entry::Alert { .. } => "alert",
            Entry::BadInput { .. } => "bad-input",
            Entry::Reload { .. } => "reload",
            Entry::Note { .. } => "note",
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the journal, from 1, increasing by one per line.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at: u64,
    /// What was written.
    #[serde(flatten)]
    pub entry: Entry,
}

/// [`Record`] by reference, to write without cloning the entry.
#[derive(Serialize)]
struct RecordRef<'a> {
    seq: u64,
    at: u64,
    #[serde(flatten)]
    entry: &'a Entry,
}

/// Just the sequence number of a line, which is all reopening needs.
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// A line skipped because it was cut short or is otherwise unreadable (anywhere in a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// The file.
    pub path: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
    /// Its length in bytes.
    pub bytes: usize,
    /// Why it does not parse.
    pub reason: String,
    /// Its beginning, as text.
    pub text: String,
}

/// Everything in the journal, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// The records.
    pub records: Vec<Record>,
    /// Lines skipped because they do not parse: the first 100.
    pub torn: Vec<TornLine>,
    /// Every line skipped.
    pub torn_total: u64,
}

/// The step that was in progress when the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The policy whose plan it was.
    pub policy: String,
    /// The plan.
    pub plan_id: u64,
    /// The step's position in the plan, from 0.
    pub step_index: u32,
    /// The step.
    pub step: Step,
}

impl From<Interrupted> for InterruptedStep {
    fn from(interrupted: Interrupted) -> InterruptedStep {
        InterruptedStep {
            plan_id: interrupted.plan_id,
            step_index: interrupted.step_index,
            step: interrupted.step,
        }
    }
}

/// The journal, open for appending.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes in the current file.
    len: u64,
    next_seq: u64,
    max_bytes: u64,
    keep_files: usize,
    torn_tail: Option<TornLine>,
    /// Lines appended but not yet written to the file (one `write` per flush, not per line).
    pending: Vec<u8>,
    /// Lines written since the last `fsync`.
    unsynced: bool,
    /// Lines given up on while writes failed (see [`Journal::take_dropped_lines`]).
    dropped_lines: u64,
}

impl Journal {
    /// Open the journal in `dir` for appending, creating the directory (mode 0700 on Unix) and
    /// the file as needed. Numbering continues from the last record found. The current file is
    /// rotated when the next line would take it over `max_bytes_per_file`; `keep_files` rotated
    /// files are kept.
    pub fn open(
        dir: impl AsRef<Path>,
        max_bytes_per_file: u64,
        keep_files: usize,
    ) -> Result<Journal, JournalError> {
        if max_bytes_per_file == 0 {
            return Err(JournalError::Limits(
                "max_bytes_per_file must be at least 1",
            ));
        }
        let dir = dir.as_ref().to_owned();
        create_private_dir(&dir)?;
        let path = dir.join(JOURNAL_FILE);
        let torn_tail = cut_torn_tail(&path)?;
        if let Some(torn) = &torn_tail {
            tracing::warn!(
                path = %torn.path.display(),
                line = torn.line,
                bytes = torn.bytes,
                "journal ended in a torn line (a crash mid-write?): cut off"
            );
        }
        let next_seq = last_seq(&dir)?.map_or(1, |seq| seq + 1);
        let existed = path.exists();
        let file = open_for_append(&path)?;
        if !existed {
            sync_dir(&dir)?;
        }
        let len = file
            .metadata()
            .map_err(io_error("read the size of", &path))?
            .len();
        Ok(Journal {
            dir,
            file,
            len,
            next_seq,
            max_bytes: max_bytes_per_file,
            keep_files,
            torn_tail,
            pending: Vec::new(),
            unsynced: false,
            dropped_lines: 0,
        })
    }

    /// Append an entry and wait until it (and everything before it) is on disk. Returns its
    /// sequence number.
    pub fn append(&mut self, entry: &Entry) -> Result<u64, JournalError> {
        let seq = self.append_buffered(entry)?;
        self.sync()?;
        Ok(seq)
    }

    /// Append an entry without waiting for the disk (group commit): the line is kept in
    /// memory until [`Journal::flush`] writes everything pending with one `write`, and reaches
    /// the disk with [`Journal::sync`]. The daemon flushes after each event and syncs before
    /// anything acts on the system, so a crash can only lose lines about decisions that had not
    /// acted yet. Returns the line's sequence number.
    pub fn append_buffered(&mut self, entry: &Entry) -> Result<u64, JournalError> {
        let seq = self.next_seq;
        let mut line = serde_json::to_vec(&RecordRef {
            seq,
            at: unix_ms(),
            entry,
        })?;
        line.push(b'\n');
        let bytes = line.len() as u64;
        // Rotate only once what is pending reached the disk; while it cannot (a full disk),
        // the line waits with the others, and the next flush reports the failure.
        if self.len > 0 && self.len.saturating_add(bytes) > self.max_bytes && self.sync().is_ok() {
            self.rotate()?;
        }
        self.pending.extend_from_slice(&line);
        self.len += bytes;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Write every pending line to the file (not necessarily to the disk).
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.current_path();
        let written = self.len - self.pending.len() as u64;
        if let Err(error) = self.file.write_all(&self.pending) {
            // Best effort: take back a partial write so that the next line is not glued to it;
            // the lines stay pending for the next attempt, up to a file's worth: while the disk
            // stays full, older lines are dropped (and counted) rather than kept in memory.
            let _ = self.file.set_len(written);
            if self.pending.len() as u64 > self.max_bytes {
                let lines = self.pending.iter().filter(|byte| **byte == b'\n').count();
                self.dropped_lines += lines as u64;
                self.len = written;
                self.pending.clear();
            }
            return Err(io_error("write to", &path)(error));
        }
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Write every pending line and wait until it is on disk (nothing to do if it is).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        if self.unsynced {
            let path = self.current_path();
            self.file.sync_data().map_err(io_error("sync", &path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Write every pending line and hand back a second handle on the file, for a thread that
    /// syncs it in the background while the daemon goes on (`None` when nothing is unsynced).
    /// It does not count as a sync: [`Journal::sync`] still syncs before acting.
    pub fn flush_for_background_sync(&mut self) -> Result<Option<File>, JournalError> {
        self.flush()?;
        if !self.unsynced {
            return Ok(None);
        }
        let path = self.current_path();
        self.file
            .try_clone()
            .map(Some)
            .map_err(io_error("duplicate the handle of", &path))
    }

    /// Lines dropped because they could not be written for a file's worth of appends, since
    /// the last call; the count starts again from 0.
    pub fn take_dropped_lines(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_lines)
    }

    /// Whether every line appended is written and synced (a flush or sync would do nothing).
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && !self.unsynced
    }

    /// The sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file being written.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The torn line [`Journal::open`] cut off the end of the current file, if there was one.
    pub fn torn_tail(&self) -> Option<&TornLine> {
        self.torn_tail.as_ref()
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        debug_assert!(self.pending.is_empty(), "rotate after sync");
        let current = self.current_path();
        for (index, path) in rotated_files(&self.dir)? {
            if index >= self.keep_files {
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
            }
        }
        for index in (1..self.keep_files).rev() {
            let from = rotated_path(&self.dir, index);
            if from.exists() {
                let to = rotated_path(&self.dir, index + 1);
                fs::rename(&from, &to).map_err(io_error("rename", &from))?;
            }
        }
        if self.keep_files > 0 {
            let to = rotated_path(&self.dir, 1);
            fs::rename(&current, &to).map_err(io_error("rename", &current))?;
        } else {
            fs::remove_file(&current).map_err(io_error("remove", &current))?;
        }
        self.file = open_for_append(&current)?;
        self.len = 0;
        sync_dir(&self.dir)?;
        tracing::debug!(dir = %self.dir.display(), next_seq = self.next_seq, "journal rotated");
        Ok(())
    }

    /// Every record in the journal in `dir`, oldest first, across rotated files. A missing
    /// directory or file is an empty journal.
    pub fn read_all(dir: impl AsRef<Path>) -> Result<Contents, JournalError> {
        let mut records = Vec::new();
        let skipped = for_each_record(dir.as_ref(), |record| records.push(record))?;
        Ok(Contents {
            records,
            torn: skipped.kept,
            torn_total: skipped.total,
        })
    }

    /// The step that was in progress when the daemon writing the journal in `dir` stopped (see
    /// [`Recovered::interrupted`]).
    pub fn interrupted(dir: impl AsRef<Path>) -> Result<Option<Interrupted>, JournalError> {
        Ok(Journal::recover(dir)?.interrupted)
    }

    /// What a starting daemon needs from the journal in `dir`, in one read: the interrupted
    /// step, and the highest event and plan ids, so that ids go on from there and never repeat
    /// within one journal. Unreadable lines are skipped (and logged once, here).
    pub fn recover(dir: impl AsRef<Path>) -> Result<Recovered, JournalError> {
        let mut recovered = Recovered::default();
        let skipped = for_each_record(dir.as_ref(), |record| recovered.fold(record))?;
        if let Some(first) = skipped.kept.first() {
            tracing::warn!(
                skipped = skipped.total,
                first = %format!("{}:{}", first.path.display(), first.line),
                reason = %first.reason,
                "journal: unreadable lines skipped; the rest was read"
            );
        }
        Ok(recovered)
    }
}

impl Recovered {
    /// Take one record into account, oldest first.
    fn fold(&mut self, record: Record) {
        let open = &mut self.interrupted;
        match record.entry {
            Entry::Event { event_id, .. } => {
                self.last_event_id = self.last_event_id.max(event_id);
            }
            Entry::Decision {
                event_id,
                plan_id,
                policy,
                module_hash,
                ..
            } => {
                self.last_event_id = self.last_event_id.max(event_id);
                self.last_plan_id = self.last_plan_id.max(plan_id.unwrap_or(0));
                self.last_modules.insert(policy, module_hash);
            }
            Entry::StepStart {
                plan_id,
                policy,
                index,
                step,
            } => {
                self.last_plan_id = self.last_plan_id.max(plan_id);
                *open = Some(Interrupted {
                    policy,
                    plan_id,
                    step_index: index,
                    step,
                });
            }
            Entry::StepEnd {
                plan_id,
                policy,
                index,
                ..
            } if open.as_ref().is_some_and(|open| {
                open.plan_id == plan_id && open.policy == policy && open.step_index == index
            }) =>
            {
                *open = None;
            }
            Entry::PlanEnd {
                plan_id, policy, ..
            } if open
                .as_ref()
                .is_some_and(|open| open.plan_id == plan_id && open.policy == policy) =>
            {
                *open = None;
            }
            _ => {}
        }
    }
}

/// What [`Journal::recover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The step that was in progress when the daemon stopped: the last `step-start`, unless a
    /// `step-end` for it or a `plan-end` for its plan follows. Plans run one at a time, so only
    /// the last step started can have been in progress; an older unended step belongs to an
    /// earlier crash, already reported at the start after it.
    pub interrupted: Option<Interrupted>,
    /// The highest event id journaled (0 if none).
    pub last_event_id: u64,
    /// The highest plan id journaled (0 if none).
    pub last_plan_id: u64,
    /// Per policy, the hash of the module that made its last decision: its last good
    /// version, which the artifact cache keeps.
    pub last_modules: std::collections::BTreeMap<String, String>,
}

/// Wall-clock milliseconds since 1970 (the journal's `at`, the peer's facts' age).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(error) = self.sync() {
            tracing::error!(%error, "journal: lines appended before closing were not all written");
        }
    }
}

fn rotated_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{JOURNAL_FILE}.{index}"))
}

/// The rotated files in `dir`, by index, newest (`.1`) first.
fn rotated_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>, JournalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    let prefix = format!("{JOURNAL_FILE}.");
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|name| name.strip_prefix(&prefix))
            .filter(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|index| index.parse::<usize>().ok())
            .filter(|index| *index > 0)
        else {
            continue;
        };
        files.push((index, entry.path()));
    }
    files.sort();
    Ok(files)
}

/// The longest journal line read. Haven's own lines are far shorter; a longer one is a
/// damaged file, skipped without being held in memory.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Unreadable lines kept for a report; more are only counted.
const TORN_KEPT: usize = 100;

/// The unreadable lines met while reading.
#[derive(Debug, Default)]
struct Skipped {
    kept: Vec<TornLine>,
    total: u64,
}

impl Skipped {
    fn add(&mut self, torn: TornLine) {
        self.total += 1;
        if self.kept.len() < TORN_KEPT {
            self.kept.push(torn);
        }
    }
}

/// Hand every readable record of the journal in `dir` to `each`, oldest first, one line in
/// memory at a time; unreadable lines are skipped and reported.
fn for_each_record(dir: &Path, mut each: impl FnMut(Record)) -> Result<Skipped, JournalError> {
    let mut files: Vec<PathBuf> = rotated_files(dir)?
        .into_iter()
        .rev()
        .map(|(_, path)| path)
        .collect();
    files.push(dir.join(JOURNAL_FILE));
    let mut skipped = Skipped::default();
    for path in files {
        read_file(&path, &mut each, &mut skipped)?;
    }
    Ok(skipped)
}

/// Read a file's records, line by line; a missing file is empty. A line that does not parse
/// is skipped and reported, wherever it is: at the end it is a crash mid-write, in the middle
/// a full disk, a hand edit or a damaged block. What comes after it is still read.
fn read_file(
    path: &Path,
    each: &mut impl FnMut(Record),
    skipped: &mut Skipped,
) -> Result<(), JournalError> {
    for_each_line(path, |number, line| match line {
        Line::Text(text) => match serde_json::from_slice::<Record>(text) {
            Ok(record) => each(record),
            Err(error) => skipped.add(torn_line(path, number, text, error.to_string())),
        },
        Line::TooLong { start, bytes } => {
            let mut torn = torn_line(
                path,
                number,
                start,
                format!("longer than {MAX_LINE_BYTES} bytes"),
            );
            torn.bytes = bytes;
            skipped.add(torn);
        }
    })
}

/// One line of a journal file, as [`for_each_line`] hands it over.
enum Line<'a> {
    /// Without its newline; never empty.
    Text(&'a [u8]),
    /// Over [`MAX_LINE_BYTES`]: its start, and its length.
    TooLong { start: &'a [u8], bytes: usize },
}

/// Every non-empty line of the file at `path`, with its number from 1, holding at most
/// [`MAX_LINE_BYTES`] in memory; a missing file has none.
fn for_each_line(path: &Path, mut each: impl FnMut(usize, Line<'_>)) -> Result<(), JournalError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("read", path)(error)),
    };
    let mut reader = io::BufReader::new(file);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io_error("read", path))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            let rest = skip_line(&mut reader).map_err(io_error("read", path))?;
            let start = &line[..TORN_TEXT_LIMIT];
            each(
                number,
                Line::TooLong {
                    start,
                    bytes: line.len() + rest,
                },
            );
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if !text.is_empty() {
            each(number, Line::Text(text));
        }
    }
    Ok(())
}

/// Read past the rest of a line; returns how many bytes it had.
fn skip_line(reader: &mut impl io::BufRead) -> io::Result<usize> {
    let mut skipped = 0;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(skipped);
        }
        match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(skipped + end);
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
                skipped += all;
            }
        }
    }
}

fn torn_line(path: &Path, line: usize, bytes: &[u8], reason: String) -> TornLine {
    TornLine {
        path: path.to_owned(),
        line,
        bytes: bytes.len(),
        reason,
        text: String::from_utf8_lossy(bytes)
            .chars()
            .take(TORN_TEXT_LIMIT)
            .collect(),
    }
}

/// If the file at `path` does not end in a newline, cut it back to its last newline and
/// report what was cut.
fn cut_torn_tail(path: &Path) -> Result<Option<TornLine>, JournalError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", path)(error)),
    };
    // One pass in fixed chunks: where the last complete line ends, and how many there are.
    let (mut keep, mut len, mut lines) = (0u64, 0u64, 0usize);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut chunk).map_err(io_error("read", path))?;
        if read == 0 {
            break;
        }
        for (at, _) in chunk[..read]
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
        {
            keep = len + at as u64 + 1;
            lines += 1;
        }
        len += read as u64;
    }
    if keep == len {
        return Ok(None);
    }
    let mut tail = Vec::new();
    let mut reader = File::open(path).map_err(io_error("read", path))?;
    io::Seek::seek(&mut reader, io::SeekFrom::Start(keep)).map_err(io_error("read", path))?;
    reader
        .take(MAX_LINE_BYTES as u64)
        .read_to_end(&mut tail)
        .map_err(io_error("read", path))?;
    let reason = match serde_json::from_slice::<Record>(&tail) {
        Ok(_) => "complete record without its newline".to_owned(),
        Err(error) => error.to_string(),
    };
    let mut torn = torn_line(path, lines + 1, &tail, reason);
    torn.bytes = (len - keep) as usize;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(keep).map_err(io_error("truncate", path))?;
    file.sync_all().map_err(io_error("sync", path))?;
    Ok(Some(torn))
}

/// The sequence number of the newest readable line, looking through the current file and then
/// the rotated ones, newest first.
fn last_seq(dir: &Path) -> Result<Option<u64>, JournalError> {
    let mut files = vec![dir.join(JOURNAL_FILE)];
    files.extend(rotated_files(dir)?.into_iter().map(|(_, path)| path));
    for path in files {
        let mut seq = None;
        for_each_line(&path, |_, line| {
            if let Line::Text(text) = line
                && let Ok(line) = serde_json::from_slice::<SeqOnly>(text)
            {
                seq = Some(line.seq);
            }
        })?;
        if seq.is_some() {
            return Ok(seq);
        }
    }
    Ok(None)
}

fn create_private_dir(dir: &Path) -> Result<(), JournalError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(io_error("create", dir))?;
        let mode = fs::metadata(dir)
            .map_err(io_error("inspect", dir))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "state directory is writable by others: the journal can be tampered with"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        builder.create(dir).map_err(io_error("create", dir))
    }
}

fn open_for_append(path: &Path) -> Result<File, JournalError> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(io_error("open", path))
}

/// Make a file's creation or renaming durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("sync", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
