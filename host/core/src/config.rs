//! `haven.toml`: which policies run, with which settings, grants and limits, and how the daemon
//! runs: where it keeps its state, which executor acts, and which event sources it reads.
//!
//! ```toml
//! [limits]                      # defaults for every policy (all optional)
//! deadline-ms = 50
//!
//! [[policy]]
//! name = "mysql"
//! module = "carp_hast_switch.wasm"   # relative to this file
//! on-failure = "alert"               # or "log"
//!
//! [policy.grants]
//! hast-resources = ["test"]
//! services = ["mysql-server"]
//! timers = 1
//! mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]
//!
//! [policy.settings]                  # the policy's own, handed to its `init` as JSON
//! vhid = 1
//!
//! [daemon]                           # all optional; these are the defaults
//! state-dir = "/var/db/haven"        # /var/lib/haven on Linux
//! control-dir = "/var/run/haven"     # the control socket's folder
//! executor = "auto"                  # or "dry-run", "freebsd", "linux"
//! queue-capacity = 1024              # events waiting for the policies
//! journal-max-bytes = 8388608        # per journal file
//! journal-keep-files = 4             # rotated journal files kept
//! journal-inputs = true              # what each decision saw, for `havenctl replay`
//! decisions-kept = 20                # recent decisions `havenctl status` shows
//! compile-memory-mib = 2048          # address space of the process compiling a policy
//!
//! [sources.devd]                     # a source runs only if its table is present
//! socket = "/var/run/devd.seqpacket.pipe"
//!
//! [sources.hastctl]                  # polls `hastctl list`
//! program = "/sbin/hastctl"
//! interval-ms = 2000
//! timeout-ms = 10000
//!
//! [sources.keepalived]               # Linux: keepalived's notify_fifo
//! fifo = "/run/keepalived/haven.fifo"
//! instances = { VI_1 = { vhid = 1, interface = "eth0" } }
//!
//! [[carp]]                           # Linux: a shared address and the vhid it stands for
//! vhid = 1
//! interface = "eth0"
//! address = "192.168.1.50"
//!
//! [executor]                         # how the FreeBSD and Linux executors act; all optional
//! storage = "hast"                   # or "drbd" (Linux): who answers hast-role steps
//! service-manager = "auto"           # or "rc", "systemd", "sysv"
//! [executor.tools]                   # absolute paths; the defaults depend on the OS
//! hastctl = "/sbin/hastctl"
//! [executor.timeouts-ms]             # per action kind, for steps without a timeout
//! fsck = 600000
//! [executor.retries]                 # extra attempts where that is safe, at most 5
//! unmount = 2
//! ```
//!
//! Every error names the file, the line and what is wrong.

use crate::grants::Grants;
use crate::names::{check_fstype, check_hast_argument, check_name, check_path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

mod metrics;
mod witness;
pub use metrics::{DEFAULT_METRICS_PORT, MetricsConfig};
pub use witness::{WitnessConfig, WitnessTls};

/// Bounds on one call into a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// Deadline of one call (init or handle): the policy's own CPU time, checked by epoch
    /// interruption, with a wall-clock cap of ten times it (`haven_runtime::deadline`).
    pub deadline_ms: u32,
    /// Linear memory a policy instance may grow to.
    pub memory_mib: u32,
    /// Steps in one plan.
    pub max_plan_steps: u32,
    /// Log messages per call; more are dropped and counted.
    pub max_log_messages: u32,
    /// Bytes of log text per call; more are dropped and counted.
    pub max_log_bytes: u32,
    /// Keys in the policy's key-value store.
    pub max_kv_keys: u32,
    /// Bytes of one key plus its value.
    pub max_kv_entry_bytes: u32,
    /// Longest timeout a step may ask for; a plan with a longer one is refused.
    pub max_step_timeout_ms: u32,
    /// Longest delay a timer may be armed for; a plan with a longer one is refused.
    pub max_timer_ms: u32,
    /// Bytes of text and lists the policy may hand the host in one transfer: one query or
    /// log call's arguments, one key-value write, the plan or error it returns. More fails the
    /// call. Enforced while wasmtime copies the data out of the sandbox, so an oversized (or
    /// many times aliased) string never reaches the host's memory.
    pub max_text_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline_ms: 50,
            memory_mib: 16,
            max_plan_steps: 64,
            max_log_messages: 100,
            max_log_bytes: 16 * 1024,
            max_kv_keys: 256,
            max_kv_entry_bytes: 4096,
            max_step_timeout_ms: 3_600_000,
            max_timer_ms: 86_400_000,
            max_text_bytes: 256 * 1024,
        }
    }
}

/// What happens when a call into a policy traps, times out, overflows or is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Fail closed: no action, and an operator alert (journaled, logged at error).
    #[default]
    Alert,
    /// No action, logged at warn only.
    Log,
}

/// One configured policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// The operator's name for this policy (unique in the config).
    pub name: String,
    /// The `.wasm` file (core module or component), absolute or relative to the config file.
    pub module: PathBuf,
    /// What it may touch.
    pub grants: Grants,
    /// Its settings, handed to `init` as JSON.
    pub settings: serde_json::Value,
    /// Bounds on each call.
    pub limits: Limits,
    /// What a failed call leads to.
    pub on_failure: FailureMode,
}

/// A shared address that moves with a CARP vhid (ucarp or keepalived on Linux): the ucarp hook
/// maps `(interface, address)` to the vhid, and at startup the vhid counts as master on this
/// host if the address is configured on the interface. A `[[carp]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CarpAddress {
    /// The vhid policies know the address by (ucarp's `--vhid`), 1 to 255.
    pub vhid: u8,
    /// The interface the address is added to.
    pub interface: String,
    /// The shared address (ucarp's `--addr`).
    pub address: IpAddr,
    /// FreeBSD: the vhid's advskew as configured, which lifting a demotion restores (a
    /// demotion sets [`DEMOTED_ADVSKEW`]): 0 to 239, default 0.
    #[serde(default)]
    pub advskew: u8,
    /// keepalived: the `track_file` Haven writes to demote the instance (`1`) and to lift the
    /// demotion (`0`). Without it, on Linux, the vhid is ucarp's (demoted with `SIGUSR2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalived_track_file: Option<PathBuf>,
}

/// The advskew a FreeBSD `demote-carp` step sets: carp(4)'s largest, `CARP_MAXSKEW` in
/// sys/netinet/ip_carp.h. A backup advertising it is the last to take the address.
pub const DEMOTED_ADVSKEW: u8 = 240;

/// A whole config.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Policies in the order they are consulted for each event (`[[policy]]`).
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// How the daemon runs (`[daemon]`).
    pub daemon: DaemonConfig,
    /// Which event sources it reads (`[sources.*]`).
    pub sources: SourcesConfig,
    /// Shared addresses that move with CARP vhids (ucarp/keepalived on Linux), `[[carp]]`.
    pub carp: Vec<CarpAddress>,
    /// How the FreeBSD and Linux executors act (`[executor]`).
    pub executor: ExecutorConfig,
    /// The link to the other host's havend (`[peer]`); none: this host knows nothing of it.
    pub peer: Option<PeerConfig>,
    /// The etcd cluster that arbitrates which host may serve (`[witness]`); none: each host
    /// decides with what it and its peer know.
    pub witness: Option<WitnessConfig>,
    /// Where havend serves Prometheus metrics (`[metrics]`); none: it does not.
    pub metrics: Option<MetricsConfig>,
}

/// The `[peer]` table: where the other host's havend listens, where this one listens, and the
/// keys that authenticate both (`havenctl peer-keys` writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerConfig {
    /// The other host's address and port, e.g. `10.0.0.2:7420` (a name is looked up on every
    /// connection attempt).
    pub address: String,
    /// Where this havend accepts the peer's connection: `0.0.0.0:7420` by default.
    pub listen: std::net::SocketAddr,
    /// This host's key file: its private key and the peer's public key.
    pub key_file: PathBuf,
    /// How often facts are sent when nothing changes: 1000 ms, 100 to 60000.
    pub heartbeat_ms: u32,
    /// Silence after which the link counts as down: 3500 ms, more than twice the heartbeat.
    pub timeout_ms: u32,
}

/// The peer link's default port.
pub const DEFAULT_PEER_PORT: u16 = 7420;

/// The `[daemon]` table: where `havend` keeps things and how much of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// The journal and the policies' key-value stores: `/var/db/haven` on FreeBSD,
    /// `/var/lib/haven` elsewhere.
    pub state_dir: PathBuf,
    /// The control socket's folder: `/var/run/haven`.
    pub control_dir: PathBuf,
    /// What carries out accepted plans: [`ExecutorKind::Auto`].
    pub executor: ExecutorKind,
    /// Events that may wait for the policies before new ones are dropped and counted: 1024,
    /// at least 1.
    pub queue_capacity: usize,
    /// Size at which a journal file is rotated: 8 MiB, at least 4096.
    pub journal_max_bytes: u64,
    /// Rotated journal files kept: 4.
    pub journal_keep_files: usize,
    /// Whether each decision's journal entry records what the call saw (the machine and the
    /// policy's store), so that `havenctl replay` and `deploy` can decide it again with another
    /// module: on.
    pub journal_inputs: bool,
    /// How many recent decisions `havenctl status` shows: 20.
    pub decisions_kept: usize,
    /// The address space a compiler process may use, in MiB: 2048, at least 256. Each policy
    /// module is compiled in a process of its own under this limit, so a module that costs
    /// more fails alone.
    pub compile_memory_mib: u64,
}

