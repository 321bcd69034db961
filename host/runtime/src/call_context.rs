//! What one call into a policy can see and leave behind: the data of its `Store`.
//!
//! The imports a policy calls are answered here, from a read-only snapshot of the machine,
//! filtered by the policy's grants. Key-value writes are buffered and committed by the caller
//! only when the call succeeds; logs are kept within the per-call budget and handed back.

use crate::bindings::Convert;
use haven_core::text::{clip, escape};
use haven_core::{Grants, Limits, LogLevel, Machine, Missing};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Refused queries one call keeps, to journal and show; the rest are only counted.
pub const MAX_REFUSED_KEPT: usize = 16;

/// The longest refused-query message kept (it names what the policy asked for).
const MAX_REFUSED_BYTES: usize = 256;

/// A policy's key-value store.
pub type KvStore = BTreeMap<String, String>;

/// A log line a policy wrote during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    pub level: LogLevel,
    pub message: String,
}

/// The store data of one call.
pub struct CallContext {
    machine: Arc<Machine>,
    grants: Arc<Grants>,
    limits: Arc<Limits>,
    kv: Arc<KvStore>,
    /// Key-value writes of this call: `Some` sets, `None` removes.
    pub(crate) kv_writes: BTreeMap<String, Option<String>>,
    pub(crate) logs: Vec<PolicyLog>,
    log_bytes: usize,
    pub(crate) dropped_logs: u32,
    /// The first [`MAX_REFUSED_KEPT`] refused queries, clipped.
    pub(crate) refused_queries: Vec<String>,
    /// Every refused query, kept or not.
    pub(crate) refused_count: u32,
    /// Set when the memory cap refused a growth: the trap that follows is a memory overflow.
    pub(crate) memory_denied: bool,
    /// Imports the policy called: a spare instance whose instantiation called any is not used
    /// (see [`crate::spare`]).
    pub(crate) host_calls: u32,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("kv_writes", &self.kv_writes.len())
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

impl CallContext {
    pub(crate) fn new(
        machine: Arc<Machine>,
        grants: Arc<Grants>,
        limits: Arc<Limits>,
        kv: Arc<KvStore>,
    ) -> Self {
        CallContext {
            machine,
            grants,
            limits,
            kv,
            kv_writes: BTreeMap::new(),
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            refused_queries: Vec::new(),
            refused_count: 0,
            memory_denied: false,
            host_calls: 0,
        }
    }

    /// The limits this call runs under.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Note a refused query. Only the first few are kept and logged: a policy may ask a
    /// million times in one call, and each costs only a counter.
    fn refuse(&mut self, missing: Missing) -> Refusal {
        let message = clip(&missing.to_string(), MAX_REFUSED_BYTES).into_owned();
        self.refused_count = self.refused_count.saturating_add(1);
        if self.refused_queries.len() < MAX_REFUSED_KEPT {
            tracing::warn!(refused_query = %escape(&message), "policy query refused");
            self.refused_queries.push(message.clone());
        }
        Refusal::NotGranted(message)
    }

    /// The store's keys as this call sees them: the stored ones with this call's writes applied.
    fn kv_keys(&self) -> BTreeSet<&str> {
        let mut keys: BTreeSet<&str> = self.kv.keys().map(String::as_str).collect();
        for (written, value) in &self.kv_writes {
            match value {
                Some(_) => keys.insert(written),
                None => keys.remove(written.as_str()),
            };
        }
        keys
    }

    /// How many keys the store would hold with this call's writes and `key` set.
    fn kv_len_after_write(&self, key: &str) -> usize {
        let mut keys = self.kv_keys();
        keys.insert(key);
        keys.len()
    }
}

/// Why a query was not answered: the contract's `query-error`, in every major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotGranted(String),
    Unknown(String),
}

/// The answers to the contract's queries, in `haven-core` types; each major's bindings below
/// only convert.
impl CallContext {
    fn carp_state(&mut self, vhid: u8) -> Option<haven_core::CarpState> {
        self.host_calls += 1;
        self.machine.carp_state(vhid)
    }

    fn hast_status(&mut self, resource: String) -> Result<haven_core::HastStatus, Refusal> {
        self.host_calls += 1;
        if let Err(missing) = self.grants.hast(&resource) {
            return Err(self.refuse(missing));
        }
        match self.machine.hast.get(&resource) {
            Some(status) => Ok(status.clone()),
            None => Err(Refusal::Unknown(format!("HAST resource `{resource}`"))),
        }
    }

    fn hast_worker_running(
        &mut self,
        resource: String,
        role: haven_core::HastRole,
    ) -> Result<bool, Refusal> {
        self.host_calls += 1;
        if let Err(missing) = self.grants.hast(&resource) {
            return Err(self.refuse(missing));
        }
        Ok(self.machine.worker_running(&resource, role))
    }

