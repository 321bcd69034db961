//! What recording each decision's inputs costs the journal and the daemon, and how fast
//! `havenctl replay` re-decides, in one run.
//!
//! `cargo bench -p haven-cli --bench replay` (`-- --quick` for a smoke run).
//!
//! The seed policy decides a stream of real events (CARP master and backup alternating with no
//! hold-down, so each is a full promotion or demotion plan, and HAST status changes) on a
//! machine like a live pair's: one vhid, one HAST resource, its mount and service, the peer's
//! facts, the witness. Each decision is journaled twice, into two journals on the same disk:
//! with its inputs (`[daemon] journal-inputs = true`, the default) and without (the baseline).
//! Measured: bytes per decision entry; the time `Journal::append_buffered` takes per entry (what
//! the event loop pays per decision; the sync before a step is shared by the whole plan); and
//! the time of a `sync` after each. Then replay of the recorded journal with the same module:
//! decisions re-decided per second, and that every one was reproduced.

use haven_core::{Config, Event, Machine};
use haven_daemon::journal::{Entry, Journal};
use haven_runtime::{Pipeline, Runtime, RuntimeOptions};
use haven_test_artifacts::support::Percentiles;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MACHINE: &str = r#"{
  "now-ms": 1000,
  "carp": [{"vhid": 1, "interface": "em0", "state": "backup"}],
  "hast": [{"resource": "test", "role": "secondary", "replication": "complete"}],
  "services": {"mysql-server": false},
  "peer": {"link": "up", "link-for-ms": 60000, "facts-age-ms": 200, "facts": {
    "host": "hastb", "version": "0.1.0",
    "carp": [{"vhid": 1, "interface": "em0", "state": "master"}],
    "hast": [{"resource": "test", "role": "primary", "replication": "complete", "dirty-bytes": 0}],
    "services": [{"name": "mysql-server", "running": true}]
  }},
  "witness": {"reachable": true, "leader": {"host": "hastb", "token": 12,
    "since-unix-ms": 1767225600000}, "holding": false}
}"#;

fn events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|index| {
            let json = match index % 3 {
                0 => r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#,
                1 => r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"backup"}}"#,
                _ => {
                    r#"{"hast-status-changed":{"resource":"test","role":"secondary","replication":"complete"}}"#
                }
            };
            serde_json::from_str(json).expect("a valid event")
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let count = if quick { 60 } else { 3000 };
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..RuntimeOptions::default()
        })
        .unwrap(),
    );
    let config_text = haven_cli::demo::CONFIG
        .replace(
            "/usr/local/libexec/haven/carp_hast_switch.wasm",
            haven_test_artifacts::CARP_HAST_SWITCH,
        )
        .replace("hold-down-ms = 5000", "hold-down-ms = 0");
    let config_path = dir.path().join("haven.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let config = Config::from_file(&config_path).unwrap();
    let policy = runtime.load(&config.policies[0]).unwrap();
    let machine: Machine = serde_json::from_str(MACHINE).unwrap();
    let mut pipeline = Pipeline::new(Arc::clone(&runtime), vec![policy.clone()], machine);

    let mut with = Journal::open(dir.path().join("with"), 1 << 30, 1).unwrap();
    let mut without = Journal::open(dir.path().join("without"), 1 << 30, 1).unwrap();
    let (mut append_with, mut append_without) = (Vec::new(), Vec::new());
    let (mut sync_with, mut sync_without) = (Vec::new(), Vec::new());
    let (mut bytes_with, mut bytes_without) = (0usize, 0usize);
    let mut plans = 0;
    for (index, event) in events(count).iter().enumerate() {
        let event_id = index as u64 + 1;
        let event_entry = Entry::Event {
            event_id,
            source: "bench".into(),
            event: event.clone(),
            coalesced: 0,
        };
        with.append_buffered(&event_entry).unwrap();
        without.append_buffered(&event_entry).unwrap();
        pipeline.machine_mut().now_ms += 1000;
        for decision in pipeline.dispatch(
            event_id,
            event,
            haven_runtime::pipeline::Recipients::Concerned,
        ) {
            plans += usize::from(matches!(
                decision.outcome,
                haven_runtime::Outcome::Plan { .. }
            ));
            // Alternate which goes first, so that neither always finds the cache warm.
            let order = [(true, 0), (false, 1)];
            let order: Vec<_> = if index % 2 == 0 {
                order.to_vec()
            } else {
                order.iter().rev().copied().collect()
            };
            for (inputs, _) in order {
                let entry = Entry::from_decision(event_id, &decision, inputs);
                let line = serde_json::to_vec(&entry).unwrap().len();
                let (journal, appends, syncs, bytes) = if inputs {
                    (&mut with, &mut append_with, &mut sync_with, &mut bytes_with)
                } else {
                    (
                        &mut without,
                        &mut append_without,
                        &mut sync_without,
                        &mut bytes_without,
                    )
                };
                let started = Instant::now();
                journal.append_buffered(&entry).unwrap();
                appends.push(started.elapsed());
                let started = Instant::now();
                journal.sync().unwrap();
                syncs.push(started.elapsed());
                *bytes += line;
            }
        }
    }
    let decisions = append_with.len();
    let show = |name: &str, samples: Vec<Duration>| {
        let p = Percentiles::of(samples);
        println!(
            "  {name:<34} median {:>8.1} µs  p99 {:>8.1} µs",
            p.median.as_secs_f64() * 1e6,
            p.p99.as_secs_f64() * 1e6
        );
        p
    };
    println!(
        "{decisions} decisions of the seed policy ({plans} plans) on a pair's machine, journaled \
         both ways:"
    );
    println!(
        "  bytes per decision entry: {} with inputs, {} without ({:.1}x)",
        bytes_with / decisions,
        bytes_without / decisions,
        bytes_with as f64 / bytes_without as f64
    );
    let a = show("append_buffered, with inputs", append_with);
    let b = show("append_buffered, without", append_without);
    show("sync after it, with inputs", sync_with);
    show("sync after it, without", sync_without);
    println!(
        "  recording the inputs adds {:.1} µs per decision at the median ({:.2}x the entry \
         without), against the 10 ms budget for Haven's share of a failover",
        (a.median.as_secs_f64() - b.median.as_secs_f64()) * 1e6,
        a.median.as_secs_f64() / b.median.as_secs_f64()
    );

    with.sync().unwrap();
    let records = Journal::read_all(dir.path().join("with")).unwrap().records;
    let report = haven_cli::replay::replay(&runtime, &policy, &records, None);
    println!(
        "replay: {} decisions re-decided in {} ms: {:.0} per second, {} differ",
        report.replayed,
        report.elapsed.as_millis(),
        report.rate(),
        report.differences.len()
    );
    assert_eq!(report.replayed, decisions);
    assert!(
        report.differences.is_empty(),
        "the same module reproduces every decision"
    );
}
