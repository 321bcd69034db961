//! A real havend with `[witness]` on a real etcd (loopback): a promotion's first step waits
//! for the pair's leader key and runs under its fencing token; while another host holds the
//! key, the step is refused with who holds it; etcd going silent is an alert, the key held is
//! declared lost within the timing rule, and the seed policy demotes. Two pairs on one etcd
//! are listed by `havenctl fleet`.

mod common;

use common::{Havend, Setup, monitor_config, poll_until};
use haven_daemon::journal::{Entry, Journal, Record};
use haven_test_artifacts::etcd::EtcdServer;
use haven_test_artifacts::support::hastctl_list;
use haven_witness::{AcquireError, WitnessHandle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);
const MASTER: &str = r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#;
const BACKUP: &str = r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"backup"}}"#;

fn witness_table(endpoint: &str, pair: &str) -> String {
    format!(
        "[witness]\nendpoints = [\"{endpoint}\"]\nprefix = \"/test\"\npair = \"{pair}\"\n\
         ttl-s = 2\nrenew-ms = 400\ntimeout-ms = 600\n"
    )
}

fn start(etcd: &EtcdServer) -> (Setup, Havend) {
    start_pair(etcd, "db1")
}

/// One havend of pair `pair` (dry run, HAST secondary), ready.
fn start_pair(etcd: &EtcdServer, pair: &str) -> (Setup, Havend) {
    let setup = Setup::in_tmp(&format!("witness-{pair}-"));
    setup.install_hastctl(&hastctl_list("test", "secondary", "complete", "0"));
    let config = monitor_config(&setup, &witness_table(&etcd.endpoint, pair));
    std::fs::write(setup.config(), config).unwrap();
    let mut daemon = Havend::launch(&setup, &[], setup.path("havend.stderr"), POLL, Some(60));
    daemon.wait_ready();
    (setup, daemon)
}

fn records(setup: &Setup) -> Vec<Record> {
    Journal::read_all(setup.state_dir())
        .map(|contents| contents.records)
        .unwrap_or_default()
}

/// The first `hast-role … primary` step's end after journal position `after`: ok, detail,
/// fencing token.
fn promotion_end(
    setup: &Setup,
    daemon: &Havend,
    after: u64,
) -> (bool, Option<String>, Option<u64>) {
    poll_until(POLL, || {
        let records = records(setup);
        let start = records.iter().find(|record| {
            record.seq > after
                && matches!(&record.entry, Entry::StepStart { step, .. }
                    if step.to_string().starts_with("hast-role test primary"))
        })?;
        let Entry::StepStart { plan_id, index, .. } = &start.entry else {
            return None;
        };
        records.iter().find_map(|record| match &record.entry {
            Entry::StepEnd {
                plan_id: p,
                index: i,
                ok,
                detail,
                fencing_token,
                ..
            } if p == plan_id && i == index => Some((*ok, detail.clone(), *fencing_token)),
            _ => None,
        })
    })
    .unwrap_or_else(|| panic!("no promotion step ended\n{}", daemon.diagnostics()))
}

fn last_seq(setup: &Setup) -> u64 {
    records(setup).last().map_or(0, |record| record.seq)
}

#[test]
fn a_promotion_runs_under_the_leader_key_and_is_refused_while_another_host_holds_it() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    // Another host of the pair holds the key first.
    let config = haven_core::Config::parse(&witness_table(&etcd.endpoint, "db1"), Path::new("x"))
        .unwrap()
        .witness
        .unwrap();
    let rival = WitnessHandle::start(&config, "rival", Arc::new(|_, _| {})).unwrap();
    let rival_token = rival.acquire(Duration::from_secs(2)).unwrap();

    let (setup, daemon) = start(&etcd);
    let before = last_seq(&setup);
    assert!(daemon.havenctl(&["notify", MASTER]).status.success());
    let (ok, detail, token) = promotion_end(&setup, &daemon, before);
    assert!(!ok, "the step ran while the rival held the key");
    assert_eq!(token, None);
    let detail = detail.unwrap_or_default();
    assert!(
        detail.contains("the witness refused")
            && detail.contains(&format!("held by rival (fencing token {rival_token})")),
        "{detail}"
    );

    // The rival lets go; the next promotion takes the key, under a higher token.
    rival.release();
    assert!(daemon.havenctl(&["notify", BACKUP]).status.success());
    let before = last_seq(&setup);
    assert!(daemon.havenctl(&["notify", MASTER]).status.success());
    let (ok, detail, token) = promotion_end(&setup, &daemon, before);
    assert!(ok, "{detail:?}\n{}", daemon.diagnostics());
    let token = token.expect("the step ran under a fencing token");
    assert!(token > rival_token, "{token} after {rival_token}");
    let status = daemon.status();
    let witness = status.witness.expect("status shows the witness");
    assert!(
        witness.state.holding && witness.state.reachable,
        "{witness:?}"
    );
    assert_eq!(witness.state.leader.map(|l| l.token), Some(token));
    let text = common::stdout_text(&daemon.havenctl(&["status"]));
    assert!(text.contains(&format!("fencing token {token}")), "{text}");
    // The rival cannot take it back while havend renews it.
    assert!(matches!(
        rival.acquire(Duration::from_millis(300)),
        Err(AcquireError::HeldBy(_))
    ));

    // etcd goes silent: an alert says so, and the key is lost well within the 2 s TTL.
    etcd.pause();
    let lost = poll_until(POLL, || {
        records(&setup)
            .iter()
            .find_map(|record| match &record.entry {
                Entry::Alert { message, .. } if message.contains("lost the leader key") => {
                    Some(message.clone())
                }
                _ => None,
            })
    })
    .unwrap_or_else(|| panic!("no key-lost alert\n{}", daemon.diagnostics()));
    assert!(lost.contains(&format!("fencing token {token}")), "{lost}");
    assert!(records(&setup).iter().any(|record| matches!(
        &record.entry,
        Entry::Alert { message, .. } if message.contains("the witness (etcd) does not answer")
    )));
    // The seed policy hears it and demotes: its peer cannot vouch (there is no peer link).
    poll_until(POLL, || {
        records(&setup).iter().find(|record| {
            matches!(&record.entry, Entry::StepStart { step, .. }
                if step.to_string().starts_with("hast-role test secondary"))
        })?;
        Some(())
    })
    .unwrap_or_else(|| panic!("no self-demotion\n{}", daemon.diagnostics()));
    let witness = daemon.status().witness.unwrap();
    assert!(!witness.state.holding && !witness.state.reachable);
    etcd.resume();
}

