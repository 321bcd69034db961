//! Day-2 operations on the live rig: `havenctl switchover` (and back), its refusals,
//! maintenance on the backup and on the master, and a non-root user refused. Root and Linux
//! only (they skip, saying so, otherwise); one at a time.
//!
//! Every scenario asserts what must hold throughout: no acknowledged row lost, the shared disk
//! never mounted on both hosts at once.

mod common;

use common::{
    assert_nothing_lost, assert_promoted, assert_serves_alone, entries, must, serial, serving_pair,
    steps_started, wait_recorded,
};
use haven_e2e::crash::FAILOVER_LIMIT;
use haven_e2e::mariadb::{Prober, Writer};
use haven_e2e::rig::{Rig, RigOptions, Side, VIP, wait_until};
use serde_json::Value;

/// `havenctl status --json` on `side`.
fn status(rig: &Rig, side: Side) -> Value {
    let text = must(rig, rig.havenctl(side, &["status", "--json"]), "status");
    serde_json::from_str(&text).expect("status is JSON")
}

/// Both havends hear each other, and hastb knows its copy is in sync: what a switchover
/// needs of the pair.
fn wait_pair_ready(rig: &Rig) {
    for side in [Side::A, Side::B] {
        let up = wait_until(FAILOVER_LIMIT, || status(rig, side)["peer"]["link"] == "up");
        assert!(
            up,
            "{}'s peer link never came up\n{}",
            side.name(),
            rig.log.tail(80)
        );
    }
    wait_recorded(rig, Side::B, "synced");
}

/// The last `fsck` step on `side` succeeded: the filesystem was left clean.
fn assert_fsck_clean(rig: &Rig, side: Side) {
    let fsck = entries(rig, side, "step-end")
        .into_iter()
        .rfind(|entry| {
            entry["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("fsck"))
        })
        .unwrap_or_else(|| panic!("{} ran no fsck", side.name()));
    assert_eq!(fsck["ok"], true, "{fsck}");
}

/// The total time havenctl printed last (`  4.321 s the peer (…) reports itself serving`).
fn total_seconds(output: &str) -> f64 {
    output
        .lines()
        .filter(|line| line.contains("reports itself serving"))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no end line in\n{output}"))
}

/// `havenctl switchover` on `from` while `writer` writes: it must end with the peer serving,
/// the database answering through the shared address and taking rows, and the peer alone
/// serving with a clean filesystem. Its output, for the test's own checks.
fn switch_over(rig: &Rig, prober: &Prober, writer: &Writer, from: Side) -> String {
    let to = from.peer();
    let out = must(
        rig,
        rig.havenctl(from, &["switchover", "--to", to.name()]),
        "switchover",
    );
    rig.log
        .note(format!("havenctl switchover on {}:\n{out}", from.name()));
    let serving = format!("the peer ({}) reports itself serving", to.name());
    assert!(out.contains(&serving), "{out}");
    eprintln!(
        "switchover to {}: {:.3} s\n{out}",
        to.name(),
        total_seconds(&out)
    );
    assert!(
        prober.wait_answering(FAILOVER_LIMIT),
        "{}",
        rig.log.tail(120)
    );
    let before = writer.acked_count();
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5));
    assert_serves_alone(rig, to);
    assert_promoted(rig, to);
    assert_fsck_clean(rig, to);
    out
}

/// (a) and (b): a planned switchover moves MariaDB to hastb while a client writes, losing no
/// acknowledged row, never mounted twice, the filesystem clean; then a failback the same way.
#[test]
fn a_switchover_and_a_failback_lose_nothing() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions::default());
    wait_pair_ready(&rig);
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 20));
    switch_over(&rig, &prober, &writer, Side::A);
    let pair = must(&rig, rig.havenctl(Side::B, &["status"]), "status");
    eprintln!("{pair}");

    // (b) Failback, from hastb, once hasta knows its own copy is in sync again.
    wait_recorded(&rig, Side::A, "synced");
    switch_over(&rig, &prober, &writer, Side::B);
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
}

/// `havenctl args…` on hasta fails, saying `reason` (on stderr, which the error carries).
fn assert_refused(rig: &Rig, args: &[&str], reason: &str) {
    let refused = rig
        .havenctl(Side::A, args)
        .expect_err("the request is refused");
    eprintln!("refused: {refused}");
    assert!(
        refused.to_string().contains(reason),
        "{reason:?} not in {refused}"
    );
}

