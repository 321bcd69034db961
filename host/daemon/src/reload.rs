//! Hot reload: a changed config or policy file is loaded off the event path and swapped in
//! between two events.
//!
//! A reload is asked for by the file watcher (a change to the config file or to any policy
//! module), by SIGHUP, or by `havenctl reload` (which waits for the outcome). The reloader's
//! own thread then does everything that can fail or take time, while the event loop goes on
//! with the current policies:
//!
//! 1. read and check the config (TOML, grants, conflicts: every error with file and line);
//! 2. load every policy: admission (imports, contract version, exports), compilation or the
//!    artifact cache, and `init` with its settings;
//! 3. compare with what is running: the same modules and the same config entries are
//!    `unchanged`, and nothing is swapped.
//!
//! Only a fully ready set of policies goes to the event loop (as a [`Report::Reload`]), which
//! swaps it in between two events: a plan that is running finishes under the policy that made
//! it, and each event is handled by the version active when it was taken off the queue. A
//! config or module that fails any step is rejected with its reason (journal, log, status, and
//! the waiting `havenctl reload`), and the last good version goes on serving.
//!
//! The watcher watches the folders of the config and the modules (so a file replaced by rename
//! is seen) and reacts when a watched file is closed after writing or renamed into place; a
//! file still being written is not loaded (where closes are reported, as on Linux, a file
//! written to waits for its close however long the writer pauses; other changes, and writes on
//! systems that do not report closes, arm a fallback that fires once the watched files have
//! been quiet for [`QUIET_FALLBACK`]). Changes that come together (an editor's write, rename,
//! chmod) are one reload: a request waits [`SETTLE`] for more before it starts.
//!
//! Sections other than the policies (`[daemon]`, `[sources.*]`, `[executor]`, `[[carp]]`)
//! are read but not applied: those need a restart, and a reload that sees them changed logs a
//! warning.

use crate::inbox::{Inbox, Report};
use haven_core::{Config, PolicyConfig};
use haven_runtime::pipeline::short_hash;
use haven_runtime::{LoadedPolicy, Runtime};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a reload request waits for more changes that belong to it.
pub const SETTLE: Duration = Duration::from_millis(3);

/// A watched file modified but never reported closed is loaded after this much quiet.
pub const QUIET_FALLBACK: Duration = Duration::from_millis(500);

/// Cache entries of modules no longer loaded that are kept, most recent first, so that rolling
/// back stays near-instant.
pub const CACHE_KEEP_RECENT: usize = 8;

/// What came of a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ReloadOutcome {
    /// New policies are in force; `changes` says what changed.
    Loaded { changes: Vec<String> },
    /// Nothing the policies depend on changed.
    Unchanged,
    /// The config or a module could not be used; the last good version stays.
    Rejected { reason: String },
}

/// Why a reload was asked for, and who waits for its outcome.
#[derive(Debug)]
struct Request {
    why: String,
    reply: Option<Sender<ReloadOutcome>>,
}

/// A set of policies ready to be swapped in.
#[derive(Debug)]
pub struct Prepared {
    pub policies: Vec<LoadedPolicy>,
    pub changes: Vec<String>,
    pub why: String,
    /// Whoever waits for the outcome (`havenctl reload`).
    pub reply: Option<Sender<ReloadOutcome>>,
}

impl Prepared {
    /// Tell the waiter, if any, that the swap is done.
    pub fn answer(&mut self) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(ReloadOutcome::Loaded {
                changes: self.changes.clone(),
            });
        }
    }
}

/// What the running policies are, for comparing with a new config.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    name: String,
    module_hash: String,
    config: PolicyConfig,
}

/// The reloader: a thread that prepares reloads, and the watcher that asks for them.
#[derive(Debug)]
pub struct Reloader {
    requests: Sender<Request>,
    thread: Option<JoinHandle<()>>,
    watch: Arc<Mutex<Option<Watch>>>,
}

