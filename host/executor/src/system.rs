//! The executors that act on the real machine: FreeBSD's and Linux's.
//!
//! [`SystemExecutor`] carries out one checked step at a time with the system's own tools:
//!
//! | step | FreeBSD | Linux |
//! |---|---|---|
//! | `hast-role` | `hastctl role <role> <res>` | the same with a `hastctl`-compatible program, or `drbdadm primary\|secondary <res>` |
//! | `wait-device` | until the path is a character device | until it is a block or character device |
//! | `wait-worker-gone` | until `ps -axww -o command=` lists no `hastd: <res> (<role>)` | the same from `/proc/*/cmdline` |
//! | `fsck` | `fsck [-p] -y -t <type> <dev>` | `fsck -t <type> -p\|-y <dev>` |
//! | `mount` | `mount -t <type> <dev> <dir>` | the same |
//! | `unmount` | `umount [-f] <dir>` | `umount <dir>`; with `force`, the processes holding files under `<dir>` are killed and it is tried again |
//! | `service` | `service <name> onestart\|onestop\|onerestart` | `systemctl start\|stop\|restart <name>`, or `service <name> start\|stop\|restart` |
//! | `demote-carp` | `ifconfig <if> vhid <n> advskew 240 [state backup]` | keepalived: `1` into the track file; ucarp: `SIGUSR2` |
//! | `lift-carp-demotion` | `ifconfig <if> vhid <n> advskew <configured>` | keepalived: `0` into the track file; ucarp: nothing |
//!
//! Timers and alerts only change Haven's own state: they succeed at once (see
//! [`is_host_side`]).
//!
//! Every step follows the same rules:
//!
//! - **Arguments are checked again** with [`haven_core::names`] (resource and service names,
//!   device paths, mountpoints, filesystem types) before anything runs, although the grants
//!   already allowed them: a step with a bad argument fails and runs nothing. The root
//!   directory is never mounted on or unmounted.
//! - **Commands run through [`command::run`]**: no shell, a cleared environment and a fixed
//!   `PATH`, and a deadline after which the whole process group is killed.
//! - **A timeout per step**: the step's own `timeout_ms`, or the default of its kind
//!   (`[executor.timeouts-ms]`). It bounds everything the step does: checks, the command, its
//!   retries and waits.
//! - **Idempotent**: the goal is checked first (the role `hastctl list`/`drbdadm role`
//!   reports, the mounts, the service's status command, the device node, the process titles),
//!   and a step whose goal already holds runs nothing and says so
//!   ([`StepOutcome::already_done`]). An `fsck` of a device that is mounted never runs (a
//!   mounted filesystem is never checked): it was checked before it was mounted, so the step
//!   counts as done, which keeps the promotion plan (`fsck` then `mount`) safe to run twice.
//! - **Bounded retries where safe** (`[executor.retries]`): a command that ends with a
//!   failing status is tried again after [`RETRY_PAUSE`], if time is left and the goal does
//!   not hold by then. A command that timed out is not tried again.
//! - **Failures say what happened**: the command line, its exit status (and what an `fsck`
//!   status means), an excerpt of its stderr and how long it ran. The outcome's `detail`
//!   lists every command the step ran, checks included, for the journal.
//!
//! Both platforms' code is compiled on both: the platform is a value ([`Platform`]), so
//! FreeBSD's behaviour is tested on Linux with stand-in tools at configured paths.

mod carp;
mod mounts;
mod processes;
mod services;
mod storage;
#[cfg(test)]
mod tests;

use crate::command::{self, CommandError, Output};
use crate::executor::{Executor, StepOutcome, is_host_side};
use crate::probe::ServiceManager;
pub use crate::tools::Tools;
use haven_core::names::{check_fstype, check_hast_argument, check_name, check_path};
use haven_core::{Action, CarpAddress, ExecutorConfig, Machine, ServiceManagerKind, Step};
use haven_core::{ServiceOp, StorageKind};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// The pause before a failed command is tried again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How often the waiting steps (`wait-device`, `wait-worker-gone`) and the wait for killed
/// processes look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The operating system an executor acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// FreeBSD: HAST, rc(8), `mount -p`, `ps`.
    FreeBsd,
    /// Linux: DRBD or a `hastctl`-compatible program, systemd or SysV init, `/proc`.
    Linux,
}

