//! Compiling a policy in a process of its own, so that what compiling costs can never take the
//! daemon down.
//!
//! Admission refuses what is plainly too costly before anything is compiled (size, function
//! count, function size, nesting: [`crate::admission::check_structure`]), but what a compiler
//! spends on a module that passes those checks is still not something the daemon can bound
//! from the inside: an allocation that fails aborts the whole process, every policy with it.
//! So the daemon hands each compile to a child, its own binary started again with
//! [`WORKER_FLAG`], under an address-space limit (`RLIMIT_AS`) and a deadline. The child
//! admits and compiles the module with an engine configured like the daemon's and writes the
//! artifact into the artifact cache; the daemon then loads it from there, as it loads any
//! cached artifact. A child that runs out of memory or time dies alone, and the reload or
//! the startup that asked for it is refused with that reason.
//!
//! Measured (BENCHMARKS.md, "Hardening"): a child adds about 28 ms to the seed policy's cold
//! compile (98 ms against 70 ms, median), and a cold hot reload takes 85 ms (61 ms compiling in
//! the daemon), within its 100 ms target. Loads from the artifact cache are unchanged.

use crate::admission;
use crate::cache::ArtifactCache;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The flag that turns the daemon's binary into a compiler: `<program> <WORKER_FLAG> <cache
/// dir> <module file> <memory MiB>`.
pub const WORKER_FLAG: &str = "--compile-worker";

/// The processor time a compiler process may use: it bounds a child even if the daemon that
/// started it (and would kill it at its deadline) is gone.
const MAX_CPU_SECONDS: u64 = 300;

/// The most of the child's stderr kept for the reason it gives.
const MAX_REASON_BYTES: usize = 16 * 1024;

/// Exit status of a child that refused the module (the reason is on its stderr).
pub const REFUSED: i32 = 3;

/// How the daemon starts its compiler processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerProcess {
    /// The program, started as `<program> [args] --compile-worker ...` (havend itself).
    pub program: PathBuf,
    /// Arguments before [`WORKER_FLAG`].
    pub args: Vec<OsString>,
    /// The child's address-space limit.
    pub memory_mib: u64,
    /// How long a compile may take before the child is killed.
    pub timeout: Duration,
}

impl CompilerProcess {
    /// Compile `bytes` in a child, into `cache`; `Err` says why there is no artifact.
    pub(crate) fn compile(&self, cache: &ArtifactCache, bytes: &[u8]) -> Result<(), String> {
        // The module goes to the child as a file in the (private) cache folder.
        let module = tempfile::Builder::new()
            .prefix(".module-")
            .tempfile_in(cache.dir())
            .map_err(|error| format!("cannot hand the module to the compiler: {error}"))?;
        std::fs::write(module.path(), bytes)
            .map_err(|error| format!("cannot hand the module to the compiler: {error}"))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(WORKER_FLAG)
            .arg(cache.dir())
            .arg(module.path())
            .arg(self.memory_mib.to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot start the compiler process {}: {error}",
                    self.program.display()
                )
            })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.take(MAX_REASON_BYTES as u64).read_to_end(&mut text);
            String::from_utf8_lossy(&text).trim().to_owned()
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "compiling took more than {:?} and was stopped",
                        self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(error) => break Err(format!("cannot wait for the compiler: {error}")),
            }
        };
        let reason = reader.join().unwrap_or_default();
        let status = status?;
        // Out of memory shows in several ways: an allocation that aborts the child, an
        // ENOMEM from a read or a mapping; each says so on stderr.
        let out_of_memory = [
            "memory allocation of",
            "out of memory",
            "Cannot allocate memory",
        ]
        .iter()
        .any(|sign| reason.contains(sign));
        match status.code() {
            Some(0) => Ok(()),
            _ if out_of_memory => Err(format!(
                "the compiler process ran out of its {} MiB ([daemon] compile-memory-mib): {}",
                self.memory_mib,
                last_line(&reason)
            )),
            Some(REFUSED) => Err(reason),
            _ => Err(format!(
                "the compiler process failed ({status}){}",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", last_line(&reason))
                }
            )),
        }
    }
}

/// The last line of what a child printed (an abort's message comes last).
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text)
}

/// The child's side: admit and compile the module file under a memory limit, with `engine`,
/// and store the artifact in the cache at `cache_dir`. Returns the exit code for `main`: 0 when
/// stored, [`REFUSED`] with the reason on stderr when the module was refused or did not
/// compile. Running out of memory aborts the process, which the daemon reports.
pub fn worker_main(engine: &Engine, cache_dir: &Path, module: &Path, memory_mib: u64) -> i32 {
    let run = || -> Result<(), String> {
        limit(memory_mib)?;
        let bytes = std::fs::read(module)
            .map_err(|error| format!("cannot read {}: {error}", module.display()))?;
        let cache = ArtifactCache::new(cache_dir, engine)
            .map_err(|error| format!("cannot open the artifact cache: {error}"))?;
        let component_bytes = admission::componentize(&bytes).map_err(|error| error.to_string())?;
        let component = Component::new(engine, &component_bytes)
            .map_err(|error| format!("does not compile: {error:#}"))?;
        cache.store(&crate::runtime::module_hash(&bytes), &component);
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("{reason}");
            REFUSED
        }
    }
}

/// The child's limits: its address space, and its processor time ([`MAX_CPU_SECONDS`]).
#[cfg(unix)]
fn limit(memory_mib: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let set = |resource, value: u64, what: &str| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(value),
                maximum: Some(value),
            },
        )
        .map_err(|error| format!("cannot limit the compiler's {what}: {error}"))
    };
    set(Resource::As, memory_mib.saturating_mul(1 << 20), "memory")?;
    set(Resource::Cpu, MAX_CPU_SECONDS, "processor time")
}

#[cfg(not(unix))]
fn limit(_memory_mib: u64) -> Result<(), String> {
    Ok(())
}