/// (c) A switchover is refused, with the reason, when the peer is unreachable and when the
/// peer's copy is behind; nothing moves.
#[test]
fn a_switchover_is_refused_when_the_peer_is_unreachable_or_behind() {
    let Some(_serial) = serial() else { return };
    let (rig, _prober) = serving_pair(RigOptions::default());
    wait_pair_ready(&rig);

    must(&rig, rig.set_peer_link(false), "cut the peer link");
    let down = wait_until(FAILOVER_LIMIT, || {
        status(&rig, Side::A)["peer"]["link"] == "down"
    });
    assert!(
        down,
        "hasta never saw the link go down\n{}",
        rig.log.tail(80)
    );
    assert_refused(&rig, &["switchover"], "the peer is unreachable");
    assert_serves_alone(&rig, Side::A);

    must(&rig, rig.set_peer_link(true), "restore the peer link");
    wait_pair_ready(&rig);
    must(
        &rig,
        rig.hast_request(Side::A, "sync-start test 1048576"),
        "dirty hasta's copy",
    );
    let dirty = wait_until(FAILOVER_LIMIT, || {
        status(&rig, Side::A)["hast"][0]["dirty-bytes"]
            .as_u64()
            .is_some_and(|dirty| dirty > 0)
    });
    assert!(
        dirty,
        "hasta never reported dirty bytes\n{}",
        rig.log.tail(80)
    );
    assert_refused(&rig, &["switchover"], "bytes are not replicated yet");
    // A name that is not the peer's is bad input: refused by havend before any policy.
    assert_refused(
        &rig,
        &["switchover", "--to", "hastc"],
        "unknown host `hastc`: this host's peer is `hastb`",
    );
    assert_serves_alone(&rig, Side::A);
    assert!(
        !steps_started(&rig, Side::A)
            .iter()
            .any(|step| step.starts_with("hast-role test secondary")),
        "hasta demoted although every switchover was refused"
    );
}

/// (d) Maintenance on the backup: the master dies and the backup does not promote (a critical
/// alert says why); maintenance survives a restart of its havend; maintenance off promotes.
#[test]
fn maintenance_on_the_backup_holds_it_back_until_lifted() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    wait_pair_ready(&rig);
    let out = must(
        &rig,
        rig.havenctl(Side::B, &["maintenance", "on"]),
        "maintenance on",
    );
    rig.log.note(format!("maintenance on on hastb:\n{out}"));
    assert!(status(&rig, Side::B)["maintenance"].is_object());
    let peer_sees = wait_until(FAILOVER_LIMIT, || {
        status(&rig, Side::A)["peer"]["facts"]["maintenance"] == true
    });
    assert!(
        peer_sees,
        "hasta never saw hastb's maintenance\n{}",
        rig.log.tail(80)
    );

    rig.power_off(Side::A);
    let alerted = wait_until(FAILOVER_LIMIT, || {
        entries(&rig, Side::B, "alert").iter().any(|alert| {
            alert["message"]
                .as_str()
                .is_some_and(|message| message.contains("this host is in maintenance"))
        })
    });
    assert!(
        alerted,
        "hastb never said why it does not promote\n{}",
        rig.log.tail(120)
    );
    assert!(
        !rig.mounted(Side::B),
        "hastb mounted the disk in maintenance"
    );

    let restarted = rig.restart_havend(Side::B);
    must(&rig, restarted, "restart hastb's havend");
    let answers = wait_until(FAILOVER_LIMIT, || {
        rig.havenctl(Side::B, &["status"]).is_ok()
    });
    assert!(answers, "hastb's havend never answered after its restart");
    assert!(
        status(&rig, Side::B)["maintenance"].is_object(),
        "maintenance did not survive the restart"
    );
    assert!(
        !rig.mounted(Side::B),
        "hastb mounted the disk after its restart"
    );

    let out = must(
        &rig,
        rig.havenctl(Side::B, &["maintenance", "off"]),
        "maintenance off",
    );
    rig.log.note(format!("maintenance off on hastb:\n{out}"));
    let serving = wait_until(FAILOVER_LIMIT, || rig.mounted(Side::B))
        && prober.wait_answering(FAILOVER_LIMIT);
    assert!(
        serving,
        "hastb never served after maintenance off\n{}",
        rig.log.tail(120)
    );
    assert!(status(&rig, Side::B)["maintenance"].is_null());
    assert_eq!(rig.double_mounts(), 0);
}

/// (e) Maintenance on the master moves the service away like a switchover. (f) A non-root
/// user is refused every operator command, and nothing is queued.
#[test]
fn maintenance_on_the_master_moves_the_service_and_nobody_is_refused() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions::default());
    wait_pair_ready(&rig);

    for args in [
        &["switchover"][..],
        &["maintenance", "on"],
        &["maintenance", "off"],
        &["promote", "--accept-incomplete", "test"],
    ] {
        let refused = rig
            .havenctl_as_nobody(Side::A, args)
            .expect_err("nobody may operate the pair");
        let text = refused.to_string();
        assert!(
            text.contains("Permission denied") || text.contains("only root may"),
            "{args:?}: {text}"
        );
    }
    assert!(
        entries(&rig, Side::A, "event")
            .iter()
            .all(|entry| entry["source"] != "havenctl"),
        "a refused request reached the queue"
    );

    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 10));
    let out = must(
        &rig,
        rig.havenctl(Side::A, &["maintenance", "on"]),
        "maintenance on",
    );
    rig.log.note(format!("maintenance on on hasta:\n{out}"));
    assert!(
        out.contains("the peer (hastb) reports itself serving"),
        "{out}"
    );
    assert!(prober.wait_answering(FAILOVER_LIMIT));
    let before = writer.acked_count();
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5));
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::B);
}