/// The default state folder of the platform this was built for.
fn default_state_dir() -> PathBuf {
    if cfg!(target_os = "freebsd") {
        PathBuf::from("/var/db/haven")
    } else {
        PathBuf::from("/var/lib/haven")
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: default_state_dir(),
            control_dir: PathBuf::from("/var/run/haven"),
            executor: ExecutorKind::Auto,
            queue_capacity: 1024,
            journal_max_bytes: 8 * 1024 * 1024,
            journal_keep_files: 4,
            journal_inputs: true,
            decisions_kept: 20,
            compile_memory_mib: 2048,
        }
    }
}

/// What carries out accepted plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// The one for the platform the daemon was built for (see [`ExecutorKind::resolve`]).
    #[default]
    Auto,
    /// Runs nothing: every step succeeds in the daemon's model only, and the journal shows
    /// what would have run (monitor mode).
    DryRun,
    /// FreeBSD's commands.
    Freebsd,
    /// Linux's commands.
    Linux,
}

impl ExecutorKind {
    /// [`ExecutorKind::Auto`] made concrete: [`ExecutorKind::Freebsd`] on FreeBSD,
    /// [`ExecutorKind::Linux`] on Linux, [`ExecutorKind::DryRun`] anywhere else. Any other kind
    /// is returned as it is.
    pub fn resolve(self) -> ExecutorKind {
        match self {
            ExecutorKind::Auto if cfg!(target_os = "freebsd") => ExecutorKind::Freebsd,
            ExecutorKind::Auto if cfg!(target_os = "linux") => ExecutorKind::Linux,
            ExecutorKind::Auto => ExecutorKind::DryRun,
            other => other,
        }
    }
}

/// The `[sources]` table: which event sources run. A source runs only if its table is present.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourcesConfig {
    /// FreeBSD's devd events (CARP, HAST hooks, devices), `[sources.devd]`.
    pub devd: Option<DevdSource>,
    /// HAST status from polling `hastctl list`, `[sources.hastctl]`.
    pub hastctl: Option<HastctlSource>,
    /// keepalived's VRRP transitions from its `notify_fifo`, `[sources.keepalived]`.
    pub keepalived: Option<KeepalivedSource>,
}

/// `[sources.devd]`: devd's seqpacket socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DevdSource {
    /// The socket: `/var/run/devd.seqpacket.pipe`.
    pub socket: PathBuf,
}

impl Default for DevdSource {
    fn default() -> Self {
        DevdSource {
            socket: PathBuf::from("/var/run/devd.seqpacket.pipe"),
        }
    }
}

/// `[sources.hastctl]`: how `hastctl list` is polled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HastctlSource {
    /// The program: `/sbin/hastctl`.
    pub program: PathBuf,
    /// Time between the end of one run and the start of the next: 2000 ms, at least 10.
    pub interval_ms: u64,
    /// A run that takes longer is killed and counts as failed: 10000 ms, at least 1.
    pub timeout_ms: u64,
}

impl Default for HastctlSource {
    fn default() -> Self {
        HastctlSource {
            program: PathBuf::from("/sbin/hastctl"),
            interval_ms: 2000,
            timeout_ms: 10_000,
        }
    }
}

/// `[sources.keepalived]`: keepalived's `notify_fifo` and what its names stand for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeepalivedSource {
    /// The FIFO keepalived's `notify_fifo` names (required).
    pub fifo: PathBuf,
    /// VRRP instance (or sync group) names as keepalived writes them, and the CARP vhid and
    /// interface policies know each by. Several names may stand for one vhid (a sync group and
    /// its instances); a vhid always stands for one interface.
    pub instances: BTreeMap<String, CarpInstance>,
}

/// The CARP vhid and interface a keepalived VRRP instance stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CarpInstance {
    /// The vhid, 1 to 255.
    pub vhid: u8,
    /// The interface.
    pub interface: String,
}

/// The action kinds ([`crate::Action::kind`]) of the steps that act on the system, each with a
/// default timeout in `[executor.timeouts-ms]`: the timeout of a step that names none.
pub const STEP_KINDS: [&str; 9] = [
    "hast-role",
    "wait-device",
    "wait-worker-gone",
    "fsck",
    "mount",
    "unmount",
    "service",
    "demote-carp",
    "lift-carp-demotion",
];

/// What `[executor.retries]` may name: the steps that are safe to try again after a failed
/// command, because each attempt first checks whether the goal holds by now (a role already
/// taken, a filesystem already (un)mounted, a service already running or stopped). fsck, the
/// waits (they wait until their timeout anyway) and `service restart` are not among them.
pub const RETRY_KINDS: [&str; 5] = [
    "hast-role",
    "mount",
    "unmount",
    "service-start",
    "service-stop",
];

/// The most extra attempts `[executor.retries]` may give a step.
pub const MAX_RETRIES: u32 = 5;

/// Who answers `hast-role` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// FreeBSD's HAST: `hastctl role <role> <res>`, asked with `hastctl list <res>` (on Linux,
    /// a `hastctl`-compatible program at the configured path).
    #[default]
    Hast,
    /// DRBD (Linux): `drbdadm primary|secondary <res>`, asked with `drbdadm role <res>`.
    Drbd,
}

/// Which service manager `service` steps go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceManagerKind {
    /// rc(8) on FreeBSD; on Linux systemd when it runs (`/run/systemd/system` is a
    /// directory), else SysV init scripts.
    #[default]
    Auto,
    /// FreeBSD's rc(8): `service <name> onestart|onestop|onerestart|onestatus`.
    Rc,
    /// `systemctl start|stop|restart <name>`, `systemctl is-active --quiet <name>`.
    Systemd,
    /// Init scripts: `service <name> start|stop|restart|status`.
    Sysv,
}

/// `[executor.tools]`: where the programs the executors run are. Each is an absolute path;
/// `None` means the default of the platform the executor acts on:
///
/// | tool | FreeBSD | Linux |
/// |---|---|---|
/// | `hastctl` | `/sbin/hastctl` | `/usr/local/sbin/hastctl` |
/// | `drbdadm` | (no DRBD) | `/usr/sbin/drbdadm` |
/// | `mount` | `/sbin/mount` | `/usr/bin/mount` |
/// | `umount` | `/sbin/umount` | `/usr/bin/umount` |
/// | `fsck` | `/sbin/fsck` | `/usr/sbin/fsck` |
/// | `service` | `/usr/sbin/service` | `/usr/sbin/service` |
/// | `systemctl` | (no systemd) | `/usr/bin/systemctl` |
/// | `ps` | `/bin/ps` | (not used: `/proc`) |
/// | `ifconfig` | `/sbin/ifconfig` | (not used) |
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecutorTools {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hastctl: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drbdadm: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub umount: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsck: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemctl: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ps: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifconfig: Option<PathBuf>,
}

/// The `[executor]` table: how the FreeBSD and Linux executors act (the dry-run executor
/// ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecutorConfig {
    /// Who answers `hast-role` steps: [`StorageKind::Hast`].
    pub storage: StorageKind,
    /// How services are started, stopped and asked: [`ServiceManagerKind::Auto`].
    pub service_manager: ServiceManagerKind,
    /// Where the programs are (`None`: the platform's default).
    pub tools: ExecutorTools,
    /// The timeout of a step that names none, by action kind: every kind of [`STEP_KINDS`].
    pub timeouts_ms: BTreeMap<String, u64>,
    /// Extra attempts after a failed command, by [`RETRY_KINDS`] entry: every one of them.
    pub retries: BTreeMap<String, u32>,
}

impl ExecutorConfig {
    /// The default timeouts: hast-role 30 s, wait-device 30 s, wait-worker-gone 10 s, fsck
    /// 10 min, mount 60 s, unmount 60 s, service 120 s, demote-carp and lift-carp-demotion
    /// 10 s.
    pub fn default_timeouts_ms() -> BTreeMap<String, u64> {
        let defaults: [u64; 9] = [
            30_000, 30_000, 10_000, 600_000, 60_000, 60_000, 120_000, 10_000, 10_000,
        ];
        STEP_KINDS
            .iter()
            .zip(defaults)
            .map(|(kind, ms)| ((*kind).to_owned(), ms))
            .collect()
    }

    /// The default retries: 1 for hast-role and unmount, 0 for the others.
    pub fn default_retries() -> BTreeMap<String, u32> {
        RETRY_KINDS
            .iter()
            .map(|kind| {
                let retries = u32::from(matches!(*kind, "hast-role" | "unmount"));
                ((*kind).to_owned(), retries)
            })
            .collect()
    }

