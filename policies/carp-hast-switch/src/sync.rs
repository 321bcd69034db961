//! Tracking whether the local copy of each HAST resource is complete, from hastd's `exec`
//! hooks, and refusing to promote onto a copy known to be incomplete.
//!
//! This module exists because of the recipe author's first warning: never switch while `dirty`
//! is non-zero. Promoting a secondary whose resync was interrupted, or that is on the losing
//! side of a split-brain, serves old data and makes the next resync overwrite the newer copy.
//! The state is kept per resource in the key-value store as `sync:<resource>`, one of
//! `syncing`, `synced`, `interrupted` or `split-brain`; no key means nothing is known against
//! the copy.

use crate::settings::Settings;
use haven_sdk::{
    AlertSeverity, Error, HastHook, HastRole, HastRoleChange, Host, LogLevel, Plan, Result,
};

/// What is known about the local copy of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// A resynchronisation is running; the copy is partly old.
    Syncing,
    /// The last resynchronisation finished; both copies are equal.
    Synced,
    /// A resynchronisation stopped before it finished; the copy is partly old.
    Interrupted,
    /// Both hosts wrote while apart; which copy is right is a human decision.
    SplitBrain,
}

impl SyncState {
    const ALL: [SyncState; 4] = [
        SyncState::Syncing,
        SyncState::Synced,
        SyncState::Interrupted,
        SyncState::SplitBrain,
    ];

    /// The value stored in the key-value store.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Syncing => "syncing",
            SyncState::Synced => "synced",
            SyncState::Interrupted => "interrupted",
            SyncState::SplitBrain => "split-brain",
        }
    }

    /// Whether the copy is known to lack data the peer has.
    pub fn is_incomplete(self) -> bool {
        self != SyncState::Synced
    }
}

/// The key-value store key of a resource's sync state.
fn key(resource: &str) -> String {
    format!("sync:{resource}")
}

/// The recorded sync state of a resource. A value this policy never writes is an error rather
/// than a guess either way.
pub fn recorded(resource: &str, host: &dyn Host) -> Result<Option<SyncState>> {
    let key = key(resource);
    let Some(value) = host.kv_get(&key) else {
        return Ok(None);
    };
    SyncState::ALL
        .into_iter()
        .find(|state| state.as_str() == value)
        .map(Some)
        .ok_or_else(|| {
            Error::new(format!(
                "kv `{key}` holds `{value}`, which is no sync state"
            ))
        })
}

/// Record a resource's sync state.
fn record(resource: &str, state: SyncState, host: &dyn Host) -> Result<()> {
    host.kv_set(&key(resource), state.as_str())?;
    Ok(())
}

/// `None` when promotion may go ahead; otherwise the plan to answer with instead: one critical
/// alert naming every resource known to be incomplete and how to override. With the override
/// set, promotion goes ahead and a warning is logged. A resource already primary is never held
/// back: its copy is the one in use, and finishing the promotion (mount, services) only serves
/// it.
pub fn refusal(settings: &Settings, host: &dyn Host) -> Result<Option<Plan>> {
    let mut incomplete = Vec::new();
    for resource in &settings.resources {
        if host.hast_status(&resource.name)?.role == HastRole::Primary {
            continue;
        }
        if let Some(state) = recorded(&resource.name, host)?.filter(|state| state.is_incomplete()) {
            incomplete.push(format!("`{}` ({})", resource.name, state.as_str()));
        }
    }
    if incomplete.is_empty() {
        return Ok(None);
    }
    let incomplete = incomplete.join(", ");
    if settings.allow_unsynchronised_promotion {
        let message = format!(
            "promoting onto incomplete data of HAST resource {incomplete}: \
             allow-unsynchronised-promotion is set"
        );
        host.log(LogLevel::Warn, &message);
        return Ok(None);
    }
    let message = format!(
        "refusing to promote: the local copy of HAST resource {incomplete} is known to be \
         incomplete, and the peer may hold newer data. To promote anyway, set \
         allow-unsynchronised-promotion = true in this policy's settings and reload it \
         (then set it back to false)."
    );
    Ok(Some(
        Plan::builder()
            .alert(AlertSeverity::Critical, message)
            .build(),
    ))
}

