//! The "policies → plan check" stage: an event goes in, one checked decision per policy
//! concerned comes out.
//!
//! The pipeline owns the loaded policies, the machine model and each policy's key-value store.
//! For every event it updates the model, calls each policy the event concerns, commits the
//! policy's key-value writes if the call succeeded, and checks the plan against the policy's
//! grants. It runs nothing: carrying plans out is the executor's job, whose results come back
//! as changes to [`Pipeline::machine_mut`] and as `step-failed` events.

use crate::call_context::{KvStore, PolicyLog, commit_kv};
use crate::kv_files::KvFiles;
use crate::runtime::{Call, CallFailure, LoadedPolicy, Runtime};
use haven_core::text::escape;
use haven_core::{Event, FailureMode, Machine, Plan, PlanRefusal, StateLost};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What came of handing an event to one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The policy asked for nothing.
    NoAction,
    /// A plan that passed the grants check, to be carried out.
    Plan { plan_id: u64, plan: Plan },
    /// A plan with a step outside the grants: refused whole, nothing runs.
    Refused(PlanRefusal),
    /// The call trapped, timed out, overflowed or returned an error: nothing runs.
    Failed(CallFailure),
}

/// One policy's decision about one event, with everything the journal needs.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The policy's configured name.
    pub policy: String,
    /// SHA-256 of the module that decided.
    pub module_hash: String,
    /// What it decided.
    pub outcome: Outcome,
    /// An operator alert raised by the host for a refused or failed call (failure mode
    /// `alert`).
    pub host_alert: Option<String>,
    /// What the policy logged.
    pub logs: Vec<PolicyLog>,
    /// Log lines over the budget.
    pub dropped_logs: u32,
    /// Queries refused for lack of grants: the first few.
    pub refused_queries: Vec<String>,
    /// Every query refused, kept or not.
    pub refused_count: u32,
    /// How long the call took.
    pub elapsed: Duration,
    /// What the call saw: the machine and the policy's store as they were when it began
    /// (shared, not copied), which the journal records for `havenctl replay`.
    pub inputs: DecisionInputs,
}

/// What a call into a policy is given besides the event: everything its queries can read.
/// With the event, the policy's settings and its grants, this decides the call: a policy has no
/// other input (no clock, randomness or files of its own), so the same inputs give the same
/// plan, which is what lets a recorded decision be replayed against another module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DecisionInputs {
    /// The machine as the model had it (clocks included).
    pub machine: Arc<Machine>,
    /// The policy's key-value store before the call.
    #[serde(default, skip_serializing_if = "is_empty_store")]
    pub kv: Arc<KvStore>,
}

fn is_empty_store(kv: &Arc<KvStore>) -> bool {
    kv.is_empty()
}

/// Hand `event` to `policy` with `inputs`, and check its plan against the policy's grants:
/// the decision [`Pipeline`] makes for each policy, apart from the plan's id (`next_plan_id`
/// is asked only for a plan that passes) and what happens after. `havenctl replay` decides
/// with it too, so that a replayed decision passes the very same check. The plan moves into
/// the outcome: the returned call's `result` only says whether the call succeeded.
pub fn decide_once(
    runtime: &Runtime,
    policy: &LoadedPolicy,
    event: &Event,
    inputs: &DecisionInputs,
    next_plan_id: impl FnOnce() -> u64,
) -> (Outcome, Call) {
    let mut call = runtime.call(
        policy,
        event,
        Arc::clone(&inputs.machine),
        Arc::clone(&inputs.kv),
    );
    let outcome = match std::mem::replace(&mut call.result, Ok(Plan::default())) {
        Ok(plan) => {
            let armed = inputs.machine.armed_timers(&policy.name);
            match policy
                .grants()
                .check_plan(&plan, &armed, &policy.config.limits)
            {
                Ok(()) if plan.is_empty() => Outcome::NoAction,
                Ok(()) => Outcome::Plan {
                    plan_id: next_plan_id(),
                    plan,
                },
                Err(refusal) => Outcome::Refused(refusal),
            }
        }
        Err(failure) => {
            call.result = Err(failure.clone());
            Outcome::Failed(failure)
        }
    };
    (outcome, call)
}

