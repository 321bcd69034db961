//! The daemon's model of the machine: CARP, HAST, device nodes, mounts, services and timers.
//!
//! Events update it ([`Machine::observe`]), policies' queries read it, and the dry-run
//! executor applies plans to it as if each step succeeded ([`Machine::apply`]). The real
//! executors (and a re-read of the system after each plan) keep it honest on a live machine;
//! scenarios and `simulate` drive it alone.

use crate::grants::{Grants, hast_device};
use crate::types::{
    Action, CarpState, CarpStatus, Event, HastHook, HastReplication, HastRole, HastStatus,
    HastWorker, MaintenanceState, MountStatus, OperatorAsk, OperatorRequest, PeerEvent, PeerFacts,
    PeerLink, PeerPolicy, PeerState, ServiceOp, ServiceStatus, StartupState, Step, WitnessState,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The shortest delay a timer gets: `set-timer <name> 0` (or anything shorter) fires this
/// long after it was armed. A policy that re-arms its own timer on every firing therefore
/// fires at most this often, and every other event is decided in between.
pub const MIN_TIMER_MS: u32 = 100;

/// Everything the daemon knows about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MachineSpec", into = "MachineSpec")]
pub struct Machine {
    /// Monotonic milliseconds.
    pub now_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch, at the same instant.
    pub unix_ms: u64,
    /// CARP vhids by number.
    pub carp: BTreeMap<u8, CarpStatus>,
    /// Legacy carp pseudo-interfaces: up (master) or down.
    pub carp_links: BTreeMap<String, bool>,
    /// HAST resources by name.
    pub hast: BTreeMap<String, HastStatus>,
    /// Running HAST workers (`hastd: <resource> (<role>)`).
    pub workers: BTreeSet<(String, HastRole)>,
    /// Device nodes known to exist (only those the daemon cares about).
    pub devices: BTreeSet<String>,
    /// Mounts by mountpoint.
    pub mounts: BTreeMap<String, MountStatus>,
    /// Services: running or not.
    pub services: BTreeMap<String, bool>,
    /// Armed timers: policy name → timer name → due time (ms).
    pub timers: BTreeMap<String, BTreeMap<String, u64>>,
    /// The peer, as the peer link tells it.
    pub peer: PeerModel,
    /// This host's maintenance, while it is on (the operator's `maintenance on`).
    pub maintenance: Option<MaintenanceState>,
    /// CARP vhids this host's plans demoted and did not lift since.
    pub carp_demoted: BTreeSet<u8>,
    /// The witness as this host's session with etcd last saw it; none without `[witness]`.
    pub witness: Option<WitnessState>,
}

/// The peer as the model keeps it: times on the machine's clock (negative for facts heard
/// before this daemon started), so that ages follow the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerModel {
    pub link: PeerLink,
    /// When the link entered its state.
    pub link_since_ms: i64,
    pub facts: Option<PeerFacts>,
    /// When the facts were last heard (a heartbeat counts).
    pub facts_heard_ms: Option<i64>,
}

impl PeerModel {
    /// The model of a [`PeerState`] seen at `now_ms` (scenario files write ages).
    pub fn from_state(state: PeerState, now_ms: u64) -> PeerModel {
        let at = |age: u64| clock(now_ms).saturating_sub(clock(age));
        PeerModel {
            link: state.link,
            link_since_ms: at(state.link_for_ms),
            facts_heard_ms: state
                .facts
                .as_ref()
                .map(|_| at(state.facts_age_ms.unwrap_or(0))),
            facts: state.facts,
        }
    }

    /// What a policy sees at `now_ms`.
    pub fn state(&self, now_ms: u64) -> PeerState {
        let age = |since: i64| u64::try_from(clock(now_ms).saturating_sub(since)).unwrap_or(0);
        PeerState {
            link: self.link,
            link_for_ms: age(self.link_since_ms),
            facts: self.facts.clone(),
            facts_age_ms: self.facts.as_ref().and(self.facts_heard_ms).map(age),
        }
    }