    /// The timeout of a step of action kind `kind` that names none; `None` for kinds without
    /// one (timers and alerts, which run nothing).
    pub fn timeout_ms(&self, kind: &str) -> Option<u64> {
        self.timeouts_ms.get(kind).copied()
    }

    /// The extra attempts for `kind` (an entry of [`RETRY_KINDS`]); 0 for anything else.
    pub fn retries(&self, kind: &str) -> u32 {
        self.retries.get(kind).copied().unwrap_or(0)
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            storage: StorageKind::default(),
            service_manager: ServiceManagerKind::default(),
            tools: ExecutorTools::default(),
            timeouts_ms: ExecutorConfig::default_timeouts_ms(),
            retries: ExecutorConfig::default_retries(),
        }
    }
}

/// A config that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or a description of where the text came from).
    pub path: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    sources: RawSources,
    #[serde(default)]
    carp: Vec<RawCarp>,
    #[serde(default)]
    executor: RawExecutor,
    #[serde(default)]
    peer: Option<Spanned<RawPeer>>,
    #[serde(default)]
    witness: Option<Spanned<witness::RawWitness>>,
    #[serde(default)]
    metrics: Option<metrics::RawMetrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawPeer {
    address: Spanned<String>,
    listen: Option<Spanned<String>>,
    key_file: Spanned<String>,
    heartbeat_ms: Option<Spanned<u32>>,
    timeout_ms: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<Spanned<String>>,
    control_dir: Option<Spanned<String>>,
    executor: Option<ExecutorKind>,
    queue_capacity: Option<Spanned<usize>>,
    journal_max_bytes: Option<Spanned<u64>>,
    journal_keep_files: Option<usize>,
    journal_inputs: Option<bool>,
    decisions_kept: Option<usize>,
    compile_memory_mib: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawSources {
    devd: Option<RawDevd>,
    hastctl: Option<RawHastctl>,
    keepalived: Option<Spanned<RawKeepalived>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawDevd {
    socket: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawHastctl {
    program: Option<Spanned<String>>,
    interval_ms: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawKeepalived {
    fifo: Spanned<String>,
    #[serde(default)]
    instances: BTreeMap<Spanned<String>, RawInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawInstance {
    vhid: Spanned<u8>,
    interface: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawCarp {
    vhid: Spanned<u8>,
    interface: Spanned<String>,
    address: Spanned<IpAddr>,
    #[serde(default)]
    advskew: Option<Spanned<u8>>,
    #[serde(default)]
    keepalived_track_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    module: Spanned<String>,
    #[serde(default)]
    grants: Option<Spanned<Grants>>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: Option<Spanned<toml::Table>>,
    #[serde(default)]
    on_failure: FailureMode,
}

impl Config {
    /// Read and check a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {error}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parse and check config text; relative module paths are resolved against `path`'s folder.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error_at = |span: Option<Range<usize>>, message: String| ConfigError {
            path: path.to_owned(),
            line: span.map(|span| line_of(text, span.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| error_at(error.span(), error.message().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut policies = Vec::with_capacity(raw.policy.len());
        let mut owners = ResourceOwners::default();
        for spanned in raw.policy {
            let span = spanned.span();
            let raw_policy = spanned.into_inner();
            let policy = build_policy(raw_policy, &raw.limits, base, &mut owners)
                .map_err(|(span, message)| error_at(Some(span), message))?;
            if policies
                .iter()
                .any(|p: &PolicyConfig| p.name == policy.name)
            {
                return Err(error_at(
                    Some(span),
                    format!("policy `{}` is defined twice", policy.name),
                ));
            }
            policies.push(policy);
        }
        let located = |(span, message): (Range<usize>, String)| error_at(Some(span), message);
        let daemon = build_daemon(raw.daemon).map_err(located)?;
        let carp = build_carp(raw.carp).map_err(located)?;
        check_carp_grants(&policies, &carp).map_err(|message| error_at(None, message))?;
        let sources = build_sources(raw.sources, &carp).map_err(located)?;
        let executor = build_executor(raw.executor).map_err(located)?;
        let peer = raw.peer.map(build_peer).transpose().map_err(located)?;
        let witness = raw
            .witness
            .map(witness::build_witness)
            .transpose()
            .map_err(located)?;
        let metrics = raw
            .metrics
            .map(metrics::build_metrics)
            .transpose()
            .map_err(located)?;
        Ok(Config {
            policies,
            daemon,
            sources,
            carp,
            executor,
            peer,
            witness,
            metrics,
        })
    }

    /// The `[[carp]]` entries as the ucarp hook looks them up: `(interface, address)` to vhid,
    /// the address written as ucarp writes it (IPv4 as a dotted quad). The map
    /// `haven_sources::ucarp_to_event` takes.
    pub fn ucarp_vhids(&self) -> BTreeMap<(String, String), u8> {
        self.carp
            .iter()
            .map(|carp| {
                (
                    (carp.interface.clone(), carp.address.to_string()),
                    carp.vhid,
                )
            })
            .collect()
    }

    /// `[sources.keepalived]`'s instances as the `notify_fifo` reader looks them up: name to
    /// `(vhid, interface)`; empty without that table. The map `haven_daemon::sources::keepalived_fifo`
    /// takes.
    pub fn keepalived_instances(&self) -> BTreeMap<String, (u8, String)> {
        self.sources
            .keepalived
            .iter()
            .flat_map(|keepalived| &keepalived.instances)
            .map(|(name, instance)| (name.clone(), (instance.vhid, instance.interface.clone())))
            .collect()
    }
}

/// The 1-based line of a byte offset; a span that starts on the white space before a table
/// header counts from the header.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let skipped = text[offset..].len() - text[offset..].trim_start().len();
    text[..offset + skipped].matches('\n').count() + 1
}

type Located<T> = Result<T, (Range<usize>, String)>;

/// Which policy was granted each exclusive thing first: two policies driving the same HAST
/// resource, mountpoint or service would fight over it.
#[derive(Default)]
struct ResourceOwners(BTreeMap<String, String>);

impl ResourceOwners {
    fn claim(&mut self, thing: String, policy: &str) -> Result<(), String> {
        match self.0.get(&thing) {
            Some(owner) => Err(format!(
                "policy `{policy}`: {thing} is already granted to policy `{owner}`"
            )),
            None => {
                self.0.insert(thing, policy.to_owned());
                Ok(())
            }
        }
    }
}

fn build_policy(
    raw: RawPolicy,
    default_limits: &toml::Table,
    base: &Path,
    owners: &mut ResourceOwners,
) -> Located<PolicyConfig> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    check_name("policy name", &name).map_err(|message| (name_span.clone(), message))?;

    let module = raw.module.into_inner();
    if module.is_empty() {
        return Err((name_span, format!("policy `{name}`: module is empty")));
    }
    let module = base.join(module);

    let (grants_span, grants) = split_spanned(raw.grants, &name_span);
    check_grants(&grants, &name, owners).map_err(|message| (grants_span, message))?;

    let (limits_span, own_limits) = split_spanned(raw.limits, &name_span);
    let mut limits = default_limits.clone();
    limits.extend(own_limits);
    let limits: Limits = limits.try_into().map_err(|error: toml::de::Error| {
        (
            limits_span,
            format!("policy `{name}`: limits: {}", error.message()),
        )
    })?;

    if let Some(key) = non_finite_float(&raw.settings) {
        return Err((
            name_span,
            format!(
                "policy `{name}`: settings: `{key}` is nan or infinite, which JSON cannot carry \
                 to the policy; write a finite number"
            ),
        ));
    }
    let settings = serde_json::to_value(&raw.settings).map_err(|error| {
        (
            name_span,
            format!("policy `{name}`: settings cannot be passed on: {error}"),
        )
    })?;

    Ok(PolicyConfig {
        name,
        module,
        grants,
        settings,
        limits,
        on_failure: raw.on_failure,
    })
}

/// An optional table's value and span; a missing one is empty and points at the policy's name.
fn split_spanned<T: Default>(
    value: Option<Spanned<T>>,
    fallback: &Range<usize>,
) -> (Range<usize>, T) {
    match value {
        Some(spanned) => (spanned.span(), spanned.into_inner()),
        None => (fallback.clone(), T::default()),
    }
}

/// The dotted key of the first `nan` or `inf` in `table`, if any. serde_json would turn them
/// into `null` without a word, and the policy would read a setting the operator never wrote.
fn non_finite_float(table: &toml::Table) -> Option<String> {
    fn walk(value: &toml::Value, key: String) -> Option<String> {
        match value {
            toml::Value::Float(float) if !float.is_finite() => Some(key),
            toml::Value::Table(table) => table
                .iter()
                .find_map(|(name, value)| walk(value, format!("{key}.{name}"))),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, value)| walk(value, format!("{key}[{index}]"))),
            _ => None,
        }
    }
    table
        .iter()
        .find_map(|(name, value)| walk(value, name.clone()))
}

fn check_grants(grants: &Grants, policy: &str, owners: &mut ResourceOwners) -> Result<(), String> {
    let in_policy = |message: String| format!("policy `{policy}`: grants: {message}");
    for resource in &grants.hast_resources {
        check_hast_argument("HAST resource", resource).map_err(in_policy)?;
        owners.claim(format!("HAST resource `{resource}`"), policy)?;
    }
    for service in &grants.services {
        check_name("service", service).map_err(in_policy)?;
        owners.claim(format!("service `{service}`"), policy)?;
    }
    for vhid in &grants.carp_vhids {
        if *vhid == 0 {
            return Err(in_policy(
                "carp-vhids: 0 is not a vhid (1 to 255)".to_owned(),
            ));
        }
        owners.claim(format!("CARP vhid {vhid}"), policy)?;
    }
    for mount in &grants.mounts {
        check_path("device", &mount.device).map_err(in_policy)?;
        check_path("mountpoint", &mount.mountpoint).map_err(in_policy)?;
        check_fstype(&mount.fstype).map_err(in_policy)?;
        owners.claim(format!("mountpoint `{}`", mount.mountpoint), policy)?;
    }
    Ok(())
}

/// Longest unix socket path: `sun_path` is 104 bytes on FreeBSD (108 on Linux), with the NUL.
const MAX_SOCKET_PATH: usize = 103;

/// An absolute path checked with [`check_path`], or the default.
fn path_or(value: Option<Spanned<String>>, what: &str, default: PathBuf) -> Located<PathBuf> {
    match value {
        Some(spanned) => {
            check_path(what, spanned.get_ref()).map_err(|message| (spanned.span(), message))?;
            Ok(PathBuf::from(spanned.into_inner()))
        }
        None => Ok(default),
    }
}

/// A number at least `min`, or the default.
fn at_least<T: Copy + PartialOrd + fmt::Display>(
    value: Option<Spanned<T>>,
    what: &str,
    min: T,
    default: T,
) -> Located<T> {
    match value {
        Some(spanned) if *spanned.get_ref() < min => Err((
            spanned.span(),
            format!("{what} is {}, it must be at least {min}", spanned.get_ref()),
        )),
        Some(spanned) => Ok(spanned.into_inner()),
        None => Ok(default),
    }
}

/// The control socket's file name in `control-dir` (`haven_daemon::control::SOCKET_NAME`).
const CONTROL_SOCKET_NAME: &str = "havend.sock";

/// `control-dir`: a path, short enough for `<dir>/havend.sock` to be a unix socket path.
fn control_dir(value: Option<Spanned<String>>, default: PathBuf) -> Located<PathBuf> {
    let what = "daemon: control-dir";
    if let Some(dir) = &value {
        let longest = MAX_SOCKET_PATH - CONTROL_SOCKET_NAME.len() - 1;
        if dir.get_ref().len() > longest {
            return Err((
                dir.span(),
                format!(
                    "{what} `{}` is longer than {longest} bytes: the control socket in it would \
                     be longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes)",
                    dir.get_ref()
                ),
            ));
        }
    }
    path_or(value, what, default)
}

fn build_daemon(raw: RawDaemon) -> Located<DaemonConfig> {
    let default = DaemonConfig::default();
    Ok(DaemonConfig {
        state_dir: path_or(raw.state_dir, "daemon: state-dir", default.state_dir)?,
        control_dir: control_dir(raw.control_dir, default.control_dir)?,
        executor: raw.executor.unwrap_or(default.executor),
        queue_capacity: at_least(
            raw.queue_capacity,
            "daemon: queue-capacity",
            1,
            default.queue_capacity,
        )?,
        journal_max_bytes: at_least(
            raw.journal_max_bytes,
            "daemon: journal-max-bytes",
            4096,
            default.journal_max_bytes,
        )?,
        journal_keep_files: raw.journal_keep_files.unwrap_or(default.journal_keep_files),
        journal_inputs: raw.journal_inputs.unwrap_or(default.journal_inputs),
        decisions_kept: raw.decisions_kept.unwrap_or(default.decisions_kept),
        compile_memory_mib: at_least(
            raw.compile_memory_mib,
            "daemon: compile-memory-mib",
            256,
            default.compile_memory_mib,
        )?,
    })
}

fn build_peer(raw: Spanned<RawPeer>) -> Located<PeerConfig> {
    let span = raw.span();
    let raw = raw.into_inner();
    let address = raw.address;
    let valid_address = address
        .get_ref()
        .rsplit_once(':')
        .is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.starts_with('-')
                && host.len() <= 255
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|port| port != 0)
        });
    if !valid_address {
        return Err((
            address.span(),
            format!(
                "peer: address `{}` must be host:port (e.g. 10.0.0.2:{DEFAULT_PEER_PORT})",
                address.get_ref()
            ),
        ));
    }
    let listen = match raw.listen {
        Some(listen) => listen.get_ref().parse().map_err(|_| {
            (
                listen.span(),
                format!(
                    "peer: listen `{}` must be an IP address and port (e.g. 0.0.0.0:{DEFAULT_PEER_PORT})",
                    listen.get_ref()
                ),
            )
        })?,
        None => std::net::SocketAddr::from(([0, 0, 0, 0], DEFAULT_PEER_PORT)),
    };
    let key_file = path_or(Some(raw.key_file), "peer: key-file", PathBuf::new())?;
    let heartbeat_ms = at_least(raw.heartbeat_ms, "peer: heartbeat-ms", 100, 1000)?;
    if heartbeat_ms > 60_000 {
        return Err((
            span,
            format!("peer: heartbeat-ms is {heartbeat_ms}, at most 60000"),
        ));
    }
    let default_timeout = heartbeat_ms.saturating_mul(3).saturating_add(500);
    let timeout_ms = match raw.timeout_ms {
        Some(timeout) if *timeout.get_ref() <= heartbeat_ms.saturating_mul(2) => {
            return Err((
                timeout.span(),
                format!(
                    "peer: timeout-ms is {}; it must be more than twice heartbeat-ms ({heartbeat_ms}), \
                     or one late heartbeat takes the link down",
                    timeout.get_ref()
                ),
            ));
        }
        Some(timeout) => timeout.into_inner(),
        None => default_timeout,
    };
    Ok(PeerConfig {
        address: address.into_inner(),
        listen,
        key_file,
        heartbeat_ms,
        timeout_ms,
    })
}

/// A CARP vhid: 1 to 255 (0 is not a vhid).
fn check_vhid(what: &str, vhid: &Spanned<u8>) -> Located<u8> {
    match *vhid.get_ref() {
        0 => Err((
            vhid.span(),
            format!("{what}: vhid 0 is not a vhid (1 to 255)"),
        )),
        vhid => Ok(vhid),
    }
}

/// A network interface name as the kernels allow it: 1 to 15 bytes (IFNAMSIZ is 16 with the
/// NUL on FreeBSD and Linux), printable ASCII without spaces, not starting with `-`.
fn check_interface(what: &str, name: Spanned<String>) -> Located<String> {
    let valid = !name.get_ref().is_empty()
        && name.get_ref().len() <= 15
        && !name.get_ref().starts_with('-')
        && name.get_ref().bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(name.into_inner())
    } else {
        Err((
            name.span(),
            format!(
                "{what}: interface `{}` is not an interface name (1-15 printable ASCII \
                 characters, no spaces, not starting with -)",
                name.get_ref()
            ),
        ))
    }
}