    fn mounted(&mut self, mountpoint: String) -> Result<Option<haven_core::MountStatus>, Refusal> {
        self.host_calls += 1;
        if let Err(missing) = self.grants.mountpoint(&mountpoint) {
            return Err(self.refuse(missing));
        }
        Ok(self.machine.mounts.get(&mountpoint).cloned())
    }

    fn device_exists(&mut self, path: String) -> Result<bool, Refusal> {
        self.host_calls += 1;
        if let Err(missing) = self.grants.device(&path) {
            return Err(self.refuse(missing));
        }
        Ok(self.machine.device_exists(&path))
    }

    fn service_running(&mut self, name: String) -> Result<bool, Refusal> {
        self.host_calls += 1;
        if let Err(missing) = self.grants.service(&name) {
            return Err(self.refuse(missing));
        }
        Ok(self.machine.service_running(&name))
    }

    fn now_ms(&mut self) -> u64 {
        self.host_calls += 1;
        self.machine.now_ms
    }

    fn unix_ms(&mut self) -> u64 {
        self.host_calls += 1;
        self.machine.unix_ms
    }

    fn peer_state(&mut self) -> haven_core::PeerState {
        self.host_calls += 1;
        self.machine.peer_state()
    }

    fn kv_get(&mut self, key: String) -> Option<String> {
        self.host_calls += 1;
        match self.kv_writes.get(&key) {
            Some(write) => write.clone(),
            None => self.kv.get(&key).cloned(),
        }
    }

    fn kv_set(&mut self, key: String, value: String) -> Result<(), String> {
        self.host_calls += 1;
        let entry_bytes = key.len() + value.len();
        if entry_bytes > self.limits.max_kv_entry_bytes as usize {
            return Err(format!(
                "key `{key}` with its value is {entry_bytes} bytes, over the limit of {}",
                self.limits.max_kv_entry_bytes
            ));
        }
        if self.kv_len_after_write(&key) > self.limits.max_kv_keys as usize {
            return Err(format!(
                "the store already holds its limit of {} keys",
                self.limits.max_kv_keys
            ));
        }
        self.kv_writes.insert(key, Some(value));
        Ok(())
    }

    fn kv_remove(&mut self, key: String) {
        self.host_calls += 1;
        // Only a key that exists is worth a write: removing keys that were never set, however
        // many and however long, must not grow what the host keeps for this call.
        let exists = match self.kv_writes.get(&key) {
            Some(write) => write.is_some(),
            None => self.kv.contains_key(&key),
        };
        if !exists {
            return;
        }
        if self.kv.contains_key(&key) {
            self.kv_writes.insert(key, None);
        } else {
            // Set earlier in this call only: forgetting the write is the removal.
            self.kv_writes.remove(&key);
        }
    }

    fn kv_list(&mut self) -> Vec<String> {
        self.host_calls += 1;
        self.kv_keys().into_iter().map(str::to_owned).collect()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.host_calls += 1;
        let over_count = self.logs.len() >= self.limits.max_log_messages as usize;
        let over_bytes = self.log_bytes + message.len() > self.limits.max_log_bytes as usize;
        if over_count || over_bytes {
            self.dropped_logs += 1;
            return;
        }
        self.log_bytes += message.len();
        self.logs.push(PolicyLog { level, message });
    }
}