/// Record what a hastd hook says about one of our resources. Hooks about other resources are
/// ignored. Only a split-brain asks for anything: an alert for a human.
pub fn on_hook(settings: &Settings, hook: &HastHook, host: &dyn Host) -> Result<Plan> {
    let resource = hook.resource();
    if settings.resource(resource).is_none() {
        return Ok(Plan::none());
    }
    let record_sync = |hook, state| record_own_sync(resource, hook, state, host);
    match hook {
        HastHook::SyncStart(_) => record_sync("syncstart", SyncState::Syncing)?,
        HastHook::SyncDone(_) => record_sync("syncdone", SyncState::Synced)?,
        HastHook::SyncInterrupted(_) => record_sync("syncintr", SyncState::Interrupted)?,
        HastHook::SplitBrain(_) => {
            record_split_brain(resource, host)?;
            return Ok(split_brain_alert(resource));
        }
        HastHook::RoleChanged(change) => on_role_change(change, host)?,
        HastHook::Connect(_) => log(host, LogLevel::Info, resource, "the peer connected"),
        HastHook::Disconnect(_) => log(host, LogLevel::Info, resource, "the peer went away"),
    }
    Ok(Plan::none())
}

/// hastd reports a split-brain on both hosts. On the secondary (or in init) it marks the local
/// copy as one that must not be promoted onto; on the primary the local copy is the one in use,
/// which the recovery keeps, so recording it there would only block the survivor later.
fn record_split_brain(resource: &str, host: &dyn Host) -> Result<()> {
    if host.hast_status(resource)?.role == HastRole::Primary {
        let what = "split-brain not recorded: this host is primary, its copy is the one in use";
        log(host, LogLevel::Warn, resource, what);
        return Ok(());
    }
    record(resource, SyncState::SplitBrain, host)
}

/// Sync hooks describe the copy being written. That is ours only while we are secondary; on
/// the primary they describe the peer's copy, which says nothing against ours.
fn record_own_sync(resource: &str, hook: &str, state: SyncState, host: &dyn Host) -> Result<()> {
    let role = host.hast_status(resource)?.role;
    if role == HastRole::Secondary {
        return record(resource, state, host);
    }
    let what = format!(
        "{hook} not recorded: in role {} it describes the peer's copy, not ours",
        role.as_str()
    );
    log(host, LogLevel::Info, resource, &what);
    Ok(())
}

/// Becoming primary makes our copy the authoritative one, so nothing is held against it any
/// more. Going from init to secondary after a split-brain is the recovery sequence
/// (`hastctl role init`, `create`, `role secondary`): a full resync follows, so the copy is
/// incomplete until `syncdone`. An ordinary boot also goes from init to secondary, and must
/// not block a later failover, so without a recorded split-brain nothing changes.
fn on_role_change(change: &HastRoleChange, host: &dyn Host) -> Result<()> {
    let recovering =
        || -> Result<bool> { Ok(recorded(&change.resource, host)? == Some(SyncState::SplitBrain)) };
    match (change.old, change.new) {
        (_, HastRole::Primary) => host.kv_remove(&key(&change.resource)),
        (HastRole::Init, HastRole::Secondary) if recovering()? => {
            record(&change.resource, SyncState::Syncing, host)?
        }
        (old, new) => {
            let what = format!("role changed from {} to {}", old.as_str(), new.as_str());
            log(host, LogLevel::Debug, &change.resource, &what);
        }
    }
    Ok(())
}

/// The alert for a split-brain, with the recipe's recovery steps. Nothing is done
/// automatically: only a human can tell which copy holds the data that matters.
fn split_brain_alert(resource: &str) -> Plan {
    let message = format!(
        "HAST resource `{resource}`: split-brain (both hosts wrote while apart; hastd's worker \
         exited). Nothing is done automatically. Decide which host has the newer data; on the \
         host with the OLDER data run `hastctl role init {resource}`, \
         `hastctl create {resource}`, `hastctl role secondary {resource}`; then on the primary \
         watch `dirty` fall to 0 with `hastctl list {resource}` before any switch-over."
    );
    Plan::builder()
        .alert(AlertSeverity::Critical, message)
        .build()
}

/// Log something about a resource.
fn log(host: &dyn Host, level: LogLevel, resource: &str, what: &str) {
    host.log(level, &format!("HAST resource `{resource}`: {what}"));
}