/// Which policies an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients<'a> {
    /// Every policy the event concerns (HAST events: those granted the resource).
    Concerned,
    /// Only the named policy (its timers and its plans' failures).
    Only(&'a str),
}

/// What each policy has done since the pipeline started, for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Events handed to it.
    pub events: u64,
    /// Plans accepted.
    pub plans: u64,
    /// Plans refused for lack of grants.
    pub refused: u64,
    /// Calls that trapped, timed out, overflowed or returned an error.
    pub failed: u64,
    /// Queries refused for lack of grants.
    pub refused_queries: u64,
    /// Log lines dropped over the budget.
    pub dropped_logs: u64,
    /// Host alerts not raised because they repeated the one before (see [`AlertCoalescer`]).
    pub alerts_coalesced: u64,
}

impl PolicyStats {
    fn count(&mut self, outcome: &Outcome, refused_queries: u32, dropped_logs: u32) {
        self.events += 1;
        match outcome {
            Outcome::NoAction => {}
            Outcome::Plan { .. } => self.plans += 1,
            Outcome::Refused(_) => self.refused += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
        self.refused_queries += u64::from(refused_queries);
        self.dropped_logs += u64::from(dropped_logs);
    }
}

/// Loaded policies, the machine model and the policies' stores.
#[derive(Debug)]
pub struct Pipeline {
    runtime: Arc<Runtime>,
    policies: Vec<LoadedPolicy>,
    machine: Arc<Machine>,
    kv: BTreeMap<String, Arc<KvStore>>,
    /// Where the stores are kept across restarts; none in simulations and tests.
    kv_files: Option<KvFiles>,
    /// Stores that could not be read back, by policy: the policy hears it at its next startup.
    state_lost: BTreeMap<String, String>,
    /// Stores changed since they were last saved.
    unsaved_stores: std::collections::BTreeSet<String>,
    stats: BTreeMap<String, PolicyStats>,
    alerts: AlertCoalescer,
    next_plan_id: u64,
}

impl Pipeline {
    /// A pipeline over loaded policies and a starting model.
    pub fn new(runtime: Arc<Runtime>, policies: Vec<LoadedPolicy>, machine: Machine) -> Self {
        Pipeline {
            runtime,
            policies,
            machine: Arc::new(machine),
            kv: BTreeMap::new(),
            kv_files: None,
            state_lost: BTreeMap::new(),
            unsaved_stores: Default::default(),
            stats: BTreeMap::new(),
            alerts: AlertCoalescer::default(),
            next_plan_id: 1,
        }
    }

    /// Keep the policies' stores in `files` from now on, and load what they hold. Returns,
    /// for each policy whose store could not be read back, why: the caller raises a critical
    /// alert, and the policy is told at its next startup event.
    pub fn keep_stores_in(&mut self, files: KvFiles) -> Vec<(String, String)> {
        self.kv_files = Some(files);
        let names: Vec<String> = self.policies.iter().map(|p| p.name.clone()).collect();
        names
            .into_iter()
            .filter_map(|name| self.load_store(&name).map(|why| (name, why)))
            .collect()
    }

    /// Load one policy's store from the files; why it was lost, if it was.
    fn load_store(&mut self, policy: &str) -> Option<String> {
        let files = self.kv_files.as_ref()?;
        match files.load(policy) {
            Ok(Some(store)) => {
                self.kv.insert(policy.to_owned(), Arc::new(store));
                None
            }
            Ok(None) => None,
            Err(error) => {
                let why = error.to_string();
                self.state_lost.insert(policy.to_owned(), why.clone());
                Some(why)
            }
        }
    }

