//! Issue 6: the master crash, end to end, many times, Haven against the seed's shell script.
//!
//! ```text
//! cargo build --release --workspace --bins              # havend, havenctl, the stand-ins
//! cargo bench -p haven-e2e --bench failover             # 20 crashes each, ~25 minutes
//! cargo bench -p haven-e2e --bench failover -- --runs 2 # a short run
//! ```
//!
//! Options after `--`: `--runs N` (crashes per mode, default 20; 0 for none),
//! `--no-scenarios` (leave out scenarios 4-6), `--keep-logs DIR` (copy every rig's timeline
//! there; a failed run's is always kept, in `$TMPDIR/haven-failover-bench/`).
//!
//! Needs Linux and root, as the live rig does (it says why and exits 0 otherwise), and the
//! release build's binaries: `cargo bench` builds this package's (the HAST stand-ins and the
//! rig's init) but not `havend` and `havenctl`, which are other packages'. It runs only under
//! `cargo bench` (the `--bench` argument): `cargo test --benches` skips it.
//!
//! For each run and each of Haven (`havend` with the seed policy) and the seed's
//! `carp-hast-switch` script (adapted to the rig, driven by the same ucarp), interleaved so
//! that the machine's load drifts over both alike: a fresh rig, hasta booted and serving,
//! hastb booted, the schema created, then `crash::crash`: a client writes with autocommit,
//! hasta loses power, hastb takes over, every acknowledged row is looked for. A run that fails
//! is counted as a failed failover, with its error. Then the figures per mode: failovers,
//! rows acknowledged and lost, the total failover time (power cut to the database answering
//! on the shared address), CARP's detection, the reaction (ucarp's MASTER to the first
//! action), Haven's own decision time and steps, and what remains of the total.
//!
//! Then the seed script's behaviour in scenarios 4-6 (the old master returns; a flapping link;
//! a copy marked unsynchronised), each run once and described, not asserted, next to Haven's
//! in the same scenario (which `tests/failover.rs` asserts).

use haven_e2e::crash::{self, CrashReport, FAILOVER_LIMIT};
use haven_e2e::log::Log;
use haven_e2e::mariadb::{self, Prober, Writer};
use haven_e2e::rig::{Failover, Rig, RigOptions, Side, VIP, wait_until};
use haven_e2e::{RigError, bins};
use haven_test_artifacts::support::Percentiles;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Crashes per mode unless `--runs` says otherwise (the issue: at least 20).
const RUNS: usize = 20;
/// How long the scenarios give hasta's returned ucarp to take the address back (many
/// advertisement intervals), as the test of scenario 4 does.
const FAILBACK_WINDOW: Duration = Duration::from_secs(8);
/// How often the scenarios look whether a script still runs (a process started per look).
const POLL: Duration = Duration::from_millis(50);
/// How long a flap waits for hastb's ucarp to change state: CARP's detection (~4.2 s with
/// advskew 100) plus the seed script's blocking of ucarp (~4.5 s), with room.
const FLAP_LIMIT: Duration = Duration::from_secs(20);

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if !options.bench {
        println!(
            "the failover benchmark runs only under `cargo bench` (it takes ~25 minutes): skipped"
        );
        return;
    }
    if let Err(why) = haven_e2e::can_run() {
        println!("the failover benchmark cannot run here: {why}");
        return;
    }
    for binary in ["havend", "havenctl", "hastd", "hastctl", "haven-rig-init"] {
        if let Err(error) = bins::rig_binary(binary) {
            println!("the failover benchmark cannot run: {error}");
            println!("(for `cargo bench`: cargo build --release --workspace --bins)");
            return;
        }
    }
    let started = Instant::now();
    println!(
        "failover benchmark: {} crash runs per mode, load average {}",
        options.runs,
        load_average()
    );

    let mut haven = Vec::new();
    let mut seed = Vec::new();
    for run in 1..=options.runs {
        for (mode, results) in [
            (Failover::Haven, &mut haven),
            (Failover::SeedScript, &mut seed),
        ] {
            let result = crash_run(mode, run, &options);
            match &result {
                Ok(sample) => println!(
                    "  {:<5} run {run:>2}/{}: total {}, CARP {}, reaction {}, {} acked, {} lost",
                    label(mode),
                    options.runs,
                    secs(sample.report.times.total),
                    secs(sample.report.times.carp_detection),
                    ms(sample.report.times.reaction),
                    sample.report.acked,
                    sample.report.lost.len()
                ),
                Err(error) => println!(
                    "  {:<5} run {run:>2}/{}: FAILED: {error}",
                    label(mode),
                    options.runs
                ),
            }
            results.push(result);
        }
    }
    if options.runs > 0 {
        println!("\nload average after the crash runs: {}", load_average());
        summarise(Failover::Haven, &haven);
        summarise(Failover::SeedScript, &seed);
    }

    if options.scenarios {
        println!("\nscenarios 4-6, once each per mode (described, not asserted)");
        for (number, name, scenario) in [
            (
                4,
                "the old master returns",
                return_of_the_old_master as Scenario,
            ),
            (5, "a flapping link (3 flaps)", flapping),
            (
                6,
                "an unsynchronised copy, then the master dies",
                unsynchronised,
            ),
        ] {
            println!("\n{number}. {name}");
            for mode in [Failover::SeedScript, Failover::Haven] {
                let outcome = guarded(|| scenario(mode, &options));
                match outcome {
                    Ok(text) => println!("  {:<5} {text}", label(mode)),
                    Err(error) => println!("  {:<5} did not complete: {error}", label(mode)),
                }
            }
        }
    }
    println!(
        "\ndone in {:.1} min, load average {}",
        started.elapsed().as_secs_f64() / 60.0,
        load_average()
    );
}

