//! Spare instances: each policy's next instance, made before its event arrives.
//!
//! Every event gets a fresh instance, so that nothing a policy keeps in memory survives from one
//! event to the next. For a Python component, making that instance is a good part of a
//! decision: wasmtime wires up, one by one, the thousands of functions that the component's core
//! modules (the interpreter, its libraries, the bindings) import from each other, and tearing
//! the instance down afterwards resets and releases its memory. Measured on a Python policy,
//! that is about a third of a 2 ms decision (`BENCHMARKS.md`, "Policies in Python and
//! JavaScript"). Which policies get spares is decided at load, by how long making one took
//! ([`crate::runtime::SPARE_WORTH`]).
//!
//! So a helper thread, `haven-spares`, makes each policy's next instance as soon as the one
//! before is taken, and tears used stores down, both off the event path. What a call gets is as
//! fresh as an instance made on the spot: made from the same linked component, never called,
//! with the call's own data (machine, key-value store, deadline, transfer budget) put in its
//! store when it is taken. Two guards keep it exactly that:
//! - an instance whose instantiation called the host (a start function asking a question or
//!   logging) would have seen the helper's empty machine, so it is thrown away, and that policy
//!   gets no spares again: its calls instantiate on the spot, as they always did;
//! - instantiating runs under the policy's own limits (memory, deadline), and if it fails, the
//!   policy gets no spares either: the call then instantiates itself and reports the failure.
//!
//! When no spare is ready (the first event, or events faster than the helper), a call makes its
//! own instance, so spares only ever save time. At most [`MAX_SPARES`] are kept, the most
//! recently wanted, since each holds an instance slot of the pool and a reloaded policy's old
//! spares are never taken; at most [`MAX_RETIRED`] used stores wait to be torn down, and past
//! that (or if the helper is gone) a call tears its own down, as it always did.

use crate::bindings::{Instance, PolicyPre};
use crate::call_context::CallContext;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::Store;

/// The most spare instances kept at once, across policies.
pub const MAX_SPARES: usize = 4;

/// The most policies remembered as getting no spares.
const MAX_REFUSED: usize = 1024;

/// The most used stores waiting for the helper; past this (the helper busy making a slow
/// policy's spare, or gone), a call tears its own down, so that used stores never hold more
/// than this many of the pool's instance slots.
pub const MAX_RETIRED: usize = 4;

/// A store with a fresh instance in it.
pub(crate) struct Spare {
    pub(crate) store: Store<CallContext>,
    pub(crate) instance: Instance,
}

/// What the helper is asked to make a spare for.
pub(crate) struct Wanted {
    /// The configured policy it is for ([`crate::runtime::LoadedPolicy`]'s id).
    pub(crate) policy: u64,
    pub(crate) pre: PolicyPre,
    /// Makes the store to instantiate in: the policy's limits and grants, an empty machine.
    pub(crate) store: Box<dyn FnOnce() -> Store<CallContext> + Send>,
}

#[derive(Default)]
struct State {
    /// Ready spares, oldest first, by policy id.
    ready: VecDeque<(u64, Spare)>,
    /// Spares to make, in order.
    wanted: VecDeque<Wanted>,
    /// Policies with a spare wanted or ready.
    pending: HashSet<u64>,
    /// Policies that get no spares: instantiating one failed or called the host.
    refused: HashSet<u64>,
    /// Used stores, to tear down.
    retired: Vec<Store<CallContext>>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The spare instances of one runtime, and the thread that makes them.
pub(crate) struct Spares {
    /// How long making an instance must take at load for a policy to get spares.
    pub(crate) worth: Duration,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Spares {
    pub(crate) fn start(worth: Duration) -> Spares {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            work: Condvar::new(),
        });
        let helper = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("haven-spares".into())
            .spawn(move || make_spares(&helper))
            .expect("spawning the spare-instance thread");
        Spares {
            worth,
            shared,
            thread: Some(thread),
        }
    }

    /// Whether the helper thread is still there to make spares (it ends only if it panicked).
    fn helper_alive(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// The ready spare for `policy`, if there is one; either way, a spare is asked for the
    /// next call (`want` runs only if none is on its way and the policy is not refused).
    pub(crate) fn take(&self, policy: u64, want: impl FnOnce() -> Wanted) -> Option<Spare> {
        if !self.helper_alive() {
            return None;
        }
        let mut state = self.shared.lock();
        let spare = state
            .ready
            .iter()
            .position(|(id, _)| *id == policy)
            .and_then(|at| state.ready.remove(at))
            .map(|(_, spare)| spare);
        if spare.is_some() {
            state.pending.remove(&policy);
        }
        if !state.refused.contains(&policy) && state.pending.insert(policy) {
            state.wanted.push_back(want());
            self.shared.work.notify_one();
        }
        spare
    }

    /// Tear a used store down on the helper thread, or here if [`MAX_RETIRED`] already wait
    /// or the helper is gone.
    pub(crate) fn retire(&self, store: Store<CallContext>) {
        let mut state = self.shared.lock();
        if state.retired.len() >= MAX_RETIRED || !self.helper_alive() {
            drop(state);
            drop(store);
            return;
        }
        state.retired.push(store);
        drop(state);
        self.shared.work.notify_one();
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The helper thread: tear down retired stores and make wanted spares until told to stop.
fn make_spares(shared: &Shared) {
    loop {
        let (retired, wanted) = {
            let mut state = shared.lock();
            while !state.stop && state.retired.is_empty() && state.wanted.is_empty() {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            (std::mem::take(&mut state.retired), state.wanted.pop_front())
        };
        drop(retired);
        let Some(wanted) = wanted else { continue };
        let policy = wanted.policy;
        let mut store = (wanted.store)();
        let made = match wanted.pre.instantiate(&mut store) {
            Ok(instance) if store.data().host_calls == 0 => Some(Spare { store, instance }),
            _ => None,
        };
        let evicted = {
            let mut state = shared.lock();
            match made {
                Some(spare) => {
                    state.ready.push_back((policy, spare));
                    let evicted = if state.ready.len() > MAX_SPARES {
                        state.ready.pop_front()
                    } else {
                        None
                    };
                    if let Some((id, _)) = &evicted {
                        state.pending.remove(id);
                    }
                    evicted
                }
                None => {
                    state.pending.remove(&policy);
                    if state.refused.len() >= MAX_REFUSED {
                        // Ids of long-gone policies, mostly: forgetting them costs at most one
                        // more failed attempt each.
                        state.refused.clear();
                    }
                    state.refused.insert(policy);
                    None
                }
            }
        };
        drop(evicted);
    }
}