fn build_carp(raw: Vec<RawCarp>) -> Located<Vec<CarpAddress>> {
    let mut carp: Vec<CarpAddress> = Vec::with_capacity(raw.len());
    for entry in raw {
        let vhid = check_vhid("carp", &entry.vhid)?;
        let interface = check_interface("carp", entry.interface)?;
        let address = *entry.address.get_ref();
        if address.is_unspecified() || address.is_multicast() {
            return Err((
                entry.address.span(),
                format!("carp: address {address} cannot be a shared address"),
            ));
        }
        if carp.iter().any(|other| other.vhid == vhid) {
            return Err((
                entry.vhid.span(),
                format!("carp: vhid {vhid} is in another [[carp]] entry already"),
            ));
        }
        if carp
            .iter()
            .any(|other| other.interface == interface && other.address == address)
        {
            return Err((
                entry.address.span(),
                format!(
                    "carp: address {address} on interface `{interface}` is in another [[carp]] \
                     entry already"
                ),
            ));
        }
        let advskew = match entry.advskew {
            Some(advskew) if *advskew.get_ref() >= DEMOTED_ADVSKEW => {
                return Err((
                    advskew.span(),
                    format!(
                        "carp: advskew {} is not below {DEMOTED_ADVSKEW}, the advskew a demotion \
                         sets",
                        advskew.get_ref()
                    ),
                ));
            }
            Some(advskew) => advskew.into_inner(),
            None => 0,
        };
        let keepalived_track_file = entry
            .keepalived_track_file
            .map(|path| path_or(Some(path), "carp: keepalived-track-file", PathBuf::new()))
            .transpose()?;
        carp.push(CarpAddress {
            vhid,
            interface,
            address,
            advskew,
            keepalived_track_file,
        });
    }
    Ok(carp)
}