    /// The link is in `link` from `now_ms` on; no change if it already was.
    pub fn set_link(&mut self, link: PeerLink, now_ms: u64) {
        if self.link != link {
            self.link = link;
            self.link_since_ms = clock(now_ms);
        }
    }

    /// The peer was heard at `now_ms`, with these facts.
    pub fn heard(&mut self, facts: PeerFacts, now_ms: u64) {
        self.facts = Some(facts);
        self.facts_heard_ms = Some(clock(now_ms));
    }
}

fn clock(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// How a machine is written in scenario files and shown by `simulate`: lists, not maps, and
/// workers and `/dev/hast/*` nodes implied by the HAST roles unless listed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MachineSpec {
    #[serde(default)]
    now_ms: u64,
    /// Wall time at `now-ms`; a fixed day when not given, so runs repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unix_ms: Option<u64>,
    #[serde(default)]
    carp: Vec<CarpStatus>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    carp_links: BTreeMap<String, bool>,
    #[serde(default)]
    hast: Vec<HastStatus>,
    /// Workers, when they differ from what the roles imply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workers: Option<Vec<HastWorker>>,
    /// Device nodes besides the `/dev/hast/<resource>` of primaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<String>,
    /// The `/dev/hast/<resource>` nodes of primaries that are not there (yet): a role just
    /// changed, and the node has not appeared. Without this a written machine would always
    /// have them, and a decision that waits for one could not be replayed as it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    absent_devices: Vec<String>,
    #[serde(default)]
    mounts: Vec<MountStatus>,
    #[serde(default)]
    services: BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    timers: BTreeMap<String, BTreeMap<String, u64>>,
    /// The peer, with ages as of `now-ms`.
    #[serde(default, skip_serializing_if = "is_default")]
    peer: PeerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maintenance: Option<MaintenanceState>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    carp_demoted: BTreeSet<u8>,
    /// The witness as this host sees it (`[witness]` configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witness: Option<WitnessState>,
}

/// The wall time of a simulated machine's clock 0: 2026-01-01T00:00:00Z.
pub const SIMULATED_EPOCH_MS: u64 = 1_767_225_600_000;

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl From<MachineSpec> for Machine {
    fn from(spec: MachineSpec) -> Machine {
        let mut machine = Machine {
            now_ms: spec.now_ms,
            unix_ms: spec
                .unix_ms
                .unwrap_or(SIMULATED_EPOCH_MS.saturating_add(spec.now_ms)),
            carp: spec.carp.into_iter().map(|c| (c.vhid, c)).collect(),
            carp_links: spec.carp_links,
            devices: spec.devices.into_iter().collect(),
            mounts: spec
                .mounts
                .into_iter()
                .map(|m| (m.mountpoint.clone(), m))
                .collect(),
            services: spec.services,
            timers: spec.timers,
            peer: PeerModel::from_state(spec.peer, spec.now_ms),
            maintenance: spec.maintenance,
            carp_demoted: spec.carp_demoted,
            witness: spec.witness,
            ..Machine::default()
        };
        for status in spec.hast {
            machine.set_hast_role(&status.resource, status.role);
            machine.hast.insert(status.resource.clone(), status);
        }
        if let Some(workers) = spec.workers {
            machine.workers = workers.into_iter().map(|w| (w.resource, w.role)).collect();
        }
        for absent in &spec.absent_devices {
            machine.devices.remove(absent);
        }
        machine
    }
}