/// The command line after `--`.
struct Options {
    bench: bool,
    runs: usize,
    scenarios: bool,
    keep_logs: Option<PathBuf>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            bench: false,
            runs: RUNS,
            scenarios: true,
            keep_logs: None,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} wants a value"))
            };
            match name.as_str() {
                "--bench" => options.bench = true,
                "--runs" => {
                    options.runs = value()?
                        .parse()
                        .map_err(|error| format!("--runs: {error}"))?;
                }
                "--no-scenarios" => options.scenarios = false,
                "--keep-logs" => options.keep_logs = Some(PathBuf::from(value()?)),
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?}; options: --runs N, --no-scenarios, \
                         --keep-logs DIR"
                    ));
                }
            }
        }
        Ok(options)
    }
}

fn label(mode: Failover) -> &'static str {
    match mode {
        Failover::Haven => "haven",
        Failover::SeedScript => "seed",
    }
}

/// One crash run's results.
struct Sample {
    report: CrashReport,
    /// Where the time went after ucarp's MASTER, from the rig's timeline (see [`phases`]).
    phases: Vec<(&'static str, Duration)>,
    /// Haven: the time between the promotion's steps that no step accounts for (havend's
    /// journal writes and syncs, the runner).
    between_steps: Option<Duration>,
    /// total − (CARP detection + the steps), in ms, signed: negative when the database
    /// answers before the last step (`service start`) returns.
    rest: f64,
    /// Haven: the promotion waited for the policy's settle timer (a hold-down).
    held: bool,
    /// The mount watch's count of samples with the disk mounted on both hosts.
    double_mounts: u64,
}

/// One crash on a fresh rig; its rig's timeline is kept when it fails (or when asked).
fn crash_run(mode: Failover, run: usize, options: &Options) -> Result<Sample, String> {
    let options_rig = RigOptions {
        failover: mode,
        ..RigOptions::default()
    };
    let mut rig = Rig::new(options_rig).map_err(|error| format!("rig: {error}"))?;
    let result = guarded(|| {
        let prober = serve_pair(&mut rig)?;
        steady(&rig)?;
        let report = crash::crash(&mut rig, Side::A, &prober)?;
        // The database answers during `service mariadb start` (Debian's script goes on after
        // the server is up): the step ends later, and with it the promotion in the journal.
        if !settle(&rig) {
            return Err(RigError::new("hastb's promotion never ended"));
        }
        sample(&rig, mode, report)
    });
    let name = format!("{}-{run:02}.log", label(mode));
    if let Some(dir) = &options.keep_logs {
        keep_log(&rig, dir, &name);
    }
    if result.is_err() {
        let dir = std::env::temp_dir().join("haven-failover-bench");
        if let Some(path) = keep_log(&rig, &dir, &name) {
            return result.map_err(|error| format!("{error} (timeline: {})", path.display()));
        }
    }
    result
}

/// Run `body`, turning a panic into an error.
fn guarded<T>(body: impl FnOnce() -> Result<T, RigError>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .map_or_else(|| "panicked".to_owned(), |text| format!("panicked: {text}"))),
    }
}