/// A vhid a policy may demote must have a `[[carp]]` entry: the executor acts on its
/// interface (and its ucarp process or keepalived track file).
fn check_carp_grants(policies: &[PolicyConfig], carp: &[CarpAddress]) -> Result<(), String> {
    for policy in policies {
        for vhid in &policy.grants.carp_vhids {
            if !carp.iter().any(|entry| entry.vhid == *vhid) {
                return Err(format!(
                    "policy `{}`: grants: carp-vhids: vhid {vhid} has no [[carp]] entry, which \
                     says the interface (and the address) a demotion acts on",
                    policy.name
                ));
            }
        }
    }
    Ok(())
}

fn build_sources(raw: RawSources, carp: &[CarpAddress]) -> Located<SourcesConfig> {
    let devd = match raw.devd {
        Some(devd) => {
            let default = DevdSource::default();
            let socket = match devd.socket {
                Some(socket) if socket.get_ref().len() > MAX_SOCKET_PATH => {
                    return Err((
                        socket.span(),
                        format!(
                            "sources.devd: socket `{}` is longer than a unix socket path may be \
                             ({MAX_SOCKET_PATH} bytes)",
                            socket.get_ref()
                        ),
                    ));
                }
                socket => path_or(socket, "sources.devd: socket", default.socket)?,
            };
            Some(DevdSource { socket })
        }
        None => None,
    };
    let hastctl = match raw.hastctl {
        Some(hastctl) => {
            let default = HastctlSource::default();
            Some(HastctlSource {
                program: path_or(hastctl.program, "sources.hastctl: program", default.program)?,
                interval_ms: at_least(
                    hastctl.interval_ms,
                    "sources.hastctl: interval-ms",
                    10,
                    default.interval_ms,
                )?,
                timeout_ms: at_least(
                    hastctl.timeout_ms,
                    "sources.hastctl: timeout-ms",
                    1,
                    default.timeout_ms,
                )?,
            })
        }
        None => None,
    };
    let keepalived = match raw.keepalived {
        Some(keepalived) => Some(build_keepalived(keepalived, carp)?),
        None => None,
    };
    Ok(SourcesConfig {
        devd,
        hastctl,
        keepalived,
    })
}

