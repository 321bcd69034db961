//! The failover scenarios of the live rig (see `haven_e2e::rig`), each a test. They need root
//! and Linux (they skip, and say so, otherwise) and run one at a time: each builds its own
//! pair, and CARP's timing wants the machine's attention.
//!
//! Every scenario also asserts what must hold throughout: the rig's mount watch never saw the
//! shared disk mounted on both hosts at once.

mod common;

use common::{
    assert_nothing_lost, assert_promoted, assert_serves_alone, entries, must, serial, serving_pair,
    steps_started, wait_recorded,
};
use haven_e2e::crash::{self, FAILOVER_LIMIT};
use haven_e2e::mariadb::{Prober, Writer};
use haven_e2e::rig::{Rig, RigOptions, Side, VIP, wait_until};
use std::time::Duration;

/// The longest a CARP edge may take once the link changed: ucarp's master-down time for
/// hastb (3 × (1 + 100/256) s ≈ 4.2 s) with room for a loaded machine.
const FLAP_EDGE: Duration = Duration::from_secs(15);

/// 1. Cold start: hasta becomes master, mounts, starts MariaDB on the shared address; hastb
///    stays backup with nothing mounted.
#[test]
fn cold_start_hasta_serves_and_hastb_stays_backup() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions::default());
    assert_serves_alone(&rig, Side::A);
    assert!(prober.answers(Duration::from_secs(5)));
    // hastb decided its startup and CARP's BACKUP, and did nothing.
    assert!(
        steps_started(&rig, Side::B).is_empty(),
        "{:?}",
        steps_started(&rig, Side::B)
    );
    assert_promoted(&rig, Side::A);
}

/// 2. Master crash: a client writes with autocommit; hasta loses power (ucarp, havend,
///    mariadbd killed at once, its namespaces gone). hastb promotes and every acknowledged
///    row is there.
#[test]
fn master_crash_loses_no_acknowledged_row() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    let report = crash::crash(&mut rig, Side::A, &prober);
    let report = must(&rig, report, "crash");
    eprintln!(
        "crash: {} rows acknowledged of {} tried, {} lost\n{}",
        report.acked,
        report.tried,
        report.lost.len(),
        report.times.render()
    );
    assert!(
        report.lost.is_empty(),
        "acknowledged rows lost: {:?}",
        report.lost
    );
    assert!(report.acked > 20);
    assert_serves_alone(&rig, Side::B);
    assert_promoted(&rig, Side::B);
    assert!(!report.times.steps.is_empty());
    assert!(report.times.decision.is_some());
}

/// 3. Controlled switchover: hasta's ucarp is stopped cleanly, so hasta demotes (MariaDB
///    stopped, unmounted, role secondary) before hastb promotes onto a clean filesystem;
///    nothing is lost.
#[test]
fn controlled_switchover_demotes_before_the_peer_promotes() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions::default());
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 20));
    must(&rig, rig.stop_ucarp(Side::A), "stop hasta's ucarp");
    let moved = wait_until(FAILOVER_LIMIT, || rig.mounted(Side::B))
        && prober.wait_answering(FAILOVER_LIMIT);
    assert!(moved, "hastb never served\n{}", rig.log.tail(120));
    let before = writer.acked_count();
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5));
    let (acked, _) = writer.finish();
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::B);

    // hasta's demotion, in order, completed before hastb took the primary role.
    let demotion = steps_started(&rig, Side::A);
    let tail: Vec<&str> = demotion
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert!(
        tail.len() == 3
            && tail[0].starts_with("service stop mariadb")
            && tail[1].starts_with("unmount")
            && tail[2].starts_with("hast-role test secondary"),
        "hasta's last steps: {demotion:?}"
    );
    // hasta let the role go (MariaDB stopped, the disk unmounted, both journaled before) when
    // its `hastctl role secondary` started; hastb's primary worker can only start after that
    // (its secondary worker exits when hasta's primary disconnects). hasta's plan-end is
    // journaled after the command returns, so it may come a moment after hastb's start.
    let demoted_at = entries(&rig, Side::A, "step-start")
        .iter()
        .rev()
        .find(|entry| crash::step_text(&entry["step"]).starts_with("hast-role test secondary"))
        .expect("hasta gave the primary role up")["at"]
        .as_u64()
        .unwrap();
    let promoted_at = entries(&rig, Side::B, "step-start")
        .iter()
        .find(|entry| crash::step_text(&entry["step"]).starts_with("hast-role test primary"))
        .expect("hastb took the primary role")["at"]
        .as_u64()
        .unwrap();
    assert!(
        demoted_at <= promoted_at,
        "hastb took the primary role at {promoted_at} before hasta gave it up at {demoted_at}"
    );
    // The filesystem was left clean: fsck found nothing to do.
    let fsck = entries(&rig, Side::B, "step-end")
        .into_iter()
        .find(|entry| {
            entry["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("fsck"))
        })
        .expect("hastb ran fsck");
    assert_eq!(fsck["ok"], true, "{fsck}");
}