impl Platform {
    /// The platform this was built for, if Haven has an executor for it.
    pub fn current() -> Option<Platform> {
        if cfg!(target_os = "freebsd") {
            Some(Platform::FreeBsd)
        } else if cfg!(target_os = "linux") {
            Some(Platform::Linux)
        } else {
            None
        }
    }

    /// `freebsd` or `linux`: the executor's name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::FreeBsd => "freebsd",
            Platform::Linux => "linux",
        }
    }
}

/// Why a [`SystemExecutor`] cannot be built from a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The config asks for something the platform does not have.
    #[error("the {platform} executor cannot use {what}: {why}")]
    Unsupported {
        /// `freebsd` or `linux`.
        platform: &'static str,
        /// What was asked for, as in the config.
        what: String,
        /// Why not, and what to use instead.
        why: &'static str,
    },
}

impl ServiceManager {
    /// The service manager `kind` (`[executor] service-manager`) means on `platform`: `auto`
    /// is rc(8) on FreeBSD and, on Linux, systemd when it runs, else SysV init
    /// ([`ServiceManager::detect`]). Refused: systemd or SysV on FreeBSD, rc(8) on Linux.
    pub fn resolve(
        platform: Platform,
        kind: ServiceManagerKind,
    ) -> Result<ServiceManager, SetupError> {
        let unsupported = |what: String, why| SetupError::Unsupported {
            platform: platform.name(),
            what,
            why,
        };
        match (platform, kind) {
            (Platform::FreeBsd, ServiceManagerKind::Auto | ServiceManagerKind::Rc) => {
                Ok(ServiceManager::Rc)
            }
            (Platform::FreeBsd, other) => Err(unsupported(
                format!("service-manager = \"{}\"", manager_name(other)),
                "FreeBSD's services are rc(8) scripts (service-manager = \"rc\" or \"auto\")",
            )),
            (Platform::Linux, ServiceManagerKind::Auto) => {
                if Path::new("/run/systemd/system").is_dir() {
                    Ok(ServiceManager::Systemd)
                } else {
                    Ok(ServiceManager::SysV)
                }
            }
            (Platform::Linux, ServiceManagerKind::Systemd) => Ok(ServiceManager::Systemd),
            (Platform::Linux, ServiceManagerKind::Sysv) => Ok(ServiceManager::SysV),
            (Platform::Linux, ServiceManagerKind::Rc) => Err(unsupported(
                "service-manager = \"rc\"".to_owned(),
                "rc(8)'s one* commands are FreeBSD's (use \"systemd\", \"sysv\" or \"auto\")",
            )),
        }
    }
}

/// What a [`SystemExecutor`] was set up with; shared read-only by every step.
#[derive(Debug, Clone)]
struct Setup {
    platform: Platform,
    storage: StorageKind,
    services: ServiceManager,
    tools: Tools,
    config: ExecutorConfig,
    /// The `[[carp]]` entries: which interface, ucarp process or keepalived track file a
    /// vhid's demotion acts on.
    carp: Vec<CarpAddress>,
}

/// Carries out steps on the machine it runs on, FreeBSD's or Linux's way (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct SystemExecutor {
    setup: Setup,
    commands_run: u64,
    probes_run: u64,
    time_in_commands: Duration,
}

