//! What `havenctl status` shows, and the board the event loop keeps it on.
//!
//! The event loop can be busy for minutes (an fsck), and status must still answer at once, so
//! the loop never answers status requests itself: after each event it pins what it knows on a
//! [`StatusBoard`] (a cheap shared snapshot of the model, the policies' counters, recent
//! decisions and alerts, the plan running), and the control socket's thread builds the
//! [`Status`] from the board, the inbox's counters and its own.

use crate::control::ControlStats;
use crate::inbox::{Inbox, SourceCounters};
use crate::journal::DecisionOutcome;
use crate::metrics::Recorder;
use crate::queue::QueueStats;
use crate::reload::ReloadOutcome;
use crate::sources::peer::PeerPublisher;
use haven_core::{
    CarpStatus, HastStatus, Machine, MaintenanceState, MountStatus, PeerLink, PeerState,
    ServiceStatus,
};
use haven_peer::LinkCounters;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Alerts kept for status (the journal has all of them).
pub const ALERTS_KEPT: usize = 20;

/// Alerts published to the peer, for its status.
pub const PEER_ALERTS: usize = 5;

/// The most of one alert published to the peer.
pub const PEER_ALERT_BYTES: usize = 512;

/// Everything `havenctl status` shows; `havenctl status --json` prints it as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub pid: u32,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub executor: String,
    pub uptime_ms: u64,
    /// CARP vhids as the model has them.
    pub carp: Vec<CarpStatus>,
    /// HAST resources granted to some policy.
    pub hast: Vec<HastStatus>,
    /// Mounts on granted mountpoints.
    pub mounts: Vec<MountStatus>,
    /// Granted services.
    pub services: Vec<ServiceStatus>,
    pub policies: Vec<PolicyStatus>,
    pub queue: QueueStats,
    pub sources: BTreeMap<String, SourceCounters>,
    /// Source reports dropped because too many waited at once.
    pub reports_dropped: u64,
    pub control: ControlStats,
    /// Journal writes that failed.
    pub journal_errors: u64,
    /// Decisions made since the daemon started.
    pub decisions_total: u64,
    /// The step running now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningStep>,
    /// The latest decisions, oldest first.
    pub last_decisions: Vec<RecentDecision>,
    /// The latest alerts, oldest first.
    pub alerts: Vec<RecentAlert>,
    /// Reloads since start: loaded, and rejected.
    pub reloads: ReloadCounts,
    /// The last reload's outcome, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<LastReload>,
    /// The peer as this host knows it; none without `[peer]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerView>,
    /// This host's maintenance, while it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceState>,
    /// Alerts raised since the daemon started (`alerts` keeps the last [`ALERTS_KEPT`]): how a
    /// reader tells which of them are new.
    #[serde(default)]
    pub alerts_total: u64,
    /// The latest steps that ended, oldest first (at most [`STEPS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_steps: Vec<StepEnded>,
    /// The plan that ended last, if one did since the daemon started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan_end: Option<PlanEnded>,
    /// This host's name on the peer link (none without `[peer]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The witness as this host sees it; none without `[witness]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessView>,
    /// Where Prometheus metrics are served (`http://address/metrics`), when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// The witness, for `havenctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WitnessView {
    /// This pair's name, and the prefix its keys live under.
    pub pair: String,
    pub prefix: String,
    pub endpoints: Vec<String>,
    /// Whether etcd answers, who holds the leader key, whether this host does.
    #[serde(flatten)]
    pub state: haven_core::WitnessState,
}

/// The peer link and what the peer last said, for `havenctl status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerView {
    /// The link's state, how long it has been so, the peer's last facts and their age.
    #[serde(flatten)]
    pub state: PeerState,
    /// What the link refused and counted.
    pub counters: LinkCounters,
}

/// How many reloads were loaded and rejected since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReloadCounts {
    pub loaded: u64,
    pub rejected: u64,
}

/// The last reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LastReload {
    pub uptime_ms: u64,
    pub why: String,
    pub outcome: ReloadOutcome,
}