/// 4. Return of the old master: after the crash hasta boots again and stays backup (no
///    automatic failback); the disk is never mounted on both.
#[test]
fn the_old_master_returns_as_backup() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    let report = crash::crash(&mut rig, Side::A, &prober);
    must(&rig, report, "crash");
    let since = rig.log.now();
    let booted = rig.boot(Side::A);
    must(&rig, booted, "boot hasta again");
    // hasta hears hastb's adverts and settles as BACKUP; without preemption it must not take
    // the address back, however long it listens: give it many advertisement intervals.
    assert!(
        rig.log
            .wait_for(
                since,
                "hasta/ucarp",
                "Switching to state: BACKUP",
                FAILOVER_LIMIT
            )
            .is_some(),
        "{}",
        rig.log.tail(80)
    );
    let failback = rig.log.wait_for(
        since,
        "hasta/ucarp",
        "Switching to state: MASTER",
        Duration::from_secs(8),
    );
    assert!(
        failback.is_none(),
        "hasta took the address back\n{}",
        rig.log.tail(80)
    );
    assert!(prober.answers(Duration::from_secs(5)));
    assert_serves_alone(&rig, Side::B);
    // hasta's havend started again, decided, and did nothing.
    let journal = rig.journal(Side::A);
    let restarted = journal
        .iter()
        .rposition(|entry| entry["kind"] == "event" && entry["event"].get("startup").is_some())
        .expect("hasta's havend journaled its startup");
    let acted: Vec<String> = journal[restarted..]
        .iter()
        .filter(|entry| entry["kind"] == "step-start")
        .map(|entry| crash::step_text(&entry["step"]))
        .collect();
    assert!(acted.is_empty(), "hasta acted after its return: {acted:?}");
}

/// 5. Flapping: the link between the hosts goes down and up three times, each outage just
///    long enough for hastb's CARP to become master (hasta, still master, keeps its carrier),
///    all within the hold-down. The database ends up running on exactly one host, and the disk
///    was never mounted on two.
#[test]
fn flapping_link_never_mounts_twice() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions {
        hold_down_ms: 30_000,
        ..RigOptions::default()
    });
    for flap in 1..=3 {
        // Cut hasta off until hastb's CARP takes over, join it again until hastb gives way:
        // each edge waited for, so every flap moves CARP whatever the machine's speed.
        let since = rig.log.now();
        must(&rig, rig.set_link(Side::A, false), "cut hasta off");
        let master = rig
            .log
            .wait_for(since, "hastb/ucarp", "state: MASTER", FLAP_EDGE);
        must(&rig, rig.set_link(Side::A, true), "join hasta");
        let Some(master) = master else {
            panic!(
                "flap {flap}: hastb never became master\n{}",
                rig.log.tail(120)
            );
        };
        // After that MASTER (hastb's ucarp says BACKUP when it starts, too).
        let backup = rig
            .log
            .wait_for(master.at, "hastb/ucarp", "state: BACKUP", FLAP_EDGE);
        assert!(
            backup.is_some(),
            "flap {flap}: hastb stayed master\n{}",
            rig.log.tail(120)
        );
        assert_eq!(rig.double_mounts(), 0, "{}", rig.log.tail(120));
    }
    // Both havends settle (every step they started has ended, the hold-down's timers
    // included), with the database on exactly one host.
    let settled = wait_until(FAILOVER_LIMIT * 2, || {
        let idle = [Side::A, Side::B].into_iter().all(|side| {
            let journal = rig.journal(side);
            let count = |kind: &str| journal.iter().filter(|entry| entry["kind"] == kind).count();
            count("step-start") == count("step-end")
        });
        idle && rig.mounted(Side::A) != rig.mounted(Side::B)
    });
    assert!(settled, "the pair never settled\n{}", rig.log.tail(120));
    assert!(
        prober.wait_answering(FAILOVER_LIMIT),
        "{}",
        rig.log.tail(120)
    );
    let serving = if rig.mounted(Side::A) {
        Side::A
    } else {
        Side::B
    };
    assert_serves_alone(&rig, serving);
}

