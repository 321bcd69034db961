//! `havenctl deploy NAME candidate.wasm`: put a new version of a policy in place the safe way.
//!
//! Copying a file over the running module and hoping is how policies were deployed before; the
//! reload check then catches a module that does not load, but not one that decides otherwise.
//! Deploy runs, in order, and prints each step:
//!
//! 1. **check**: the candidate under the config entry's grants, limits and settings, as
//!    `havenctl check` does;
//! 2. **compile** into the daemon's artifact cache (`<state-dir>/cache`), so that the reload
//!    loads it from there instead of compiling on the daemon's side;
//! 3. **replay** the journal's recorded decisions of that policy with the candidate
//!    ([`crate::replay`]), print every difference, and ask to go on when there are any
//!    (`--yes` for scripts; without a terminal and without `--yes`, differences refuse);
//! 4. **install**: write the candidate next to the configured module, sync it, keep the old
//!    one as `<module>.previous`, and rename the new one into place (atomic: the daemon, or a
//!    crash, sees the old file or the new one, never half of one);
//! 5. **reload**: ask havend to reload and wait for its outcome. A rejected reload puts the
//!    old file back, so that disk and daemon agree.
//!
//! Any refusal before step 4 leaves the file in place as it was.

use crate::check;
use crate::replay::{self, ReplayReport};
use haven_core::{Config, PolicyConfig};
use haven_daemon::control::{self, Request, Response};
use haven_daemon::journal::Journal;
use haven_daemon::reload::ReloadOutcome;
use haven_daemon::status::{LastReload, Status};
use haven_runtime::{Runtime, RuntimeOptions};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long deploy waits for havend's reload outcome.
pub const RELOAD_WAIT: Duration = Duration::from_secs(120);

/// Why a deploy stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Config(#[from] haven_core::ConfigError),
    #[error("{config} has no policy named `{name}` (it has: {known})")]
    NoSuchPolicy {
        config: PathBuf,
        name: String,
        known: String,
    },
    #[error("the runtime: {0}")]
    Runtime(#[from] haven_runtime::RuntimeError),
    #[error("check failed; nothing was changed")]
    Check,
    #[error("cannot load the candidate from the artifact cache: {0}")]
    Compile(haven_runtime::LoadError),
    #[error("cannot read the journal in {dir}: {source}")]
    Journal {
        dir: PathBuf,
        #[source]
        source: haven_daemon::JournalError,
    },
    #[error(
        "{0} recorded decision(s) would differ, and deploying them was not confirmed; nothing \
         was changed (--yes deploys anyway)"
    )]
    NotConfirmed(usize),
    #[error("cannot {op} {}: {source}; nothing was changed", path.display())]
    Install {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("havend rejected the reload: {0}; the previous module is back in place")]
    Rejected(String),
}

/// What to deploy, and where.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The config naming the policy.
    pub config: PathBuf,
    /// The policy's name in it.
    pub name: String,
    /// The module to deploy.
    pub candidate: PathBuf,
    /// Deploy even if recorded decisions would differ.
    pub yes: bool,
}

/// Run the deploy, printing each step to `out`; `confirm` is asked, with the question, when
/// recorded decisions would differ (and `--yes` was not given).
pub fn deploy(
    options: &DeployOptions,
    out: &mut dyn Write,
    confirm: &mut dyn FnMut(&str) -> bool,
) -> Result<(), DeployError> {
    let config = Config::from_file(&options.config)?;
    let entry = find_entry(&config, options)?;
    let state_dir = &config.daemon.state_dir;
    let cache_dir = state_dir.join("cache");
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache_dir.clone()),
        ..RuntimeOptions::default()
    })?;

    say(
        out,
        format_args!("[1/5] check {}", options.candidate.display()),
    );
    let report = check::check(
        &runtime,
        &options.candidate,
        Some(&options.config),
        Some(&options.name),
    );
    for line in report.text.lines() {
        say(out, format_args!("      {line}"));
    }
    if !report.ok {
        return Err(DeployError::Check);
    }

    let started = Instant::now();
    let mut candidate_entry = entry.clone();
    candidate_entry.module = options.candidate.clone();
    let candidate = runtime
        .load(&candidate_entry)
        .map_err(DeployError::Compile)?;
    say(
        out,
        format_args!(
            "[2/5] compile: module {} is in the daemon's artifact cache {} (loaded back in {} \
             ms)",
            haven_runtime::pipeline::short_hash(&candidate.compiled.module_hash),
            cache_dir.display(),
            started.elapsed().as_millis()
        ),
    );

    let records = Journal::read_all(state_dir)
        .map_err(|source| DeployError::Journal {
            dir: state_dir.clone(),
            source,
        })?
        .records;
    let replayed: ReplayReport = replay::replay(&runtime, &candidate, &records, None);
    say(
        out,
        format_args!("[3/5] replay the journal in {}", state_dir.display()),
    );
    for line in replay::render(&replayed, &candidate).lines() {
        say(out, format_args!("      {line}"));
    }
    let differ = replayed.differences.len();
    if differ > 0 && !options.yes {
        let question = format!(
            "{differ} recorded decision(s) would differ. Deploy `{}` anyway? [y/N] ",
            options.name
        );
        if !confirm(&question) {
            return Err(DeployError::NotConfirmed(differ));
        }
    }

    // The daemon's last reload before the file changes: the outcome to wait for is the next.
    let control_dir = &config.daemon.control_dir;
    let before = last_reload(control_dir);
    let previous = install(&options.candidate, &entry.module)?;
    say(
        out,
        format_args!(
            "[4/5] install: {} is the candidate now{}",
            entry.module.display(),
            previous
                .as_ref()
                .map(|path| format!(" (the old module is kept as {})", path.display()))
                .unwrap_or_default()
        ),
    );

    match before.and_then(|before| reload(control_dir, before)) {
        Ok(ReloadOutcome::Loaded { changes }) => {
            say(
                out,
                format_args!("[5/5] reload: loaded: {}", changes.join("; ")),
            );
            Ok(())
        }
        Ok(ReloadOutcome::Unchanged) => {
            say(
                out,
                format_args!("[5/5] reload: unchanged (the module was already in force)"),
            );
            Ok(())
        }
        Ok(ReloadOutcome::Rejected { reason }) => {
            if let Some(previous) = &previous {
                restore(previous, &entry.module)?;
            }
            Err(DeployError::Rejected(reason))
        }
        Err(message) => {
            say(
                out,
                format_args!(
                    "[5/5] reload: {message}; the new module is in place and loads when havend \
                     next starts or reloads"
                ),
            );
            Ok(())
        }
    }
}

fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) {
    // A closed output does not stop a deploy halfway.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn find_entry<'a>(
    config: &'a Config,
    options: &DeployOptions,
) -> Result<&'a PolicyConfig, DeployError> {
    config
        .policies
        .iter()
        .find(|entry| entry.name == options.name)
        .ok_or_else(|| DeployError::NoSuchPolicy {
            config: options.config.clone(),
            name: options.name.clone(),
            known: config
                .policies
                .iter()
                .map(|entry| entry.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Put `candidate` at `module` atomically; the old file, if any, is kept as
/// `<module>.previous`, whose path is returned.
fn install(candidate: &Path, module: &Path) -> Result<Option<PathBuf>, DeployError> {
    let fail = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| DeployError::Install { op, path, source }
    };
    let bytes = fs::read(candidate).map_err(fail("read", candidate))?;
    let dir = module.parent().unwrap_or(Path::new("."));
    let name = module.file_name().unwrap_or_default().to_string_lossy();
    let staged = dir.join(format!(".{name}.deploy"));
    let previous = dir.join(format!("{name}.previous"));
    {
        let mut file = fs::File::create(&staged).map_err(fail("write", &staged))?;
        file.write_all(&bytes).map_err(fail("write", &staged))?;
        file.sync_all().map_err(fail("sync", &staged))?;
    }
    let kept = match fs::symlink_metadata(module) {
        Ok(_) => {
            let _ = fs::remove_file(&previous);
            fs::hard_link(module, &previous)
                .or_else(|_| fs::copy(module, &previous).map(drop))
                .map_err(fail("keep a copy of", module))?;
            Some(previous)
        }
        Err(_) => None,
    };
    fs::rename(&staged, module).map_err(fail("rename into place", module))?;
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(kept)
}

/// Put the kept module back after a rejected reload.
fn restore(previous: &Path, module: &Path) -> Result<(), DeployError> {
    fs::rename(previous, module).map_err(|source| DeployError::Install {
        op: "put back",
        path: module.to_owned(),
        source,
    })
}

/// havend's status, or why it cannot be had.
fn status(control_dir: &Path) -> Result<Status, String> {
    match control::send(control_dir, &Request::Status, Duration::from_secs(5)) {
        Ok(Response::Ok { body }) => serde_json::from_value(body)
            .map_err(|error| format!("havend's status is not what havenctl expects: {error}")),
        Ok(Response::Error { message }) => Err(format!("havend refused the status: {message}")),
        Err(error) => Err(format!("havend does not answer: {error}")),
    }
}

/// The last reload havend did, if any; `Err` when havend cannot be asked.
fn last_reload(control_dir: &Path) -> Result<Option<LastReload>, String> {
    Ok(status(control_dir)?.last_reload)
}

/// Ask havend to reload and wait for the first reload after `before` (a reload waits for a
/// running plan, so its outcome is read off the status rather than the request's own answer,
/// which gives up after a few seconds). `Err` when havend cannot be asked.
fn reload(control_dir: &Path, before: Option<LastReload>) -> Result<ReloadOutcome, String> {
    // The first reload after the rename is the one that counts, even if havend started it
    // itself on seeing the file change.
    let _ = control::send(control_dir, &Request::Reload, Duration::from_secs(12));
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let now = last_reload(control_dir)?;
        if now != before
            && let Some(last) = now
        {
            return Ok(last.outcome);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "havend did not finish the reload within {RELOAD_WAIT:?} (a long plan may be \
                 running); see havenctl status"
            ));
        }
        // Polling the daemon's status for an outcome, with a deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}
