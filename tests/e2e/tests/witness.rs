//! The witness on the live rig: a third machine runs a real etcd (Debian's etcd-server), and
//! both havends have `[witness]`. Root and Linux only (they skip, saying so, otherwise); one at
//! a time.
//!
//! - (a) the hosts partitioned from each other while both reach etcd: hastb's CARP takes the
//!   shared address and, once its HAST stand-in (like hastd) counts the silent peer as
//!   disconnected, its promotion reaches the role step, which the witness refuses: hasta
//!   alone ever writes, the disk is never mounted twice, and after the partition heals the
//!   database answers with every acknowledged row;
//! - (b) the master cut off from its peer and from etcd demotes itself within its lease's TTL;
//!   the backup then promotes under a higher fencing token, and no acknowledged row is lost;
//! - (c) etcd stops while the pair is healthy: nothing moves (the linked peer vouches for the
//!   master), and the journal and status say the witness is gone;
//! - (d) a second pair's havend on the same etcd: `havenctl fleet` lists both pairs.

mod common;

use common::{assert_nothing_lost, assert_serves_alone, entries, must, serial, serving_pair};
use haven_e2e::crash::FAILOVER_LIMIT;
use haven_e2e::mariadb::Writer;
use haven_e2e::rig::{Rig, RigOptions, Side, VIP, WITNESS_TTL_S, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

fn witness_rig() -> (Rig, haven_e2e::mariadb::Prober) {
    serving_pair(RigOptions {
        witness: true,
        ..RigOptions::default()
    })
}

const TTL: Duration = Duration::from_secs(WITNESS_TTL_S as u64);

/// The fencing tokens of `side`'s steps, in order.
fn tokens(rig: &Rig, side: Side) -> Vec<u64> {
    entries(rig, side, "step-end")
        .iter()
        .filter_map(|entry| entry["fencing-token"].as_u64())
        .collect()
}

/// `side`'s alerts containing `text`.
fn alerts(rig: &Rig, side: Side, text: &str) -> Vec<String> {
    entries(rig, side, "alert")
        .iter()
        .filter_map(|entry| entry["message"].as_str())
        .filter(|message| message.contains(text))
        .map(str::to_owned)
        .collect()
}

/// The position of the first step-start of `side` whose step begins with `step`, after `from`.
fn step_started_after(rig: &Rig, side: Side, from: u64, step: &str) -> Option<u64> {
    entries(rig, side, "step-start")
        .iter()
        .filter(|entry| entry["seq"].as_u64() > Some(from))
        .find(|entry| haven_e2e::crash::step_text(&entry["step"]).starts_with(step))
        .and_then(|entry| entry["seq"].as_u64())
}

fn last_seq(rig: &Rig, side: Side) -> u64 {
    rig.journal(side)
        .last()
        .and_then(|entry| entry["seq"].as_u64())
        .unwrap_or(0)
}

fn status(rig: &Rig, side: Side) -> Value {
    let text = must(rig, rig.havenctl(side, &["status", "--json"]), "status");
    serde_json::from_str(&text).expect("status is JSON")
}

#[test]
fn a_master_cut_off_from_peer_and_witness_demotes_itself_and_the_backup_takes_over_fenced() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = witness_rig();
    // hasta's promotion took the key: its writing steps (role, mount) ran under one token.
    let mut first = tokens(&rig, Side::A);
    first.dedup();
    assert_eq!(
        first.len(),
        1,
        "hasta's promotion ran under one token: {first:?}"
    );
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 10));

    let from_a = last_seq(&rig, Side::A);
    let cut = Instant::now();
    must(&rig, rig.set_link(Side::A, false), "cut hasta off the lan");
    must(&rig, rig.set_peer_link(false), "cut the peer link");
    must(
        &rig,
        rig.set_witness_link(Side::A, false),
        "cut hasta off the witness",
    );

    // hasta can no longer renew its lease: it demotes before the TTL could let hastb in.
    let demoted = wait_until(TTL * 2, || {
        step_started_after(&rig, Side::A, from_a, "hast-role test secondary").is_some()
    });
    let demoted_after = cut.elapsed();
    assert!(demoted, "hasta never demoted itself\n{}", rig.log.tail(120));
    assert!(
        demoted_after < TTL,
        "hasta started demoting {demoted_after:?} after the cut, not within its {TTL:?} lease"
    );
    assert_eq!(alerts(&rig, Side::A, "lost the leader key").len(), 1);

    // hastb promotes once hasta's lease has run out, under a higher token.
    let promoted = wait_until(FAILOVER_LIMIT + TTL, || !tokens(&rig, Side::B).is_empty());
    assert!(promoted, "hastb never took the key\n{}", rig.log.tail(120));
    let second = tokens(&rig, Side::B)[0];
    assert!(
        second > first[0],
        "hastb's token {second} after hasta's {}",
        first[0]
    );
    assert!(
        prober.wait_answering(FAILOVER_LIMIT),
        "the database never answered on hastb\n{}",
        rig.log.tail(120)
    );
    let before = writer.acked_count();
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5));
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::B);
    eprintln!(
        "hasta started demoting {:.1} s after the cut (TTL {} s); tokens {} then {second}",
        demoted_after.as_secs_f64(),
        WITNESS_TTL_S,
        first[0]
    );
}