impl From<Machine> for MachineSpec {
    fn from(machine: Machine) -> MachineSpec {
        let implied = Machine::from(MachineSpec {
            hast: machine.hast.values().cloned().collect(),
            ..MachineSpec::default()
        });
        let workers = (implied.workers != machine.workers).then(|| {
            machine
                .workers
                .iter()
                .map(|(resource, role)| HastWorker {
                    resource: resource.clone(),
                    role: *role,
                })
                .collect()
        });
        MachineSpec {
            now_ms: machine.now_ms,
            unix_ms: Some(machine.unix_ms),
            carp: machine.carp.into_values().collect(),
            carp_links: machine.carp_links,
            hast: machine.hast.into_values().collect(),
            workers,
            devices: machine
                .devices
                .difference(&implied.devices)
                .cloned()
                .collect(),
            absent_devices: implied
                .devices
                .difference(&machine.devices)
                .cloned()
                .collect(),
            mounts: machine.mounts.into_values().collect(),
            services: machine.services,
            timers: machine.timers,
            peer: machine.peer.state(machine.now_ms),
            maintenance: machine.maintenance,
            carp_demoted: machine.carp_demoted,
            witness: machine.witness,
        }
    }
}

/// Explicit changes to the model, as scenario and timeline files list them between events
/// (things no event reports: a worker that lingers, a service that died, a mount that vanished).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StateChange {
    /// CARP vhids to set.
    #[serde(default)]
    pub carp: Vec<CarpStatus>,
    /// HAST resources to set (workers and `/dev/hast` nodes follow the role).
    #[serde(default)]
    pub hast: Vec<HastStatus>,
    /// Workers now running.
    #[serde(default)]
    pub workers: Vec<HastWorker>,
    /// Workers now gone.
    #[serde(default)]
    pub workers_gone: Vec<HastWorker>,
    /// Device nodes now present.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Device nodes now gone.
    #[serde(default)]
    pub devices_gone: Vec<String>,
    /// Filesystems now mounted.
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
    /// Mountpoints now unmounted.
    #[serde(default)]
    pub unmounted: Vec<String>,
    /// Services now running (`true`) or stopped.
    #[serde(default)]
    pub services: BTreeMap<String, bool>,
}

impl Machine {
    /// Apply explicit changes.
    pub fn change(&mut self, change: &StateChange) {
        for carp in &change.carp {
            self.carp.insert(carp.vhid, carp.clone());
        }
        for status in &change.hast {
            self.set_hast_role(&status.resource, status.role);
            self.hast.insert(status.resource.clone(), status.clone());
        }
        // What is gone goes first, so one change can replace a mount, device or worker.
        for worker in &change.workers_gone {
            self.workers.remove(&(worker.resource.clone(), worker.role));
        }
        for worker in &change.workers {
            self.workers.insert((worker.resource.clone(), worker.role));
        }
        for device in &change.devices_gone {
            self.devices.remove(device);
        }
        self.devices.extend(change.devices.iter().cloned());
        for mountpoint in &change.unmounted {
            self.mounts.remove(mountpoint);
        }
        for mount in &change.mounts {
            self.mounts.insert(mount.mountpoint.clone(), mount.clone());
        }
        self.services.extend(
            change
                .services
                .iter()
                .map(|(name, running)| (name.clone(), *running)),
        );
    }

