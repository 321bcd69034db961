//! Issue 13: the planned switchover, end to end, against the crash failover in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench -p haven-e2e --bench switchover                            # 10 and 3
//! cargo bench -p haven-e2e --bench switchover -- --runs 4 --crashes 1    # a short run
//! ```
//!
//! One rig serves the pair; `havenctl switchover` moves MariaDB back and forth `--runs` times
//! (default 10, alternating hasta → hastb and back) while a client writes with autocommit:
//! each time the command to the database answering on the shared address, in parts (see
//! `haven_e2e::switchover`), and every acknowledged row looked for. Then `--crashes` master
//! crashes (default 3, each on a fresh rig) as the baseline: the same measure from the power
//! cut. A switchover should not wait for CARP's dead-master timeout; the ratio says whether
//! it does.
//!
//! Needs Linux and root (it says why and exits 0 otherwise), the release build's binaries,
//! and `cargo bench` (the `--bench` argument): `cargo test --benches` skips it.

use haven_e2e::bins;
use haven_e2e::crash::{self, FAILOVER_LIMIT};
use haven_e2e::rig::{Rig, RigOptions, Side, wait_until};
use haven_e2e::switchover::{self, SwitchoverReport};
use haven_test_artifacts::support::Percentiles;
use std::time::Duration;

fn main() {
    let mut bench = false;
    let (mut runs, mut crashes) = (10usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("{name} wants a number");
                    std::process::exit(2)
                })
        };
        match arg.as_str() {
            "--bench" => bench = true,
            "--runs" => runs = number("--runs"),
            "--crashes" => crashes = number("--crashes"),
            other => {
                eprintln!("unknown argument {other:?}; options: --runs N, --crashes N");
                std::process::exit(2);
            }
        }
    }
    if !bench {
        println!("the switchover benchmark runs only under `cargo bench`: skipped");
        return;
    }
    if let Err(why) = haven_e2e::can_run() {
        println!("the switchover benchmark cannot run here: {why}");
        return;
    }
    for binary in ["havend", "havenctl", "hastd", "hastctl", "haven-rig-init"] {
        if let Err(error) = bins::rig_binary(binary) {
            println!("the switchover benchmark cannot run: {error}");
            return;
        }
    }
    let reports = switchovers(runs);
    let baseline = crash_baseline(crashes);
    summarise(&reports, &baseline);
}

/// `runs` switchovers on one rig, alternating direction; a failed one ends the series.
fn switchovers(runs: usize) -> Vec<SwitchoverReport> {
    let mut rig = match Rig::new(RigOptions::default()) {
        Ok(rig) => rig,
        Err(error) => {
            println!("cannot build the rig: {error}");
            return Vec::new();
        }
    };
    let prober = match rig.boot_serving_pair() {
        Ok(prober) => prober,
        Err(error) => {
            println!("cannot boot the pair: {error}\n{}", rig.log.tail(80));
            return Vec::new();
        }
    };
    let mut reports = Vec::new();
    let mut from = Side::A;
    for run in 1..=runs {
        // The peer knows its copy is in sync once it heard this host's facts.
        if !wait_until(FAILOVER_LIMIT, || synced(&rig, from.peer())) {
            println!(
                "run {run}: {} never knew its copy in sync",
                from.peer().name()
            );
            break;
        }
        match switchover::switchover(&rig, from, &prober) {
            Ok(report) => {
                println!(
                    "run {run}: {} → {}: {} (lost {})",
                    from.name(),
                    from.peer().name(),
                    ms(report.total),
                    report.lost.len()
                );
                if run == 1 {
                    println!("{}", report.output);
                }
                reports.push(report);
            }
            Err(error) => {
                println!("run {run}: failed: {error}\n{}", rig.log.tail(60));
                break;
            }
        }
        from = from.peer();
    }
    reports
}

/// Whether `side`'s seed policy has its copy recorded `synced`, on disk.
fn synced(rig: &Rig, side: Side) -> bool {
    let path = rig.host_dir(side).join("state/kv/mysql.json");
    std::fs::read_to_string(path).is_ok_and(|text| text.contains("\"sync:test\":\"synced\""))
}

/// `count` master crashes, each on a fresh rig: power cut to the database answering.
fn crash_baseline(count: usize) -> Vec<Duration> {
    let mut totals = Vec::new();
    for run in 1..=count {
        let result = Rig::new(RigOptions::default()).and_then(|mut rig| {
            let prober = rig.boot_serving_pair()?;
            crash::crash(&mut rig, Side::A, &prober)
        });
        match result {
            Ok(report) => {
                println!(
                    "crash {run}: {} (lost {})",
                    ms(report.times.total),
                    report.lost.len()
                );
                totals.push(report.times.total);
            }
            Err(error) => println!("crash {run}: failed: {error}"),
        }
    }
    totals
}

fn summarise(reports: &[SwitchoverReport], baseline: &[Duration]) {
    if reports.is_empty() {
        println!("no switchover completed");
        return;
    }
    let part = |pick: fn(&SwitchoverReport) -> Duration| {
        Percentiles::of(reports.iter().map(pick).collect())
    };
    let lost: usize = reports.iter().map(|report| report.lost.len()).sum();
    let acked: usize = reports.iter().map(|report| report.acked).sum();
    println!(
        "\n{} switchovers, {acked} rows acknowledged, {lost} lost",
        reports.len()
    );
    println!("{:<52} {:>10} {:>10}", "", "median", "worst");
    type Pick = fn(&SwitchoverReport) -> Duration;
    let parts: [(&str, Pick); 5] = [
        ("demotion here (command to demote-carp done)", |r| {
            r.demotion
        }),
        ("hand-over (to the peer's ucarp MASTER)", |r| r.handover),
        ("peer's reaction (MASTER to its first step)", |r| r.reaction),
        ("peer's promotion (first step to answering)", |r| {
            r.promotion
        }),
        ("total (command to the database answering)", |r| r.total),
    ];
    for (name, pick) in parts {
        let figures = part(pick);
        println!(
            "{name:<52} {:>10} {:>10}",
            ms(figures.median),
            ms(figures.max)
        );
    }
    let total = part(|r| r.total);
    if !baseline.is_empty() {
        let crash = Percentiles::of(baseline.to_vec());
        println!(
            "{:<52} {:>10} {:>10}",
            "crash failover (power cut to answering), baseline",
            ms(crash.median),
            ms(crash.max)
        );
        println!(
            "switchover / crash, medians: {:.2}",
            total.median.as_secs_f64() / crash.median.as_secs_f64()
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}