#[test]
fn a_witness_outage_moves_nothing_while_the_linked_pair_agrees() {
    let Some(_serial) = serial() else { return };
    let (rig, _prober) = witness_rig();
    for side in [Side::A, Side::B] {
        let up = wait_until(FAILOVER_LIMIT, || {
            status(&rig, side)["peer"]["link"] == "up"
        });
        assert!(up, "{}'s peer link never came up", side.name());
    }
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 10));
    let from = [last_seq(&rig, Side::A), last_seq(&rig, Side::B)];

    let stopped = Instant::now();
    must(&rig, rig.stop_witness(), "stop etcd");
    for side in [Side::A, Side::B] {
        let said = wait_until(TTL, || {
            !alerts(&rig, side, "the witness (etcd) does not answer").is_empty()
        });
        assert!(said, "{} never said the witness is gone", side.name());
        let shown = wait_until(TTL, || status(&rig, side)["witness"]["reachable"] == false);
        assert!(shown, "{}'s status still shows etcd answering", side.name());
    }
    // hasta can no longer renew its key; hastb, linked and secondary, vouches for it.
    let lost = wait_until(TTL, || {
        !alerts(&rig, Side::A, "lost the leader key").is_empty()
    });
    assert!(
        lost,
        "hasta's key was never declared lost\n{}",
        rig.log.tail(80)
    );
    // A whole lease later, with the database answering throughout, nothing has moved.
    let before = writer.acked_count();
    assert!(wait_until(TTL * 3, || {
        stopped.elapsed() > TTL * 2 && writer.acked_count() > before + 10
    }));
    for (side, from) in [(Side::A, from[0]), (Side::B, from[1])] {
        let moved: Vec<_> = entries(&rig, side, "step-start")
            .into_iter()
            .filter(|entry| entry["seq"].as_u64() > Some(from))
            .collect();
        assert!(moved.is_empty(), "{} moved: {moved:?}", side.name());
    }
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::A);
    let text = must(&rig, rig.havenctl(Side::A, &["status"]), "status");
    assert!(text.contains("etcd DOES NOT ANSWER"), "{text}");
}

#[test]
fn a_partition_between_hosts_that_both_reach_the_witness_makes_no_second_writer() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = witness_rig();
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 10));
    let from_b = last_seq(&rig, Side::B);
    must(&rig, rig.partition(true), "partition the hosts");

    // hastb's promotion reaches its role step only once its stand-in has given up on the
    // silent peer (REMOTE_TIMEOUT, as hastd's 2 × HAST_KEEPALIVE): then only the witness
    // stands between it and a second writer.
    let bound = haven_e2e::hast_standin::hastd::REMOTE_TIMEOUT + TTL * 2 + FAILOVER_LIMIT;
    let refused = wait_until(bound, || {
        entries(&rig, Side::B, "step-end").iter().any(|entry| {
            entry["seq"].as_u64() > Some(from_b)
                && entry["ok"] == false
                && entry["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains("the witness refused"))
        })
    });
    assert!(
        refused,
        "hastb's promotion was never refused by the witness\n{}",
        rig.log.tail(150)
    );
    let detail: Vec<String> = entries(&rig, Side::B, "step-end")
        .iter()
        .filter_map(|entry| entry["detail"].as_str().map(str::to_owned))
        .filter(|detail| detail.contains("the witness refused"))
        .collect();
    assert!(detail[0].contains("held by hasta"), "{detail:?}");
    assert!(rig.mounted(Side::A) && !rig.mounted(Side::B));
    assert_eq!(rig.double_mounts(), 0, "{}", rig.log.tail(150));

    must(&rig, rig.partition(false), "heal the partition");
    assert!(
        prober.wait_answering(FAILOVER_LIMIT * 2),
        "the database never answered after the partition healed\n{}",
        rig.log.tail(150)
    );
    let before = writer.acked_count();
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5));
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::A);
}

#[test]
fn two_pairs_on_one_etcd_are_listed_by_the_fleet_command() {
    let Some(_serial) = serial() else { return };
    let (mut rig, _prober) = witness_rig();
    let started = rig.start_other_pair("db2");
    must(&rig, started, "start db2's havend");
    let token = tokens(&rig, Side::A)[0];
    let config = rig.host_dir(Side::A).join("haven.toml");
    let config = config.to_str().expect("a UTF-8 path").to_owned();
    let fleet = || rig.havenctl(Side::A, &["fleet", "--config", &config]);
    let listed = wait_until(FAILOVER_LIMIT, || {
        fleet().is_ok_and(|text| {
            text.contains("2 pair(s) under /haven")
                && text
                    .lines()
                    .any(|line| line.trim_start().starts_with("db2"))
                && text.contains("hasta (serving)")
                && text.contains("hastb (standby)")
        })
    });
    assert!(
        listed,
        "the fleet never listed both pairs\n{}",
        rig.log.tail(80)
    );
    let listing = must(&rig, fleet(), "havenctl fleet");
    let rig_line = listing
        .lines()
        .find(|line| line.trim_start().starts_with("rig "))
        .unwrap_or_else(|| panic!("no line for the rig's pair in\n{listing}"));
    assert!(rig_line.contains(&format!(" {token} ")), "{listing}");
    let db2_line = listing
        .lines()
        .find(|line| line.trim_start().starts_with("db2"))
        .unwrap();
    assert!(db2_line.contains("(none)"), "db2 has no leader: {listing}");
    eprintln!("{listing}");
}