fn build_keepalived(
    spanned: Spanned<RawKeepalived>,
    carp: &[CarpAddress],
) -> Located<KeepalivedSource> {
    let table_span = spanned.span();
    let raw = spanned.into_inner();
    let fifo = path_or(Some(raw.fifo), "sources.keepalived: fifo", PathBuf::new())?;
    if raw.instances.is_empty() {
        return Err((
            table_span,
            "sources.keepalived: instances is empty: map each VRRP instance (or sync group) \
             name to a vhid and interface"
                .to_owned(),
        ));
    }
    // The interface each vhid stands for, from `[[carp]]` and the instances so far.
    let mut interfaces: BTreeMap<u8, String> = carp
        .iter()
        .map(|carp| (carp.vhid, carp.interface.clone()))
        .collect();
    let mut instances = BTreeMap::new();
    for (name, instance) in raw.instances {
        let name_span = name.span();
        let name = name.into_inner();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err((
                name_span,
                format!(
                    "sources.keepalived: instance name {name:?} is empty or has control characters"
                ),
            ));
        }
        let what = format!("sources.keepalived: instance `{name}`");
        let vhid = check_vhid(&what, &instance.vhid)?;
        let interface_span = instance.interface.span();
        let interface = check_interface(&what, instance.interface)?;
        match interfaces.get(&vhid) {
            Some(known) if *known != interface => {
                return Err((
                    interface_span,
                    format!(
                        "{what}: vhid {vhid} is on interface `{known}` elsewhere in the config, \
                         not `{interface}`"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                interfaces.insert(vhid, interface.clone());
            }
        }
        instances.insert(name, CarpInstance { vhid, interface });
    }
    Ok(KeepalivedSource { fifo, instances })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawExecutor {
    storage: Option<StorageKind>,
    service_manager: Option<ServiceManagerKind>,
    #[serde(default)]
    tools: RawTools,
    #[serde(default)]
    timeouts_ms: BTreeMap<Spanned<String>, Spanned<u64>>,
    #[serde(default)]
    retries: BTreeMap<Spanned<String>, Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTools {
    hastctl: Option<Spanned<String>>,
    drbdadm: Option<Spanned<String>>,
    mount: Option<Spanned<String>>,
    umount: Option<Spanned<String>>,
    fsck: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    systemctl: Option<Spanned<String>>,
    ps: Option<Spanned<String>>,
    ifconfig: Option<Spanned<String>>,
}

/// An optional tool path, checked with [`check_path`].
fn tool(value: Option<Spanned<String>>, name: &str) -> Located<Option<PathBuf>> {
    value
        .map(|path| {
            path_or(
                Some(path),
                &format!("executor.tools: {name}"),
                PathBuf::new(),
            )
        })
        .transpose()
}

fn build_executor(raw: RawExecutor) -> Located<ExecutorConfig> {
    let tools = raw.tools;
    let tools = ExecutorTools {
        hastctl: tool(tools.hastctl, "hastctl")?,
        drbdadm: tool(tools.drbdadm, "drbdadm")?,
        mount: tool(tools.mount, "mount")?,
        umount: tool(tools.umount, "umount")?,
        fsck: tool(tools.fsck, "fsck")?,
        service: tool(tools.service, "service")?,
        systemctl: tool(tools.systemctl, "systemctl")?,
        ps: tool(tools.ps, "ps")?,
        ifconfig: tool(tools.ifconfig, "ifconfig")?,
    };
    let mut timeouts_ms = ExecutorConfig::default_timeouts_ms();
    for (kind, ms) in raw.timeouts_ms {
        if !STEP_KINDS.contains(&kind.get_ref().as_str()) {
            return Err((
                kind.span(),
                format!(
                    "executor.timeouts-ms: `{}` is not an action kind that runs anything ({})",
                    kind.get_ref(),
                    STEP_KINDS.join(", ")
                ),
            ));
        }
        let what = format!("executor.timeouts-ms: {}", kind.get_ref());
        let ms = at_least(Some(ms), &what, 1, 0)?;
        timeouts_ms.insert(kind.into_inner(), ms);
    }
    let mut retries = ExecutorConfig::default_retries();
    for (kind, count) in raw.retries {
        if !RETRY_KINDS.contains(&kind.get_ref().as_str()) {
            return Err((
                kind.span(),
                format!(
                    "executor.retries: `{}` is not safe to retry (only {} are)",
                    kind.get_ref(),
                    RETRY_KINDS.join(", ")
                ),
            ));
        }
        if *count.get_ref() > MAX_RETRIES {
            return Err((
                count.span(),
                format!(
                    "executor.retries: {} is {}, it may be at most {MAX_RETRIES}",
                    kind.get_ref(),
                    count.get_ref()
                ),
            ));
        }
        retries.insert(kind.into_inner(), count.into_inner());
    }
    Ok(ExecutorConfig {
        storage: raw.storage.unwrap_or_default(),
        service_manager: raw.service_manager.unwrap_or_default(),
        tools,
        timeouts_ms,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[limits]
deadline-ms = 20

[[policy]]
name = "mysql"
module = "seed.wasm"

[policy.grants]
hast-resources = ["test"]
services = ["mysql-server"]
timers = 1
mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]

[policy.limits]
memory-mib = 8

[policy.settings]
vhid = 1
services = ["mysql-server"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/haven/haven.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn carp_vhids_need_a_carp_entry_one_owner_and_a_real_vhid() {
        let policy = |name: &str, vhids: &str| {
            format!(
                "[[policy]]\nname = \"{name}\"\nmodule = \"p.wasm\"\n[policy.grants]\n\
                 carp-vhids = {vhids}\n"
            )
        };
        let carp = |extra: &str| {
            format!("[[carp]]\nvhid = 1\ninterface = \"em0\"\naddress = \"192.0.2.1\"\n{extra}")
        };
        let good = parse(&format!(
            "{}{}",
            policy("a", "[1]"),
            carp("advskew = 100\n")
        ))
        .unwrap();
        assert_eq!(good.policies[0].grants.carp_vhids, [1].into());
        assert_eq!(good.carp[0].advskew, 100);
        for (text, wanted) in [
            (
                policy("a", "[1]"),
                "policy `a`: grants: carp-vhids: vhid 1 has no [[carp]] entry",
            ),
            (policy("a", "[0]"), "carp-vhids: 0 is not a vhid"),
            (
                format!("{}{}{}", policy("a", "[1]"), policy("b", "[1]"), carp("")),
                "policy `b`: CARP vhid 1 is already granted to policy `a`",
            ),
            (
                format!("{}{}", policy("a", "[1]"), carp("advskew = 240\n")),
                "carp: advskew 240 is not below 240",
            ),
        ] {
            let message = error(&text);
            assert!(message.contains(wanted), "{wanted:?} not in {message:?}");
        }
    }

    #[test]
    fn a_good_config_reads_whole() {
        let config = parse(GOOD).unwrap();
        let policy = &config.policies[0];
        assert_eq!(policy.module, Path::new("/etc/haven/seed.wasm"));
        assert_eq!(policy.limits.deadline_ms, 20);
        assert_eq!(policy.limits.memory_mib, 8);
        assert_eq!(
            policy.limits.max_plan_steps,
            Limits::default().max_plan_steps
        );
        assert_eq!(policy.settings["vhid"], 1);
        assert_eq!(policy.on_failure, FailureMode::Alert);
        assert!(policy.grants.hast_resources.contains("test"));
    }

    #[test]
    fn the_peer_table_reads_with_defaults_and_refuses_what_cannot_work() {
        let with_peer = |table: &str| parse(&format!("{GOOD}\n[peer]\n{table}"));
        let peer = with_peer("address = \"10.0.0.2:7420\"\nkey-file = \"/etc/haven/peer.key\"\n")
            .unwrap()
            .peer
            .unwrap();
        assert_eq!(peer.listen, "0.0.0.0:7420".parse().unwrap());
        assert_eq!((peer.heartbeat_ms, peer.timeout_ms), (1000, 3500));
        assert!(parse(GOOD).unwrap().peer.is_none(), "no [peer], no link");
        for (table, reason) in [
            (
                "address = \"10.0.0.2\"\nkey-file = \"/k\"",
                "must be host:port",
            ),
            ("address = \"-x:1\"\nkey-file = \"/k\"", "must be host:port"),
            ("address = \"h:0\"\nkey-file = \"/k\"", "must be host:port"),
            ("address = \"h:1\"\nkey-file = \"k\"", "absolute"),
            (
                "address = \"h:1\"\nkey-file = \"/k\"\nlisten = \"any\"",
                "listen",
            ),
            (
                "address = \"h:1\"\nkey-file = \"/k\"\nheartbeat-ms = 50",
                "at least 100",
            ),
            (
                "address = \"h:1\"\nkey-file = \"/k\"\ntimeout-ms = 2000",
                "more than twice",
            ),
            (
                "address = \"h:1\"\nkey-file = \"/k\"\ncolour = 1",
                "unknown field",
            ),
            ("key-file = \"/k\"", "missing field `address`"),
        ] {
            let error = with_peer(table).unwrap_err().to_string();
            assert!(error.contains(reason), "{table}: {error}");
        }
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let typo = GOOD.replace("timers = 1", "timerz = 1");
        assert!(
            error(&typo).starts_with("/etc/haven/haven.toml:12: unknown field `timerz`"),
            "{}",
            error(&typo)
        );

        let second = GOOD.to_owned()
            + "\n[[policy]]\nname = \"other\"\nmodule = \"x.wasm\"\n[policy.grants]\nhast-resources = [\"test\"]\n";
        let message = error(&second);
        assert!(
            message.contains(
                ":25: policy `other`: HAST resource `test` is already granted to policy `mysql`"
            ),
            "{message}"
        );

        let bad_path = GOOD.replace("/hast/test\"", "hast/test\"");
        assert!(error(&bad_path).contains("mountpoint `hast/test` is not an absolute path"));

        let injected = GOOD.replace(
            "[\"mysql-server\"]\ntimers",
            "[\"mysql; rm -rf /\"]\ntimers",
        );
        assert!(error(&injected).contains("service `mysql; rm -rf /` is not a valid name"));

        let bad_limit = GOOD.replace("memory-mib = 8", "memory-mib = \"lots\"");
        assert!(
            error(&bad_limit).contains("policy `mysql`: limits:"),
            "{}",
            error(&bad_limit)
        );

        let duplicate = GOOD.to_owned() + "\n[[policy]]\nname = \"mysql\"\nmodule = \"x.wasm\"\n";
        assert!(error(&duplicate).contains("policy `mysql` is defined twice"));
    }

    /// The whole daemon side, as in the module's example.
    const DAEMON: &str = r#"
[daemon]
state-dir = "/var/db/haven"
control-dir = "/var/run/haven"
executor = "auto"
queue-capacity = 1024
journal-max-bytes = 8388608
journal-keep-files = 4
decisions-kept = 20

[sources.devd]
socket = "/var/run/devd.seqpacket.pipe"

[sources.hastctl]
program = "/sbin/hastctl"
interval-ms = 2000
timeout-ms = 10000

[sources.keepalived]
fifo = "/run/keepalived/haven.fifo"
instances = { VI_1 = { vhid = 1, interface = "eth0" } }

[[carp]]
vhid = 1
interface = "eth0"
address = "192.168.1.50"
"#;

    /// The line (1-based) of the first occurrence of `needle` in `text`.
    fn line_with(text: &str, needle: &str) -> usize {
        line_of(text, text.find(needle).expect(needle))
    }

    /// The error for `text`, asserting that it names `line`.
    fn error_on_line(text: &str, line: usize) -> String {
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, Some(line), "{error}");
        error.to_string()
    }

    #[test]
    fn the_daemon_sections_read_whole() {
        let text = GOOD.to_owned() + DAEMON;
        let config = parse(&text).unwrap();
        assert_eq!(config.policies.len(), 1);
        assert_eq!(
            config.daemon,
            DaemonConfig {
                state_dir: PathBuf::from("/var/db/haven"),
                control_dir: PathBuf::from("/var/run/haven"),
                executor: ExecutorKind::Auto,
                queue_capacity: 1024,
                journal_max_bytes: 8 * 1024 * 1024,
                journal_keep_files: 4,
                journal_inputs: true,
                decisions_kept: 20,
                compile_memory_mib: 2048,
            }
        );
        assert_eq!(
            config.sources,
            SourcesConfig {
                devd: Some(DevdSource::default()),
                hastctl: Some(HastctlSource::default()),
                keepalived: Some(KeepalivedSource {
                    fifo: PathBuf::from("/run/keepalived/haven.fifo"),
                    instances: BTreeMap::from([(
                        "VI_1".to_owned(),
                        CarpInstance {
                            vhid: 1,
                            interface: "eth0".to_owned()
                        }
                    )]),
                }),
            }
        );
        assert_eq!(
            config.carp,
            [CarpAddress {
                vhid: 1,
                interface: "eth0".to_owned(),
                address: "192.168.1.50".parse().unwrap(),
                advskew: 0,
                keepalived_track_file: None,
            }]
        );
        assert_eq!(
            config.ucarp_vhids(),
            BTreeMap::from([(("eth0".to_owned(), "192.168.1.50".to_owned()), 1)])
        );
        assert_eq!(
            config.keepalived_instances(),
            BTreeMap::from([("VI_1".to_owned(), (1, "eth0".to_owned()))])
        );

        // The daemon can show it: kebab-case, as written.
        let shown = serde_json::to_value(&config).unwrap();
        assert_eq!(shown["daemon"]["executor"], "auto");
        assert_eq!(shown["daemon"]["queue-capacity"], 1024);
        assert_eq!(shown["sources"]["hastctl"]["interval-ms"], 2000);
        assert_eq!(shown["carp"][0]["address"], "192.168.1.50");
        assert_eq!(shown["policy"][0]["name"], "mysql");
    }

    #[test]
    fn absent_sections_are_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.daemon, DaemonConfig::default());
        assert_eq!(config.sources, SourcesConfig::default());
        assert!(config.sources.devd.is_none() && config.sources.hastctl.is_none());
        assert!(config.carp.is_empty());
        assert!(config.ucarp_vhids().is_empty());
        assert!(config.keepalived_instances().is_empty());
        let daemon = DaemonConfig::default();
        assert_eq!(daemon.queue_capacity, 1024);
        assert_eq!(daemon.journal_max_bytes, 8 * 1024 * 1024);
        assert_eq!(daemon.journal_keep_files, 4);
        assert_eq!(daemon.decisions_kept, 20);
        assert_eq!(daemon.control_dir, Path::new("/var/run/haven"));
        let state_dir = if cfg!(target_os = "freebsd") {
            "/var/db/haven"
        } else {
            "/var/lib/haven"
        };
        assert_eq!(daemon.state_dir, Path::new(state_dir));

        // Empty tables: the source runs with its defaults; the rest stay defaults.
        let config =
            parse("[daemon]\nexecutor = \"dry-run\"\n[sources.devd]\n[sources.hastctl]\n").unwrap();
        assert!(config.policies.is_empty());
        assert_eq!(
            config.daemon,
            DaemonConfig {
                executor: ExecutorKind::DryRun,
                ..DaemonConfig::default()
            }
        );
        assert_eq!(
            config.sources.devd.unwrap().socket,
            Path::new("/var/run/devd.seqpacket.pipe")
        );
        assert_eq!(config.sources.hastctl, Some(HastctlSource::default()));
        assert!(config.sources.keepalived.is_none());
    }

    #[test]
    fn executor_kinds() {
        for (text, kind) in [
            ("auto", ExecutorKind::Auto),
            ("dry-run", ExecutorKind::DryRun),
            ("freebsd", ExecutorKind::Freebsd),
            ("linux", ExecutorKind::Linux),
        ] {
            let config = parse(&format!("[daemon]\nexecutor = \"{text}\"\n")).unwrap();
            assert_eq!(config.daemon.executor, kind);
        }
        for kind in [
            ExecutorKind::DryRun,
            ExecutorKind::Freebsd,
            ExecutorKind::Linux,
        ] {
            assert_eq!(kind.resolve(), kind);
        }
        let auto = if cfg!(target_os = "freebsd") {
            ExecutorKind::Freebsd
        } else if cfg!(target_os = "linux") {
            ExecutorKind::Linux
        } else {
            ExecutorKind::DryRun
        };
        assert_eq!(ExecutorKind::Auto.resolve(), auto);

        let bogus = DAEMON.replace("executor = \"auto\"", "executor = \"bogus\"");
        let message = error_on_line(&bogus, line_with(&bogus, "executor"));
        assert!(message.contains("bogus"), "{message}");
    }

    #[test]
    fn daemon_section_errors_name_the_line() {
        for (from, to, expected) in [
            (
                "state-dir = \"/var/db/haven\"",
                "state-dir = \"var/db/haven\"",
                "daemon: state-dir `var/db/haven` is not an absolute path",
            ),
            (
                "control-dir = \"/var/run/haven\"",
                "control-dir = \"/var/run/../haven\"",
                "daemon: control-dir `/var/run/../haven` has an empty, `.` or `..` component",
            ),
            (
                "queue-capacity = 1024",
                "queue-capacity = 0",
                "daemon: queue-capacity is 0, it must be at least 1",
            ),
            (
                "queue-capacity = 1024",
                "queue-capacity = -1",
                "invalid value: integer `-1`, expected usize",
            ),
            (
                "journal-max-bytes = 8388608",
                "journal-max-bytes = 4095",
                "daemon: journal-max-bytes is 4095, it must be at least 4096",
            ),
            ("decisions-kept = 20", "decisions-kept = \"many\"", "string"),
            (
                "journal-keep-files = 4",
                "journal-keep-filez = 4",
                "unknown field",
            ),
            (
                "socket = \"/var/run/devd.seqpacket.pipe\"",
                "socket = \"devd.pipe\"",
                "sources.devd: socket `devd.pipe` is not an absolute path",
            ),
            (
                "program = \"/sbin/hastctl\"",
                "program = \"hastctl\"",
                "sources.hastctl: program `hastctl` is not an absolute path",
            ),
            (
                "interval-ms = 2000",
                "interval-ms = 9",
                "sources.hastctl: interval-ms is 9, it must be at least 10",
            ),
            (
                "timeout-ms = 10000",
                "timeout-ms = 0",
                "sources.hastctl: timeout-ms is 0, it must be at least 1",
            ),
            (
                "fifo = \"/run/keepalived/haven.fifo\"",
                "fifo = \"/run/keepalived/haven fifo\"",
                "sources.keepalived: fifo `/run/keepalived/haven fifo` contains white space",
            ),
        ] {
            let text = DAEMON.replace(from, to);
            assert_ne!(text, DAEMON, "{from}");
            let message = error_on_line(&text, line_with(&text, to));
            assert!(message.contains(expected), "{to}: {message}");
            assert!(
                message.starts_with("/etc/haven/haven.toml:"),
                "{to}: {message}"
            );
        }

        let long_dir = format!("/var/run/{}", "d".repeat(83));
        let text = DAEMON.replace("/var/run/haven", &long_dir);
        let message = error_on_line(&text, line_with(&text, "control-dir"));
        assert!(message.contains("longer than 91 bytes"), "{message}");
        assert!(parse(&DAEMON.replace("/var/run/haven", &long_dir[..91])).is_ok());

        let long = format!("/var/run/{}", "d".repeat(100));
        let text = DAEMON.replace("/var/run/devd.seqpacket.pipe", &long);
        let message = error_on_line(&text, line_with(&text, "socket ="));
        assert!(
            message.contains("longer than a unix socket path"),
            "{message}"
        );

        let unknown = DAEMON.to_owned() + "[sources.snmp]\n";
        let message = error_on_line(&unknown, line_with(&unknown, "[sources.snmp]"));
        assert!(message.contains("unknown field `snmp`"), "{message}");
    }

    #[test]
    fn carp_errors_name_the_line() {
        for (from, to, expected) in [
            (
                "vhid = 1\ninterface",
                "vhid = 0\ninterface",
                "carp: vhid 0 is not a vhid",
            ),
            ("vhid = 1\ninterface", "vhid = 256\ninterface", "256"),
            (
                "interface = \"eth0\"\naddress",
                "interface = \"-eth0\"\naddress",
                "carp: interface `-eth0` is not an interface name",
            ),
            (
                "interface = \"eth0\"\naddress",
                "interface = \"eth 0\"\naddress",
                "carp: interface `eth 0` is not an interface name",
            ),
            (
                "interface = \"eth0\"\naddress",
                "interface = \"\"\naddress",
                "carp: interface `` is not an interface name",
            ),
            (
                "interface = \"eth0\"\naddress",
                "interface = \"a234567890123456\"\naddress",
                "is not an interface name",
            ),
            (
                "address = \"192.168.1.50\"",
                "address = \"192.168.1\"",
                "invalid IP address syntax",
            ),
            (
                "address = \"192.168.1.50\"",
                "address = \"0.0.0.0\"",
                "carp: address 0.0.0.0 cannot be a shared address",
            ),
        ] {
            let text = DAEMON.replace(from, to);
            assert_ne!(text, DAEMON, "{from}");
            let line = line_with(&text, to.split('\n').next().unwrap());
            let line = if to.starts_with("vhid") {
                // The keepalived instance has a vhid too; the `[[carp]]` one is the last.
                line_of(&text, text.rfind("vhid =").unwrap())
            } else {
                line
            };
            let message = error_on_line(&text, line);
            assert!(message.contains(expected), "{to}: {message}");
        }

        // A longest interface name is fine.
        let text = DAEMON.replace("eth0", "a23456789012345");
        assert!(parse(&text).is_ok());

        let same_vhid = DAEMON.to_owned()
            + "\n[[carp]]\nvhid = 1\ninterface = \"eth1\"\naddress = \"10.0.0.1\"\n";
        let message = error_on_line(
            &same_vhid,
            line_of(&same_vhid, same_vhid.rfind("vhid = 1").unwrap()),
        );
        assert!(
            message.contains("carp: vhid 1 is in another [[carp]] entry already"),
            "{message}"
        );

        let same_address = DAEMON.to_owned()
            + "\n[[carp]]\nvhid = 2\ninterface = \"eth0\"\naddress = \"192.168.1.50\"\n";
        let message = error_on_line(
            &same_address,
            line_of(&same_address, same_address.rfind("address =").unwrap()),
        );
        assert!(
            message.contains(
                "carp: address 192.168.1.50 on interface `eth0` is in another [[carp]] entry"
            ),
            "{message}"
        );

        // The same address on another interface, with its own vhid, is fine.
        let two = DAEMON.to_owned()
            + "\n[[carp]]\nvhid = 2\ninterface = \"eth1\"\naddress = \"192.168.1.50\"\n";
        let config = parse(&two).unwrap();
        assert_eq!(
            config.ucarp_vhids(),
            BTreeMap::from([
                (("eth0".to_owned(), "192.168.1.50".to_owned()), 1),
                (("eth1".to_owned(), "192.168.1.50".to_owned()), 2),
            ])
        );

        let v6 = DAEMON.replace("192.168.1.50", "2001:DB8::0:50");
        let config = parse(&v6).unwrap();
        assert_eq!(
            config.ucarp_vhids(),
            BTreeMap::from([(("eth0".to_owned(), "2001:db8::50".to_owned()), 1)])
        );
    }

    #[test]
    fn keepalived_errors_name_the_line() {
        let instances = "instances = { VI_1 = { vhid = 1, interface = \"eth0\" } }";
        for (to, expected) in [
            (
                "instances = { VI_1 = { vhid = 0, interface = \"eth0\" } }",
                "sources.keepalived: instance `VI_1`: vhid 0 is not a vhid",
            ),
            (
                "instances = { VI_1 = { vhid = 1, interface = \"-i\" } }",
                "sources.keepalived: instance `VI_1`: interface `-i` is not an interface name",
            ),
            (
                "instances = { VI_1 = { vhid = 1, interface = \"eth1\" } }",
                "sources.keepalived: instance `VI_1`: vhid 1 is on interface `eth0` elsewhere",
            ),
            (
                "instances = { VI_1 = { vhid = 1, interface = \"eth0\", prio = 1 } }",
                "unknown field `prio`",
            ),
            (
                "instances = { VI_1 = { interface = \"eth0\" } }",
                "missing field `vhid`",
            ),
            (
                "instances = { \"\" = { vhid = 1, interface = \"eth0\" } }",
                "is empty",
            ),
            ("instances = {}", "sources.keepalived: instances is empty"),
        ] {
            let text = DAEMON.replace(instances, to);
            assert_ne!(text, DAEMON, "{to}");
            let line = if to == "instances = {}" {
                line_with(&text, "[sources.keepalived]")
            } else {
                line_with(&text, to)
            };
            let message = error_on_line(&text, line);
            assert!(message.contains(expected), "{to}: {message}");
        }

        let no_fifo = DAEMON.replace("fifo = \"/run/keepalived/haven.fifo\"\n", "");
        let message = error_on_line(&no_fifo, line_with(&no_fifo, "[sources.keepalived]"));
        assert!(message.contains("missing field `fifo`"), "{message}");

        // A sync group and its instance may stand for one vhid on one interface.
        let group = DAEMON.replace(
            instances,
            "instances = { G1 = { vhid = 1, interface = \"eth0\" }, VI_1 = { vhid = 1, interface = \"eth0\" }, VI_2 = { vhid = 7, interface = \"bond0\" } }",
        );
        assert_eq!(
            parse(&group).unwrap().keepalived_instances(),
            BTreeMap::from([
                ("G1".to_owned(), (1, "eth0".to_owned())),
                ("VI_1".to_owned(), (1, "eth0".to_owned())),
                ("VI_2".to_owned(), (7, "bond0".to_owned())),
            ])
        );
    }

    /// The whole `[executor]` section, as in the module's example and a bit more.
    const EXECUTOR: &str = r#"
[executor]
storage = "drbd"
service-manager = "sysv"

[executor.tools]
hastctl = "/opt/hast/bin/hastctl"
drbdadm = "/sbin/drbdadm"
mount = "/bin/mount"
umount = "/bin/umount"
fsck = "/sbin/fsck"
service = "/usr/sbin/service"
systemctl = "/bin/systemctl"
ps = "/bin/ps"

[executor.timeouts-ms]
fsck = 900000
wait-device = 5000

[executor.retries]
unmount = 2
service-stop = 1
hast-role = 0
"#;

    #[test]
    fn the_executor_section_reads_whole() {
        let config = parse(&(GOOD.to_owned() + EXECUTOR)).unwrap();
        let executor = &config.executor;
        assert_eq!(executor.storage, StorageKind::Drbd);
        assert_eq!(executor.service_manager, ServiceManagerKind::Sysv);
        assert_eq!(
            executor.tools,
            ExecutorTools {
                hastctl: Some(PathBuf::from("/opt/hast/bin/hastctl")),
                drbdadm: Some(PathBuf::from("/sbin/drbdadm")),
                mount: Some(PathBuf::from("/bin/mount")),
                umount: Some(PathBuf::from("/bin/umount")),
                fsck: Some(PathBuf::from("/sbin/fsck")),
                service: Some(PathBuf::from("/usr/sbin/service")),
                systemctl: Some(PathBuf::from("/bin/systemctl")),
                ps: Some(PathBuf::from("/bin/ps")),
                ifconfig: None,
            }
        );
        // Named kinds are changed, the others keep their defaults.
        assert_eq!(executor.timeout_ms("fsck"), Some(900_000));
        assert_eq!(executor.timeout_ms("wait-device"), Some(5000));
        assert_eq!(executor.timeout_ms("hast-role"), Some(30_000));
        assert_eq!(executor.timeout_ms("service"), Some(120_000));
        assert_eq!(executor.timeout_ms("alert"), None);
        assert_eq!(executor.retries("unmount"), 2);
        assert_eq!(executor.retries("service-stop"), 1);
        assert_eq!(executor.retries("hast-role"), 0);
        assert_eq!(executor.retries("mount"), 0);
        assert_eq!(executor.retries("fsck"), 0);

        let shown = serde_json::to_value(&config).unwrap();
        assert_eq!(shown["executor"]["storage"], "drbd");
        assert_eq!(shown["executor"]["service-manager"], "sysv");
        assert_eq!(shown["executor"]["timeouts-ms"]["fsck"], 900_000);
        assert_eq!(
            shown["executor"]["tools"]["hastctl"],
            "/opt/hast/bin/hastctl"
        );
    }

    #[test]
    fn the_executor_section_defaults() {
        let executor = parse(GOOD).unwrap().executor;
        assert_eq!(executor, ExecutorConfig::default());
        assert_eq!(executor.storage, StorageKind::Hast);
        assert_eq!(executor.service_manager, ServiceManagerKind::Auto);
        assert_eq!(executor.tools, ExecutorTools::default());
        for (kind, ms) in [
            ("hast-role", 30_000),
            ("wait-device", 30_000),
            ("wait-worker-gone", 10_000),
            ("fsck", 600_000),
            ("mount", 60_000),
            ("unmount", 60_000),
            ("service", 120_000),
        ] {
            assert_eq!(executor.timeout_ms(kind), Some(ms), "{kind}");
        }
        assert_eq!(executor.timeouts_ms.len(), STEP_KINDS.len());
        for (kind, retries) in [
            ("hast-role", 1),
            ("unmount", 1),
            ("mount", 0),
            ("service-start", 0),
            ("service-stop", 0),
        ] {
            assert_eq!(executor.retries(kind), retries, "{kind}");
        }
        // An empty table is the defaults too; so are empty sub-tables.
        let empty = parse("[executor]\n[executor.tools]\n[executor.retries]\n").unwrap();
        assert_eq!(empty.executor, ExecutorConfig::default());
        for (text, kind) in [
            ("auto", ServiceManagerKind::Auto),
            ("rc", ServiceManagerKind::Rc),
            ("systemd", ServiceManagerKind::Systemd),
            ("sysv", ServiceManagerKind::Sysv),
        ] {
            let config = parse(&format!("[executor]\nservice-manager = \"{text}\"\n")).unwrap();
            assert_eq!(config.executor.service_manager, kind);
        }
    }

    #[test]
    fn executor_section_errors_name_the_line() {
        for (from, to, expected) in [
            (
                "storage = \"drbd\"",
                "storage = \"zfs\"",
                "unknown variant `zfs`",
            ),
            (
                "service-manager = \"sysv\"",
                "service-manager = \"upstart\"",
                "unknown variant `upstart`",
            ),
            (
                "hastctl = \"/opt/hast/bin/hastctl\"",
                "hastctl = \"hastctl\"",
                "executor.tools: hastctl `hastctl` is not an absolute path",
            ),
            (
                "mount = \"/bin/mount\"",
                "mount = \"/bin/../bin/mount\"",
                "executor.tools: mount `/bin/../bin/mount` has an empty, `.` or `..` component",
            ),
            (
                "ps = \"/bin/ps\"",
                "ps = \"/bin/ps -ax\"",
                "executor.tools: ps `/bin/ps -ax` contains white space",
            ),
            (
                "ps = \"/bin/ps\"",
                "pgrep = \"/bin/pgrep\"",
                "unknown field `pgrep`",
            ),
            (
                "fsck = 900000",
                "fsck = 0",
                "executor.timeouts-ms: fsck is 0, it must be at least 1",
            ),
            (
                "wait-device = 5000",
                "wait-devices = 5000",
                "executor.timeouts-ms: `wait-devices` is not an action kind",
            ),
            (
                "wait-device = 5000",
                "alert = 5000",
                "executor.timeouts-ms: `alert` is not an action kind that runs anything",
            ),
            ("wait-device = 5000", "wait-device = -1", "invalid value"),
            (
                "unmount = 2",
                "unmount = 6",
                "executor.retries: unmount is 6, it may be at most 5",
            ),
            (
                "service-stop = 1",
                "fsck = 1",
                "executor.retries: `fsck` is not safe to retry",
            ),
            (
                "service-stop = 1",
                "service-restart = 1",
                "executor.retries: `service-restart` is not safe to retry",
            ),
        ] {
            let text = EXECUTOR.replace(from, to);
            assert_ne!(text, EXECUTOR, "{from}");
            let line = if from.starts_with("fsck = 9") || from.starts_with("unmount") {
                // The tools table has a line starting the same way; the value is the later one.
                line_of(&text, text.rfind(to).unwrap())
            } else {
                line_with(&text, to)
            };
            let message = error_on_line(&text, line);
            assert!(message.contains(expected), "{to}: {message}");
            assert!(
                message.starts_with("/etc/haven/haven.toml:"),
                "{to}: {message}"
            );
        }
        let unknown = "[executor]\nstorage = \"hast\"\nbackend = \"x\"\n";
        let message = error_on_line(unknown, 3);
        assert!(message.contains("unknown field `backend`"), "{message}");
    }

    #[test]
    fn non_finite_settings_are_refused_naming_the_key() {
        for (value, key) in [
            ("timeout = nan", "timeout"),
            ("limits = { high = inf }", "limits.high"),
            ("steps = [1.0, -inf]", "steps[1]"),
        ] {
            let text = format!(
                "[[policy]]\nname = \"p\"\nmodule = \"/p.wasm\"\n[policy.settings]\n{value}\n"
            );
            let error = Config::parse(&text, Path::new("haven.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("`{key}` is nan or infinite")),
                "{value}: {error}"
            );
        }
    }
}
