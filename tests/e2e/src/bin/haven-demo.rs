//! `haven-demo`: the README's first command. Builds the seed recipe's two-host HA pair on this
//! machine (see `haven_e2e::rig`), lets hasta serve MariaDB on the shared address, has a client
//! write rows, cuts hasta's power, and shows hastb taking over: the timeline as it happened,
//! then every acknowledged row looked for. Needs Linux and root; `scripts/demo` installs what
//! it needs and runs it.

use haven_e2e::crash;
use haven_e2e::log::Line;
use haven_e2e::rig::{Rig, RigOptions, Side, VIP};
use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(why) = haven_e2e::can_run() {
        eprintln!("haven-demo: {why}");
        return ExitCode::from(2);
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("haven-demo: {error}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), haven_e2e::RigError> {
    println!("Haven live demo: the seed's CARP + HAST + MySQL pair, for real, on this machine.");
    println!(
        "  hasta 10.73.0.1 (CARP advskew 0) and hastb 10.73.0.2 (advskew 100) are network, mount\n  \
         and pid namespaces; ucarp shares {VIP} (vhid 1); /dev/hast/test is an ext4 loop\n  \
         device behind a HAST stand-in; MariaDB's datadir is on it; havend runs the seed policy,\n  \
         and the two havends talk over the peer link on the pair's own network (10.74.0.0/24).\n"
    );
    let mut rig = Rig::new(RigOptions::default())?;
    rig.log.note("rig ready: lan, client, shared disk");
    let prober = rig.boot_serving_pair()?;
    let booted = rig.log.now();
    print_timeline(&rig, std::time::Duration::ZERO, booted);

    println!("\n--- a client writes rows through {VIP}; then hasta loses power ---\n");
    let report = crash::crash(&mut rig, Side::A, &prober)?;
    print_timeline(&rig, booted, rig.log.now());

    println!("\nFailover times:\n{}", report.times.render());
    println!(
        "Rows: {} acknowledged by the server, {} lost{}",
        report.acked,
        report.lost.len(),
        if report.lost.is_empty() {
            " — every committed row is on hastb."
        } else {
            "!"
        }
    );
    println!(
        "Now: hastb {} the disk and {} MariaDB; hasta is off. The disk was mounted on both hosts \
         {} times.",
        if rig.mounted(Side::B) {
            "has mounted"
        } else {
            "has NOT mounted"
        },
        if rig.database_runs(Side::B) {
            "runs"
        } else {
            "does NOT run"
        },
        rig.double_mounts()
    );
    println!(
        "Everything is removed on exit (namespaces, loop device, {}).",
        rig.dir().display()
    );
    if report.lost.is_empty() {
        Ok(())
    } else {
        Err(haven_e2e::RigError::new("acknowledged rows were lost"))
    }
}

/// The lines of the rig's log between `from` and `to` that tell the story, shortened.
fn print_timeline(rig: &Rig, from: std::time::Duration, to: std::time::Duration) {
    for line in rig.log.lines() {
        if line.at < from || line.at >= to {
            continue;
        }
        if let Some(text) = story(&line) {
            println!(
                "{:>8.3} s  {:<13} {text}",
                line.at.as_secs_f64(),
                line.source
            );
        }
    }
}

/// What a line says, if it is part of the story: the rig's notes, ucarp's state changes,
/// havend's events and steps, the HAST stand-in's role changes.
fn story(line: &Line) -> Option<String> {
    let text = line.text.as_str();
    let after = |marker: &str| text.find(marker).map(|at| text[at + marker.len()..].trim());
    match line.source.rsplit('/').next()? {
        "rig" => Some(text.to_owned()),
        "ucarp" => after("Switching to state: ").map(|state| format!("CARP {state}")),
        "hastd" => text.contains("Role changed").then(|| text.to_owned()),
        "havend" => {
            if let Some(step) = after("step started step=") {
                Some(format!("step  {step}"))
            } else if text.contains("haven_daemon::event_loop: step done") {
                after("duration_us=").map(|us| format!("      done in {us} µs"))
            } else if text.contains("step failed") {
                Some(format!(
                    "      FAILED {}",
                    after("step failed").unwrap_or_default()
                ))
            } else if let Some(kind) = after(" kind=") {
                (text.contains(" event ") && !kind.contains("hast-status"))
                    .then(|| format!("event {}", kind.split_whitespace().next().unwrap_or(kind)))
            } else {
                None
            }
        }
        _ => None,
    }
}