/// A loaded policy and what it has done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyStatus {
    pub name: String,
    pub module_hash: String,
    pub version: String,
    pub events: u64,
    pub plans: u64,
    pub refused: u64,
    pub failed: u64,
}

/// The step being carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunningStep {
    pub policy: String,
    pub plan_id: u64,
    pub index: u32,
    pub step: String,
}

/// Steps kept for status: those of the latest plans, for `havenctl` to follow a request.
pub const STEPS_KEPT: usize = 32;

/// A step that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepEnded {
    pub plan_id: u64,
    pub index: u32,
    pub step: String,
    pub ok: bool,
    /// Its goal already held: nothing ran.
    pub already_done: bool,
    pub duration_ms: u64,
}

/// A plan that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanEnded {
    pub plan_id: u64,
    /// Every step succeeded.
    pub completed: bool,
}

/// One recent decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RecentDecision {
    pub event_id: u64,
    pub event: String,
    pub policy: String,
    pub module_hash: String,
    pub outcome: DecisionOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<u64>,
    /// The plan's steps (outcome `plan`) or the reason (`refused`, `failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
    pub elapsed_us: u64,
}

/// One recent alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RecentAlert {
    /// The policy that raised it; `None` for the host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub severity: String,
    pub message: String,
}

/// What never changes while the daemon runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub executor: String,
    /// Which HAST resources, mountpoints and services are granted to some policy.
    pub granted_hast: BTreeSet<String>,
    pub granted_mountpoints: BTreeSet<String>,
    pub granted_services: BTreeSet<String>,
    /// `[witness]`, when configured.
    pub witness: Option<haven_core::WitnessConfig>,
    /// Where the metrics listener listens, when it does.
    pub metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
struct Board {
    identity: Identity,
    started: Instant,
    machine: Arc<Machine>,
    policies: Vec<PolicyStatus>,
    running: Option<RunningStep>,
    last_plan_end: Option<PlanEnded>,
    last_steps: VecDeque<StepEnded>,
    alerts_total: u64,
    /// The last alerts as the peer is told them (see [`StatusBoard::alerts_for_peer`]).
    peer_alerts: Vec<String>,
    decisions: VecDeque<RecentDecision>,
    decisions_kept: usize,
    alerts: VecDeque<RecentAlert>,
    journal_errors: u64,
    /// While journal writes fail: the error count when the outage began, and its first error.
    journal_outage: Option<(u64, String)>,
    decisions_total: u64,
    /// Threads in [`StatusBoard::wait_for_decisions`]: only then is a decision signalled.
    waiters: usize,
    reloads: ReloadCounts,
    last_reload: Option<LastReload>,
    /// Bumped on every reload outcome, for [`StatusBoard::wait_for_reloads`].
    reload_generation: u64,
    /// The peer link's counters, when it runs.
    peer: Option<PeerPublisher>,
    /// The same recorder as [`StatusBoard::metrics`], for the alerts counted under the lock.
    metrics: Arc<Recorder>,
}

/// The shared board; clones are handles to the same one.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    board: Arc<Mutex<Board>>,
    /// Signalled on every decision, for [`StatusBoard::wait_for_decisions`].
    decided: Arc<Condvar>,
    /// Whether the journal is failing: read on every successful write without the lock.
    journal_failing: Arc<AtomicBool>,
    /// What Prometheus is told is counted as it happens, without the lock.
    metrics: Arc<Recorder>,
}

impl StatusBoard {
    /// A board for a daemon started now.
    pub fn new(identity: Identity, machine: Arc<Machine>, decisions_kept: usize) -> StatusBoard {
        let metrics = Arc::new(Recorder::default());
        StatusBoard {
            board: Arc::new(Mutex::new(Board {
                identity,
                started: Instant::now(),
                machine,
                policies: Vec::new(),
                running: None,
                last_plan_end: None,
                last_steps: VecDeque::new(),
                alerts_total: 0,
                peer_alerts: Vec::new(),
                decisions: VecDeque::new(),
                decisions_kept,
                alerts: VecDeque::new(),
                journal_errors: 0,
                journal_outage: None,
                decisions_total: 0,
                waiters: 0,
                reloads: ReloadCounts::default(),
                last_reload: None,
                reload_generation: 0,
                peer: None,
                metrics: Arc::clone(&metrics),
            })),
            decided: Arc::new(Condvar::new()),
            journal_failing: Arc::default(),
            metrics,
        }
    }

