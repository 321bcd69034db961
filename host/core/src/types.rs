//! The host's copy of the contract's vocabulary: events in, plans out.
//!
//! These mirror `wit/haven-policy.wit` one to one, as plain Rust with serde, so that everything
//! on the host side that is not the WebAssembly sandbox (config, scenarios, the state model, the
//! journal, executors) can use them without depending on wasmtime. `haven-runtime` converts
//! between these and the generated bindings at the sandbox's edge.
//!
//! In TOML and JSON they read as the WIT reads, in kebab-case:
//! `{ carp-changed = { vhid = 1, interface = "em0", state = "master" } }`.

use serde::{Deserialize, Serialize};

/// State of a CARP vhid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CarpState {
    Init,
    Backup,
    Master,
}

/// Role of a HAST resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HastRole {
    Init,
    Primary,
    Secondary,
}

/// Whether a HAST resource's peer is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HastReplication {
    Complete,
    Degraded,
    #[default]
    Unknown,
}

/// What `hastctl list` says about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HastStatus {
    pub resource: String,
    pub role: HastRole,
    #[serde(default)]
    pub replication: HastReplication,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_bytes: Option<u64>,
}

/// State of one CARP vhid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CarpStatus {
    pub vhid: u8,
    pub interface: String,
    pub state: CarpState,
}

/// A mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MountStatus {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// Whether a service runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceStatus {
    pub name: String,
    pub running: bool,
}

// ------------------------------------------------------------------------------------ events

/// A CARP vhid changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CarpChange {
    pub vhid: u8,
    pub interface: String,
    pub state: CarpState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<CarpState>,
}

/// A legacy carp pseudo-interface link event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CarpLink {
    pub interface: String,
    pub up: bool,
}

/// hastd's `role <res> <old> <new>` hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HastRoleChange {
    pub resource: String,
    pub old: HastRole,
    pub new: HastRole,
}

/// An event hastd reported through its `exec` hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HastHook {
    RoleChanged(HastRoleChange),
    Connect(String),
    Disconnect(String),
    SyncStart(String),
    SyncDone(String),
    SyncInterrupted(String),
    SplitBrain(String),
}

impl HastHook {
    /// The resource the hook is about.
    pub fn resource(&self) -> &str {
        match self {
            HastHook::RoleChanged(change) => &change.resource,
            HastHook::Connect(resource)
            | HastHook::Disconnect(resource)
            | HastHook::SyncStart(resource)
            | HastHook::SyncDone(resource)
            | HastHook::SyncInterrupted(resource)
            | HastHook::SplitBrain(resource) => resource,
        }
    }
}

/// The kind of a devd line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DevdKind {
    Notify,
    Attach,
    Detach,
    Nomatch,
}

/// One `key=value` of a devd event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DevdAttribute {
    pub key: String,
    pub value: String,
}

/// A devd event with no more specific meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DevdEvent {
    pub kind: DevdKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub attributes: Vec<DevdAttribute>,
}

/// A step that was running when the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InterruptedStep {
    pub plan_id: u64,
    pub step_index: u32,
    pub step: Step,
}

/// The machine as found at startup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StartupState {
    #[serde(default)]
    pub carp: Vec<CarpStatus>,
    #[serde(default)]
    pub hast: Vec<HastStatus>,
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<InterruptedStep>,
    /// The policy's stored state could not be read back (contract 2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_lost: Option<StateLost>,
}

/// Why a policy's stored key-value state was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StateLost {
    pub reason: String,
}

// ------------------------------------------------------------------------------------ the peer

/// One policy the peer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerPolicy {
    pub name: String,
    pub module_hash: String,
}

/// What the peer's havend published about its host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerFacts {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub carp: Vec<CarpStatus>,
    #[serde(default)]
    pub hast: Vec<HastStatus>,
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_plan: Option<u64>,
    #[serde(default)]
    pub policies: Vec<PeerPolicy>,
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<String>,
}

/// Whether the peer link carries messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerLink {
    #[default]
    NotConfigured,
    Up,
    Down,
}

impl PeerLink {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerLink::NotConfigured => "not-configured",
            PeerLink::Up => "up",
            PeerLink::Down => "down",
        }
    }
}

/// The peer as a policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerState {
    #[serde(default)]
    pub link: PeerLink,
    #[serde(default)]
    pub link_for_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<PeerFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts_age_ms: Option<u64>,
}

/// Something the peer link brought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerEvent {
    Up,
    Down,
    FactsChanged(PeerFacts),
    HastHook(HastHook),
}

// -------------------------------------------------------------------------------- the operator

/// What an operator asked for with `havenctl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorAsk {
    /// `havenctl switchover [--to <host>]`.
    Switchover(Option<String>),
    /// `havenctl maintenance on|off`.
    Maintenance(bool),
    /// `havenctl promote --accept-incomplete <resource>`.
    AcceptIncomplete(String),
}

impl OperatorAsk {
    /// The request as the operator typed it, for logs and alerts.
    pub fn command(&self) -> String {
        match self {
            OperatorAsk::Switchover(None) => "switchover".to_owned(),
            OperatorAsk::Switchover(Some(to)) => format!("switchover --to {to}"),
            OperatorAsk::Maintenance(on) => {
                format!("maintenance {}", if *on { "on" } else { "off" })
            }
            OperatorAsk::AcceptIncomplete(resource) => {
                format!("promote --accept-incomplete {resource}")
            }
        }
    }
}

