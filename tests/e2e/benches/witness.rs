//! Issue 14: what the witness costs a failover, and how soon a cut-off master stops.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench -p haven-e2e --bench witness                       # 3 of each
//! cargo bench -p haven-e2e --bench witness -- --runs 1           # a short run
//! ```
//!
//! In one run, on fresh rigs: `--runs` master crashes (power cut, a client writing) with the
//! witness and as many without, alternating, each from the power cut to the database
//! answering again; with the witness, the backup's `hast-role primary` step holds the wait for
//! the dead master's lease to run out (the lease acquisition's share). Then `--runs` masters
//! cut off from their peer and from etcd: the time from the cut to their own demotion's first
//! step, against the lease's TTL (`haven_e2e::rig::WITNESS_TTL_S`).
//!
//! Needs Linux and root (it says why and exits 0 otherwise), the release build's binaries,
//! and `cargo bench` (the `--bench` argument): `cargo test --benches` skips it.

use haven_e2e::bins;
use haven_e2e::crash::{self, FAILOVER_LIMIT};
use haven_e2e::rig::{Rig, RigOptions, Side, WITNESS_TTL_S, wait_until};
use haven_test_artifacts::support::Percentiles;
use std::time::{Duration, Instant};

fn main() {
    let mut bench = false;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--runs" => {
                runs = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--runs wants a number");
                    std::process::exit(2)
                })
            }
            other => {
                eprintln!("unknown argument {other:?}; options: --runs N");
                std::process::exit(2);
            }
        }
    }
    if !bench {
        println!("the witness benchmark runs only under `cargo bench`: skipped");
        return;
    }
    if let Err(why) = haven_e2e::can_run() {
        println!("the witness benchmark cannot run here: {why}");
        return;
    }
    for binary in ["havend", "havenctl", "hastd", "hastctl", "haven-rig-init"] {
        if let Err(error) = bins::rig_binary(binary) {
            println!("the witness benchmark cannot run: {error}");
            return;
        }
    }
    let mut with = Vec::new();
    let mut fenced = Vec::new();
    let mut without = Vec::new();
    for run in 1..=runs {
        for witness in [true, false] {
            match crash_once(witness) {
                Ok((total, fence)) => {
                    println!(
                        "crash {run} {}: {} (the role step, fence included: {})",
                        if witness {
                            "with the witness"
                        } else {
                            "without"
                        },
                        ms(total),
                        ms(fence)
                    );
                    if witness {
                        with.push(total);
                        fenced.push(fence);
                    } else {
                        without.push(total);
                    }
                }
                Err(error) => println!("crash {run}: failed: {error}"),
            }
        }
    }
    let mut demotions = Vec::new();
    for run in 1..=runs {
        match self_demotion() {
            Ok(after) => {
                println!("cut-off master {run}: demoting {} after the cut", ms(after));
                demotions.push(after);
            }
            Err(error) => println!("cut-off master {run}: failed: {error}"),
        }
    }
    summarise(&with, &fenced, &without, &demotions);
}

/// One master crash on a fresh rig: power cut to answering, and the survivor's `hast-role
/// primary` step's time.
fn crash_once(witness: bool) -> Result<(Duration, Duration), String> {
    let mut rig = Rig::new(RigOptions {
        witness,
        ..RigOptions::default()
    })
    .map_err(|error| format!("rig: {error}"))?;
    let prober = rig
        .boot_serving_pair()
        .map_err(|error| format!("boot: {error}\n{}", rig.log.tail(60)))?;
    let report = crash::crash(&mut rig, Side::A, &prober)
        .map_err(|error| format!("{error}\n{}", rig.log.tail(60)))?;
    if !report.lost.is_empty() {
        return Err(format!("acknowledged rows lost: {:?}", report.lost));
    }
    let role = report
        .times
        .steps
        .iter()
        .find(|(step, _)| step.starts_with("hast-role test primary"))
        .map(|(_, took)| *took)
        .ok_or("no role step")?;
    Ok((report.times.total, role))
}

/// hasta cut off from the lan, the peer link and etcd: the time from the cut to its own
/// demotion's first step.
fn self_demotion() -> Result<Duration, String> {
    let mut rig = Rig::new(RigOptions {
        witness: true,
        ..RigOptions::default()
    })
    .map_err(|error| format!("rig: {error}"))?;
    rig.boot_serving_pair()
        .map_err(|error| format!("boot: {error}\n{}", rig.log.tail(60)))?;
    let seen = rig.journal(Side::A).len();
    let cut = Instant::now();
    rig.set_link(Side::A, false)
        .and_then(|()| rig.set_peer_link(false))
        .and_then(|()| rig.set_witness_link(Side::A, false))
        .map_err(|error| error.to_string())?;
    let demoting = || {
        rig.journal(Side::A).iter().skip(seen).any(|entry| {
            entry["kind"] == "step-start"
                && crash::step_text(&entry["step"]).starts_with("service stop")
        })
    };
    if wait_until(FAILOVER_LIMIT, demoting) {
        Ok(cut.elapsed())
    } else {
        Err(format!("hasta never demoted\n{}", rig.log.tail(60)))
    }
}

fn summarise(with: &[Duration], fenced: &[Duration], without: &[Duration], demotions: &[Duration]) {
    println!("\n{:<58} {:>10} {:>10}", "", "median", "worst");
    let row = |name: &str, samples: &[Duration]| {
        if samples.is_empty() {
            println!("{name:<58} {:>10}", "-");
            return None;
        }
        let figures = Percentiles::of(samples.to_vec());
        println!(
            "{name:<58} {:>10} {:>10}",
            ms(figures.median),
            ms(figures.max)
        );
        Some(figures.median)
    };
    let with_median = row("crash failover with the witness (cut to answering)", with);
    row(
        "  of which the role step, waiting for the old lease",
        fenced,
    );
    let without_median = row("crash failover without the witness, baseline", without);
    if let (Some(with), Some(without)) = (with_median, without_median) {
        println!(
            "with / without, medians: {:.2}",
            with.as_secs_f64() / without.as_secs_f64()
        );
    }
    if let Some(demotion) = row(
        "cut-off master: cut to its demotion's first step",
        demotions,
    ) {
        println!(
            "of its {WITNESS_TTL_S} s TTL: {:.0} %",
            100.0 * demotion.as_secs_f64() / f64::from(WITNESS_TTL_S)
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}
