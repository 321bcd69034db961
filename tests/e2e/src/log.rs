//! The rig's timeline: every line the rig's daemons print (ucarp, havend, the HAST stand-in,
//! the seed script), stamped when the rig read it, on one clock.
//!
//! The scenarios measure a failover from these stamps (ucarp's "Switching to state: MASTER",
//! havend's step lines, the client's first answer), and wait on them: [`Log::wait_for`] blocks
//! on a condition variable until a matching line arrives or a deadline passes. Everything is
//! also appended to `rig.log` in the rig's folder, which the tests print when they fail.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One line, as read.
#[derive(Debug, Clone)]
pub struct Line {
    /// When the rig read it, from the log's start.
    pub at: Duration,
    /// Who printed it: `hasta/ucarp`, `hastb/havend`, `rig`, ...
    pub source: String,
    pub text: String,
}

/// The lines read so far; shared by the readers and the scenarios.
#[derive(Debug)]
pub struct Log {
    start: Instant,
    lines: Mutex<Vec<Line>>,
    arrived: Condvar,
    file: Mutex<Option<File>>,
}

impl Log {
    /// An empty log whose lines are also appended to `file`.
    pub fn new(file: &Path) -> Arc<Log> {
        Arc::new(Log {
            start: Instant::now(),
            lines: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            file: Mutex::new(File::create(file).ok()),
        })
    }

    /// Time since the log started: the clock every [`Line::at`] is on.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Add a line printed by `source` now.
    pub fn push(&self, source: &str, text: &str) {
        let line = Line {
            at: self.now(),
            source: source.to_owned(),
            text: text.trim_end().to_owned(),
        };
        if let Some(file) = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            let _ = writeln!(
                file,
                "{:>10.3} {:<14} {}",
                line.at.as_secs_f64(),
                line.source,
                line.text
            );
        }
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
        self.arrived.notify_all();
    }

    /// A note from the rig itself (what it did, and when).
    pub fn note(&self, text: impl AsRef<str>) {
        self.push("rig", text.as_ref());
    }

    /// Read `stream` line by line into the log as `source`, on a thread of its own that ends
    /// when the stream does (when the process and everything that inherited it are gone).
    pub fn follow(self: &Arc<Self>, source: String, stream: impl Read + Send + 'static) {
        let log = Arc::clone(self);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                match line {
                    Ok(line) => log.push(&source, &line),
                    Err(_) => break,
                }
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first line at or after `since` from `source` containing `needle`.
    pub fn find(&self, since: Duration, source: &str, needle: &str) -> Option<Line> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|line| line.at >= since && line.source == source && line.text.contains(needle))
            .cloned()
    }

    /// Wait until a line at or after `since` from `source` contains `needle`; `None` when
    /// `timeout` passes first.
    pub fn wait_for(
        &self,
        since: Duration,
        source: &str,
        needle: &str,
        timeout: Duration,
    ) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(line) = lines.iter().find(|line| {
                line.at >= since && line.source == source && line.text.contains(needle)
            }) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self
                .arrived
                .wait_timeout(lines, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The last `count` lines, for a failing test's message.
    pub fn tail(&self, count: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = lines.len().saturating_sub(count);
        lines[skip..]
            .iter()
            .map(|line| {
                format!(
                    "{:>10.3} {:<14} {}\n",
                    line.at.as_secs_f64(),
                    line.source,
                    line.text
                )
            })
            .collect()
    }
}