/// Copy the rig's timeline to `dir/name`; where it went.
fn keep_log(rig: &Rig, dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(name);
    std::fs::copy(rig.dir().join("rig.log"), &path).ok()?;
    Some(path)
}

/// A scenario's timeline, kept with `--keep-logs`.
fn keep_scenario_log(rig: &Rig, options: &Options, number: &str, mode: Failover) {
    if let Some(dir) = &options.keep_logs {
        keep_log(rig, dir, &format!("scenario{number}-{}.log", label(mode)));
    }
}

/// Scenario 1's end, every other scenario's start (as `serving_pair` in the tests): both
/// hosts booted, hasta serving, the schema created.
fn serve_pair(rig: &mut Rig) -> Result<Prober, RigError> {
    rig.boot_serving_pair()
}

/// Wait until the pair is in its steady state, as a backup that has been up for a while is:
/// no script or plan running on either host, and hastb's boot longer ago than the policy's
/// hold-down. Crashing hasta earlier measures the boot, not the failover: ucarp waits for the
/// seed's boot-time `slave` script (its `sleep 3`) before it counts missed advertisements, and
/// the seed policy holds hastb's promotion down for `hold-down-ms` after its boot-time CARP
/// edge. A condition on the rig's clock, not a sleep for something to happen.
fn steady(rig: &Rig) -> Result<(), RigError> {
    if !settle(rig) {
        return Err(RigError::new("the pair never settled after booting"));
    }
    let booted = rig
        .log
        .find(Duration::ZERO, "rig", "booting hastb")
        .ok_or_else(|| RigError::new("hastb never booted"))?
        .at;
    let hold_down = Duration::from_millis(u64::from(rig.options().hold_down_ms));
    let quiet = booted + hold_down + Duration::from_millis(500);
    if wait_until(hold_down * 2, || rig.log.now() >= quiet) {
        Ok(())
    } else {
        Err(RigError::new("the rig's clock stopped"))
    }
}

/// The per-phase times of a crash, from the rig's timeline.
fn sample(rig: &Rig, mode: Failover, report: CrashReport) -> Result<Sample, RigError> {
    let log: &Log = &rig.log;
    let times = &report.times;
    let cut = report.cut;
    let master = cut + times.carp_detection;
    let serving = report.serving;
    let survivor = "hastb/ucarp";
    let find = |source: &str, needle: &str| {
        log.find(master, source, needle)
            .map(|line| line.at)
            .ok_or_else(|| RigError::new(format!("no `{needle}` from {source} after MASTER")))
    };
    let steps: Duration = times.steps.iter().map(|(_, took)| *took).sum();
    let (phases, between_steps, held) = match mode {
        Failover::Haven => {
            let source = "hastb/havend";
            let event = find(source, " event ")?;
            let first = find(source, "step started")?;
            let (last_name, last_took) = times
                .steps
                .last()
                .cloned()
                .ok_or_else(|| RigError::new("hastb's havend ran no promotion"))?;
            let (first_name, _) = &times.steps[0];
            let promotion = find(source, &format!("step started step={first_name}"))?;
            let service = log
                .find(promotion, source, &format!("step started step={last_name}"))
                .ok_or_else(|| RigError::new("no last step in the timeline"))?
                .at;
            let before: Duration = steps.saturating_sub(last_took);
            let between = service.saturating_sub(promotion).saturating_sub(before);
            (
                vec![
                    ("MASTER → event in havend (vip-up, hook)", event - master),
                    ("event → first step (havend decides)", first - event),
                    ("hold-down (settle timer), if any", promotion - first),
                    ("steps before the last (Σ, journal)", before),
                    ("between steps (havend)", between),
                    (
                        "last step started → database answers",
                        serving.saturating_sub(service),
                    ),
                ],
                Some(between),
                promotion > first,
            )
        }
        Failover::SeedScript => {
            let start = find(survivor, "carp-hast-switch: Switching to primary")?;
            let role = find(survivor, "carp-hast-switch: hastctl role primary")?;
            let mounting = find(survivor, "carp-hast-switch: Mounting disks.")?;
            let mysql = find(survivor, "carp-hast-switch: start mysql")?;
            (
                vec![
                    ("MASTER → script starts (up script)", start - master),
                    ("sleep 3, pgrep wait (no-op)", role - start),
                    ("hastctl role primary, /dev/hast wait", mounting - role),
                    ("fsck, mount", mysql - mounting),
                    (
                        "service mariadb start → answering",
                        serving.saturating_sub(mysql),
                    ),
                ],
                None,
                false,
            )
        }
    };
    Ok(Sample {
        held,
        rest: (times.total.as_secs_f64() - (times.carp_detection + steps).as_secs_f64()) * 1e3,
        phases,
        between_steps,
        double_mounts: rig.double_mounts(),
        report,
    })
}