/// The primary's sync is interrupted: hasta's hastd runs `syncintr` and counts dirty bytes,
/// hastb's hastd says nothing (it cannot: `dirty: 0` on a secondary), and hastb's havend
/// records what the peer link relays.
fn interrupt_the_sync_on_hasta(rig: &Rig) {
    must(
        rig,
        rig.hast_request(Side::A, "sync-interrupted test"),
        "interrupt the sync on the primary",
    );
    let refused = rig.hast_request(Side::B, "sync-interrupted test");
    assert!(
        refused.is_err(),
        "the stand-in ran a sync hook on the secondary: {refused:?}"
    );
    let relayed = wait_until(FAILOVER_LIMIT, || {
        entries(rig, Side::B, "event")
            .iter()
            .any(|entry| entry["event"]["peer"]["hast-hook"]["sync-interrupted"] == "test")
    });
    assert!(
        relayed,
        "hastb never heard of hasta's syncintr\n{}",
        rig.log.tail(80)
    );
    wait_recorded(rig, Side::B, "interrupted");
}

/// hasta loses power; CARP makes hastb master, and hastb refuses with a critical alert that
/// names the relayed fact.
fn crash_hasta_and_assert_refused(rig: &mut Rig, prober: &Prober) {
    let since = rig.log.now();
    rig.power_off(Side::A);
    assert!(
        rig.log
            .wait_for(
                since,
                "hastb/ucarp",
                "Switching to state: MASTER",
                FAILOVER_LIMIT
            )
            .is_some()
    );
    let alerted = wait_until(FAILOVER_LIMIT, || {
        entries(rig, Side::B, "alert").iter().any(|alert| {
            alert["severity"] == "critical"
                && alert["message"].as_str().is_some_and(|m| {
                    m.contains("refusing to promote")
                        && m.contains("peer hasta's hastd ran `syncintr` as primary")
                })
        })
    });
    assert!(
        alerted,
        "no critical alert naming the relayed fact on hastb\n{}",
        rig.log.tail(120)
    );
    assert!(
        !rig.mounted(Side::B),
        "hastb mounted an unsynchronised copy"
    );
    assert!(!prober.answers(Duration::from_millis(500)));
}

/// 6. Refusal (issue 12 a): the sync is interrupted on the primary, the primary dies, and the
///    secondary refuses, its alert naming the relayed fact. The operator's override, set in
///    the config and reloaded, then promotes it.
#[test]
fn an_interrupted_sync_relayed_from_the_primary_stops_the_promotion() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 20));
    interrupt_the_sync_on_hasta(&rig);
    crash_hasta_and_assert_refused(&mut rig, &prober);
    let (acked, _) = writer.finish();

    // The operator decides: the override, then a reload.
    let config = rig.host_dir(Side::B).join("haven.toml");
    let text = must(&rig, rig.havend_config(Side::B, true), "config");
    std::fs::write(&config, text).expect("write the override");
    let reloaded = rig.havenctl(Side::B, &["reload"]);
    must(&rig, reloaded, "havenctl reload");
    assert!(
        prober.wait_answering(FAILOVER_LIMIT),
        "hastb never served\n{}",
        rig.log.tail(120)
    );
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::B);
}

/// 7. (issue 12 b) The same, with hastb's havend restarted between the interruption and the
///    crash: the record was on disk, and hastb still refuses.
#[test]
fn the_relayed_record_survives_a_restart_of_the_secondarys_havend() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    interrupt_the_sync_on_hasta(&rig);
    let restarted = rig.restart_havend(Side::B);
    must(&rig, restarted, "restart hastb's havend");
    crash_hasta_and_assert_refused(&mut rig, &prober);
}

