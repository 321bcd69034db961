//! Policy core §7: how long the seed policy takes to decide, per event, through the real
//! runtime, against the shell script it replaces; and how long loading a policy takes.
//!
//! ```text
//! cargo bench -p haven-runtime --bench decision              # full run
//! cargo bench -p haven-runtime --bench decision -- --quick   # smoke run, seconds
//! HAVEN_BENCH_QUICK=1 cargo bench -p haven-runtime --bench decision
//! ```
//!
//! Like criterion, the binary does the full run only when cargo passes `--bench` (that is,
//! under `cargo bench`); run any other way (`cargo test --benches`, or directly) it does the
//! quick run. Other arguments are ignored.
//!
//! Measured, each on one thread:
//! 1. `Runtime::call` of `carp-hast-switch` (the bundled bytes, configured from
//!    `examples/seed/haven.toml`), a fresh instance per event, for three events: a CARP master
//!    event on a machine that already holds everything (idempotent: no action), the same event
//!    on a backup machine (the full promotion plan), and an event the policy ignores (the fixed
//!    cost of a fresh instance, `init` and a trivial `handle`); and `Runtime::configure` (a
//!    fresh instance and `init`, no `handle`), to show where the fixed cost goes.
//! 2. The baseline: fork+exec of `/bin/sh` running the same decision as a script.
//! 3. `Runtime::compile` cold (no cache) and from the artifact cache.
//!
//! Then a summary against the issue's targets, printed as met or missed, never asserted: the
//! machine this runs on may be shared and noisy.

use haven_core::{
    CarpChange, CarpState, Config, Event, HastReplication, HastRole, HastStatus, Machine,
    PolicyConfig,
};
use haven_runtime::{KvStore, LoadedPolicy, Runtime, RuntimeOptions};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sample counts for one run.
#[derive(Debug, Clone, Copy)]
struct Counts {
    warmup: usize,
    policy: usize,
    shell: usize,
    cold_compile: usize,
    cache_load: usize,
}

const FULL: Counts = Counts {
    warmup: 2_000,
    policy: 30_000,
    shell: 1_000,
    cold_compile: 10,
    cache_load: 50,
};

const QUICK: Counts = Counts {
    warmup: 20,
    policy: 200,
    shell: 10,
    cold_compile: 2,
    cache_load: 5,
};

/// The issue's targets.
const TARGET_MEDIAN: Duration = Duration::from_micros(15);
const TARGET_P99: Duration = Duration::from_micros(30);
const TARGET_EVENTS_PER_SEC: f64 = 50_000.0;
const TARGET_SPEEDUP: f64 = 30.0;
const TARGET_COLD_COMPILE: Duration = Duration::from_millis(50);
const TARGET_CACHE_LOAD: Duration = Duration::from_millis(1);

/// The seed config, whose one policy entry gives the settings, grants and limits.
const SEED_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed/haven.toml"
);

/// A machine that already is what a promotion makes it: CARP master, HAST primary, mounted,
/// MySQL running.
const PRIMARY_MACHINE: &str = r#"
carp = [{ vhid = 1, interface = "em0", state = "master" }]
hast = [{ resource = "test", role = "primary" }]
mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]
services = { mysql-server = true }
"#;

/// A backup: HAST secondary, nothing mounted, MySQL stopped. (The pipeline records the CARP
/// change in the model before the policy sees it; `backup_case` does the same.)
const BACKUP_MACHINE: &str = r#"
carp = [{ vhid = 1, interface = "em0", state = "backup" }]
hast = [{ resource = "test", role = "secondary" }]
services = { mysql-server = false }
"#;

/// The baseline: the seed recipe's decision (the handbook's `carp-hast-switch` script, its
/// `case`/`if` logic only, printing the plan instead of running it; no sleeps, no real
/// commands) in `/bin/sh`. This is the one place Haven's code runs a shell: as the thing
/// measured against, not as a mechanism. Arguments: the CARP state asked for, the HAST role,
/// whether the device node exists, whether it is mounted, whether the service runs. The machine
/// state comes in as arguments rather than from `hastctl`/`mount`/`service` calls, which would
/// each be another fork+exec: the baseline is the cheapest a shell decision can be.
const SHELL_DECISION: &str = r#"
resource=test
mountpoint=/hast/test
device=/dev/hast/$resource
service=mysql-server
case "$1" in
master)
    if [ "$2" != primary ]; then
        echo "wait-hast-worker-gone $resource secondary"
        echo "set-hast-role $resource primary"
    fi
    if [ "$2" != primary ] || [ "$3" != yes ]; then
        echo "wait-for-device $device"
    fi
    if [ "$4" != yes ]; then
        echo "fsck $device ufs"
        echo "mount $device $mountpoint ufs"
    fi
    if [ "$5" != yes ]; then
        echo "start-service $service"
    fi
    ;;