/// The table of one mode's crash runs.
fn summarise(mode: Failover, results: &[Result<Sample, String>]) {
    let name = match mode {
        Failover::Haven => "Haven (havend, seed policy)",
        Failover::SeedScript => "seed script (carp-hast-switch)",
    };
    let samples: Vec<&Sample> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    println!("\n{name}");
    println!(
        "  failovers ok                               {} / {}",
        samples.len(),
        results.len()
    );
    for (run, result) in results.iter().enumerate() {
        if let Err(error) = result {
            println!("    run {} failed: {error}", run + 1);
        }
    }
    if samples.is_empty() {
        return;
    }
    let acked: usize = samples.iter().map(|s| s.report.acked).sum();
    let lost: usize = samples.iter().map(|s| s.report.lost.len()).sum();
    let double: u64 = samples.iter().map(|s| s.double_mounts).sum();
    println!("  rows acknowledged / lost (all runs)        {acked} / {lost}");
    println!("  double-mount samples (all runs)            {double}");
    if mode == Failover::Haven {
        let held = samples.iter().filter(|s| s.held).count();
        println!("  promotions held down by the settle timer   {held}");
    }
    let of = |pick: &dyn Fn(&Sample) -> Duration| {
        Percentiles::of(samples.iter().map(|s| pick(s)).collect())
    };
    println!("                                             median      p90      worst");
    let row = |what: &str, p: Percentiles| {
        println!(
            "  {what:<42} {:>9} {:>9} {:>9}",
            secs(p.median),
            secs(p.p90),
            secs(p.max)
        );
    };
    let row_ms = |what: &str, p: Percentiles| {
        println!(
            "  {what:<42} {:>9} {:>9} {:>9}",
            ms(p.median),
            ms(p.p90),
            ms(p.max)
        );
    };
    row(
        "total (power cut → database answers)",
        of(&|s| s.report.times.total),
    );
    row(
        "CARP detection (power cut → MASTER)",
        of(&|s| s.report.times.carp_detection),
    );
    match mode {
        Failover::Haven => {
            row_ms(
                "reaction (MASTER → first step)",
                of(&|s| s.report.times.reaction),
            );
            let decided: Vec<Duration> = samples
                .iter()
                .filter_map(|s| s.report.times.decision)
                .collect();
            if !decided.is_empty() {
                row_ms(
                    "  of which havend (event → first step)",
                    Percentiles::of(decided),
                );
            }
        }
        Failover::SeedScript => row(
            "reaction (MASTER → hastctl role primary)",
            of(&|s| s.report.times.reaction),
        ),
    }
    println!("  where the time after MASTER went (per phase)");
    for (index, (phase, _)) in samples[0].phases.iter().enumerate() {
        let p = of(&|s| {
            s.phases
                .get(index)
                .map_or(Duration::ZERO, |(_, took)| *took)
        });
        row_ms(&format!("  {phase}"), p);
    }
    if mode == Failover::Haven {
        println!("  Haven's steps (journal durations)");
        let mut names: Vec<&str> = Vec::new();
        for sample in &samples {
            for (step, _) in &sample.report.times.steps {
                if !names.contains(&step.as_str()) {
                    names.push(step);
                }
            }
        }
        for step in names {
            let took: Vec<Duration> = samples
                .iter()
                .flat_map(|s| &s.report.times.steps)
                .filter(|(name, _)| name == step)
                .map(|(_, took)| *took)
                .collect();
            let short: String = step.chars().take(40).collect();
            row_ms(&format!("  {short}"), Percentiles::of(took));
        }
        let own: Vec<Duration> = samples
            .iter()
            .filter_map(|s| Some(s.report.times.decision? + s.between_steps?))
            .collect();
        if !own.is_empty() {
            let p = Percentiles::of(own);
            row_ms("Haven's own (decision + between steps)", p);
            println!(
                "  target: Haven's own overhead under 10 ms: {} (worst {})",
                if p.max < Duration::from_millis(10) {
                    "met"
                } else if p.median < Duration::from_millis(10) {
                    "met at the median, missed at the worst"
                } else {
                    "missed"
                },
                ms(p.max)
            );
        }
        let path: Vec<Duration> = samples
            .iter()
            .filter_map(|s| Some(s.report.times.reaction + s.between_steps?))
            .collect();
        if !path.is_empty() {
            row_ms(
                "with vip-up and the hook (reaction + between)",
                Percentiles::of(path),
            );
        }
        let mut rest: Vec<f64> = samples.iter().map(|s| s.rest).collect();
        rest.sort_by(f64::total_cmp);
        println!(
            "  bounded by: total − (CARP detection + Σ steps)   median {:.1} ms, worst {:.1} ms",
            rest[(rest.len() - 1) / 2],
            rest[rest.len() - 1]
        );
        println!("    (≤ 0: the database answered before `service start` returned)");
    } else {
        println!("  (the seed's fixed `sleep 3` is inside its reaction; no step journal)");
    }
}

