//! The witness (etcd): what this host does when it can no longer count on the pair's leader
//! key, or sees the peer take it.
//!
//! The daemon guards every promotion itself (a step that makes this host a writer runs only
//! under the key), so this module covers what the daemon leaves to the policy: a host that
//! already serves.
//!
//! - **Key lost** (no renewal confirmed in time): if the peer link is up and the peer's facts
//!   are fresh and say it serves none of our resources, the peer vouches that this host alone
//!   serves, and it goes on serving (the failsafe, as Patroni's). When the link then goes
//!   down, or the peer's facts change, the vouching is checked again. Otherwise, with `isolated-serve-ms` set,
//!   it arms [`ISOLATED_TIMER`] and serves until it fires; with 0, the default, it demotes at
//!   once, before its lease can run out and let the peer in.
//! - **The timer fires**: demote, unless the key is held again or the peer vouches now.
//! - **The peer holds the key** while this host serves: demote at once (the peer may
//!   promote any moment).
//! - **The key is free again, or etcd answers again**, while CARP wants this host master after
//!   a failed promotion (the fence refused it): try again.

use crate::operator::serving;
use crate::plans;
use crate::settings::Settings;
use haven_sdk::{
    AlertSeverity, HastRole, Host, LogLevel, PeerLink, Plan, Result, WitnessChange, WitnessEvent,
    WitnessState,
};

/// The timer that ends an isolated master's grace (`isolated-serve-ms`).
pub const ISOLATED_TIMER: &str = "witness-isolated";

/// The oldest peer facts that vouch: the link's heartbeat is a second by default, so facts
/// older than this mean the link is failing even if it is not declared down yet.
pub const VOUCH_FRESH_MS: u64 = 2000;

/// What to do about the witness's news.
pub enum Reaction {
    /// This plan.
    Act(Plan),
    /// Decide the promotion CARP wants again (the key may be had now).
    RetryPromotion,
    /// Nothing.
    Nothing,
}

/// The witness brought news.
pub fn on_witness(settings: &Settings, event: &WitnessEvent, host: &dyn Host) -> Result<Reaction> {
    let state = &event.state;
    match &event.change {
        WitnessChange::KeyLost(token) => on_key_lost(settings, *token, state, host),
        WitnessChange::LeaderChanged => {
            let peer_holds = state.leader.as_ref().is_some_and(|_| !state.holding);
            if peer_holds && serving(settings, host)? {
                let leader = state.leader.as_ref().map_or("?", |l| l.host.as_str());
                let token = state.leader.as_ref().map_or(0, |l| l.token);
                let message = format!(
                    "{leader} holds the witness's leader key (fencing token {token}) while this \
                     host serves: demoting, as {leader} may promote"
                );
                return Ok(Reaction::Act(demotion(settings, &message, host)?));
            }
            Ok(if state.leader.is_none() {
                Reaction::RetryPromotion
            } else {
                Reaction::Nothing
            })
        }
        WitnessChange::Reachable => Ok(Reaction::RetryPromotion),
        WitnessChange::Unreachable(_) => Ok(Reaction::Nothing),
    }
}

fn on_key_lost(
    settings: &Settings,
    token: u64,
    state: &WitnessState,
    host: &dyn Host,
) -> Result<Reaction> {
    if !serving(settings, host)? {
        return Ok(Reaction::Nothing);
    }
    if let Some(peer) = peer_vouches(settings, host) {
        host.log(
            LogLevel::Warn,
            &format!(
                "the witness's leader key is lost (fencing token {token}), but {peer} is \
                 linked and serves none of our resources: going on serving (failsafe)"
            ),
        );
        return Ok(Reaction::Nothing);
    }
    let why = format!(
        "the witness's leader key is lost (fencing token {token}) and the peer cannot vouch \
         that this host alone serves"
    );
    let demoting = format!("{why}: demoting before the lease can run out");
    Ok(Reaction::Act(unfenced(
        settings,
        state,
        (&why, &demoting),
        host,
    )?))
}

/// A serving host without the key whose peer cannot vouch: the isolation grace when
/// `isolated-serve-ms` allows one (logged with `why`), a demotion otherwise (alerted with
/// `demoting`).
fn unfenced(
    settings: &Settings,
    state: &WitnessState,
    (why, demoting): (&str, &str),
    host: &dyn Host,
) -> Result<Plan> {
    if state.isolated_serve_ms > 0 {
        host.log(
            LogLevel::Warn,
            &format!(
                "{why}: serving for isolated-serve-ms ({} ms) more",
                state.isolated_serve_ms
            ),
        );
        return Ok(Plan::builder()
            .set_timer(ISOLATED_TIMER, state.isolated_serve_ms)
            .build());
    }
    demotion(settings, demoting, host)
}

/// The peer link went down or the peer's facts changed: a host that kept serving without the
/// key because its peer vouched checks that the peer still does.
pub fn recheck_vouching(settings: &Settings, host: &dyn Host) -> Result<Option<Plan>> {
    let Some(state) = host.witness() else {
        return Ok(None);
    };
    if state.holding || !serving(settings, host)? || peer_vouches(settings, host).is_some() {
        return Ok(None);
    }
    let why = "this host serves without the witness's leader key and its peer no longer vouches";
    let demoting = format!("{why}: demoting");
    unfenced(settings, &state, (why, &demoting), host).map(Some)
}

/// [`ISOLATED_TIMER`] fired: the grace is over.
pub fn on_isolated_timer(settings: &Settings, host: &dyn Host) -> Result<Plan> {
    let holding = host.witness().is_some_and(|state| state.holding);
    if holding || !serving(settings, host)? {
        return Ok(Plan::none());
    }
    if let Some(peer) = peer_vouches(settings, host) {
        host.log(
            LogLevel::Info,
            &format!("isolated-serve-ms is over, but {peer} vouches now: going on serving"),
        );
        return Ok(Plan::none());
    }
    demotion(
        settings,
        "isolated-serve-ms is over and the witness's leader key is still lost: demoting",
        host,
    )
}

/// The peer's name, if the link is up, its facts are fresh ([`VOUCH_FRESH_MS`]) and say it
/// serves none of our resources.
fn peer_vouches(settings: &Settings, host: &dyn Host) -> Option<String> {
    let peer = host.peer();
    let fresh = peer.facts_age_ms.is_some_and(|age| age <= VOUCH_FRESH_MS);
    let facts = peer.facts.filter(|_| peer.link == PeerLink::Up && fresh)?;
    let serves = facts.hast.iter().any(|status| {
        status.role == HastRole::Primary && settings.resource(&status.resource).is_some()
    });
    (!serves).then_some(facts.host)
}

/// Demote, saying why in an alert.
fn demotion(settings: &Settings, why: &str, host: &dyn Host) -> Result<Plan> {
    host.log(LogLevel::Warn, why);
    Ok(Plan::builder()
        .alert(AlertSeverity::Critical, why)
        .then(plans::demote(settings, host)?)
        .build())
}