impl Reloader {
    /// Start reloading `config_path`'s policies with `runtime`, handing ready sets to the
    /// event loop through `inbox`. `config` is the config in force; its module files are
    /// watched along with the config file (`watch = false` for SIGHUP and `havenctl reload`
    /// only).
    pub fn start(
        config_path: &Path,
        config: &Config,
        policies: &[LoadedPolicy],
        runtime: Arc<Runtime>,
        inbox: Inbox,
        watch: bool,
    ) -> std::io::Result<Reloader> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let watch = Arc::new(Mutex::new(if watch {
            let modules = config.policies.iter().map(|policy| policy.module.clone());
            match Watch::start(config_path, modules, requests.clone()) {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the config and policy files; reload with SIGHUP or havenctl reload");
                    None
                }
            }
        } else {
            None
        }));
        let worker = Worker {
            config_path: config_path.to_owned(),
            runtime,
            inbox,
            running: running(policies),
            watch: Arc::clone(&watch),
            restart_only: RestartOnly::of(config),
        };
        let thread = std::thread::Builder::new()
            .name("reloader".to_owned())
            .spawn(move || worker.run(incoming))?;
        Ok(Reloader {
            requests,
            thread: Some(thread),
            watch,
        })
    }

    /// Ask for a reload; `reply` gets the outcome.
    pub fn request(&self, why: impl Into<String>, reply: Option<Sender<ReloadOutcome>>) {
        let _ = self.requests.send(Request {
            why: why.into(),
            reply,
        });
    }

    /// Stop the watcher and the thread (a reload being prepared is finished first).
    pub fn stop(mut self) {
        drop(self.watch.lock().unwrap_or_else(|p| p.into_inner()).take());
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the reloader thread panicked");
        }
    }
}

fn running(policies: &[LoadedPolicy]) -> Vec<Running> {
    policies
        .iter()
        .map(|policy| Running {
            name: policy.name.clone(),
            module_hash: policy.compiled.module_hash.clone(),
            config: (*policy.config).clone(),
        })
        .collect()
}

struct Worker {
    config_path: PathBuf,
    runtime: Arc<Runtime>,
    inbox: Inbox,
    running: Vec<Running>,
    /// The watcher, to follow the module files a reload names.
    watch: Arc<Mutex<Option<Watch>>>,
    /// The sections a reload does not apply, as the daemon started with them.
    restart_only: RestartOnly,
}

/// The parts of the config that only a restart applies (sources, executor, state folders, the
/// peer link).
#[derive(Debug, PartialEq)]
struct RestartOnly {
    daemon: haven_core::DaemonConfig,
    sources: haven_core::SourcesConfig,
    executor: haven_core::ExecutorConfig,
    carp: Vec<haven_core::CarpAddress>,
    peer: Option<haven_core::PeerConfig>,
}

impl RestartOnly {
    fn of(config: &Config) -> RestartOnly {
        RestartOnly {
            daemon: config.daemon.clone(),
            sources: config.sources.clone(),
            executor: config.executor.clone(),
            carp: config.carp.clone(),
            peer: config.peer.clone(),
        }
    }
}

