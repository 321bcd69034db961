//! Unit-testing policies natively: a scripted [`Host`] and event constructors.
//!
//! ```
//! use haven_sdk::testing::{events, ScriptedHost};
//! use haven_sdk::{CarpState, HastRole, Host};
//!
//! let host = ScriptedHost::new()
//!     .carp(1, "em0", CarpState::Backup)
//!     .hast_role("test", HastRole::Secondary)
//!     .kv("synced", "yes")
//!     .now_ms(5_000);
//! assert_eq!(host.carp_state(1), Some(CarpState::Backup));
//! assert_eq!(host.kv_get("synced").as_deref(), Some("yes"));
//! host.kv_set("synced", "no").unwrap();
//! assert_eq!(host.kv_snapshot()["synced"], "no");
//! assert_eq!(host.kv_keys(), ["synced"]);
//! let _ = events::carp(1, "em0", CarpState::Master);
//! ```
//!
//! Like the daemon, the scripted host refuses queries about resources, mountpoints, devices
//! and services it was not told about with [`QueryError::NotGranted`], so a test catches a
//! policy that asks about something its grants would not cover.

use crate::{
    CarpState, HastReplication, HastRole, HastStatus, Host, LogLevel, MaintenanceState,
    MountStatus, PeerFacts, PeerLink, PeerState, QueryError, WitnessState,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// A [`Host`] whose answers are scripted by the test.
#[derive(Debug, Default)]
pub struct ScriptedHost {
    carp: BTreeMap<u8, CarpState>,
    hast: BTreeMap<String, HastStatus>,
    workers: BTreeSet<(String, HastRoleKey)>,
    mountpoints: BTreeMap<String, Option<MountStatus>>,
    devices: BTreeMap<String, bool>,
    services: BTreeMap<String, bool>,
    now_ms: u64,
    unix_ms: u64,
    kv: RefCell<BTreeMap<String, String>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    /// None: no `[peer]` configured.
    peer: Option<PeerState>,
    maintenance: Option<MaintenanceState>,
    /// None: no `[witness]` configured.
    witness: Option<WitnessState>,
}

/// `HastRole` is not `Ord`; workers are kept by a sortable key.
type HastRoleKey = u8;

fn role_key(role: HastRole) -> HastRoleKey {
    role as u8
}

impl ScriptedHost {
    /// A host that knows nothing: every query is refused, the clock reads 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A CARP vhid in a state.
    pub fn carp(mut self, vhid: u8, _interface: &str, state: CarpState) -> Self {
        self.carp.insert(vhid, state);
        self
    }

    /// A granted HAST resource with its full status.
    pub fn hast(mut self, status: HastStatus) -> Self {
        self.hast.insert(status.resource.clone(), status);
        self
    }

    /// A granted HAST resource in a role, replication complete, no dirty count; its worker
    /// runs in that role (none in `init`) and `/dev/hast/<resource>` exists in `primary`.
    pub fn hast_role(mut self, resource: &str, role: HastRole) -> Self {
        self.hast.insert(
            resource.to_owned(),
            HastStatus {
                resource: resource.to_owned(),
                role,
                replication: HastReplication::Complete,
                dirty_bytes: (role == HastRole::Primary).then_some(0),
            },
        );
        self.workers.retain(|(name, _)| name != resource);
        if role != HastRole::Init {
            self.workers.insert((resource.to_owned(), role_key(role)));
        }
        self.devices
            .insert(format!("/dev/hast/{resource}"), role == HastRole::Primary);
        self
    }

    /// A HAST worker still runs for `resource` in `role` (e.g. a secondary worker that has not
    /// exited yet).
    pub fn worker(mut self, resource: &str, role: HastRole) -> Self {
        self.workers.insert((resource.to_owned(), role_key(role)));
        self
    }

    /// A granted mountpoint with nothing mounted on it.
    pub fn mountpoint(mut self, mountpoint: &str) -> Self {
        self.mountpoints.insert(mountpoint.to_owned(), None);
        self
    }

    /// A granted mountpoint with `device` mounted on it.
    pub fn mounted(mut self, device: &str, mountpoint: &str, fstype: &str) -> Self {
        self.mountpoints.insert(
            mountpoint.to_owned(),
            Some(MountStatus {
                device: device.to_owned(),
                mountpoint: mountpoint.to_owned(),
                fstype: fstype.to_owned(),
            }),
        );
        self
    }

    /// A granted device node, present or not.
    pub fn device(mut self, path: &str, exists: bool) -> Self {
        self.devices.insert(path.to_owned(), exists);
        self
    }

    /// A granted service, running or not.
    pub fn service(mut self, name: &str, running: bool) -> Self {
        self.services.insert(name.to_owned(), running);
        self
    }

    /// The monotonic clock's reading.
    pub fn now_ms(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// The wall clock's reading (milliseconds since 1970).
    pub fn unix_ms(mut self, unix_ms: u64) -> Self {
        self.unix_ms = unix_ms;
        self
    }

    /// The witness as this host sees it (`[witness]` configured).
    pub fn witness(mut self, state: WitnessState) -> Self {
        self.witness = Some(state);
        self
    }

    /// This host in maintenance since `since_unix_ms`, turned on by `uid`.
    pub fn maintenance(mut self, since_unix_ms: u64, uid: u32) -> Self {
        self.maintenance = Some(MaintenanceState { since_unix_ms, uid });
        self
    }

    /// The peer link in `link` for `for_ms` milliseconds (the facts are kept).
    pub fn peer_link(mut self, link: PeerLink, for_ms: u64) -> Self {
        let mut state = self.peer.take().unwrap_or_else(not_configured);
        state.link = link;
        state.link_for_ms = for_ms;
        self.peer = Some(state);
        self
    }

    /// The peer's last facts, `age_ms` old.
    pub fn peer_facts(mut self, facts: PeerFacts, age_ms: u64) -> Self {
        let mut state = self.peer.take().unwrap_or_else(not_configured);
        state.facts = Some(facts);
        state.facts_age_ms = Some(age_ms);
        self.peer = Some(state);
        self
    }

    /// A key already in the policy's store.
    pub fn kv(self, key: &str, value: &str) -> Self {
        self.kv
            .borrow_mut()
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// The policy's store as it is now.
    pub fn kv_snapshot(&self) -> BTreeMap<String, String> {
        self.kv.borrow().clone()
    }

    /// Everything the policy logged, in order.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }
}

fn not_configured() -> PeerState {
    PeerState {
        link: PeerLink::NotConfigured,
        link_for_ms: 0,
        facts: None,
        facts_age_ms: None,
    }
}

fn not_granted(what: &str, name: &str) -> QueryError {
    QueryError::NotGranted(format!("{what} `{name}`"))
}

impl Host for ScriptedHost {
    fn carp_state(&self, vhid: u8) -> Option<CarpState> {
        self.carp.get(&vhid).copied()
    }

    fn hast_status(&self, resource: &str) -> Result<HastStatus, QueryError> {
        self.hast
            .get(resource)
            .cloned()
            .ok_or_else(|| not_granted("HAST resource", resource))
    }

    fn hast_worker_running(&self, resource: &str, role: HastRole) -> Result<bool, QueryError> {
        if !self.hast.contains_key(resource) {
            return Err(not_granted("HAST resource", resource));
        }
        Ok(self
            .workers
            .contains(&(resource.to_owned(), role_key(role))))
    }

    fn mounted(&self, mountpoint: &str) -> Result<Option<MountStatus>, QueryError> {
        self.mountpoints
            .get(mountpoint)
            .cloned()
            .ok_or_else(|| not_granted("mountpoint", mountpoint))
    }

    fn device_exists(&self, path: &str) -> Result<bool, QueryError> {
        self.devices
            .get(path)
            .copied()
            .ok_or_else(|| not_granted("device", path))
    }

    fn service_running(&self, name: &str) -> Result<bool, QueryError> {
        self.services
            .get(name)
            .copied()
            .ok_or_else(|| not_granted("service", name))
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn unix_ms(&self) -> u64 {
        self.unix_ms
    }

    fn kv_get(&self, key: &str) -> Option<String> {
        self.kv.borrow().get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: &str) -> Result<(), String> {
        self.kv
            .borrow_mut()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn kv_remove(&self, key: &str) {
        self.kv.borrow_mut().remove(key);
    }

    fn kv_keys(&self) -> Vec<String> {
        self.kv.borrow().keys().cloned().collect()
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn peer(&self) -> PeerState {
        self.peer.clone().unwrap_or_else(not_configured)
    }

    fn maintenance(&self) -> Option<MaintenanceState> {
        self.maintenance
    }

    fn witness(&self) -> Option<WitnessState> {
        self.witness.clone()
    }
}

/// Constructors for the events a test feeds a policy.
pub mod events {
    use crate::{
        CarpChange, CarpLink, CarpState, Event, HastHook, HastRole, HastRoleChange, OperatorAsk,
        OperatorRequest, PeerEvent, PeerFacts, WitnessChange, WitnessEvent, WitnessState,
    };

    /// A CARP vhid changed to `state` (previous state unknown).
    pub fn carp(vhid: u8, interface: &str, state: CarpState) -> Event {
        Event::CarpChanged(CarpChange {
            vhid,
            interface: interface.to_owned(),
            state,
            previous: None,
        })
    }

    /// A legacy carp pseudo-interface went up (`true`) or down.
    pub fn carp_link(interface: &str, up: bool) -> Event {
        Event::CarpLink(CarpLink {
            interface: interface.to_owned(),
            up,
        })
    }

    /// A hastd `exec` hook event.
    pub fn hast(hook: HastHook) -> Event {
        Event::HastHook(hook)
    }

    /// hastd's `role <res> <old> <new>` hook.
    pub fn hast_role(resource: &str, old: HastRole, new: HastRole) -> Event {
        Event::HastHook(HastHook::RoleChanged(HastRoleChange {
            resource: resource.to_owned(),
            old,
            new,
        }))
    }

    /// A timer fired.
    pub fn timer(name: &str) -> Event {
        Event::TimerFired(name.to_owned())
    }

    /// The peer's hastd ran its `exec` hook (relayed by the peer link).
    pub fn peer_hook(hook: HastHook) -> Event {
        Event::Peer(PeerEvent::HastHook(hook))
    }

    /// The peer published new facts.
    pub fn peer_facts(facts: PeerFacts) -> Event {
        Event::Peer(PeerEvent::FactsChanged(facts))
    }

    /// The peer link came up (`true`) or went down.
    pub fn peer_link(up: bool) -> Event {
        Event::Peer(if up { PeerEvent::Up } else { PeerEvent::Down })
    }

    /// root asked for `ask` with `havenctl`.
    pub fn operator(ask: OperatorAsk) -> Event {
        Event::Operator(OperatorRequest { uid: 0, ask })
    }

    /// The witness brought news: `change`, and its state after it.
    pub fn witness(change: WitnessChange, state: WitnessState) -> Event {
        Event::Witness(WitnessEvent { change, state })
    }
}
