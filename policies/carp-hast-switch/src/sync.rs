//! Tracking whether the local copy of each HAST resource is complete, and refusing to promote
//! onto a copy known to be incomplete.
//!
//! This module exists because of the recipe author's first warning: never switch while `dirty`
//! is non-zero. Promoting a secondary whose resync was interrupted, or that is on the losing
//! side of a split-brain, serves old data and makes the next resync overwrite the newer copy.
//!
//! Only the primary's hastd knows: it alone runs `syncstart`, `syncdone` and `syncintr`, and
//! only its `hastctl list` counts `dirty`. So while the peer is primary, this host records
//! what the peer link relays about *our* copy: the peer's sync hooks, and its status (dirty
//! bytes while degraded: we are behind; complete with nothing dirty: we are in sync).
//!
//! The state is kept per resource in the key-value store (which the daemon keeps on disk) as
//! `sync:<resource>`, one of `syncing`, `synced`, `interrupted`, `behind`, `split-brain` or
//! `unknown` (the store was lost), with `sync-fact:<resource>` saying which fact set it, where
//! it came from and when. No key means nothing is known against the copy.

use crate::settings::{Settings, UnknownCopy};
use haven_sdk::{
    AlertSeverity, Error, HastHook, HastReplication, HastRole, HastRoleChange, Host, LogLevel,
    PeerEvent, PeerFacts, PeerLink, Plan, Result,
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
    /// The primary wrote while disconnected from us (its `dirty` grew while degraded).
    Behind,
    /// What was recorded was lost with the policy's store.
    Unknown,
}

impl SyncState {
    const ALL: [SyncState; 6] = [
        SyncState::Syncing,
        SyncState::Synced,
        SyncState::Interrupted,
        SyncState::SplitBrain,
        SyncState::Behind,
        SyncState::Unknown,
    ];