    /// Save every store changed since it was last saved: the runner calls this before a step
    /// that acts on the system, the daemon when it is idle and when it stops. Returns an alert
    /// for each store that could not be saved; it stays unsaved and is tried again next time.
    pub fn save_stores(&mut self) -> Vec<String> {
        let Some(files) = &self.kv_files else {
            self.unsaved_stores.clear();
            return Vec::new();
        };
        let names: Vec<String> = self.unsaved_stores.iter().cloned().collect();
        names
            .iter()
            .filter_map(|name| save_store(files, &self.kv, &mut self.unsaved_stores, name))
            .collect()
    }

    /// Whether a policy's store was lost, for its startup event; told once.
    pub fn take_state_lost(&mut self, policy: &str) -> Option<StateLost> {
        self.state_lost
            .remove(policy)
            .map(|reason| StateLost { reason })
    }

    /// Number the next plans after `last` (a restarted daemon goes on from its journal's
    /// highest plan id). Never goes back.
    pub fn continue_plan_ids_after(&mut self, last: u64) {
        self.next_plan_id = self.next_plan_id.max(last.saturating_add(1));
    }

    /// The loaded policies, in the order they are consulted.
    pub fn policies(&self) -> &[LoadedPolicy] {
        &self.policies
    }

    /// What this host tells its peer: the model's facts, with `host`'s name, the given
    /// havend version and the policies' module hashes.
    pub fn peer_facts(&self, host: &str, version: &str) -> haven_core::PeerFacts {
        let policies = self
            .policies
            .iter()
            .map(|policy| haven_core::PeerPolicy {
                name: policy.name.clone(),
                module_hash: policy.compiled.module_hash.clone(),
            })
            .collect();
        let grants = self.policies.iter().map(|policy| policy.grants());
        self.machine.peer_facts(host, version, policies, grants)
    }

    /// Swap in a new set of policies between two events (a reload). A policy that stays (by
    /// name) keeps its key-value store and counters; a policy that is gone loses them, and its
    /// timers are cancelled. Returns the names of the policies that are gone.
    pub fn replace_policies(&mut self, policies: Vec<LoadedPolicy>) -> Vec<String> {
        let removed: Vec<String> = self
            .policies
            .iter()
            .map(|policy| policy.name.clone())
            .filter(|name| !policies.iter().any(|policy| &policy.name == name))
            .collect();
        for name in &removed {
            self.kv.remove(name);
            if let Some(Err(error)) = self.kv_files.as_ref().map(|files| files.remove(name)) {
                tracing::warn!(policy = %name, %error, "cannot remove a removed policy's store");
            }
            self.stats.remove(name);
            self.machine_mut().timers.remove(name);
        }
        let added: Vec<String> = policies
            .iter()
            .map(|policy| policy.name.clone())
            .filter(|name| !self.policies.iter().any(|policy| &policy.name == name))
            .collect();
        self.policies = policies;
        for name in added {
            self.load_store(&name);
        }
        removed
    }

    /// The machine model.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The machine model as a cheap shared snapshot (for status displays on other threads).
    pub fn machine_shared(&self) -> Arc<Machine> {
        Arc::clone(&self.machine)
    }

    /// The machine model, for executors to record what happened.
    pub fn machine_mut(&mut self) -> &mut Machine {
        Arc::make_mut(&mut self.machine)
    }

    /// A policy's key-value store.
    pub fn kv(&self, policy: &str) -> KvStore {
        self.kv
            .get(policy)
            .map(|kv| (**kv).clone())
            .unwrap_or_default()
    }

    /// What a policy has done so far.
    pub fn stats(&self, policy: &str) -> PolicyStats {
        self.stats.get(policy).cloned().unwrap_or_default()
    }

    /// Replace a policy's key-value store (at startup, from the state directory).
    pub fn set_kv(&mut self, policy: &str, store: KvStore) {
        self.kv.insert(policy.to_owned(), Arc::new(store));
    }