type Scenario = fn(Failover, &Options) -> Result<String, RigError>;

/// A fresh serving pair for a scenario.
fn scenario_rig(mode: Failover, hold_down_ms: u32) -> Result<(Rig, Prober), RigError> {
    let mut rig = Rig::new(RigOptions {
        failover: mode,
        hold_down_ms,
        ..RigOptions::default()
    })?;
    let prober = serve_pair(&mut rig)?;
    steady(&rig)?;
    Ok((rig, prober))
}

/// Wait, bounded, until no failover work is in progress on either host: no
/// `carp-hast-switch` process (the seed) and every step started in a journal ended (Haven).
fn settle(rig: &Rig) -> bool {
    let idle = || {
        [Side::A, Side::B].into_iter().all(|side| {
            let no_script = rig.host(side).is_none_or(|host| {
                // `[c]` so that pgrep's own command line never matches.
                host.run("pgrep", &["-f", "[c]arp-hast-switch"]).is_err()
            });
            let journal = rig.journal(side);
            let count = |kind: &str| journal.iter().filter(|e| e["kind"] == kind).count();
            no_script && count("step-start") == count("step-end")
        })
    };
    let deadline = Instant::now() + FAILOVER_LIMIT;
    while !idle() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Where the service is: the disk mounted, mariadbd running, the watch's double mounts.
fn whereabouts(rig: &Rig) -> String {
    let hosts = |has: &dyn Fn(Side) -> bool| {
        let on: Vec<&str> = [Side::A, Side::B]
            .into_iter()
            .filter(|side| has(*side))
            .map(Side::name)
            .collect();
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join("+")
        }
    };
    format!(
        "disk mounted on {}, mariadbd on {}, double-mount samples {}",
        hosts(&|side| rig.mounted(side)),
        hosts(&|side| rig.database_runs(side)),
        rig.double_mounts()
    )
}