    /// The counters Prometheus reads (`[metrics]`); they count whether or not it is on.
    pub fn metrics(&self) -> &Recorder {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Show the peer link's counters in status.
    pub fn set_peer(&self, peer: PeerPublisher) {
        self.lock().peer = Some(peer);
    }

    /// Whether some policy in force is granted this HAST resource.
    pub fn hast_granted(&self, resource: &str) -> bool {
        self.lock().identity.granted_hast.contains(resource)
    }

    /// The model as last pinned.
    pub fn machine(&self) -> Arc<Machine> {
        Arc::clone(&self.lock().machine)
    }

    /// Pin the model and the policies' counters, after an event.
    pub fn publish(&self, machine: Arc<Machine>, policies: Vec<PolicyStatus>) {
        let mut board = self.lock();
        board.machine = machine;
        board.policies = policies;
    }

    /// The step that runs now, if any, as `plan <id> of <policy>, step <n>: <step>`.
    pub fn running(&self) -> Option<String> {
        self.lock().running.as_ref().map(|running| {
            format!(
                "plan {} of policy {}, step {}: {}",
                running.plan_id, running.policy, running.index, running.step
            )
        })
    }

    /// Note a step that ended, forgetting the oldest beyond [`STEPS_KEPT`].
    pub fn add_step_end(&self, step: StepEnded) {
        let mut board = self.lock();
        if board.last_steps.len() == STEPS_KEPT {
            board.last_steps.pop_front();
        }
        board.last_steps.push_back(step);
    }

    /// Note the plan that just ended.
    pub fn set_plan_ended(&self, plan_id: u64, completed: bool) {
        self.lock().last_plan_end = Some(PlanEnded { plan_id, completed });
    }

    /// Note the step that runs now (`None` when it ended).
    pub fn set_running(&self, running: Option<RunningStep>) {
        self.lock().running = running;
    }

    /// Add a decision, forgetting the oldest beyond the bound.
    pub fn add_decision(&self, decision: RecentDecision) {
        let mut board = self.lock();
        board.decisions_total += 1;
        if board.decisions_kept > 0 {
            if board.decisions.len() >= board.decisions_kept {
                board.decisions.pop_front();
            }
            board.decisions.push_back(decision);
        }
        let waiting = board.waiters > 0;
        drop(board);
        if waiting {
            self.decided.notify_all();
        }
    }

    /// Decisions made since the daemon started.
    pub fn decisions_total(&self) -> u64 {
        self.lock().decisions_total
    }

    /// Wait until at least `count` decisions were made since the daemon started, or until
    /// `deadline`; returns the count then. For benchmarks and tests that must know when the
    /// daemon has decided, without polling.
    pub fn wait_for_decisions(&self, count: u64, deadline: Instant) -> u64 {
        self.wait_until(deadline, |board| board.decisions_total >= count)
            .decisions_total
    }

    /// Wait until `done` holds for the board, or until `deadline`.
    fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&Board) -> bool,
    ) -> MutexGuard<'_, Board> {
        let mut board = self.lock();
        board.waiters += 1;
        while !done(&board) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            board = self
                .decided
                .wait_timeout(board, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        board.waiters -= 1;
        board
    }

    /// The latest alerts as the peer is told them: at most [`PEER_ALERTS`], oldest first, each
    /// `<severity>: <message>` clipped to [`PEER_ALERT_BYTES`].
    /// Formatted when an alert is added (rarely), not on every publication (each loop turn).
    pub fn alerts_for_peer(&self) -> Vec<String> {
        self.lock().peer_alerts.clone()
    }

    /// Add an alert, forgetting the oldest beyond [`ALERTS_KEPT`].
    pub fn add_alert(&self, alert: RecentAlert) {
        add(&mut self.lock(), alert);
    }

    /// The grants in force changed (a reload): what status shows follows them.
    pub fn set_grants(&self, policies: &[haven_runtime::LoadedPolicy]) {
        let mut board = self.lock();
        let identity = &mut board.identity;
        identity.granted_hast = policies
            .iter()
            .flat_map(|p| p.grants().hast_resources.iter().cloned())
            .collect();
        identity.granted_mountpoints = policies
            .iter()
            .flat_map(|p| p.grants().mounts.iter().map(|m| m.mountpoint.clone()))
            .collect();
        identity.granted_services = policies
            .iter()
            .flat_map(|p| p.grants().services.iter().cloned())
            .collect();
    }

    /// Record a reload's outcome.
    pub fn reloaded(&self, why: String, outcome: ReloadOutcome) {
        let mut board = self.lock();
        match outcome {
            ReloadOutcome::Loaded { .. } => board.reloads.loaded += 1,
            ReloadOutcome::Rejected { .. } => board.reloads.rejected += 1,
            ReloadOutcome::Unchanged => {}
        }
        let uptime_ms = u64::try_from(board.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        board.last_reload = Some(LastReload {
            uptime_ms,
            why,
            outcome,
        });
        board.reload_generation += 1;
        let waiting = board.waiters > 0;
        drop(board);
        if waiting {
            self.decided.notify_all();
        }
    }

    /// Reload outcomes (loaded or rejected) recorded since the daemon started.
    pub fn reload_generation(&self) -> u64 {
        self.lock().reload_generation
    }

    /// Wait until at least `count` reload outcomes were recorded, or until `deadline`; returns
    /// the count then (for the reload benchmark and tests).
    pub fn wait_for_reloads(&self, count: u64, deadline: Instant) -> u64 {
        self.wait_until(deadline, |board| board.reload_generation >= count)
            .reload_generation
    }

    /// Count a failed journal write or sync. The first failure after the journal worked
    /// raises a critical alert on the board (the journal itself may be what cannot take it):
    /// said once per outage, not once per event. Returns that alert's text when it is raised.
    pub fn journal_error(&self, error: &dyn std::fmt::Display) -> Option<String> {
        let mut board = self.lock();
        board.journal_errors += 1;
        if board.journal_outage.is_some() {
            return None;
        }
        board.journal_outage = Some((board.journal_errors - 1, error.to_string()));
        self.journal_failing.store(true, Ordering::Release);
        let message = format!(
            "the journal cannot be written ({error}); havend goes on deciding and acting, \
             unrecorded until it can (is the state disk full?)"
        );
        tracing::error!(alert = %message, "operator alert");
        push_alert(&mut board, "critical", &message);
        Some(message)
    }

    /// A journal write succeeded. After an outage, the warning that says it is over (for the
    /// journal too), with the lines the journal had to drop. Cheap when there was none: one
    /// atomic load per call.
    pub fn journal_ok(&self, dropped_lines: u64) -> Option<String> {
        if !self.journal_failing.load(Ordering::Acquire) {
            return None;
        }
        let mut board = self.lock();
        let (from, first) = board.journal_outage.take()?;
        self.journal_failing.store(false, Ordering::Release);
        let message = format!(
            "the journal can be written again, after {} failed writes (the first: {first}); \
             {dropped_lines} lines could not be kept, and what happened meanwhile is only in \
             havend's log",
            board.journal_errors - from
        );
        tracing::warn!(alert = %message, "operator alert");
        push_alert(&mut board, "warning", &message);
        Some(message)
    }

    /// The status as of now.
    pub fn status(&self, inbox: &Inbox, control: ControlStats) -> Status {
        let (sources, reports_dropped) = inbox.source_counters();
        let queue = inbox.queue_stats();
        let board = self.lock();
        let machine = &board.machine;
        let identity = &board.identity;
        let uptime_ms = u64::try_from(board.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let peer = (machine.peer.link != PeerLink::NotConfigured).then(|| PeerView {
            state: machine.peer.state(uptime_ms),
            counters: board
                .peer
                .as_ref()
                .map(PeerPublisher::counters)
                .unwrap_or_default(),
        });
        Status {
            pid: std::process::id(),
            config: identity.config.clone(),
            state_dir: identity.state_dir.clone(),
            executor: identity.executor.clone(),
            uptime_ms,
            carp: machine.carp.values().cloned().collect(),
            hast: machine
                .hast
                .values()
                .filter(|status| identity.granted_hast.contains(&status.resource))
                .cloned()
                .collect(),
            mounts: identity
                .granted_mountpoints
                .iter()
                .filter_map(|mountpoint| machine.mounts.get(mountpoint).cloned())
                .collect(),
            services: identity
                .granted_services
                .iter()
                .map(|name| ServiceStatus {
                    name: name.clone(),
                    running: machine.service_running(name),
                })
                .collect(),
            policies: board.policies.clone(),
            queue,
            sources,
            reports_dropped,
            control,
            journal_errors: board.journal_errors,
            decisions_total: board.decisions_total,
            running: board.running.clone(),
            maintenance: machine.maintenance,
            host: board.peer.as_ref().map(|peer| peer.host().to_owned()),
            last_plan_end: board.last_plan_end,
            last_steps: board.last_steps.iter().cloned().collect(),
            last_decisions: board.decisions.iter().cloned().collect(),
            alerts: board.alerts.iter().cloned().collect(),
            alerts_total: board.alerts_total,
            reloads: board.reloads,
            last_reload: board.last_reload.clone(),
            peer,
            witness: identity.witness.as_ref().map(|config| WitnessView {
                pair: config.pair.clone(),
                prefix: config.prefix.clone(),
                endpoints: config.endpoints.clone(),
                state: machine.witness.clone().unwrap_or_default(),
            }),
            metrics: identity
                .metrics
                .map(|address| format!("http://{address}/metrics")),
        }
    }
}

/// Keep an alert on the board, dropping the oldest past [`ALERTS_KEPT`].
fn add(board: &mut Board, alert: RecentAlert) {
    board.alerts_total += 1;
    board.metrics.alert(&alert.severity);
    if board.alerts.len() >= ALERTS_KEPT {
        board.alerts.pop_front();
    }
    board.alerts.push_back(alert);
    let skip = board.alerts.len().saturating_sub(PEER_ALERTS);
    board.peer_alerts = board
        .alerts
        .iter()
        .skip(skip)
        .map(|alert| {
            let line = format!("{}: {}", alert.severity, alert.message);
            haven_core::text::clip(&line, PEER_ALERT_BYTES).into_owned()
        })
        .collect();
}

/// A host alert (no policy) on the board.
fn push_alert(board: &mut Board, severity: &str, message: &str) {
    add(
        board,
        RecentAlert {
            policy: None,
            severity: severity.to_owned(),
            message: message.to_owned(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> StatusBoard {
        let identity = Identity {
            config: PathBuf::from("/etc/haven/haven.toml"),
            state_dir: PathBuf::from("/var/db/haven"),
            executor: "dry-run".into(),
            granted_hast: BTreeSet::new(),
            granted_mountpoints: BTreeSet::new(),
            granted_services: BTreeSet::new(),
            witness: None,
            metrics: None,
        };
        StatusBoard::new(identity, Arc::default(), 4)
    }

    #[test]
    fn a_journal_outage_is_said_once_when_it_starts_and_once_when_it_ends() {
        let board = board();
        assert_eq!(board.journal_ok(0), None, "no outage, nothing to say");
        let disk_full = "No space left on device (os error 28)";
        let alert = board.journal_error(&disk_full).unwrap();
        assert!(
            alert.contains(disk_full) && alert.contains("state disk full"),
            "{alert}"
        );
        for _ in 0..100 {
            assert_eq!(board.journal_error(&disk_full), None);
        }
        let over = board.journal_ok(7).unwrap();
        assert_eq!(
            over,
            "the journal can be written again, after 101 failed writes (the first: No space \
             left on device (os error 28)); 7 lines could not be kept, and what happened \
             meanwhile is only in havend's log"
        );
        assert_eq!(board.journal_ok(0), None);
        let board = board.lock();
        assert_eq!(board.journal_errors, 101);
        let severities: Vec<&str> = board.alerts.iter().map(|a| a.severity.as_str()).collect();
        assert_eq!(severities, ["critical", "warning"]);
    }
}