impl SystemExecutor {
    /// An executor for `platform` as `config` says: the storage backend, the service manager
    /// (`auto`: rc(8) on FreeBSD; on Linux systemd when `/run/systemd/system` is a directory,
    /// else SysV init), tool paths, default timeouts and retries. Refused: DRBD, systemd or
    /// SysV on FreeBSD, rc(8) on Linux.
    pub fn new(platform: Platform, config: &ExecutorConfig) -> Result<SystemExecutor, SetupError> {
        let unsupported = |what: &str, why| SetupError::Unsupported {
            platform: platform.name(),
            what: what.to_owned(),
            why,
        };
        if platform == Platform::FreeBsd && config.storage == StorageKind::Drbd {
            return Err(unsupported(
                "storage = \"drbd\"",
                "DRBD is Linux's; FreeBSD replicates with HAST (storage = \"hast\")",
            ));
        }
        let services = ServiceManager::resolve(platform, config.service_manager)?;
        Ok(SystemExecutor {
            setup: Setup {
                platform,
                storage: config.storage,
                services,
                tools: Tools::resolve(platform, &config.tools),
                config: config.clone(),
                carp: Vec::new(),
            },
            commands_run: 0,
            probes_run: 0,
            time_in_commands: Duration::ZERO,
        })
    }

    /// The same executor, demoting CARP vhids as the config's `[[carp]]` entries say.
    pub fn with_carp(mut self, carp: &[CarpAddress]) -> SystemExecutor {
        self.setup.carp = carp.to_vec();
        self
    }

    /// The platform it acts on.
    pub fn platform(&self) -> Platform {
        self.setup.platform
    }

    /// The service manager `service` steps go through.
    pub fn service_manager(&self) -> ServiceManager {
        self.setup.services
    }

    /// Who answers `hast-role` steps.
    pub fn storage(&self) -> StorageKind {
        self.setup.storage
    }

    /// The programs it runs.
    pub fn tools(&self) -> &Tools {
        &self.setup.tools
    }

    /// The programs this setup may run that are not executable files, as (tool, path): for a
    /// warning at startup rather than a failed step in the middle of an incident.
    pub fn missing_tools(&self) -> Vec<(&'static str, PathBuf)> {
        use std::os::unix::fs::PermissionsExt;
        let tools = &self.setup.tools;
        let mut needed: Vec<(&'static str, &PathBuf)> = vec![
            ("mount", &tools.mount),
            ("umount", &tools.umount),
            ("fsck", &tools.fsck),
        ];
        needed.push(match self.setup.storage {
            StorageKind::Hast => ("hastctl", &tools.hastctl),
            StorageKind::Drbd => ("drbdadm", &tools.drbdadm),
        });
        needed.push(match self.setup.services {
            ServiceManager::Systemd => ("systemctl", &tools.systemctl),
            ServiceManager::Rc | ServiceManager::SysV => ("service", &tools.service),
        });
        if self.setup.platform == Platform::FreeBsd {
            needed.push(("ps", &tools.ps));
        }
        needed
            .into_iter()
            .filter(|(_, path)| {
                !std::fs::metadata(path)
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
            .map(|(tool, path)| (tool, path.clone()))
            .collect()
    }

    /// How many commands that act (`hastctl role`, `mount`, `fsck`, `service … start`, …) it
    /// has started. Checks that only read (`hastctl list`, `mount -p`, `ps`, status commands)
    /// are not counted: a step whose goal already held leaves this unchanged.
    pub fn commands_run(&self) -> u64 {
        self.commands_run
    }

    /// How many read-only checks it has run as commands.
    pub fn probes_run(&self) -> u64 {
        self.probes_run
    }

    /// The time spent inside [`command::run`], acting commands and checks together, from
    /// just before each spawn until the child was reaped. What a step took beyond this is the
    /// executor's own overhead.
    pub fn time_in_commands(&self) -> Duration {
        self.time_in_commands
    }

    /// The timeout of `step`: its own, or its kind's default; `None` for host-side steps.
    pub fn timeout_of(&self, step: &Step) -> Option<Duration> {
        match step.timeout_ms {
            Some(ms) => Some(Duration::from_millis(u64::from(ms))),
            None => self
                .setup
                .config
                .timeout_ms(step.action.kind())
                .map(Duration::from_millis),
        }
    }
}

fn manager_name(kind: ServiceManagerKind) -> &'static str {
    match kind {
        ServiceManagerKind::Auto => "auto",
        ServiceManagerKind::Rc => "rc",
        ServiceManagerKind::Systemd => "systemd",
        ServiceManagerKind::Sysv => "sysv",
    }
}

impl Executor for SystemExecutor {
    fn name(&self) -> &'static str {
        self.setup.platform.name()
    }