    /// The startup event for each policy: the machine as its grants let it see it.
    pub fn startup_events(&self) -> Vec<(String, Event)> {
        self.policies
            .iter()
            .map(|policy| {
                let state = self.machine.startup_state(policy.grants());
                (policy.name.clone(), Event::Startup(state))
            })
            .collect()
    }

    /// Tell every policy the machine's state, as on daemon start or policy load.
    pub fn startup(&mut self, event_id: u64) -> Vec<Decision> {
        self.startup_events()
            .iter()
            .flat_map(|(policy, event)| self.dispatch(event_id, event, Recipients::Only(policy)))
            .collect()
    }

    /// Update the model with an event and hand it to the policies it concerns.
    pub fn dispatch(
        &mut self,
        event_id: u64,
        event: &Event,
        recipients: Recipients<'_>,
    ) -> Vec<Decision> {
        let _span = tracing::info_span!("event", id = event_id, kind = event.kind()).entered();
        self.machine_mut().observe(event);
        let mut decisions = Vec::new();
        for index in 0..self.policies.len() {
            if self.concerns(&self.policies[index], event, recipients) {
                decisions.push(self.decide(index, event));
            }
        }
        decisions
    }

    fn concerns(&self, policy: &LoadedPolicy, event: &Event, recipients: Recipients<'_>) -> bool {
        if !policy.receives(event) {
            return false;
        }
        match recipients {
            Recipients::Only(name) => policy.name == name,
            Recipients::Concerned => match event.hast_resource() {
                Some(resource) => policy.grants().hast_resources.contains(resource),
                None => true,
            },
        }
    }

    fn decide(&mut self, index: usize, event: &Event) -> Decision {
        let policy = &self.policies[index];
        let _span = tracing::info_span!(
            "policy",
            name = %policy.name,
            module = %short_hash(&policy.compiled.module_hash)
        )
        .entered();
        let kv = self.kv.entry(policy.name.clone()).or_default();
        let inputs = DecisionInputs {
            machine: Arc::clone(&self.machine),
            kv: Arc::clone(kv),
        };
        let next_plan_id = &mut self.next_plan_id;
        let (outcome, call) = decide_once(&self.runtime, policy, event, &inputs, || {
            let plan_id = *next_plan_id;
            *next_plan_id += 1;
            plan_id
        });
        for log in &call.logs {
            log_policy_line(log);
        }
        let wrote = call.result.is_ok() && !call.kv_writes.is_empty();
        if call.result.is_ok() {
            commit_kv(kv, call.kv_writes);
        }
        let stats = self.stats.entry(policy.name.clone()).or_default();
        stats.count(&outcome, call.refused_count, call.dropped_logs);
        let host_alert = failure_reason(&policy.name, &outcome)
            .filter(|_| policy.config.on_failure == FailureMode::Alert)
            .and_then(|reason| {
                let alert = self.alerts.raise(&policy.name, reason, self.machine.now_ms);
                if alert.is_none() {
                    stats.alerts_coalesced += 1;
                }
                alert
            });
        if matches!(outcome, Outcome::NoAction | Outcome::Plan { .. }) {
            self.alerts.recovered(&policy.name);
        }
        // Saved by [`Pipeline::save_stores`]: before a step that acts on the system, and when
        // the daemon is idle, as the journal is synced; a decision waits for no disk.
        if wrote && self.kv_files.is_some() {
            self.unsaved_stores.insert(policy.name.clone());
        }
        match &outcome {
            Outcome::NoAction => {
                tracing::debug!(elapsed_us = call.elapsed.as_micros() as u64, "no action")
            }
            Outcome::Plan { plan_id, plan } => tracing::info!(
                plan_id,
                steps = plan.steps.len(),
                elapsed_us = call.elapsed.as_micros() as u64,
                "plan accepted"
            ),
            Outcome::Refused(refusal) => tracing::warn!(%refusal, "plan refused"),
            Outcome::Failed(failure) => {
                tracing::warn!(failure = %escape(&failure.to_string()), "policy call failed")
            }
        }
        Decision {
            policy: policy.name.clone(),
            module_hash: policy.compiled.module_hash.clone(),
            outcome,
            host_alert,
            logs: call.logs,
            dropped_logs: call.dropped_logs,
            refused_queries: call.refused_queries,
            refused_count: call.refused_count,
            elapsed: call.elapsed,
            inputs,
        }
    }
}

/// Save one policy's store; on failure it stays in `unsaved` and the alert's text is returned.
fn save_store(
    files: &KvFiles,
    stores: &BTreeMap<String, Arc<KvStore>>,
    unsaved: &mut std::collections::BTreeSet<String>,
    name: &str,
) -> Option<String> {
    let empty = KvStore::new();
    let store = stores.get(name).map_or(&empty, |store| &**store);
    match files.save(name, store) {
        Ok(()) => {
            unsaved.remove(name);
            None
        }
        Err(error) => {
            tracing::error!(policy = %name, %error, "policy state not saved");
            unsaved.insert(name.to_owned());
            Some(format!(
                "policy `{name}`: its state could not be saved, a restart would lose it: {error}"
            ))
        }
    }
}

/// Why the host would alert about a call: a refused plan or a failed call.
fn failure_reason(policy: &str, outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Refused(refusal) => Some(format!(
            "policy `{policy}`: plan refused, no action taken: {refusal}"
        )),
        Outcome::Failed(failure) => Some(format!("policy `{policy}` {failure}; no action taken")),
        Outcome::NoAction | Outcome::Plan { .. } => None,
    }
}