/// (d) Two pairs on one etcd: each havend writes its member record, a promotion takes its
/// pair's key, and `havenctl fleet` lists both pairs with their leaders and members.
#[test]
fn the_fleet_command_lists_every_pair_on_one_etcd() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let pairs = ["db1", "db2"].map(|pair| {
        let (setup, daemon) = start_pair(&etcd, pair);
        (pair, setup, daemon)
    });
    // db1 promotes; db2 stays standby.
    let (_, db1, db1_daemon) = &pairs[0];
    assert!(db1_daemon.havenctl(&["notify", MASTER]).status.success());
    let (ok, _, token) = promotion_end(db1, db1_daemon, 0);
    assert!(ok);
    let token = token.expect("a fencing token");
    let (_, db2, db2_daemon) = &pairs[1];
    let listed = poll_until(POLL, || {
        let output =
            db2_daemon.havenctl(&["fleet", "--config", &db2.config().display().to_string()]);
        let text = common::stdout_text(&output);
        (output.status.success()
            && text.contains("db1")
            && text.contains("db2")
            && text.matches("(serving)").count() == 1
            && text.matches("(standby)").count() == 1)
            .then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the fleet never listed both pairs\n{}",
            db2_daemon.diagnostics()
        )
    });
    assert!(listed.contains("2 pair(s) under /test"), "{listed}");
    let db1_line = listed
        .lines()
        .find(|line| line.trim_start().starts_with("db1"))
        .unwrap();
    assert!(db1_line.contains(&format!(" {token} ")), "{listed}");
    let json = db1_daemon.havenctl(&[
        "fleet",
        "--json",
        "--config",
        &db1.config().display().to_string(),
    ]);
    let fleet: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(fleet["pairs"][0]["leader"]["token"], token);
    assert!(fleet["pairs"][1]["leader"].is_null());
}

/// A witness that cannot start (its password file is missing) does not keep havend from
/// starting, is a critical alert, and leaves a fence that refuses every promotion, saying why:
/// a configured witness is never silently skipped.
#[test]
fn a_witness_that_cannot_start_refuses_every_promotion_with_the_reason() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let setup = Setup::in_tmp("witness-broken-");
    setup.install_hastctl(&hastctl_list("test", "secondary", "complete", "0"));
    let witness = witness_table(&etcd.endpoint, "db1")
        + "user = \"haven\"\npassword-file = \"/nonexistent/etcd.password\"\n";
    let config = monitor_config(&setup, &witness);
    std::fs::write(setup.config(), config).unwrap();
    let mut daemon = Havend::launch(&setup, &[], setup.path("havend.stderr"), POLL, Some(60));
    daemon.wait_ready();
    assert!(records(&setup).iter().any(|record| matches!(
        &record.entry,
        Entry::Alert { message, .. } if message.contains("the witness did not start")
            && message.contains("/nonexistent/etcd.password")
    )));
    assert!(daemon.havenctl(&["notify", MASTER]).status.success());
    let (ok, detail, token) = promotion_end(&setup, &daemon, 0);
    assert!(!ok && token.is_none());
    let detail = detail.unwrap_or_default();
    assert!(
        detail.contains("the witness refused: the witness did not start"),
        "{detail}"
    );
}