    fn acts_on_system(&self) -> bool {
        true
    }

    fn run_step(&mut self, policy: &str, step: &Step, _machine: &Machine) -> StepOutcome {
        if is_host_side(step) {
            return StepOutcome::done(None);
        }
        if let Err(message) = check_arguments(step) {
            tracing::error!(%policy, %step, %message, "step refused");
            return StepOutcome::failed(
                format!("refused before running anything: {message}"),
                None,
            );
        }
        let Some(timeout) = self.timeout_of(step) else {
            return StepOutcome::failed(
                format!("no timeout is known for `{}` steps", step.action.kind()),
                None,
            );
        };
        if timeout.is_zero() {
            return StepOutcome::failed(
                "refused before running anything: a timeout of 0 ms leaves no time to act",
                None,
            );
        }
        let mut run = StepRun::new(&self.setup, timeout);
        let result = match &step.action {
            Action::SetHastRole(set) => storage::set_role(&mut run, &set.resource, set.role),
            Action::WaitForDevice(path) => mounts::wait_device(&mut run, path),
            Action::WaitHastWorkerGone(worker) => {
                storage::wait_worker_gone(&mut run, &worker.resource, worker.role)
            }
            Action::Fsck(fsck) => mounts::fsck(&mut run, fsck),
            Action::Mount(mount) => mounts::mount(&mut run, mount),
            Action::Unmount(unmount) => mounts::unmount(&mut run, unmount),
            Action::Service(service) => services::service(&mut run, &service.name, service.op),
            Action::SetTimer(_) | Action::CancelTimer(_) | Action::Alert(_) => Ok(Done::Ran),
            Action::DemoteCarp(vhid) => carp::demote(&mut run, *vhid),
            Action::LiftCarpDemotion(vhid) => carp::lift(&mut run, *vhid),
        };
        self.commands_run += run.commands;
        self.probes_run += run.probes;
        self.time_in_commands += run.command_time;
        let outcome = run.outcome(result);
        match &outcome.result {
            Ok(()) => tracing::info!(
                %policy,
                %step,
                already_done = outcome.skipped_as_done,
                detail = outcome.detail.as_deref().unwrap_or(""),
                "step done"
            ),
            Err(reason) => tracing::warn!(%policy, %step, %reason, "step failed"),
        }
        outcome
    }
}

/// Check every argument of a step that may reach a command line, as the config checks grants.
fn check_arguments(step: &Step) -> Result<(), String> {
    let not_root = |what: &str, path: &str| {
        if path == "/" {
            Err(format!("{what} `/` is the root directory"))
        } else {
            Ok(())
        }
    };
    match &step.action {
        Action::SetHastRole(set) => check_hast_argument("HAST resource", &set.resource),
        Action::WaitForDevice(path) => check_path("device", path),
        Action::WaitHastWorkerGone(worker) => {
            check_hast_argument("HAST resource", &worker.resource)
        }
        Action::Fsck(fsck) => {
            check_path("device", &fsck.device)?;
            check_fstype(&fsck.fstype)
        }
        Action::Mount(mount) => {
            check_path("device", &mount.device)?;
            check_path("mountpoint", &mount.mountpoint)?;
            not_root("mountpoint", &mount.mountpoint)?;
            check_fstype(&mount.fstype)
        }
        Action::Unmount(unmount) => {
            check_path("mountpoint", &unmount.mountpoint)?;
            not_root("mountpoint", &unmount.mountpoint)
        }
        Action::Service(service) => check_name("service", &service.name),
        Action::SetTimer(_) | Action::CancelTimer(_) | Action::Alert(_) => Ok(()),
        Action::DemoteCarp(0) | Action::LiftCarpDemotion(0) => Err("vhid 0 is not a vhid".into()),
        Action::DemoteCarp(_) | Action::LiftCarpDemotion(_) => Ok(()),
    }
}

