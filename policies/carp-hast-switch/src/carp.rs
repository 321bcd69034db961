//! Following CARP: which role a CARP event asks this host to take, and the flap hold-down that
//! decides whether to act on it now or once CARP has settled.
//!
//! This module exists because a flapping link can toggle CARP several times a second, while a
//! promotion takes seconds to minutes (fsck, mount, service start). Acting on every edge would
//! pile promotions and demotions on top of each other; the hold-down acts on the leading edge,
//! then lets the rest settle and acts once more, on the settled state. Because each instance
//! lives for one event, the hold-down's state lives in the host's key-value store.

use crate::settings::Settings;
use haven_sdk::{CarpState, Event, Host, Plan, Result};

/// kv: the role the latest CARP event asked for (`master` or `backup`).
const DESIRED: &str = "desired";
/// kv: present while a settle timer is armed.
const SETTLE_PENDING: &str = "settle-pending";
/// kv: when this policy last acted on CARP, in the host's monotonic milliseconds.
const LAST_ACT_MS: &str = "last-act-ms";
/// The timer that ends a hold-down.
pub const SETTLE_TIMER: &str = "settle";

/// The role CARP asks this host to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Hold the shared address, so also the data and the services.
    Master,
    /// Let the peer have them.
    Backup,
}

impl Target {
    /// `MASTER` means master; `BACKUP` and `INIT` (link lost, CARP disabled, just starting)
    /// both mean this host must not hold the resources.
    pub fn of(state: CarpState) -> Target {
        match state {
            CarpState::Master => Target::Master,
            CarpState::Backup | CarpState::Init => Target::Backup,
        }
    }

    /// The name stored in the key-value store.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Master => "master",
            Target::Backup => "backup",
        }
    }

    /// The target stored under `name`, if it is one.
    fn parse(name: &str) -> Option<Target> {
        [Target::Master, Target::Backup]
            .into_iter()
            .find(|target| target.as_str() == name)
    }
}

/// The target a CARP event asks for, if it is about our vhid or our carp interface; `None` for
/// every other event.
pub fn target_of(settings: &Settings, event: &Event) -> Option<Target> {
    match event {
        Event::CarpChanged(change) if Some(change.vhid) == settings.vhid => {
            Some(Target::of(change.state))
        }
        Event::CarpLink(link) if settings.carp_interface.as_ref() == Some(&link.interface) => {
            Some(if link.up {
                Target::Master
            } else {
                Target::Backup
            })
        }
        _ => None,
    }
}

/// The target as things stand: the vhid's current state when a vhid is configured (`None` if
/// the daemon does not know it), else, in legacy link mode, the target the last link event
/// asked for, since a carp(4) pseudo-interface's state cannot be queried.
pub fn current_target(settings: &Settings, host: &dyn Host) -> Option<Target> {
    match settings.vhid {
        Some(vhid) => host.carp_state(vhid).map(Target::of),
        None => desired(host),
    }
}

/// The target the latest CARP event asked for.
pub fn desired(host: &dyn Host) -> Option<Target> {
    host.kv_get(DESIRED).as_deref().and_then(Target::parse)
}

/// What to do about a CARP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Converge to the target now.
    Act,
    /// Arm the settle timer (see [`settle_timer`]) and converge when it fires.
    Settle,
}

/// Record that CARP asked for `target` and decide whether to act now: only when no settle
/// timer is pending and the last action is at least `hold_down_ms` ago. Acting starts a new
/// hold-down only if it changes something: the caller calls [`acted`] for a plan that is not
/// empty. An edge that finds the host already converged (ucarp runs its down script when it
/// starts, on a host that is backup already) is no action, so a real failover right after it
/// is not held down.
pub fn on_edge(target: Target, hold_down_ms: u32, host: &dyn Host) -> Result<Decision> {
    host.kv_set(DESIRED, target.as_str())?;
    if !settle_pending(host) && hold_down_over(host, hold_down_ms) {
        Ok(Decision::Act)
    } else {
        host.kv_set(SETTLE_PENDING, "1")?;
        Ok(Decision::Settle)
    }
}

/// Whether a settle timer is armed (CARP is still flapping).
pub fn settle_pending(host: &dyn Host) -> bool {
    host.kv_get(SETTLE_PENDING).is_some()
}

/// The plan that arms (or re-arms) the settle timer.
pub fn settle_timer(hold_down_ms: u32) -> Plan {
    Plan::builder()
        .set_timer(SETTLE_TIMER, hold_down_ms)
        .build()
}

/// The hold-down ended: record the action about to be taken and return the settled target.
pub fn settle(host: &dyn Host) -> Result<Option<Target>> {
    record_action(host)?;
    Ok(desired(host))
}

/// The daemon (re)started: a settle timer armed before may be gone and the monotonic clock may
/// have restarted, so forget the hold-down (the next CARP edge acts at once: a startup is no
/// flap), and record `target` as the settled state when it is known.
pub fn restart(target: Option<Target>, host: &dyn Host) -> Result<()> {
    host.kv_remove(SETTLE_PENDING);
    host.kv_remove(LAST_ACT_MS);
    if let Some(target) = target {
        host.kv_set(DESIRED, target.as_str())?;
    }
    Ok(())
}

/// An edge's convergence (see [`on_edge`]) changes something: the hold-down starts.
pub fn acted(host: &dyn Host) -> Result<()> {
    record_action(host)
}

/// This policy acts now: no settle timer is pending any more, and the hold-down starts.
fn record_action(host: &dyn Host) -> Result<()> {
    host.kv_remove(SETTLE_PENDING);
    host.kv_set(LAST_ACT_MS, &host.now_ms().to_string())?;
    Ok(())
}

/// Whether at least `hold_down_ms` passed since the last action. A recorded time later than
/// now means the monotonic clock restarted without a startup event to say so; the last action
/// was then long ago.
fn hold_down_over(host: &dyn Host, hold_down_ms: u32) -> bool {
    let now = host.now_ms();
    let last = host
        .kv_get(LAST_ACT_MS)
        .and_then(|value| value.parse::<u64>().ok());
    match last {
        Some(last) if last <= now => now - last >= u64::from(hold_down_ms),
        _ => true,
    }
}
