//! The host as a policy sees it: read-only queries about the machine, the policy's own
//! key-value store, and logging.
//!
//! [`Host`] is a trait so that the same policy code runs against the real daemon (through the
//! WIT imports, [`WasmHost`]) and against [`crate::testing::ScriptedHost`] in native unit tests.

use crate::bindings::haven::policy as wit;
use crate::{
    CarpState, HastRole, HastStatus, LogLevel, MaintenanceState, MountStatus, PeerState,
    QueryError, WitnessState,
};

/// Everything a policy may ask of the daemon while it decides.
pub trait Host {
    /// CARP state of a vhid, if the daemon knows the vhid.
    fn carp_state(&self, vhid: u8) -> Option<CarpState>;

    /// Role, replication and dirty count of a granted HAST resource.
    fn hast_status(&self, resource: &str) -> Result<HastStatus, QueryError>;

    /// Whether a HAST worker for a granted resource runs in the given role.
    fn hast_worker_running(&self, resource: &str, role: HastRole) -> Result<bool, QueryError>;

    /// What is mounted at a granted mountpoint, if anything.
    fn mounted(&self, mountpoint: &str) -> Result<Option<MountStatus>, QueryError>;

    /// Whether a granted device node exists.
    fn device_exists(&self, path: &str) -> Result<bool, QueryError>;

    /// Whether a granted service runs.
    fn service_running(&self, name: &str) -> Result<bool, QueryError>;

    /// Monotonic milliseconds; constant during one event.
    fn now_ms(&self) -> u64;

    /// Wall-clock milliseconds since 1970-01-01 UTC, for saying when (never for timing).
    /// Since contract 2.0.
    fn unix_ms(&self) -> u64;

    /// A value from the policy's key-value store.
    fn kv_get(&self, key: &str) -> Option<String>;

    /// Store a value; it is kept only if this event's handling succeeds.
    fn kv_set(&self, key: &str, value: &str) -> Result<(), String>;

    /// Remove a key.
    fn kv_remove(&self, key: &str);

    /// Every key in the store, in lexical order, this event's writes included. Since contract
    /// 1.1.
    fn kv_keys(&self) -> Vec<String>;

    /// Log a message into the daemon's log.
    fn log(&self, level: LogLevel, message: &str);

    /// The peer link's state and the other host's last facts, with their age. Since contract
    /// 2.0.
    fn peer(&self) -> PeerState;

    /// This host's maintenance, while `havenctl maintenance on` holds. Since contract 3.0.
    fn maintenance(&self) -> Option<MaintenanceState>;

    /// The witness (etcd) as this host sees it: whether it answers, who holds the pair's
    /// leader key, whether this host does; `None` without `[witness]`. Since contract 4.0.
    fn witness(&self) -> Option<WitnessState>;
}

/// The real host: every call goes through the component's imports to the daemon.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

impl Host for WasmHost {
    fn carp_state(&self, vhid: u8) -> Option<CarpState> {
        wit::carp::state(vhid)
    }

    fn hast_status(&self, resource: &str) -> Result<HastStatus, QueryError> {
        wit::hast::status(resource)
    }

    fn hast_worker_running(&self, resource: &str, role: HastRole) -> Result<bool, QueryError> {
        wit::hast::worker_running(resource, role)
    }

    fn mounted(&self, mountpoint: &str) -> Result<Option<MountStatus>, QueryError> {
        wit::storage::mounted(mountpoint)
    }

    fn device_exists(&self, path: &str) -> Result<bool, QueryError> {
        wit::storage::device_exists(path)
    }

    fn service_running(&self, name: &str) -> Result<bool, QueryError> {
        wit::services::is_running(name)
    }

    fn now_ms(&self) -> u64 {
        wit::clock::now_ms()
    }

    fn unix_ms(&self) -> u64 {
        wit::clock::unix_ms()
    }

    fn kv_get(&self, key: &str) -> Option<String> {
        wit::kv::get(key)
    }

    fn kv_set(&self, key: &str, value: &str) -> Result<(), String> {
        wit::kv::set(key, value)
    }

    fn kv_remove(&self, key: &str) {
        wit::kv::remove(key)
    }

    fn kv_keys(&self) -> Vec<String> {
        wit::kv::keys()
    }

    fn log(&self, level: LogLevel, message: &str) {
        wit::log::log(level, message)
    }

    fn peer(&self) -> PeerState {
        wit::peer::state()
    }

    fn maintenance(&self) -> Option<MaintenanceState> {
        wit::operator::maintenance()
    }

    fn witness(&self) -> Option<WitnessState> {
        wit::witness::state()
    }
}