/// 8. (issue 12 b) The same, with hastb's whole namespace rebooted in between: its hastd comes
///    back as secondary knowing nothing, and hastb still refuses from its kept record.
#[test]
fn the_relayed_record_survives_a_reboot_of_the_secondary() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    interrupt_the_sync_on_hasta(&rig);
    rig.power_off(Side::B);
    let booted = rig.boot(Side::B);
    must(&rig, booted, "reboot hastb");
    let listed = must(
        &rig,
        rig.hastctl(Side::B, &["list", "test"]),
        "hastctl list on hastb",
    );
    assert!(listed.contains("dirty: 0 (0B)"), "{listed}");
    crash_hasta_and_assert_refused(&mut rig, &prober);
}

/// 9. (issue 12 c) A completed sync, relayed, then a crash: hastb promotes, and no
///    acknowledged row is lost.
#[test]
fn a_completed_sync_relayed_then_a_crash_promotes_losing_nothing() {
    let Some(_serial) = serial() else { return };
    let (mut rig, prober) = serving_pair(RigOptions::default());
    let writer = Writer::start(rig.client(), VIP);
    assert!(wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 20));
    must(
        &rig,
        rig.hast_request(Side::A, "sync-start test 4194304"),
        "start a sync",
    );
    wait_recorded(&rig, Side::B, "syncing");
    must(
        &rig,
        rig.hast_request(Side::A, "sync-done test"),
        "finish it",
    );
    wait_recorded(&rig, Side::B, "synced");
    rig.power_off(Side::A);
    assert!(
        prober.wait_answering(FAILOVER_LIMIT),
        "hastb never served\n{}",
        rig.log.tail(120)
    );
    let (acked, _) = writer.finish();
    assert!(!acked.is_empty());
    assert_nothing_lost(&rig, &acked);
    assert_serves_alone(&rig, Side::B);
    assert_promoted(&rig, Side::B);
}

/// 10. (issue 12 e) The peer link is cut while CARP still sees both hosts: both policies hear
///     that the peer is unreachable, and nothing acts on that alone; the link comes back.
#[test]
fn a_cut_peer_link_alone_moves_nothing() {
    let Some(_serial) = serial() else { return };
    let (rig, prober) = serving_pair(RigOptions::default());
    let steps_before = [Side::A, Side::B].map(|side| steps_started(&rig, side).len());
    must(&rig, rig.set_peer_link(false), "cut the peer link");
    let peer_event = |side: Side, what: &str| {
        entries(&rig, side, "event")
            .iter()
            .any(|entry| entry["event"]["peer"] == what)
    };
    let heard = wait_until(FAILOVER_LIMIT, || {
        peer_event(Side::A, "down") && peer_event(Side::B, "down")
    });
    assert!(
        heard,
        "a policy never heard the link go down\n{}",
        rig.log.tail(80)
    );
    let status = must(&rig, rig.havenctl(Side::B, &["status"]), "status");
    let link = status.lines().find(|line| line.starts_with("peer link"));
    assert!(
        link.is_some_and(|line| line.contains(" down for ")),
        "{status}"
    );
    // Every decision about it is made; none acted.
    let settled = wait_until(FAILOVER_LIMIT, || {
        [Side::A, Side::B].iter().all(|side| {
            entries(&rig, *side, "event").len() <= entries(&rig, *side, "decision").len()
        })
    });
    assert!(settled, "{}", rig.log.tail(80));
    let steps_after = [Side::A, Side::B].map(|side| steps_started(&rig, side).len());
    assert_eq!(
        steps_before, steps_after,
        "a step ran on the link's loss alone"
    );
    assert!(
        prober.answers(Duration::from_secs(2)),
        "the database stopped answering"
    );
    assert_serves_alone(&rig, Side::A);
    must(&rig, rig.set_peer_link(true), "restore the peer link");
    assert!(
        wait_until(FAILOVER_LIMIT, || peer_event(Side::B, "up")),
        "{}",
        rig.log.tail(80)
    );
}