/// The query interfaces every major has, for the bindings module `$version`: each function
/// converts and calls the answer above.
macro_rules! queries {
    ($version:ident) => {
        mod $version {
            use super::{CallContext, Refusal};
            use crate::bindings::{Convert, $version::haven::policy as wit};
            use wit::types::{CarpState, HastRole, HastStatus, LogLevel, MountStatus, QueryError};

            impl Convert<QueryError> for Refusal {
                fn convert(self) -> QueryError {
                    match self {
                        Refusal::NotGranted(what) => QueryError::NotGranted(what),
                        Refusal::Unknown(what) => QueryError::Unknown(what),
                    }
                }
            }

            /// `Result`s convert both sides.
            fn answer<T: Convert<U>, U>(result: Result<T, Refusal>) -> Result<U, QueryError> {
                result.map(Convert::convert).map_err(Convert::convert)
            }

            impl wit::types::Host for CallContext {}

            impl wit::carp::Host for CallContext {
                fn state(&mut self, vhid: u8) -> Option<CarpState> {
                    self.carp_state(vhid).convert()
                }
            }

            impl wit::hast::Host for CallContext {
                fn status(&mut self, resource: String) -> Result<HastStatus, QueryError> {
                    answer(self.hast_status(resource))
                }

                fn worker_running(
                    &mut self,
                    resource: String,
                    role: HastRole,
                ) -> Result<bool, QueryError> {
                    answer(self.hast_worker_running(resource, role.convert()))
                }
            }

            impl wit::storage::Host for CallContext {
                fn mounted(
                    &mut self,
                    mountpoint: String,
                ) -> Result<Option<MountStatus>, QueryError> {
                    answer(self.mounted(mountpoint))
                }

                fn device_exists(&mut self, path: String) -> Result<bool, QueryError> {
                    answer(self.device_exists(path))
                }
            }

            impl wit::services::Host for CallContext {
                fn is_running(&mut self, name: String) -> Result<bool, QueryError> {
                    answer(self.service_running(name))
                }
            }

            impl wit::kv::Host for CallContext {
                fn get(&mut self, key: String) -> Option<String> {
                    self.kv_get(key)
                }

                fn set(&mut self, key: String, value: String) -> Result<(), String> {
                    self.kv_set(key, value)
                }

                fn remove(&mut self, key: String) {
                    self.kv_remove(key)
                }

                fn keys(&mut self) -> Vec<String> {
                    self.kv_list()
                }
            }

            impl wit::log::Host for CallContext {
                fn log(&mut self, level: LogLevel, message: String) {
                    CallContext::log(self, level.convert(), message)
                }
            }
        }
    };
}

queries!(v1);
queries!(v2);
queries!(v3);
queries!(v4);

impl crate::bindings::v1::haven::policy::clock::Host for CallContext {
    fn now_ms(&mut self) -> u64 {
        CallContext::now_ms(self)
    }
}

/// What `2.0` added (the wall clock, the peer), for the bindings module `$version`.
macro_rules! since_2 {
    ($version:ident) => {
        impl crate::bindings::$version::haven::policy::clock::Host for CallContext {
            fn now_ms(&mut self) -> u64 {
                CallContext::now_ms(self)
            }

            fn unix_ms(&mut self) -> u64 {
                CallContext::unix_ms(self)
            }
        }

        impl crate::bindings::$version::haven::policy::peer::Host for CallContext {
            fn state(&mut self) -> crate::bindings::$version::haven::policy::types::PeerState {
                self.peer_state().convert()
            }
        }
    };
}

since_2!(v2);
since_2!(v3);
since_2!(v4);

/// What `3.0` added (the operator's settings), for the bindings module `$version`.
macro_rules! since_3 {
    ($version:ident) => {
        impl crate::bindings::$version::haven::policy::operator::Host for CallContext {
            fn maintenance(
                &mut self,
            ) -> Option<crate::bindings::$version::haven::policy::types::MaintenanceState> {
                self.host_calls += 1;
                self.machine.maintenance.convert()
            }
        }
    };
}

since_3!(v3);
since_3!(v4);

impl crate::bindings::v4::haven::policy::witness::Host for CallContext {
    fn state(&mut self) -> Option<crate::bindings::v4::haven::policy::types::WitnessState> {
        self.host_calls += 1;
        self.machine.witness.clone().convert()
    }
}

/// Apply a successful call's key-value writes to the policy's store.
pub fn commit_kv(store: &mut Arc<KvStore>, writes: BTreeMap<String, Option<String>>) {
    if writes.is_empty() {
        return;
    }
    let store = Arc::make_mut(store);
    for (key, value) in writes {
        match value {
            Some(value) => store.insert(key, value),
            None => store.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_include_this_calls_writes() {
        let stored: KvStore = [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        let mut context = CallContext::new(
            Arc::default(),
            Arc::default(),
            Arc::default(),
            Arc::new(stored),
        );
        context.kv_set("c".into(), "3".into()).unwrap();
        context.kv_remove("a".into());
        assert_eq!(context.kv_list(), ["b", "c"]);
    }

    #[test]
    fn removing_keys_that_do_not_exist_keeps_nothing() {
        let stored: KvStore = [("a".to_owned(), "1".to_owned())].into();
        let mut context = CallContext::new(
            Arc::default(),
            Arc::default(),
            Arc::default(),
            Arc::new(stored),
        );
        for n in 0..1000 {
            context.kv_remove(format!("{n:>4096}"));
        }
        assert!(context.kv_writes.is_empty());
        context.kv_set("new".into(), "x".into()).unwrap();
        context.kv_remove("new".into());
        assert!(context.kv_writes.is_empty(), "a write undone is no write");
        context.kv_remove("a".into());
        assert_eq!(context.kv_writes, [("a".to_owned(), None)].into());
        assert_eq!(context.kv_get("a".into()), None);
    }
}