/// How a step that succeeded ended.
#[derive(Debug)]
enum Done {
    /// It ran what it had to.
    Ran,
    /// The goal already held, so nothing acted; why we know.
    Already(String),
}

/// One step being carried out: its deadline, what it ran, and the counts to add to the
/// executor's.
struct StepRun<'a> {
    setup: &'a Setup,
    timeout: Duration,
    started: Instant,
    deadline: Instant,
    /// What was run or found, for the outcome's detail.
    log: Vec<String>,
    commands: u64,
    probes: u64,
    command_time: Duration,
}

impl<'a> StepRun<'a> {
    fn new(setup: &'a Setup, timeout: Duration) -> StepRun<'a> {
        let started = Instant::now();
        StepRun {
            setup,
            timeout,
            started,
            deadline: started + timeout,
            log: Vec::new(),
            commands: 0,
            probes: 0,
            command_time: Duration::ZERO,
        }
    }

    fn tools(&self) -> &'a Tools {
        &self.setup.tools
    }

    fn platform(&self) -> Platform {
        self.setup.platform
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The step's timeout ran out: the reason to fail with.
    fn out_of_time(&self, what: &str) -> String {
        format!(
            "{what}: the step's timeout of {} ran out",
            human(self.timeout)
        )
    }

    /// Something for the outcome's detail.
    fn note(&mut self, text: impl Into<String>) {
        self.log.push(text.into());
    }

    /// Run a command that acts on the system.
    fn act(&mut self, program: &Path, args: &[&str]) -> Result<Output, String> {
        self.run(true, program, args)
    }

    /// Run a command that only reads.
    fn probe(&mut self, program: &Path, args: &[&str]) -> Result<Output, String> {
        self.run(false, program, args)
    }

    /// Run a command within what is left of the step's timeout; `Err` when it could not run
    /// to its end (not started, timed out and killed, too much output), else its output
    /// whatever its exit status.
    fn run(&mut self, acts: bool, program: &Path, args: &[&str]) -> Result<Output, String> {
        let line = command::command_line(program, args);
        let remaining = self.remaining();
        if remaining.is_zero() {
            let reason = self.out_of_time(&format!("`{line}` was not started"));
            self.note(reason.clone());
            return Err(reason);
        }
        if acts {
            self.commands += 1;
            tracing::info!(command = %line, "running");
        } else {
            self.probes += 1;
            tracing::debug!(command = %line, "checking");
        }
        let started = Instant::now();
        let result = command::run(program, args, remaining, &|| false);
        self.command_time += started.elapsed();
        let prefix = if acts { "ran" } else { "checked" };
        match result {
            Ok(output) => {
                self.note(format!(
                    "{prefix} `{line}`: {} in {}",
                    status_text(output.status),
                    human(output.elapsed)
                ));
                Ok(output)
            }
            Err(error) => {
                let reason = command_error(&line, &error, started.elapsed(), self.timeout);
                self.note(format!("{prefix} `{line}`: {reason}"));
                Err(reason)
            }
        }
    }

    /// Sleep `pause`, or what is left of the timeout if that is less; `false` when no time
    /// is left afterwards.
    fn pause(&self, pause: Duration) -> bool {
        std::thread::sleep(pause.min(self.remaining()));
        !self.remaining().is_zero()
    }

    /// Run the step's command, and again up to `retries` times while it ends with a failing
    /// exit status (not when it cannot start or times out), after [`RETRY_PAUSE`], unless
    /// `goal` says that what the command was for holds by then.
    fn act_with_retries(
        &mut self,
        retries: u32,
        program: &Path,
        args: &[&str],
        goal: &dyn Fn(&mut StepRun<'_>) -> Option<String>,
    ) -> Result<Done, String> {
        let line = command::command_line(program, args);
        let mut attempt = 0;
        loop {
            let output = self.act(program, args)?;
            if output.success() {
                return Ok(Done::Ran);
            }
            let mut reason = exit_failure(&line, &output, None);
            if attempt > 0 {
                reason = format!("{reason} (attempt {} of {})", attempt + 1, retries + 1);
            }
            if attempt >= retries {
                return Err(reason);
            }
            attempt += 1;
            if !self.pause(RETRY_PAUSE) {
                return Err(self.out_of_time(&format!("{reason}; not tried again")));
            }
            if let Some(why) = goal(self) {
                self.note(format!("after the failed attempt: {why}"));
                return Ok(Done::Ran);
            }
        }
    }

    /// The outcome for the runner and the journal.
    fn outcome(self, result: Result<Done, String>) -> StepOutcome {
        let took = format!("step took {}", human(self.started.elapsed()));
        let mut log = self.log;
        match result {
            Ok(Done::Ran) => {
                log.push(took);
                StepOutcome::done(Some(log.join("; ")))
            }
            Ok(Done::Already(why)) => {
                log.insert(0, why);
                StepOutcome::already_done(log.join("; "))
            }
            Err(reason) => {
                log.push(took);
                StepOutcome::failed(reason, Some(log.join("; ")))
            }
        }
    }
}

/// `exited with status 1`, `was killed by signal 9`.
fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// Why a command that ran to its end counts as failed: its command line, exit status (and
/// what the status means, when known), how long it ran and what it printed on stderr (or,
/// when that is empty, on stdout).
fn exit_failure(line: &str, output: &Output, meaning: Option<&str>) -> String {
    let meaning = meaning.map(|m| format!(" ({m})")).unwrap_or_default();
    let stderr = output.stderr_excerpt();
    let printed = if !stderr.is_empty() {
        format!("stderr: {stderr:?}")
    } else {
        let stdout = command::excerpt(String::from_utf8_lossy(&output.stdout).trim());
        if stdout.is_empty() {
            "no output".to_owned()
        } else {
            format!("stdout: {stdout:?}")
        }
    };
    format!(
        "`{line}` {}{meaning} after {}; {printed}",
        status_text(output.status),
        human(output.elapsed)
    )
}

/// Why a command could not run to its end, naming the whole command line; `timeout` is the
/// step's (a command gets what is left of it).
fn command_error(line: &str, error: &CommandError, ran: Duration, timeout: Duration) -> String {
    match error {
        CommandError::Spawn { source, .. } => format!("cannot run `{line}`: {source}"),
        CommandError::Io { source, .. } => {
            format!(
                "reading the output of `{line}` failed after {}: {source}; it was killed",
                human(ran)
            )
        }
        CommandError::Timeout { .. } => format!(
            "`{line}` timed out: the step's timeout of {} ran out after it had run {}; it was \
             killed with its process group",
            human(timeout),
            human(ran)
        ),
        CommandError::TooMuchOutput { .. } => format!(
            "`{line}` printed more than {} bytes and was killed after {}",
            command::MAX_OUTPUT,
            human(ran)
        ),
        CommandError::Stopped { .. } => format!("`{line}` was killed because Haven is stopping"),
    }
}

/// A duration for people: `0.4 ms`, `12 ms`, `3.2 s`.
fn human(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// The retries `[executor.retries]` gives a service operation.
fn service_retries(config: &ExecutorConfig, op: ServiceOp) -> u32 {
    match op {
        ServiceOp::Start => config.retries("service-start"),
        ServiceOp::Stop => config.retries("service-stop"),
        ServiceOp::Restart => 0,
    }
}