impl Worker {
    fn run(mut self, incoming: Receiver<Request>) {
        while let Ok(first) = incoming.recv() {
            // Requests that come together are one reload; every waiter gets its outcome.
            let mut batch = vec![first];
            let settle_until = Instant::now() + SETTLE;
            loop {
                let now = Instant::now();
                if now >= settle_until {
                    break;
                }
                match incoming.recv_timeout(settle_until - now) {
                    Ok(request) => batch.push(request),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let why = batch
                .iter()
                .map(|request| request.why.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ");
            let replies: Vec<_> = batch.into_iter().filter_map(|r| r.reply).collect();
            self.reload(why, replies);
        }
    }

    fn reload(&mut self, why: String, replies: Vec<Sender<ReloadOutcome>>) {
        let _span = tracing::info_span!("reload", why = %why).entered();
        let answer = |outcome: &ReloadOutcome| {
            for reply in &replies {
                let _ = reply.send(outcome.clone());
            }
        };
        let policies = match self.prepare() {
            Ok(policies) => policies,
            Err(reason) => {
                tracing::error!(%reason, "reload rejected; the last good version stays");
                let outcome = ReloadOutcome::Rejected { reason };
                self.inbox.report(Report::ReloadRejected {
                    why,
                    outcome: outcome.clone(),
                });
                answer(&outcome);
                return;
            }
        };
        let now_running = running(&policies);
        if now_running == self.running {
            tracing::info!("reload: nothing changed");
            answer(&ReloadOutcome::Unchanged);
            return;
        }
        let changes = describe_changes(&self.running, &now_running);
        tracing::info!(changes = ?changes, "reload ready; swapping in between two events");
        let keep: BTreeSet<String> = now_running.iter().map(|r| r.module_hash.clone()).collect();
        self.running = now_running;
        if let Some(watch) = self
            .watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let modules = policies.iter().map(|policy| policy.config.module.clone());
            if let Err(error) = watch.follow(&self.config_path, modules) {
                tracing::warn!(%error, "cannot watch the reloaded policies' files; reload with SIGHUP or havenctl reload");
            }
        }
        // One waiter is answered by the loop once swapped; the others are told the same.
        let mut replies = replies.into_iter();
        let reply = replies.next();
        for other in replies {
            let _ = other.send(ReloadOutcome::Loaded {
                changes: changes.clone(),
            });
        }
        self.inbox.report(Report::Reload(Box::new(Prepared {
            policies,
            changes,
            why,
            reply,
        })));
        let removed = self.runtime.clean_cache(&keep, CACHE_KEEP_RECENT);
        if removed > 0 {
            tracing::info!(removed, "stale artifact cache entries removed");
        }
    }

    /// Read the config and load every policy, or say why not.
    fn prepare(&self) -> Result<Vec<LoadedPolicy>, String> {
        let config = Config::from_file(&self.config_path).map_err(|error| error.to_string())?;
        let sections = RestartOnly::of(&config);
        if sections != self.restart_only {
            tracing::warn!(
                "[daemon], [sources.*], [executor], [[carp]] or [peer] changed: not applied until havend \
                 restarts"
            );
        }
        config
            .policies
            .iter()
            .map(|policy| {
                self.runtime.load(policy).map_err(|error| {
                    format!(
                        "policy `{}` ({}): {error}",
                        policy.name,
                        policy.module.display()
                    )
                })
            })
            .collect()
    }
}

/// What changed from `before` to `after`, one line each.
fn describe_changes(before: &[Running], after: &[Running]) -> Vec<String> {
    let mut changes = Vec::new();
    for new in after {
        match before.iter().find(|old| old.name == new.name) {
            None => changes.push(format!(
                "policy `{}` added (module {})",
                new.name,
                short_hash(&new.module_hash)
            )),
            Some(old) if old.module_hash != new.module_hash => changes.push(format!(
                "policy `{}`: module {} → {}",
                new.name,
                short_hash(&old.module_hash),
                short_hash(&new.module_hash)
            )),
            Some(old) if old.config != new.config => changes.push(format!(
                "policy `{}`: grants, settings or limits changed",
                new.name
            )),
            Some(_) => {}
        }
    }
    for old in before {
        if !after.iter().any(|new| new.name == old.name) {
            changes.push(format!(
                "policy `{}` removed; its timers are cancelled",
                old.name
            ));
        }
    }
    let order_before: Vec<&str> = before.iter().map(|r| r.name.as_str()).collect();
    let order_after: Vec<&str> = after.iter().map(|r| r.name.as_str()).collect();
    if changes.is_empty() && order_before != order_after {
        changes.push("the order in which policies are consulted changed".to_owned());
    }
    changes
}

/// The watcher and what it watches: the config file and every policy module, through their
/// folders. The set follows the config: a reload that names other module files watches those.
#[derive(Debug)]
struct Watch {
    watcher: notify::RecommendedWatcher,
    folders: BTreeSet<PathBuf>,
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl Watch {
    /// Watch `config_path` and `modules`; ask for a reload when one was written.
    fn start(
        config_path: &Path,
        modules: impl Iterator<Item = PathBuf>,
        requests: Sender<Request>,
    ) -> notify::Result<Watch> {
        let (events, changes) = mpsc::channel::<notify::Event>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let _ = events.send(event);
            }
        })?;
        let files = Arc::new(Mutex::new(BTreeSet::new()));
        let mut watch = Watch {
            watcher,
            folders: BTreeSet::new(),
            files: Arc::clone(&files),
        };
        watch.follow(config_path, modules)?;
        std::thread::Builder::new()
            .name("file-watcher".to_owned())
            .spawn(move || debounce(&files, &changes, &requests))
            .map_err(notify::Error::io)?;
        Ok(watch)
    }