    /// The value stored in the key-value store.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Syncing => "syncing",
            SyncState::Synced => "synced",
            SyncState::Interrupted => "interrupted",
            SyncState::SplitBrain => "split-brain",
            SyncState::Behind => "behind",
            SyncState::Unknown => "unknown",
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

/// Set while a promotion waits for the peer to be heard (an unknown copy was refused).
const UNKNOWN_REFUSED: &str = "sync-waiting-for-peer";

/// Whether a promotion was refused because nothing was known, and the peer is heard now:
/// the caller tries it again. Clears the mark.
pub fn peer_heard_after_unknown_refusal(host: &dyn Host) -> bool {
    if host.kv_get(UNKNOWN_REFUSED).is_none() || host.peer().facts.is_none() {
        return false;
    }
    host.kv_remove(UNKNOWN_REFUSED);
    true
}

/// The key of the fact behind it.
fn fact_key(resource: &str) -> String {
    format!("sync-fact:{resource}")
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

/// Record a resource's sync state and the fact behind it, stamped with the wall time. Nothing
/// is written when the state is already recorded: the store is synced to disk on every write.
fn record(resource: &str, state: SyncState, fact: &str, host: &dyn Host) -> Result<()> {
    if recorded(resource, host)? == Some(state) {
        return Ok(());
    }
    host.kv_set(&key(resource), state.as_str())?;
    let when = utc(host.unix_ms());
    host.kv_set(&fact_key(resource), &format!("{fact}, recorded {when}"))?;
    log(
        host,
        LogLevel::Info,
        resource,
        &format!("our copy is {}: {fact}", state.as_str()),
    );
    Ok(())
}

/// The fact behind a resource's record, if one was kept.
fn fact(resource: &str, host: &dyn Host) -> String {
    host.kv_get(&fact_key(resource))
        .unwrap_or_else(|| "no fact recorded".to_owned())
}

/// What is known of a resource's local copy, for the operator: its recorded state and the
/// fact behind it.
pub fn describe_copy(resource: &str, host: &dyn Host) -> Result<String> {
    Ok(match recorded(resource, host)? {
        Some(state) => format!("{}: {}", state.as_str(), fact(resource, host)),
        None => "nothing recorded".to_owned(),
    })
}

/// `2026-12-04 19:20:03 UTC` from milliseconds since 1970 (proleptic Gregorian calendar).
pub fn utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Days since 1970-01-01 to a civil date, shifting the year to start in March so that the
    // leap day ends it.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// `None` when promotion may go ahead; otherwise the plan to answer with instead: one critical
/// alert naming every resource known to be incomplete and how to override. With the override
/// set, promotion goes ahead and a warning is logged. A resource already primary is never held
/// back: its copy is the one in use, and finishing the promotion (mount, services) only serves
/// it. `accepted` is a resource the operator accepts as it is for this one promotion
/// (`havenctl promote --accept-incomplete`).
pub fn refusal(
    settings: &Settings,
    accepted: Option<&str>,
    host: &dyn Host,
) -> Result<Option<Plan>> {
    let peer = host.peer();
    let mut incomplete = Vec::new();
    let mut unknown = false;
    for resource in &settings.resources {
        if host.hast_status(&resource.name)?.role == HastRole::Primary
            || accepted == Some(resource.name.as_str())
        {
            continue;
        }
        let name = &resource.name;
        match recorded(name, host)? {
            Some(SyncState::Unknown) if settings.unknown_copy == UnknownCopy::Promote => {}
            Some(state) if state.is_incomplete() => {
                let fact = fact(name, host);
                incomplete.push(format!("`{name}` ({}: {fact})", state.as_str()));
            }
            Some(_) => {}
            None if peer.link == PeerLink::NotConfigured || peer.facts.is_some() => {}
            None if settings.unknown_copy == UnknownCopy::Promote => log(
                host,
                LogLevel::Warn,
                name,
                "promoting a copy nothing is known about (unknown-copy = \"promote\")",
            ),
            None => {
                unknown = true;
                incomplete.push(format!(
                    "`{name}` (unknown: the peer link is configured but the peer was never \
                     heard and no record survives; unknown-copy = \"refuse\")"
                ))
            }
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
    if unknown {
        // Once the peer is heard, the promotion is tried again (see `lib.rs`).
        host.kv_set(UNKNOWN_REFUSED, "1")?;
    }
    let message = format!(
        "refusing to promote: the local copy of HAST resource {incomplete} is not known to be \
         complete, and the peer may hold newer data. To promote anyway, once, after looking: \
         `havenctl promote --accept-incomplete <resource>` (or set \
         allow-unsynchronised-promotion = true in this policy's settings to do so always)."
    );
    Ok(Some(
        Plan::builder()
            .alert(AlertSeverity::Critical, message)
            .build(),
    ))
}

/// What the peer link brought: while the peer is primary for one of our resources (and we are
/// not), its sync hooks and its status describe our copy.
pub fn on_peer(settings: &Settings, event: &PeerEvent, host: &dyn Host) -> Result<()> {
    let peer = host.peer();
    let peer_name = peer.facts.as_ref().map_or_else(
        || "the peer".to_owned(),
        |facts| format!("peer {}", facts.host),
    );
    match event {
        PeerEvent::HastHook(hook) => {
            let resource = hook.resource();
            let state = match hook {
                HastHook::SyncStart(_) => SyncState::Syncing,
                HastHook::SyncDone(_) => SyncState::Synced,
                HastHook::SyncInterrupted(_) => SyncState::Interrupted,
                _ => return Ok(()),
            };
            if settings.resource(resource).is_none() || locally_primary(resource, host)? {
                return Ok(());
            }
            let fact = format!(
                "{peer_name}'s hastd ran `{}` as primary (relayed by the peer link)",
                hook_word(hook)
            );
            record(resource, state, &fact, host)
        }
        PeerEvent::FactsChanged(facts) => on_peer_facts(settings, facts, &peer_name, host),
        PeerEvent::Up => {
            host.log(LogLevel::Info, &format!("peer link up ({peer_name})"));
            Ok(())
        }
        PeerEvent::Down => {
            let message = format!(
                "peer link down ({peer_name}): nothing is done on that alone; the last facts \
                 heard are kept"
            );
            host.log(LogLevel::Warn, &message);
            Ok(())
        }
    }
}

/// The peer's status as its primary: dirty bytes while degraded mean it wrote what we lack;
/// complete with nothing dirty means our copy equals its own.
fn on_peer_facts(
    settings: &Settings,
    facts: &PeerFacts,
    peer_name: &str,
    host: &dyn Host,
) -> Result<()> {
    for status in &facts.hast {
        let resource = status.resource.as_str();
        if status.role != HastRole::Primary
            || settings.resource(resource).is_none()
            || locally_primary(resource, host)?
        {
            continue;
        }
        let dirty = status.dirty_bytes.unwrap_or(0);
        match status.replication {
            HastReplication::Degraded if dirty > 0 => {
                // A more specific record (an interrupted sync, a split-brain) stays.
                let keep = matches!(
                    recorded(resource, host)?,
                    Some(SyncState::Interrupted | SyncState::SplitBrain)
                );
                if !keep {
                    let fact = format!(
                        "{peer_name} is primary, degraded, with {dirty} dirty bytes (relayed \
                         hastctl list)"
                    );
                    record(resource, SyncState::Behind, &fact, host)?;
                }
            }
            // Polled status lags the hooks (hastctl is read every few seconds; hooks arrive
            // at once): a `syncintr` may be followed by status from before it. So the status
            // only settles what no hook spoke about: no record, `behind` (which a reconnect
            // without a resync ends) or `unknown`. A sync the hooks saw start or break ends
            // with `syncdone`.
            HastReplication::Complete if dirty == 0 => {
                let settles = matches!(
                    recorded(resource, host)?,
                    None | Some(SyncState::Behind | SyncState::Unknown)
                );
                if settles {
                    let fact = format!(
                        "{peer_name} is primary, complete, with 0 dirty bytes (relayed hastctl \
                         list)"
                    );
                    record(resource, SyncState::Synced, &fact, host)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The store was lost: what it held is unknown, which is not the same as nothing known.
pub fn on_state_lost(settings: &Settings, reason: &str, host: &dyn Host) -> Result<()> {
    for resource in &settings.resources {
        if !locally_primary(&resource.name, host)? {
            let fact = format!("this policy's stored state was lost ({reason})");
            record(&resource.name, SyncState::Unknown, &fact, host)?;
        }
    }
    Ok(())
}

fn locally_primary(resource: &str, host: &dyn Host) -> Result<bool> {
    Ok(host.hast_status(resource)?.role == HastRole::Primary)
}

/// The word hastd's `exec` hook gets for a sync event.
fn hook_word(hook: &HastHook) -> &'static str {
    match hook {
        HastHook::SyncStart(_) => "syncstart",
        HastHook::SyncDone(_) => "syncdone",
        HastHook::SyncInterrupted(_) => "syncintr",
        HastHook::SplitBrain(_) => "split-brain",
        HastHook::Connect(_) => "connect",
        HastHook::Disconnect(_) => "disconnect",
        HastHook::RoleChanged(_) => "role",
    }
}

/// Record what a hastd hook says about one of our resources. Hooks about other resources are
/// ignored. Only a split-brain asks for anything: an alert for a human.
pub fn on_hook(settings: &Settings, hook: &HastHook, host: &dyn Host) -> Result<Plan> {
    let resource = hook.resource();
    if settings.resource(resource).is_none() {
        return Ok(Plan::none());
    }
    let record_sync = |state| record_own_sync(resource, hook_word(hook), state, host);
    match hook {
        HastHook::SyncStart(_) => record_sync(SyncState::Syncing)?,
        HastHook::SyncDone(_) => record_sync(SyncState::Synced)?,
        HastHook::SyncInterrupted(_) => record_sync(SyncState::Interrupted)?,
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
    let fact = "this host's hastd ran `split-brain`";
    record(resource, SyncState::SplitBrain, fact, host)
}

/// Sync hooks describe the copy being written. That is ours only while we are secondary (a
/// stock hastd never runs them there, but one that did would be right); on the primary they
/// describe the peer's copy, which says nothing against ours.
fn record_own_sync(resource: &str, hook: &str, state: SyncState, host: &dyn Host) -> Result<()> {
    let role = host.hast_status(resource)?.role;
    if role == HastRole::Secondary {
        let fact = format!("this host's hastd ran `{hook}`");
        return record(resource, state, &fact, host);
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
        (_, HastRole::Primary) => {
            host.kv_remove(&key(&change.resource));
            host.kv_remove(&fact_key(&change.resource));
        }
        (HastRole::Init, HastRole::Secondary) if recovering()? => {
            let fact = "recovering from a split-brain (role init to secondary): a full resync \
                        follows";
            record(&change.resource, SyncState::Syncing, fact, host)?
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
