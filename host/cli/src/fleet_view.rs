//! `havenctl fleet`: every pair under the witness's prefix, read from etcd, as a table.
//!
//! Everything shown comes from etcd, which any client with write access to the prefix can
//! fill: cells are escaped and clipped (by the table), and what is not Haven's is listed as a
//! problem, never believed.

use crate::daemon_view::{section, utc};
use haven_witness::{Fleet, PairView};
use std::fmt::Write as _;

/// The table.
pub fn render(fleet: &Fleet) -> String {
    let mut out = String::new();
    let _ = write!(out, "{} pair(s) under {}", fleet.pairs.len(), fleet.prefix);
    if fleet.truncated {
        let _ = write!(
            out,
            " (the listing stopped at {} keys)",
            haven_witness::fleet::MAX_KEYS
        );
    }
    out.push('\n');
    section(
        &mut out,
        "Pairs",
        [
            "pair",
            "leader",
            "token",
            "leader since",
            "lease",
            "members",
        ],
        |rows| {
            for pair in &fleet.pairs {
                rows.push(row(pair));
            }
        },
    );
    if !fleet.problems.is_empty() {
        section(&mut out, "Not Haven's (ignored)", ["key and why"], |rows| {
            for problem in &fleet.problems {
                rows.push(vec![problem.clone()]);
            }
        });
    }
    out
}

fn row(pair: &PairView) -> Vec<String> {
    let (leader, token, since, lease) = match &pair.leader {
        Some(leader) => (
            leader.host.clone(),
            leader.token.to_string(),
            utc(leader.since_unix_ms).to_string(),
            match (leader.lease_left_s, leader.lease_ttl_s) {
                (Some(left), Some(ttl)) => {
                    format!("renewed {}s ago, {left}s left", (ttl - left).max(0))
                }
                // No lease, or it could not be read in time.
                _ => "unknown".to_owned(),
            },
        ),
        None => (
            "(none)".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ),
    };
    let members = pair
        .members
        .iter()
        .map(|member| {
            let mut words = vec![if member.serving { "serving" } else { "standby" }];
            if member.maintenance {
                words.push("MAINTENANCE");
            }
            format!("{} ({})", member.host, words.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    vec![pair.pair.clone(), leader, token, since, lease, members]
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_witness::{LeaderView, MemberRecord};

    #[test]
    fn the_fleet_reads_as_a_table_with_etcd_s_text_escaped() {
        let fleet = Fleet {
            prefix: "/haven".to_owned(),
            pairs: vec![PairView {
                pair: "db1".to_owned(),
                leader: Some(LeaderView {
                    host: "hasta".to_owned(),
                    token: 42,
                    since_unix_ms: 0,
                    lease_ttl_s: Some(10),
                    lease_left_s: Some(8),
                }),
                members: vec![MemberRecord {
                    host: "hastb".to_owned(),
                    serving: false,
                    maintenance: true,
                    version: "0.1.0".to_owned(),
                }],
            }],
            problems: vec!["/haven/x\u{1b}[2J: not a key Haven writes".to_owned()],
            truncated: false,
        };
        let text = render(&fleet);
        assert!(text.contains("1 pair(s) under /haven"), "{text}");
        assert!(text.contains("db1  hasta  42"), "{text}");
        assert!(text.contains("renewed 2s ago, 8s left"), "{text}");
        assert!(text.contains("hastb (standby, MAINTENANCE)"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