backup|init|slave)
    if [ "$5" = yes ]; then
        echo "stop-service $service"
    fi
    if [ "$4" = yes ]; then
        echo "unmount $mountpoint"
    fi
    if [ "$2" != secondary ]; then
        echo "set-hast-role $resource secondary"
    fi
    ;;
*)
    echo "unknown CARP state: $1" >&2
    exit 1
    ;;
esac
"#;

/// One kind of event, on one machine, with the shell arguments of the same decision.
struct Case {
    name: &'static str,
    event: Event,
    machine: Arc<Machine>,
    shell_args: Option<[&'static str; 5]>,
}

/// Percentiles of a set of samples.
struct Stats {
    samples: usize,
    median: Duration,
    p99: Duration,
    p999: Duration,
    /// Samples over the wall time of the whole loop, measuring included.
    per_second: f64,
    /// Runs that failed (policy runs only), and the first reason.
    failures: usize,
    first_failure: Option<String>,
}

impl Stats {
    fn of(mut samples: Vec<Duration>, total: Duration) -> Stats {
        samples.sort_unstable();
        let at = |q: f64| haven_test_artifacts::support::quantile(&samples, q);
        Stats {
            samples: samples.len(),
            median: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            per_second: samples.len() as f64 / total.as_secs_f64(),
            failures: 0,
            first_failure: None,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick")
        || std::env::var("HAVEN_BENCH_QUICK").is_ok_and(|value| value == "1")
        || !args.iter().any(|arg| arg == "--bench");
    let counts = if quick { QUICK } else { FULL };

    println!(
        "Policy core §7: decision latency of carp-hast-switch (Runtime::call, fresh instance per event)"
    );
    if quick {
        println!("QUICK MODE: {counts:?}: figures are indicative only");
    }
    println!();

    let config = seed_policy_config();
    let runtime = Runtime::new(RuntimeOptions::default()).expect("building the runtime");
    let compiled = runtime
        .compile(
            haven_bundled_policies::CARP_HAST_SWITCH,
            &Default::default(),
        )
        .expect("compiling the bundled seed policy");
    println!(
        "policy {} {} ({} bytes of core module), settings and limits from examples/seed/haven.toml",
        compiled.info.name,
        compiled.info.version,
        haven_bundled_policies::CARP_HAST_SWITCH.len(),
    );
    let policy = runtime
        .configure(compiled, &config)
        .expect("the seed settings are accepted");

    let cases = cases();
    for case in &cases {
        show_decision(&runtime, &policy, case);
    }
    println!();

    // 1. The policy through the runtime.
    let mut policy_stats = Vec::new();
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "event (policy, one thread)", "samples", "median", "p99", "p99.9", "events/s"
    );
    for case in &cases {
        let stats = bench_policy(&runtime, &policy, case, counts);
        print_policy_row(case.name, &stats);
        policy_stats.push(stats);
    }
    let stats = bench_configure(&runtime, &policy, &config, counts);
    print_policy_row("configure: instance + init only, no handle", &stats);
    println!();

    // 2. The shell baseline.
    let mut ratios = Vec::new();
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>10}",
        "event (fork+exec /bin/sh, baseline)", "samples", "median", "p99", "sh/policy"
    );
    for (case, policy) in cases.iter().zip(&policy_stats) {
        let Some(args) = case.shell_args else {
            continue;
        };
        let stats = bench_shell(args, counts);
        let ratio = stats.median.as_secs_f64() / policy.median.as_secs_f64();
        println!(
            "{:<44} {:>8} {:>10} {:>10} {:>9.0}x",
            case.name,
            stats.samples,
            micros(stats.median),
            micros(stats.p99),
            ratio
        );
        ratios.push(ratio);
    }
    println!();

    // 3. Loading.
    let (cold_wall, cold_compile) = bench_cold_compile(counts);
    let (cached_wall, cached_compile) = bench_cache_load(counts);
    println!(
        "{:<44} {:>8} {:>10} {:>20}",
        "loading (Runtime::compile)", "runs", "median", "of which compile+link"
    );
    println!(
        "{:<44} {:>8} {:>10} {:>20}",
        format!("cold: componentize + {}, no cache", haven_runtime::COMPILER),
        counts.cold_compile,
        millis(cold_wall),
        millis(cold_compile)
    );
    println!(
        "{:<44} {:>8} {:>10} {:>20}",
        "from the artifact cache (deserialize)",
        counts.cache_load,
        millis(cached_wall),
        millis(cached_compile)
    );
    println!(
        "(the remainder of compile() is SHA-256 of the module and `describe` in a fresh instance)"
    );
    println!();