/// An operator's request and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OperatorRequest {
    pub uid: u32,
    pub ask: OperatorAsk,
}

/// Who holds the pair's leader key in the witness (etcd), as this host last read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessLeader {
    /// The holder's host name, as it wrote it into the key.
    pub host: String,
    /// The key's creation revision: the fencing token. Each new holder creates the key anew,
    /// so a later holder always has a higher token.
    pub token: u64,
    /// Wall-clock milliseconds when the holder took the key, as it wrote them.
    pub since_unix_ms: u64,
}

/// The witness as this host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessState {
    /// Whether this host's last exchange with etcd succeeded.
    #[serde(default)]
    pub reachable: bool,
    /// The leader key's holder, when etcd last answered; `None`: nobody holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<WitnessLeader>,
    /// Whether this host holds the key on a lease it knows to be alive.
    #[serde(default)]
    pub holding: bool,
    /// `[witness] isolated-serve-ms`: how long a host that lost the key and cannot hear its
    /// peer may go on serving.
    #[serde(default)]
    pub isolated_serve_ms: u32,
}

/// What changed in the witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WitnessChange {
    Reachable,
    Unreachable(String),
    LeaderChanged,
    /// This host lost the key it held under this token.
    KeyLost(u64),
}

/// News from the witness, with its state after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessEvent {
    pub change: WitnessChange,
    #[serde(default)]
    pub state: WitnessState,
}

/// This host's maintenance, while it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MaintenanceState {
    pub since_unix_ms: u64,
    pub uid: u32,
}

/// A step of a plan failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepFailure {
    pub plan_id: u64,
    pub step_index: u32,
    pub step: Step,
    pub reason: String,
}

/// Something happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Startup(StartupState),
    CarpChanged(CarpChange),
    CarpLink(CarpLink),
    HastHook(HastHook),
    HastStatusChanged(HastStatus),
    Devd(DevdEvent),
    TimerFired(String),
    StepFailed(StepFailure),
    Peer(PeerEvent),
    Operator(OperatorRequest),
    Witness(WitnessEvent),
}

impl Event {
    /// A short kind name, for logs and the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Startup(_) => "startup",
            Event::CarpChanged(_) => "carp-changed",
            Event::CarpLink(_) => "carp-link",
            Event::HastHook(_) => "hast-hook",
            Event::HastStatusChanged(_) => "hast-status-changed",
            Event::Devd(_) => "devd",
            Event::TimerFired(_) => "timer-fired",
            Event::StepFailed(_) => "step-failed",
            Event::Peer(_) => "peer",
            Event::Operator(_) => "operator",
            Event::Witness(_) => "witness",
        }
    }

    /// The HAST resource the event is about, if it is a HAST event.
    pub fn hast_resource(&self) -> Option<&str> {
        match self {
            Event::HastHook(hook) | Event::Peer(PeerEvent::HastHook(hook)) => Some(hook.resource()),
            Event::HastStatusChanged(status) => Some(&status.resource),
            _ => None,
        }
    }
}

// ------------------------------------------------------------------------------------ actions

/// `hastctl role <role> <resource>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SetHastRole {
    pub resource: String,
    pub role: HastRole,
}

/// A HAST worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HastWorker {
    pub resource: String,
    pub role: HastRole,
}

/// Check a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FsckRequest {
    pub device: String,
    pub fstype: String,
    pub preen: bool,
}

/// Mount a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MountRequest {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// Unmount a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UnmountRequest {
    pub mountpoint: String,
    pub force: bool,
}

/// What to do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceOp {
    Start,
    Stop,
    Restart,
}

/// Start, stop or restart a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceRequest {
    pub name: String,
    pub op: ServiceOp,
}

/// Arm a named timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TimerRequest {
    pub name: String,
    pub after_ms: u32,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertSeverity {
    Warning,
    Critical,
}

/// A message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Alert {
    pub severity: AlertSeverity,
    pub message: String,
}

/// One thing for the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    SetHastRole(SetHastRole),
    WaitForDevice(String),
    WaitHastWorkerGone(HastWorker),
    Fsck(FsckRequest),
    Mount(MountRequest),
    Unmount(UnmountRequest),
    Service(ServiceRequest),
    SetTimer(TimerRequest),
    CancelTimer(String),
    Alert(Alert),
    DemoteCarp(u8),
    LiftCarpDemotion(u8),
}

impl Action {
    /// A short kind name, for logs, the journal and per-kind default timeouts.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::SetHastRole(_) => "hast-role",
            Action::WaitForDevice(_) => "wait-device",
            Action::WaitHastWorkerGone(_) => "wait-worker-gone",
            Action::Fsck(_) => "fsck",
            Action::Mount(_) => "mount",
            Action::Unmount(_) => "unmount",
            Action::Service(_) => "service",
            Action::SetTimer(_) => "set-timer",
            Action::CancelTimer(_) => "cancel-timer",
            Action::Alert(_) => "alert",
            Action::DemoteCarp(_) => "demote-carp",
            Action::LiftCarpDemotion(_) => "lift-carp-demotion",
        }
    }
}

/// An action with its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Step {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// The steps a policy asks for, in order; empty means no action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// True when the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