    /// Update the model from an event.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::CarpChanged(change) => {
                self.carp.insert(
                    change.vhid,
                    CarpStatus {
                        vhid: change.vhid,
                        interface: change.interface.clone(),
                        state: change.state,
                    },
                );
            }
            Event::CarpLink(link) => {
                self.carp_links.insert(link.interface.clone(), link.up);
            }
            Event::HastHook(HastHook::RoleChanged(change)) => {
                self.hast_entry(&change.resource).role = change.new;
                self.set_hast_role(&change.resource, change.new);
            }
            Event::HastHook(HastHook::Connect(resource)) => {
                self.hast_entry(resource).replication = HastReplication::Complete;
            }
            Event::HastHook(HastHook::Disconnect(resource) | HastHook::SplitBrain(resource)) => {
                self.hast_entry(resource).replication = HastReplication::Degraded;
            }
            Event::HastStatusChanged(status) => {
                self.set_hast_role(&status.resource, status.role);
                self.hast.insert(status.resource.clone(), status.clone());
            }
            Event::Startup(state) => self.observe_startup(state),
            Event::Peer(PeerEvent::Up) => self.peer.set_link(PeerLink::Up, self.now_ms),
            Event::Peer(PeerEvent::Down) => self.peer.set_link(PeerLink::Down, self.now_ms),
            Event::Peer(PeerEvent::FactsChanged(facts)) => {
                self.peer.heard(facts.clone(), self.now_ms)
            }
            Event::Operator(OperatorRequest {
                uid,
                ask: OperatorAsk::Maintenance(on),
            }) => self.set_maintenance(*on, *uid),
            Event::Witness(event) => self.witness = Some(event.state.clone()),
            Event::HastHook(_)
            | Event::Operator(_)
            | Event::Devd(_)
            | Event::TimerFired(_)
            | Event::StepFailed(_)
            | Event::Peer(PeerEvent::HastHook(_)) => {}
        }
    }

    fn observe_startup(&mut self, state: &StartupState) {
        for carp in &state.carp {
            self.carp.insert(carp.vhid, carp.clone());
        }
        for status in &state.hast {
            self.set_hast_role(&status.resource, status.role);
            self.hast.insert(status.resource.clone(), status.clone());
        }
        for mount in &state.mounts {
            self.mounts.insert(mount.mountpoint.clone(), mount.clone());
        }
        for service in &state.services {
            self.services.insert(service.name.clone(), service.running);
        }
    }

    fn hast_entry(&mut self, resource: &str) -> &mut HastStatus {
        self.hast
            .entry(resource.to_owned())
            .or_insert_with(|| HastStatus {
                resource: resource.to_owned(),
                role: HastRole::Init,
                replication: HastReplication::Unknown,
                dirty_bytes: None,
            })
    }

    /// What follows from a role: the worker for that role (none in init) and the
    /// `/dev/hast/<resource>` node (primary only).
    fn set_hast_role(&mut self, resource: &str, role: HastRole) {
        self.workers.retain(|(name, _)| name != resource);
        if role != HastRole::Init {
            self.workers.insert((resource.to_owned(), role));
        }
        let device = hast_device(resource);
        if role == HastRole::Primary {
            self.devices.insert(device);
        } else {
            self.devices.remove(&device);
        }
    }

    /// Apply one step as if it succeeded (the dry-run executor). `policy` owns timers.
    pub fn apply(&mut self, policy: &str, step: &Step) {
        match &step.action {
            Action::SetHastRole(set) => {
                let entry = self.hast_entry(&set.resource);
                entry.role = set.role;
                entry.dirty_bytes = (set.role == HastRole::Primary).then_some(0);
                self.set_hast_role(&set.resource, set.role);
            }
            Action::WaitForDevice(path) => {
                self.devices.insert(path.clone());
            }
            Action::WaitHastWorkerGone(worker) => {
                self.workers.remove(&(worker.resource.clone(), worker.role));
            }
            Action::Fsck(_) | Action::Alert(_) => {}
            Action::Mount(mount) => {
                self.mounts.insert(
                    mount.mountpoint.clone(),
                    MountStatus {
                        device: mount.device.clone(),
                        mountpoint: mount.mountpoint.clone(),
                        fstype: mount.fstype.clone(),
                    },
                );
            }
            Action::Unmount(unmount) => {
                self.mounts.remove(&unmount.mountpoint);
            }
            Action::Service(service) => {
                self.services
                    .insert(service.name.clone(), service.op != ServiceOp::Stop);
            }
            Action::SetTimer(timer) => {
                let due = self.now_ms + u64::from(timer.after_ms.max(MIN_TIMER_MS));
                self.timers
                    .entry(policy.to_owned())
                    .or_default()
                    .insert(timer.name.clone(), due);
            }
            Action::CancelTimer(name) => self.cancel_timer(policy, name),
            Action::DemoteCarp(vhid) => {
                // As if the peer took the address at once.
                if let Some(status) = self.carp.get_mut(vhid) {
                    status.state = CarpState::Backup;
                }
                self.carp_demoted.insert(*vhid);
            }
            Action::LiftCarpDemotion(vhid) => {
                self.carp_demoted.remove(vhid);
            }
        }
    }

    /// Turn maintenance on (since now, by `uid`) or off. Turning it on again keeps the first
    /// `since`.
    pub fn set_maintenance(&mut self, on: bool, uid: u32) {
        self.maintenance = match (on, self.maintenance) {
            (false, _) => None,
            (true, Some(already)) => Some(already),
            (true, None) => Some(MaintenanceState {
                since_unix_ms: self.unix_ms,
                uid,
            }),
        };
    }

    /// Disarm a timer; disarming one that is not armed does nothing.
    pub fn cancel_timer(&mut self, policy: &str, name: &str) {
        if let Some(timers) = self.timers.get_mut(policy) {
            timers.remove(name);
            if timers.is_empty() {
                self.timers.remove(policy);
            }
        }
    }

    /// Names of a policy's armed timers.
    pub fn armed_timers(&self, policy: &str) -> BTreeSet<String> {
        self.timers
            .get(policy)
            .map(|timers| timers.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// When a policy's timer is due, if it is armed.
    pub fn timer_due(&self, policy: &str, name: &str) -> Option<u64> {
        self.timers.get(policy)?.get(name).copied()
    }

    /// Every timer due at or before `until_ms`, as (due, policy, name), in due order.
    pub fn due_timers(&self, until_ms: u64) -> Vec<(u64, String, String)> {
        let mut due: Vec<_> = self.timers_due_by(until_ms).collect();
        due.sort();
        due
    }

    /// The earliest timer due at or before `until_ms`, as (due, policy, name).
    pub fn next_due_timer(&self, until_ms: u64) -> Option<(u64, String, String)> {
        self.timers_due_by(until_ms).min()
    }

    fn timers_due_by(&self, until_ms: u64) -> impl Iterator<Item = (u64, String, String)> + '_ {
        self.timers.iter().flat_map(move |(policy, timers)| {
            timers
                .iter()
                .filter(move |(_, due)| **due <= until_ms)
                .map(move |(name, due)| (*due, policy.clone(), name.clone()))
        })
    }

    /// CARP state of a vhid.
    pub fn carp_state(&self, vhid: u8) -> Option<CarpState> {
        self.carp.get(&vhid).map(|status| status.state)
    }

    /// Whether a HAST worker runs for `resource` in `role`.
    pub fn worker_running(&self, resource: &str, role: HastRole) -> bool {
        self.workers.contains(&(resource.to_owned(), role))
    }

    /// Whether a device node exists.
    pub fn device_exists(&self, path: &str) -> bool {
        self.devices.contains(path)
    }

    /// Whether a service runs (unknown services do not).
    pub fn service_running(&self, name: &str) -> bool {
        self.services.get(name).copied().unwrap_or(false)
    }

    /// The startup event's state as a policy with these grants sees it.
    pub fn startup_state(&self, grants: &Grants) -> StartupState {
        StartupState {
            carp: self.carp.values().cloned().collect(),
            hast: self
                .hast
                .values()
                .filter(|status| grants.hast_resources.contains(&status.resource))
                .cloned()
                .collect(),
            mounts: grants
                .mounts
                .iter()
                .filter_map(|grant| self.mounts.get(&grant.mountpoint).cloned())
                .collect(),
            services: grants
                .services
                .iter()
                .map(|name| ServiceStatus {
                    name: name.clone(),
                    running: self.service_running(name),
                })
                .collect(),
            interrupted: None,
            state_lost: None,
        }
    }

    /// What this host's daemon publishes to its peer: the model's CARP, and the HAST
    /// resources, mounts and services its policies are granted (each has one owner, so
    /// nothing repeats), with who it is, its policies and its maintenance. The running plan
    /// and the alerts are set by the caller.
    pub fn peer_facts<'a>(
        &self,
        host: &str,
        version: &str,
        policies: Vec<PeerPolicy>,
        grants: impl IntoIterator<Item = &'a Grants>,
    ) -> PeerFacts {
        let mut facts = PeerFacts {
            host: host.to_owned(),
            version: version.to_owned(),
            carp: self.carp.values().cloned().collect(),
            policies,
            maintenance: self.maintenance.is_some(),
            ..PeerFacts::default()
        };
        for grants in grants {
            let granted = self.startup_state(grants);
            facts.hast.extend(granted.hast);
            facts.mounts.extend(granted.mounts);
            facts.services.extend(granted.services);
        }
        facts
    }

    /// Move the clock forward to `now_ms` (never back); the wall clock moves with it.
    pub fn advance_clock(&mut self, now_ms: u64) {
        if now_ms > self.now_ms {
            self.unix_ms = self.unix_ms.saturating_add(now_ms - self.now_ms);
            self.now_ms = now_ms;
        }
    }

    /// The peer as a policy sees it now.
    pub fn peer_state(&self) -> PeerState {
        self.peer.state(self.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
        now-ms = 1000
        carp = [{ vhid = 1, interface = "em0", state = "backup" }]
        hast = [{ resource = "test", role = "secondary", replication = "complete" }]
        services = { mysql-server = false }
    "#;

    fn machine() -> Machine {
        toml::from_str(SPEC).unwrap()
    }

    fn apply(machine: &mut Machine, lines: &[&str]) {
        for line in lines {
            machine.apply("p", &line.parse().unwrap());
        }
    }

    #[test]
    fn roles_imply_workers_and_devices() {
        let mut machine = machine();
        assert!(machine.worker_running("test", HastRole::Secondary));
        assert!(!machine.device_exists("/dev/hast/test"));
        apply(&mut machine, &["hast-role test primary"]);
        assert!(machine.worker_running("test", HastRole::Primary));
        assert!(!machine.worker_running("test", HastRole::Secondary));
        assert!(machine.device_exists("/dev/hast/test"));
    }

    #[test]
    fn dry_run_of_the_seed_promotion() {
        let mut machine = machine();
        apply(
            &mut machine,
            &[
                "wait-worker-gone test secondary",
                "hast-role test primary",
                "wait-device /dev/hast/test",
                "fsck ufs /dev/hast/test preen",
                "mount ufs /dev/hast/test /hast/test",
                "service start mysql-server",
                "set-timer settle 500",
            ],
        );
        assert_eq!(machine.hast["test"].role, HastRole::Primary);
        assert_eq!(machine.mounts["/hast/test"].device, "/dev/hast/test");
        assert!(machine.service_running("mysql-server"));
        assert_eq!(
            machine.next_due_timer(1500),
            Some((1500, "p".into(), "settle".into()))
        );
        assert_eq!(machine.next_due_timer(1499), None);
        apply(
            &mut machine,
            &["cancel-timer settle", "unmount /hast/test force"],
        );
        assert!(machine.timers.is_empty());
        assert!(machine.mounts.is_empty());
    }

    #[test]
    fn spec_round_trips_through_toml() {
        let mut machine = machine();
        machine.workers.insert(("test".into(), HastRole::Primary));
        let text = toml::to_string(&machine).unwrap();
        let back: Machine = toml::from_str(&text).unwrap();
        assert_eq!(back, machine);
    }

    #[test]
    fn events_update_the_model() {
        let mut machine = machine();
        let event: Event = toml::from_str::<toml::Table>(
            r#"e = { carp-changed = { vhid = 1, interface = "em0", state = "master" } }"#,
        )
        .unwrap()["e"]
            .clone()
            .try_into()
            .unwrap();
        machine.observe(&event);
        assert_eq!(machine.carp_state(1), Some(CarpState::Master));
    }
}