    // 4. The summary: worst case over the policy events that do something CARP-related.
    let carp = &policy_stats[..2];
    let worst_median = carp.iter().map(|s| s.median).max().unwrap();
    let worst_p99 = carp.iter().map(|s| s.p99).max().unwrap();
    let worst_rate = carp
        .iter()
        .map(|s| s.per_second)
        .fold(f64::INFINITY, f64::min);
    let worst_ratio = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    println!("Summary against the issue's targets (worst of the two CARP events)");
    let rows = [
        (
            "median decision latency",
            format!("<= {}", micros(TARGET_MEDIAN)),
            micros(worst_median),
            worst_median <= TARGET_MEDIAN,
        ),
        (
            "p99 decision latency",
            format!("<= {}", micros(TARGET_P99)),
            micros(worst_p99),
            worst_p99 <= TARGET_P99,
        ),
        (
            "events/s on one core",
            format!(">= {TARGET_EVENTS_PER_SEC:.0}"),
            format!("{worst_rate:.0}"),
            worst_rate >= TARGET_EVENTS_PER_SEC,
        ),
        (
            "faster than fork+exec of sh (median)",
            format!(">= {TARGET_SPEEDUP:.0}x"),
            format!("{worst_ratio:.0}x"),
            worst_ratio >= TARGET_SPEEDUP,
        ),
        (
            "cold compile",
            format!("<= {}", millis(TARGET_COLD_COMPILE)),
            millis(cold_wall),
            cold_wall <= TARGET_COLD_COMPILE,
        ),
        (
            "load from the artifact cache",
            format!("<= {}", millis(TARGET_CACHE_LOAD)),
            millis(cached_wall),
            cached_wall <= TARGET_CACHE_LOAD,
        ),
    ];
    println!("{:<38} {:>12} {:>12}  result", "", "target", "measured");
    for (what, target, measured, met) in rows {
        let result = if met { "met" } else { "missed" };
        println!("{what:<38} {target:>12} {measured:>12}  {result}");
    }
    if quick {
        println!("(quick mode: too few samples to judge the targets)");
    }
}

/// The seed config's policy entry.
fn seed_policy_config() -> PolicyConfig {
    let text = std::fs::read_to_string(SEED_CONFIG).expect("reading examples/seed/haven.toml");
    let mut config = Config::parse(&text, Path::new(SEED_CONFIG)).expect("the seed config parses");
    assert_eq!(config.policies.len(), 1, "the seed config has one policy");
    config.policies.remove(0)
}

fn machine(spec: &str) -> Machine {
    toml::from_str(spec).expect("a machine spec")
}

fn carp_master(previous: CarpState) -> Event {
    Event::CarpChanged(CarpChange {
        vhid: 1,
        interface: "em0".into(),
        state: CarpState::Master,
        previous: Some(previous),
    })
}

fn cases() -> Vec<Case> {
    let mut backup = machine(BACKUP_MACHINE);
    let promotion = carp_master(CarpState::Backup);
    backup.observe(&promotion);
    vec![
        Case {
            name: "CARP master, already primary (no action)",
            event: carp_master(CarpState::Master),
            machine: Arc::new(machine(PRIMARY_MACHINE)),
            shell_args: Some(["master", "primary", "yes", "yes", "yes"]),
        },
        Case {
            name: "CARP master on a backup (promotion plan)",
            event: promotion,
            machine: Arc::new(backup),
            shell_args: Some(["master", "secondary", "no", "no", "no"]),
        },
        Case {
            name: "ignored event (fixed cost per call)",
            event: Event::HastStatusChanged(HastStatus {
                resource: "test".into(),
                role: HastRole::Primary,
                replication: HastReplication::default(),
                dirty_bytes: None,
            }),
            machine: Arc::new(machine(PRIMARY_MACHINE)),
            shell_args: None,
        },
    ]
}

/// Print what the policy (and the shell) decide for a case, so the reader can see both
/// decide the same thing.
fn show_decision(runtime: &Runtime, policy: &LoadedPolicy, case: &Case) {
    let call = runtime.call(policy, &case.event, case.machine.clone(), Arc::default());
    match call.result {
        Ok(plan) => {
            println!(
                "{}: the policy plans {} step(s)",
                case.name,
                plan.steps.len()
            );
            for step in &plan.steps {
                println!("    {step}");
            }
        }
        Err(failure) => println!("{}: the policy FAILED: {failure}", case.name),
    }
    if let Some(args) = case.shell_args {
        let output = shell_decision(args);
        let lines: Vec<&str> = output.lines().collect();
        println!("  the shell plans {} step(s)", lines.len());
        for line in lines {
            println!("    {line}");
        }
    }
}

