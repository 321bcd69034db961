//! The operator's requests: a planned switchover, maintenance on and off, and promoting onto a
//! copy the operator accepts, with the CARP demotion they hold.
//!
//! This module exists because a planned move must never cost data, while a crash failover
//! may have to risk it. A switchover is refused, with the reason, unless the peer can take
//! over with nothing lost: its link is up, it is not in maintenance or running a plan, it is
//! HAST secondary with the link complete and nothing dirty here. Then the plan is the demotion
//! (services, mount, role) followed by handing CARP over (`demote-carp`); the peer's own
//! policy promotes when its CARP turns master.
//!
//! A demotion is held ([`DEMOTED`]) until this host promotes again (the promotion lifts it
//! first) or maintenance is turned off: lifting it sooner would make a preempting CARP
//! (keepalived, carp(4) with `net.inet.carp.preempt`) take the service straight back.

use crate::carp::{self, Target};
use crate::plans;
use crate::settings::Settings;
use crate::sync::utc;
use haven_sdk::{
    AlertSeverity, HastReplication, HastRole, Host, LogLevel, PeerLink, Plan, PlanBuilder, Result,
};

/// kv: present while this host holds its CARP demotion of the settings' vhid.
const DEMOTED: &str = "carp-demoted";

/// Whether this host holds the service: a resource of ours is primary here.
pub fn serving(settings: &Settings, host: &dyn Host) -> Result<bool> {
    for resource in &settings.resources {
        if host.hast_status(&resource.name)?.role == HastRole::Primary {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why the peer cannot take the service over with nothing lost, if it cannot.
fn peer_cannot_take_over(settings: &Settings, vhid: u8, host: &dyn Host) -> Result<Option<String>> {
    let peer = host.peer();
    let facts = match (peer.link, peer.facts) {
        (PeerLink::NotConfigured, _) => {
            return Ok(Some(
                "no peer link is configured ([peer] in haven.toml), so nothing tells this host \
                 that the peer can take over"
                    .to_owned(),
            ));
        }
        (PeerLink::Down, _) => {
            return Ok(Some(format!(
                "the peer is unreachable: its link has been down for {} s",
                peer.link_for_ms / 1000
            )));
        }
        (PeerLink::Up, None) => {
            return Ok(Some("the peer has not published its facts yet".to_owned()));
        }
        (PeerLink::Up, Some(facts)) => facts,
    };
    let name = &facts.host;
    if facts.maintenance {
        return Ok(Some(format!("the peer ({name}) is in maintenance")));
    }
    if let Some(plan) = facts.running_plan {
        return Ok(Some(format!("the peer ({name}) is running plan {plan}")));
    }
    match facts.carp.iter().find(|carp| carp.vhid == vhid) {
        None => {
            return Ok(Some(format!(
                "the peer ({name}) reports no CARP vhid {vhid}"
            )));
        }
        Some(carp) if carp.state == haven_sdk::CarpState::Init => {
            return Ok(Some(format!(
                "the peer's ({name}) CARP vhid {vhid} is INIT: it takes no part in elections"
            )));
        }
        Some(_) => {}
    }
    for resource in &settings.resources {
        let res = &resource.name;
        let local = host.hast_status(res)?;
        if local.replication != HastReplication::Complete {
            return Ok(Some(format!(
                "the peer's copy of `{res}` is not known to be in sync: replication is {}",
                local.replication.as_str()
            )));
        }
        match local.dirty_bytes {
            Some(0) => {}
            Some(dirty) => {
                return Ok(Some(format!(
                    "the peer's copy of `{res}` is behind: {dirty} bytes are not replicated yet \
                     (dirty); wait for it to reach 0"
                )));
            }
            None => {
                return Ok(Some(format!(
                    "the peer's copy of `{res}` is not known to be in sync: hastd reports no \
                     dirty count here"
                )));
            }
        }
        let role = facts
            .hast
            .iter()
            .find(|status| status.resource == *res)
            .map(|status| status.role);
        if role != Some(HastRole::Secondary) {
            let role = role.map_or("unknown", |role| role.as_str());
            return Ok(Some(format!(
                "the peer's ({name}) HAST role for `{res}` is {role}, not secondary: its copy \
                 receives nothing"
            )));
        }
    }
    Ok(None)
}

/// A warning alert as the whole answer.
fn answer(severity: AlertSeverity, message: String) -> Plan {
    Plan::builder().alert(severity, message).build()
}

/// Hand the service to the peer on purpose (`why` names the request: `switchover`,
/// `maintenance on`): refused with the reason, or the demotion plan and `demote-carp`.
pub fn switchover(settings: &Settings, why: &str, host: &dyn Host) -> Result<Plan> {
    let Some(vhid) = settings.vhid else {
        return Ok(answer(
            AlertSeverity::Warning,
            format!(
                "{why} refused: this policy follows a carp interface (carp-interface), which \
                 cannot be demoted; configure its vhid instead"
            ),
        ));
    };
    if !serving(settings, host)? {
        return Ok(answer(
            AlertSeverity::Warning,
            format!(
                "{why}: this host does not serve (no resource of this policy is HAST primary \
                 here); nothing to move"
            ),
        ));
    }
    if let Some(reason) = peer_cannot_take_over(settings, vhid, host)? {
        return Ok(answer(
            AlertSeverity::Warning,
            format!("{why} refused: {reason}; nothing was changed"),
        ));
    }
    host.log(
        LogLevel::Info,
        &format!("{why}: handing the service and CARP vhid {vhid} to the peer"),
    );
    host.kv_set(DEMOTED, &vhid.to_string())?;
    Ok(Plan::builder()
        .then(plans::demote(settings, host)?)
        .demote_carp(vhid)
        .build())
}

/// `maintenance on`: a host that serves moves the service away as a switchover does (or, when
/// the peer cannot take it, keeps serving with a critical alert and moves it once it can);
/// a host that does not serve holds its CARP demotion.
pub fn maintenance_on(settings: &Settings, host: &dyn Host) -> Result<Plan> {
    let Some(vhid) = settings.vhid else {
        return Ok(answer(
            AlertSeverity::Warning,
            "maintenance is on, but this policy follows a carp interface (carp-interface), which \
             cannot be demoted: it only refuses to promote"
                .to_owned(),
        ));
    };
    if serving(settings, host)? {
        if let Some(reason) = peer_cannot_take_over(settings, vhid, host)? {
            return Ok(answer(
                AlertSeverity::Critical,
                format!(
                    "maintenance is on, but this host keeps serving: {reason}. The service \
                     moves as soon as the peer can take it; `havenctl maintenance off` cancels"
                ),
            ));
        }
        return switchover(settings, "maintenance on", host);
    }
    host.kv_set(DEMOTED, &vhid.to_string())?;
    Ok(Plan::builder().demote_carp(vhid).build())
}

/// In maintenance and still serving (the peer could not take over when it was turned on):
/// move away once it can. No plan otherwise.
pub fn move_away_in_maintenance(settings: &Settings, host: &dyn Host) -> Result<Plan> {
    let Some(vhid) = settings.vhid else {
        return Ok(Plan::none());
    };
    if host.maintenance().is_none()
        || !serving(settings, host)?
        || peer_cannot_take_over(settings, vhid, host)?.is_some()
    {
        return Ok(Plan::none());
    }
    switchover(settings, "maintenance on", host)
}

/// `maintenance off`: lift the demotion, always (idempotent: it cannot stay stuck because of
/// what this policy remembers or forgot).
pub fn maintenance_off(settings: &Settings, host: &dyn Host) -> Result<PlanBuilder> {
    host.kv_remove(DEMOTED);
    Ok(match settings.vhid {
        Some(vhid) => Plan::builder().lift_carp_demotion(vhid),
        None => Plan::builder(),
    })
}

/// At startup: in maintenance, assert the demotion again (a reboot reset FreeBSD's advskew);
/// otherwise nothing (a held switchover demotion stays until this host promotes).
pub fn at_startup(settings: &Settings, host: &dyn Host) -> Result<PlanBuilder> {
    match (host.maintenance(), settings.vhid) {
        (Some(_), Some(vhid)) if !serving(settings, host)? => {
            host.kv_set(DEMOTED, &vhid.to_string())?;
            Ok(Plan::builder().demote_carp(vhid))
        }
        _ => Ok(Plan::builder()),
    }
}

/// The step that lifts a held demotion, before a promotion; nothing when none is held.
pub fn lift_held_demotion(settings: &Settings, host: &dyn Host) -> PlanBuilder {
    match (settings.vhid, host.kv_get(DEMOTED)) {
        (Some(vhid), Some(_)) => {
            host.kv_remove(DEMOTED);
            Plan::builder().lift_carp_demotion(vhid)
        }
        _ => Plan::builder(),
    }
}

/// In maintenance, a promotion is refused with a critical alert, and the address handed back
/// to the peer when the peer is there to take it. `None` when not in maintenance.
pub fn maintenance_refusal(settings: &Settings, host: &dyn Host) -> Result<Option<Plan>> {
    let Some(maintenance) = host.maintenance() else {
        return Ok(None);
    };
    let since = utc(maintenance.since_unix_ms);
    let uid = maintenance.uid;
    let peer_up = host.peer().link == PeerLink::Up;
    let mut plan = Plan::builder();
    let address = match settings.vhid {
        Some(vhid) if peer_up => {
            host.kv_set(DEMOTED, &vhid.to_string())?;
            plan = plan.demote_carp(vhid);
            "handing the address back to the peer"
        }
        _ => "the peer is unreachable, so the address stays here with no service",
    };
    let message = format!(
        "not promoting: this host is in maintenance (since {since}, by uid {uid}), although \
         CARP made it master; {address}. `havenctl maintenance off` serves here"
    );
    Ok(Some(plan.alert(AlertSeverity::Critical, message).build()))
}

/// Why `promote --accept-incomplete <resource>` has nothing to accept now, if it has not.
pub fn nothing_to_accept(
    settings: &Settings,
    resource: &str,
    host: &dyn Host,
) -> Result<Option<String>> {
    if settings.resource(resource).is_none() {
        return Ok(Some(format!(
            "`{resource}` is not one of this policy's HAST resources"
        )));
    }
    if carp::current_target(settings, host) != Some(Target::Master) {
        return Ok(Some(
            "CARP does not make this host master, so no promotion waits; nothing is kept for \
             later"
                .to_owned(),
        ));
    }
    if host.hast_status(resource)?.role == HastRole::Primary {
        return Ok(Some(format!("`{resource}` is primary here already")));
    }
    Ok(None)
}