/// `hastctl list test` on a host, as `role/dirty`.
fn hast_state(rig: &Rig, side: Side) -> String {
    let Some(host) = rig.host(side) else {
        return "off".to_owned();
    };
    let hastctl = bins::rig_binary("hastctl").map(|path| path.display().to_string());
    let listed = hastctl.and_then(|hastctl| host.run(&hastctl, &["list", "test"]));
    match listed {
        Ok(text) => {
            let field = |key: &str| {
                text.lines()
                    .find_map(|line| line.trim().strip_prefix(key))
                    .map_or("?", str::trim)
                    .to_owned()
            };
            format!("role {}, dirty {}", field("role:"), field("dirty:"))
        }
        Err(error) => format!("hastctl failed: {error}"),
    }
}

/// Step-starts in `side`'s journal.
fn steps_started(rig: &Rig, side: Side) -> usize {
    rig.journal(side)
        .iter()
        .filter(|entry| entry["kind"] == "step-start")
        .count()
}

fn yes(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// 4. The old master returns after a crash: does it take anything back?
fn return_of_the_old_master(mode: Failover, options: &Options) -> Result<String, RigError> {
    let (mut rig, prober) = scenario_rig(mode, RigOptions::default().hold_down_ms)?;
    crash::crash(&mut rig, Side::A, &prober)?;
    let before = steps_started(&rig, Side::A);
    let since = rig.log.now();
    rig.boot(Side::A)?;
    let backup = rig
        .log
        .wait_for(
            since,
            "hasta/ucarp",
            "Switching to state: BACKUP",
            FAILOVER_LIMIT,
        )
        .is_some();
    // An observation window, not a synchronisation: hasta must not become master in it.
    let failback = rig
        .log
        .wait_for(
            since,
            "hasta/ucarp",
            "Switching to state: MASTER",
            FAILBACK_WINDOW,
        )
        .is_some();
    let settled = settle(&rig);
    keep_scenario_log(&rig, options, "4", mode);
    let acted = match mode {
        Failover::Haven => format!(
            "{} steps by hasta's havend",
            steps_started(&rig, Side::A) - before
        ),
        Failover::SeedScript => {
            let ran = |needle: &str| rig.log.find(since, "hasta/ucarp", needle).is_some();
            format!(
                "hasta's script ran `slave`: {}, took the primary role: {}",
                yes(ran("carp-hast-switch: Switching to secondary")),
                yes(ran("carp-hast-switch: hastctl role primary"))
            )
        }
    };
    Ok(format!(
        "hasta BACKUP: {}, took the address back within {FAILBACK_WINDOW:?}: {}; {acted}; \
         scripts/plans finished: {}; {}; database answers: {}; HAST hasta {}, hastb {}",
        yes(backup),
        yes(failback),
        yes(settled),
        whereabouts(&rig),
        yes(prober.wait_answering(Duration::from_secs(10))),
        hast_state(&rig, Side::A),
        hast_state(&rig, Side::B),
    ))
}

/// 5. hasta's link goes down long enough for hastb to become master, then up, three times.
fn flapping(mode: Failover, options: &Options) -> Result<String, RigError> {
    let (rig, prober) = scenario_rig(mode, 30_000)?;
    let start = rig.log.now();
    let mut flaps = Vec::new();
    for _ in 0..3 {
        let since = rig.log.now();
        rig.set_link(Side::A, false)?;
        let master = rig.log.wait_for(
            since,
            "hastb/ucarp",
            "Switching to state: MASTER",
            FLAP_LIMIT,
        );
        rig.set_link(Side::A, true)?;
        let backup = rig.log.wait_for(
            since,
            "hastb/ucarp",
            "Switching to state: BACKUP",
            FLAP_LIMIT,
        );
        flaps.push(match (master, backup) {
            (Some(master), Some(backup)) => format!(
                "MASTER after {:.1} s, BACKUP {:.1} s later",
                (master.at - since).as_secs_f64(),
                backup.at.saturating_sub(master.at).as_secs_f64()
            ),
            (None, _) => "hastb never became master".to_owned(),
            (Some(_), None) => "hastb stayed master".to_owned(),
        });
    }
    let settled = settle(&rig);
    let answers = prober.wait_answering(Duration::from_secs(30));
    keep_scenario_log(&rig, options, "5", mode);
    let hastb_did = match mode {
        Failover::Haven => format!("{} steps by hastb's havend", steps_started(&rig, Side::B)),
        Failover::SeedScript => {
            let count = |needle: &str| {
                rig.log
                    .lines()
                    .iter()
                    .filter(|line| {
                        line.at >= start
                            && line.source == "hastb/ucarp"
                            && line.text.contains(needle)
                    })
                    .count()
            };
            format!(
                "hastb's script: `hastctl role primary` {}x, mounted {}x, `service mariadb \
                 start` {}x, `service mariadb stop` {}x",
                count("carp-hast-switch: hastctl role primary"),
                count("carp-hast-switch: Mounting disks."),
                count("carp-hast-switch: start mysql"),
                count("carp-hast-switch: stop mysql")
            )
        }
    };
    Ok(format!(
        "flaps: [{}]; {hastb_did}; scripts/plans finished: {}; {}; database answers: {}; \
         HAST hasta {}, hastb {}",
        flaps.join("; "),
        yes(settled),
        whereabouts(&rig),
        yes(answers),
        hast_state(&rig, Side::A),
        hast_state(&rig, Side::B),
    ))
}

/// 6. The primary's sync is interrupted (only hasta's hastd knows: it runs `syncintr`; hastb's
///    says nothing), then hasta dies. Haven's hastb hears it over the peer link; the script
///    on hastb cannot.
fn unsynchronised(mode: Failover, options: &Options) -> Result<String, RigError> {
    let (mut rig, prober) = scenario_rig(mode, RigOptions::default().hold_down_ms)?;
    let writer = Writer::start(rig.client(), VIP);
    if !wait_until(FAILOVER_LIMIT, || writer.acked_count() >= 20) {
        return Err(RigError::new("the client could not write"));
    }
    rig.hast_request(Side::A, "sync-interrupted test")?;
    if mode == Failover::Haven {
        let heard = wait_until(FAILOVER_LIMIT, || {
            rig.journal(Side::B).iter().any(|entry| {
                entry["kind"] == "event"
                    && entry["event"]["peer"]["hast-hook"]["sync-interrupted"] == "test"
            })
        });
        if !heard {
            return Err(RigError::new(
                "hastb's havend never heard of the interrupted sync",
            ));
        }
    }
    let dirty_before = hast_state(&rig, Side::B);
    let since = rig.log.now();
    rig.power_off(Side::A);
    let master = rig
        .log
        .wait_for(
            since,
            "hastb/ucarp",
            "Switching to state: MASTER",
            FAILOVER_LIMIT,
        )
        .is_some();
    let (answers, alerted) = match mode {
        Failover::SeedScript => (prober.wait_answering(FAILOVER_LIMIT), false),
        Failover::Haven => {
            let alerted = wait_until(FAILOVER_LIMIT, || {
                rig.journal(Side::B).iter().any(|entry| {
                    entry["kind"] == "alert"
                        && entry["severity"] == "critical"
                        && entry["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("interrupted"))
                })
            });
            (prober.answers(Duration::from_millis(500)), alerted)
        }
    };
    let served_at = rig.log.now();
    let (acked, _) = writer.finish();
    let lost = if answers {
        let stored = mariadb::stored_ids(rig.client(), VIP)?;
        let lost = acked
            .iter()
            .filter(|id| stored.binary_search(id).is_err())
            .count();
        format!("{lost} of {} acknowledged rows missing", acked.len())
    } else {
        format!("{} rows acknowledged before", acked.len())
    };
    let _ = settle(&rig);
    keep_scenario_log(&rig, options, "6", mode);
    Ok(format!(
        "hastb before the crash: {dirty_before}; hastb MASTER: {}; critical alert: {}; \
         database answers: {}{}; {}; HAST hastb now {}; {lost}",
        yes(master),
        yes(alerted),
        yes(answers),
        if answers {
            format!(
                " ({:.1} s after the power cut)",
                (served_at - since).as_secs_f64()
            )
        } else {
            String::new()
        },
        whereabouts(&rig),
        hast_state(&rig, Side::B),
    ))
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

fn secs(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}