fn print_policy_row(name: &str, stats: &Stats) {
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10.0}",
        name,
        stats.samples,
        micros(stats.median),
        micros(stats.p99),
        micros(stats.p999),
        stats.per_second
    );
    if let Some(failure) = &stats.first_failure {
        println!("    {} of them failed, first: {failure}", stats.failures);
    }
}

fn bench_policy(runtime: &Runtime, policy: &LoadedPolicy, case: &Case, counts: Counts) -> Stats {
    // Each call sees the same (empty) key-value store: its writes are not committed, so every
    // CARP event is a first edge and acts at once rather than arming the hold-down timer.
    let kv: Arc<KvStore> = Arc::default();
    measure(counts, || {
        let call = runtime.call(policy, &case.event, case.machine.clone(), kv.clone());
        black_box(call)
            .result
            .map(drop)
            .map_err(|failure| failure.to_string())
    })
}

/// `Runtime::configure`: a fresh store and instance and `init` with the settings, no `handle`
/// (plus cloning the config entry, which `call` does not do).
fn bench_configure(
    runtime: &Runtime,
    policy: &LoadedPolicy,
    config: &PolicyConfig,
    counts: Counts,
) -> Stats {
    measure(counts, || {
        let loaded = runtime.configure(policy.compiled.clone(), config);
        black_box(loaded)
            .map(drop)
            .map_err(|error| error.to_string())
    })
}

/// Warm up, then time `counts.policy` runs of `one` one by one. A failed run (on a loaded
/// machine, or in a debug build, a call may overrun its deadline) is timed and counted all
/// the same, and reported rather than ending the run.
fn measure(counts: Counts, mut one: impl FnMut() -> Result<(), String>) -> Stats {
    for _ in 0..counts.warmup {
        let _ = one();
    }
    let mut samples = Vec::with_capacity(counts.policy);
    let mut failures = Vec::new();
    let started = Instant::now();
    for _ in 0..counts.policy {
        let sample = Instant::now();
        let outcome = one();
        samples.push(sample.elapsed());
        if let Err(failure) = outcome {
            failures.push(failure);
        }
    }
    let mut stats = Stats::of(samples, started.elapsed());
    stats.failures = failures.len();
    stats.first_failure = failures.into_iter().next();
    stats
}

fn shell_command(args: [&str; 5]) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(SHELL_DECISION).arg("sh").args(args);
    command
}

fn shell_decision(args: [&str; 5]) -> String {
    let output = shell_command(args).output().expect("running /bin/sh");
    assert!(
        output.status.success(),
        "the shell decision failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn bench_shell(args: [&str; 5], counts: Counts) -> Stats {
    for _ in 0..(counts.shell / 20).max(2) {
        black_box(shell_decision(args));
    }
    let mut samples = Vec::with_capacity(counts.shell);
    let started = Instant::now();
    for _ in 0..counts.shell {
        let one = Instant::now();
        // The plan is read back, as the daemon would have to.
        black_box(shell_decision(args));
        samples.push(one.elapsed());
    }
    Stats::of(samples, started.elapsed())
}

/// Median wall time of `compile` and median of its own `compile_time` (compile or
/// deserialize, plus link), with no cache.
fn bench_cold_compile(counts: Counts) -> (Duration, Duration) {
    let runtime = Runtime::new(RuntimeOptions::default()).expect("building the runtime");
    let mut wall = Vec::new();
    let mut compile = Vec::new();
    for _ in 0..counts.cold_compile {
        let started = Instant::now();
        let compiled = runtime
            .compile(
                haven_bundled_policies::CARP_HAST_SWITCH,
                &Default::default(),
            )
            .expect("compiling the seed policy");
        wall.push(started.elapsed());
        assert!(!compiled.from_cache);
        compile.push(compiled.compile_time);
    }
    (median(wall), median(compile))
}

/// The same from a filled artifact cache.
fn bench_cache_load(counts: Counts) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary cache folder");
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeOptions::default()
    })
    .expect("building the runtime");
    let first = runtime
        .compile(
            haven_bundled_policies::CARP_HAST_SWITCH,
            &Default::default(),
        )
        .expect("compiling the seed policy");
    assert!(!first.from_cache, "the cache starts empty");
    let mut wall = Vec::new();
    let mut compile = Vec::new();
    for _ in 0..counts.cache_load {
        let started = Instant::now();
        let compiled = runtime
            .compile(
                haven_bundled_policies::CARP_HAST_SWITCH,
                &Default::default(),
            )
            .expect("loading the seed policy from the cache");
        wall.push(started.elapsed());
        assert!(
            compiled.from_cache,
            "the second compile comes from the cache"
        );
        compile.push(compiled.compile_time);
    }
    (median(wall), median(compile))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() - 1) / 2]
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}