    /// Watch exactly `config_path` and `modules` from now on.
    fn follow(
        &mut self,
        config_path: &Path,
        modules: impl Iterator<Item = PathBuf>,
    ) -> notify::Result<()> {
        let mut files: BTreeSet<PathBuf> = modules.map(|module| absolute(&module)).collect();
        files.insert(absolute(config_path));
        let folders: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|file| file.parent().map(Path::to_owned))
            .collect();
        for folder in folders.difference(&self.folders) {
            self.watcher.watch(folder, RecursiveMode::NonRecursive)?;
        }
        for folder in self.folders.difference(&folders) {
            let _ = self.watcher.unwatch(folder);
        }
        self.folders = folders;
        *self.files.lock().unwrap_or_else(|p| p.into_inner()) = files;
        Ok(())
    }
}

/// Whether this platform's watcher reports a file closed after writing (inotify does, kqueue
/// does not). Where it does, a file whose data was written is complete only once closed: the
/// quiet fallback is never used for it, however long the writer pauses.
const CLOSE_WRITE_REPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Turn file events into reload requests: at once for a watched file closed after writing or
/// renamed into place; otherwise after [`QUIET_FALLBACK`] without another change to a watched
/// file (changes to other files in the folders do not count), unless a watched file is still
/// open for writing where that is known ([`CLOSE_WRITE_REPORTED`]).
fn debounce(
    files: &Mutex<BTreeSet<PathBuf>>,
    changes: &Receiver<notify::Event>,
    requests: &Sender<Request>,
) {
    // When a watched file last changed without being complete (the fallback is armed).
    let mut changed_at: Option<Instant> = None;
    // Watched files written to and not yet closed (only where closes are reported).
    let mut being_written: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let event = match changed_at {
            None => match changes.recv() {
                Ok(event) => event,
                Err(_) => return,
            },
            Some(at) => {
                let wait = (at + QUIET_FALLBACK).saturating_duration_since(Instant::now());
                match changes.recv_timeout(wait) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        changed_at = None;
                        // A file still being written is reported when closed.
                        if !being_written.is_empty() {
                            continue;
                        }
                        let request = Request {
                            why: "a watched file changed".to_owned(),
                            reply: None,
                        };
                        if requests.send(request).is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let watched = files.lock().unwrap_or_else(|p| p.into_inner());
        let found = event
            .paths
            .iter()
            .find(|path| watched.contains(*path))
            .cloned();
        drop(watched);
        let Some(path) = found.as_ref() else {
            continue;
        };
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        // Not on create: a file created in place is still being written (and an empty
        // config is a valid one, with no policies).
        let complete = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        if complete {
            changed_at = None;
            being_written.remove(path);
            let request = Request {
                why: format!("{} written", path.display()),
                reply: None,
            };
            if requests.send(request).is_err() {
                return;
            }
        } else if CLOSE_WRITE_REPORTED
            && matches!(event.kind, EventKind::Modify(ModifyKind::Data(_)))
        {
            being_written.insert(path.clone());
        } else if matches!(
            event.kind,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
        ) {
            if matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
            ) {
                // Gone from this name: a writer of the old file is not writing this one.
                being_written.remove(path);
            }
            changed_at = Some(Instant::now());
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
