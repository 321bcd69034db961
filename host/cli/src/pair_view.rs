//! The pair side by side, as `havenctl status` shows it when a peer link is configured: this
//! host's state from its own havend, the peer's from the facts it last published, row by row
//! (like `crm_mon`), so an operator sees in one table who serves, who holds the data, how far
//! behind the copy is, and who is in maintenance.
//!
//! Everything in the peer's column came over the network from another host's havend and its
//! policies: it is escaped and clipped like any text a policy controls.

use haven_core::text::{clip, escape};
use haven_core::{HastRole, HastStatus, PeerFacts};
use haven_daemon::status::{PeerView, Status};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

/// The most of one cell shown.
const CELL_BYTES: usize = 120;

/// Alerts shown per host.
const ALERTS_SHOWN: usize = 3;

fn cell(text: &str) -> String {
    escape(&clip(text, CELL_BYTES)).into_owned()
}

fn ago(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn maintenance(on: Option<u64>) -> String {
    match on {
        Some(since) => format!("ON since {}", crate::daemon_view::utc(since)),
        None => "off".to_owned(),
    }
}

/// `primary complete dirty 0`, and on the side that is not primary the primary's dirty count,
/// which its own hastd never reports.
fn hast_cell(status: Option<&HastStatus>, primary_dirty: Option<u64>) -> String {
    let Some(status) = status else {
        return "-".to_owned();
    };
    let dirty = status
        .dirty_bytes
        .map_or("-".to_owned(), |dirty| dirty.to_string());
    let mut text = format!(
        "{} {} dirty {dirty}",
        status.role,
        format!("{:?}", status.replication).to_lowercase()
    );
    if status.role != HastRole::Primary
        && let Some(dirty) = primary_dirty
    {
        let _ = write!(text, " (primary's dirty {dirty})");
    }
    text
}

/// The rows: a label, this host's cell, the peer's cell.
fn rows(status: &Status, peer: &PeerView, facts: Option<&PeerFacts>) -> Vec<[String; 3]> {
    let mut rows = Vec::new();
    let state = &peer.state;
    let heard = state.facts_age_ms.map_or("never heard".to_owned(), |age| {
        format!("heard {} ago", ago(age))
    });
    rows.push([
        "peer link".to_owned(),
        format!("{} for {}", state.link.as_str(), ago(state.link_for_ms)),
        heard,
    ]);
    rows.push([
        "havend".to_owned(),
        format!("pid {}, up {}", status.pid, ago(status.uptime_ms)),
        facts.map_or("-".to_owned(), |facts| {
            format!("version {}", cell(&facts.version))
        }),
    ]);
    rows.push([
        "maintenance".to_owned(),
        maintenance(status.maintenance.map(|m| m.since_unix_ms)),
        match facts {
            Some(facts) if facts.maintenance => "ON".to_owned(),
            Some(_) => "off".to_owned(),
            None => "-".to_owned(),
        },
    ]);
    let vhids: BTreeSet<u8> = status
        .carp
        .iter()
        .chain(facts.iter().flat_map(|facts| facts.carp.iter()))
        .map(|carp| carp.vhid)
        .collect();
    for vhid in vhids {
        let local = status.carp.iter().find(|carp| carp.vhid == vhid);
        let remote = facts.and_then(|facts| facts.carp.iter().find(|carp| carp.vhid == vhid));
        let show = |carp: Option<&haven_core::CarpStatus>| {
            carp.map_or("-".to_owned(), |carp| {
                format!("{:?} on {}", carp.state, cell(&carp.interface)).to_lowercase()
            })
        };
        rows.push([format!("CARP vhid {vhid}"), show(local), show(remote)]);
    }
    let resources: BTreeSet<&str> = status
        .hast
        .iter()
        .chain(facts.iter().flat_map(|facts| facts.hast.iter()))
        .map(|hast| hast.resource.as_str())
        .collect();
    for resource in resources {
        let local = status.hast.iter().find(|hast| hast.resource == resource);
        let remote = facts.and_then(|facts| facts.hast.iter().find(|h| h.resource == resource));
        let primary_dirty = local
            .into_iter()
            .chain(remote)
            .find(|hast| hast.role == HastRole::Primary)
            .and_then(|hast| hast.dirty_bytes);
        rows.push([
            format!("HAST {}", cell(resource)),
            hast_cell(local, primary_dirty),
            cell(&hast_cell(remote, primary_dirty)),
        ]);
    }
    let mountpoints: BTreeSet<&str> = status
        .mounts
        .iter()
        .chain(facts.iter().flat_map(|facts| facts.mounts.iter()))
        .map(|mount| mount.mountpoint.as_str())
        .collect();
    for mountpoint in mountpoints {
        let show = |mounts: &[haven_core::MountStatus]| {
            mounts
                .iter()
                .find(|mount| mount.mountpoint == mountpoint)
                .map_or("-".to_owned(), |mount| {
                    format!("{} {}", cell(&mount.device), cell(&mount.fstype))
                })
        };
        rows.push([
            format!("mount {}", cell(mountpoint)),
            show(&status.mounts),
            facts.map_or("-".to_owned(), |facts| show(&facts.mounts)),
        ]);
    }
    let services: BTreeSet<&str> = status
        .services
        .iter()
        .chain(facts.iter().flat_map(|facts| facts.services.iter()))
        .map(|service| service.name.as_str())
        .collect();
    for name in services {
        let show = |services: &[haven_core::ServiceStatus]| {
            services
                .iter()
                .find(|service| service.name == name)
                .map_or("-", |service| {
                    if service.running {
                        "running"
                    } else {
                        "stopped"
                    }
                })
                .to_owned()
        };
        rows.push([
            format!("service {}", cell(name)),
            show(&status.services),
            facts.map_or("-".to_owned(), |facts| show(&facts.services)),
        ]);
    }
    rows.push([
        "running plan".to_owned(),
        status.running.as_ref().map_or("-".to_owned(), |running| {
            format!(
                "plan {} step {}: {}",
                running.plan_id,
                running.index,
                cell(&running.step)
            )
        }),
        facts
            .and_then(|facts| facts.running_plan)
            .map_or("-".to_owned(), |plan| format!("plan {plan}")),
    ]);
    let local_alerts: Vec<String> = status
        .alerts
        .iter()
        .rev()
        .take(ALERTS_SHOWN)
        .rev()
        .map(|alert| cell(&format!("{}: {}", alert.severity, alert.message)))
        .collect();
    let remote_alerts: Vec<String> = facts
        .map(|facts| {
            let skip = facts.alerts.len().saturating_sub(ALERTS_SHOWN);
            facts
                .alerts
                .iter()
                .skip(skip)
                .map(|alert| cell(alert))
                .collect()
        })
        .unwrap_or_default();
    for index in 0..local_alerts.len().max(remote_alerts.len()) {
        let label = if index == 0 { "last alerts" } else { "" };
        rows.push([
            label.to_owned(),
            local_alerts.get(index).cloned().unwrap_or_default(),
            remote_alerts.get(index).cloned().unwrap_or_default(),
        ]);
    }
    rows
}

/// The pair's table: a header naming both hosts, then one row per fact.
pub fn render(status: &Status, peer: &PeerView) -> String {
    let facts = peer.state.facts.as_ref();
    let this = status.host.as_deref().unwrap_or("this host");
    let header = [
        String::new(),
        format!("{} (this host)", cell(this)),
        facts.map_or("peer (never heard)".to_owned(), |facts| {
            format!("{} (peer)", cell(&facts.host))
        }),
    ];
    let rows = rows(status, peer, facts);
    let width = |column: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (first, second) = (width(0), width(1));
    let mut out = String::from("\n");
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line = format!("{:first$}  {:second$}  {}", row[0], row[1], row[2]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