/// How long a repeated host alert stays quiet before it is raised again, with its count.
pub const ALERT_REPEAT_MS: u64 = 10 * 60 * 1000;

/// Keeps a policy that fails on every event from raising an alert per event.
///
/// The first failure alerts. The same reason again is counted, not raised, until
/// [`ALERT_REPEAT_MS`] has passed (then it is raised once more, saying how often it repeated)
/// or the reason changes. A call that succeeds ends the run, so the next failure alerts at
/// once.
#[derive(Debug, Default)]
pub struct AlertCoalescer {
    /// Per policy: the last reason raised, when, and the repeats since.
    last: BTreeMap<String, (String, u64, u64)>,
}

impl AlertCoalescer {
    /// The alert to raise for `reason` at `now_ms`, or `None` when it only repeats.
    pub fn raise(&mut self, policy: &str, reason: String, now_ms: u64) -> Option<String> {
        if let Some((last, at, repeats)) = self.last.get_mut(policy)
            && *last == reason
        {
            if now_ms.saturating_sub(*at) < ALERT_REPEAT_MS {
                *repeats += 1;
                return None;
            }
            let alert = format!(
                "{reason} (repeated {} times in the last {} s)",
                *repeats + 1,
                (now_ms - *at) / 1000
            );
            *at = now_ms;
            *repeats = 0;
            tracing::error!(alert = %escape(&alert), "operator alert");
            return Some(alert);
        }
        tracing::error!(alert = %escape(&reason), "operator alert");
        self.last
            .insert(policy.to_owned(), (reason.clone(), now_ms, 0));
        Some(reason)
    }

    /// The policy's call succeeded: its next failure alerts at once.
    pub fn recovered(&mut self, policy: &str) {
        self.last.remove(policy);
    }
}

fn log_policy_line(log: &PolicyLog) {
    use haven_core::LogLevel;
    let message = escape(&log.message);
    match log.level {
        LogLevel::Trace => tracing::trace!(target: "policy", "{message}"),
        LogLevel::Debug => tracing::debug!(target: "policy", "{message}"),
        LogLevel::Info => tracing::info!(target: "policy", "{message}"),
        LogLevel::Warn => tracing::warn!(target: "policy", "{message}"),
        LogLevel::Error => tracing::error!(target: "policy", "{message}"),
    }
}

/// The first 12 hex digits of a module hash, as shown in logs and tables.
pub fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
