//! What the rig's scenario files share: one scenario at a time, a serving pair to start
//! from, the journal's entries, and the assertions every scenario makes (nothing lost, one
//! host serving, never mounted twice).

#![allow(dead_code)]

use haven_e2e::crash;
use haven_e2e::mariadb::{self, Prober};
use haven_e2e::rig::{Rig, RigOptions, Side, VIP};
use serde_json::Value;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> Option<MutexGuard<'static, ()>> {
    if let Err(why) = haven_e2e::can_run() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Unwrap `result`, or fail with the rig's recent timeline.
pub fn must<T>(rig: &Rig, result: Result<T, haven_e2e::RigError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}\n{}", rig.log.tail(120)))
}

/// Both hosts booted, hasta serving and the scenarios' schema created: scenario 1's end, and
/// every other scenario's start.
pub fn serving_pair(options: RigOptions) -> (Rig, Prober) {
    let mut rig = Rig::new(options).expect("rig");
    let prober = rig.boot_serving_pair();
    let prober = must(&rig, prober, "boot the pair");
    (rig, prober)
}

/// The journal entries of `side` of `kind`.
pub fn entries(rig: &Rig, side: Side, kind: &str) -> Vec<Value> {
    rig.journal(side)
        .into_iter()
        .filter(|entry| entry["kind"] == kind)
        .collect()
}

/// The steps `side`'s havend started, as their journal text, in order.
pub fn steps_started(rig: &Rig, side: Side) -> Vec<String> {
    entries(rig, side, "step-start")
        .iter()
        .map(|entry| crash::step_text(&entry["step"]))
        .collect()
}

/// Every acknowledged row (`acked`) is in the table, read through the shared address.
pub fn assert_nothing_lost(rig: &Rig, acked: &[u64]) {
    let lost = must(rig, mariadb::missing(rig.client(), VIP, acked), "read rows");
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
}

/// The serving host is the only one with the disk mounted and MariaDB running, and the
/// disk was never mounted on both.
pub fn assert_serves_alone(rig: &Rig, side: Side) {
    let other = side.peer();
    assert!(
        rig.mounted(side),
        "{} has nothing mounted\n{}",
        side.name(),
        rig.log.tail(120)
    );
    assert!(rig.database_runs(side), "no mariadbd on {}", side.name());
    assert!(
        !rig.mounted(other),
        "{} has the disk mounted too",
        other.name()
    );
    assert!(
        !rig.database_runs(other),
        "mariadbd runs on {} too",
        other.name()
    );
    assert_eq!(
        rig.double_mounts(),
        0,
        "the disk was mounted on both hosts at once"
    );
}

/// `side`'s havend ran a whole promotion: role, fsck, mount, MariaDB.
pub fn assert_promoted(rig: &Rig, side: Side) {
    let started = steps_started(rig, side);
    for wanted in [
        "hast-role test primary",
        "fsck ext4 /dev/hast/test",
        "mount ext4",
        "service start mariadb",
    ] {
        assert!(
            started.iter().any(|step| step.starts_with(wanted)),
            "no `{wanted}` in {}'s steps {started:?}",
            side.name()
        );
    }
}

/// `side`'s seed policy has `state` recorded for `test`, on disk.
pub fn wait_recorded(rig: &Rig, side: Side, state: &str) {
    let path = rig.host_dir(side).join("state/kv/mysql.json");
    let wanted = format!("\"sync:test\":\"{state}\"");
    let recorded = haven_e2e::rig::wait_until(crash::FAILOVER_LIMIT, || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.contains(&wanted))
    });
    assert!(
        recorded,
        "{}'s store never held {wanted}\n{}",
        side.name(),
        rig.log.tail(80)
    );
}
