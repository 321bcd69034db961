//! Issue 4's benchmark: the executor's own overhead per step, the time
//! `SystemExecutor::run_step` takes beyond the time its commands take, against running the
//! same commands from a shell script.
//!
//! ```sh
//! cargo bench -p haven-executor --bench step_overhead            # 2000 samples per row
//! cargo bench -p haven-executor --bench step_overhead -- --quick # 200, a smoke run
//! ```
//!
//! Every tool is `/bin/true`, so a step's commands cost a fork, an exec and a wait and nothing
//! else. Per step, the time inside `command::run` (spawn to reap, as
//! `SystemExecutor::time_in_commands` counts it) is subtracted from the step's time: what is
//! left is the executor's own work (checking arguments, building the command lines, reading
//! the mounts, the outcome and its detail). The baselines run the same commands through
//! `command::run` alone, through `std::process::Command`, and from a `/bin/sh` loop.

use haven_core::{Config, Machine, Step};
use haven_executor::command;
use haven_executor::{Executor, Platform, SystemExecutor};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRUE: &str = "/bin/true";
const WARM_UP: usize = 50;

fn samples() -> usize {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var_os("HAVEN_BENCH_QUICK").is_some_and(|v| v == "1");
    if quick { 200 } else { 2000 }
}

/// The median and the 99th percentile.
fn stats(mut values: Vec<Duration>) -> (Duration, Duration) {
    values.sort();
    let at = |p: f64| {
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    (at(0.5), at(0.99))
}

fn us(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

struct Row {
    name: &'static str,
    commands: &'static str,
    step: (Duration, Duration),
    in_commands: (Duration, Duration),
    overhead: (Duration, Duration),
}

/// Run `step` `n` times (after a warm-up); per run, the step's time, the time in commands and
/// the difference.
fn measure(
    executor: &mut SystemExecutor,
    name: &'static str,
    commands: &'static str,
    step: &Step,
    n: usize,
) -> Row {
    let machine = Machine::default();
    for _ in 0..WARM_UP {
        assert!(executor.run_step("bench", step, &machine).ok());
    }
    let (mut steps, mut inside, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let before = executor.time_in_commands();
        let started = Instant::now();
        let outcome = executor.run_step("bench", step, &machine);
        let took = started.elapsed();
        assert!(outcome.ok(), "{outcome:?}");
        let in_commands = executor.time_in_commands() - before;
        steps.push(took);
        inside.push(in_commands);
        overheads.push(took.saturating_sub(in_commands));
    }
    Row {
        name,
        commands,
        step: stats(steps),
        in_commands: stats(inside),
        overhead: stats(overheads),
    }
}

/// Time per iteration of a `/bin/sh` loop running `body` `n` times: the mean of each of
/// `runs` runs, as (median, highest) over the runs.
fn shell_loop(body: &str, n: usize, runs: usize) -> (Duration, Duration) {
    let script = format!("i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done");
    let mut means = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        means.push(started.elapsed() / n as u32);
    }
    means.sort();
    (means[means.len() / 2], *means.last().unwrap())
}

fn main() {
    let n = samples();
    let platform = Platform::current().expect("a FreeBSD or Linux machine");
    let text = format!(
        r#"
[executor]
service-manager = "{manager}"
[executor.tools]
hastctl = "{TRUE}"
mount = "{TRUE}"
umount = "{TRUE}"
service = "{TRUE}"
systemctl = "{TRUE}"
"#,
        manager = if platform == Platform::FreeBsd {
            "rc"
        } else {
            "sysv"
        },
    );
    let config = Config::parse(&text, Path::new("bench.toml")).unwrap();
    let mut executor = SystemExecutor::new(platform, &config.executor).unwrap();
    let step = |line: &str| -> Step { line.parse().unwrap() };

    println!(
        "Issue 4: the executor's own overhead per step ({} executor, every tool {TRUE}, {n} samples per row after {WARM_UP} warm-up steps)\n",
        platform.name()
    );
    let rows = [
        measure(
            &mut executor,
            "service restart db",
            "1 command",
            &step("service restart db timeout=10000"),
            n,
        ),
        measure(
            &mut executor,
            "hast-role test primary",
            "check + command",
            &step("hast-role test primary timeout=10000"),
            n,
        ),
        measure(
            &mut executor,
            "service start db, running already",
            "1 check",
            &step("service start db timeout=10000"),
            n,
        ),
        measure(
            &mut executor,
            "unmount /nowhere, not mounted",
            if platform == Platform::Linux {
                "none (mountinfo)"
            } else {
                "1 check"
            },
            &step("unmount /nowhere timeout=10000"),
            n,
        ),
    ];
    println!(
        "{:<36} {:<17} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "step", "runs", "step med", "step p99", "in commands", "overhead", "ovh p99"
    );
    for row in &rows {
        println!(
            "{:<36} {:<17} {:>10} {:>10} {:>12} {:>10} {:>10}",
            row.name,
            row.commands,
            us(row.step.0),
            us(row.step.1),
            us(row.in_commands.0),
            us(row.overhead.0),
            us(row.overhead.1),
        );
    }

    // The same command without the executor.
    let mut runner = Vec::new();
    let mut plain = Vec::new();
    for i in 0..n + WARM_UP {
        let started = Instant::now();
        let output = command::run(
            Path::new(TRUE),
            &["db", "restart"],
            Duration::from_secs(10),
            &|| false,
        )
        .unwrap();
        assert!(output.success());
        let took = started.elapsed();
        let started = Instant::now();
        let status = Command::new(TRUE)
            .args(["db", "restart"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        if i >= WARM_UP {
            runner.push(took);
            plain.push(started.elapsed());
        }
    }
    let runner = stats(runner);
    let plain = stats(plain);
    let runs = 5;
    let shell_one = shell_loop(&format!("{TRUE} db restart"), n, runs);
    let shell_two = shell_loop(
        &format!("{TRUE} list test; {TRUE} role primary test"),
        n,
        runs,
    );

    println!("\nthe same command(s) without the executor               median        p99");
    println!(
        "{:<52} {:>10} {:>10}",
        "command::run(\"/bin/true db restart\")",
        us(runner.0),
        us(runner.1)
    );
    println!(
        "{:<52} {:>10} {:>10}",
        "std::process::Command::status (no pipes)",
        us(plain.0),
        us(plain.1)
    );
    println!(
        "{:<52} {:>10} {:>10}",
        format!("/bin/sh loop, 1 command, per iteration ({runs} runs)"),
        us(shell_one.0),
        us(shell_one.1)
    );
    println!(
        "{:<52} {:>10} {:>10}",
        format!("/bin/sh loop, 2 commands, per iteration ({runs} runs)"),
        us(shell_two.0),
        us(shell_two.1)
    );
    println!("(the shell loop's columns are the median and the highest of the runs' means)\n");

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "executor step / shell iteration (medians): restart {:.2}x, hast-role {:.2}x",
        ratio(rows[0].step.0, shell_one.0),
        ratio(rows[1].step.0, shell_two.0)
    );
    println!(
        "executor overhead / shell iteration:       restart {:.1} %, hast-role {:.1} %",
        100.0 * ratio(rows[0].overhead.0, shell_one.0),
        100.0 * ratio(rows[1].overhead.0, shell_two.0)
    );
    println!(
        "command::run / shell iteration (1 command): {:.2}x",
        ratio(runner.0, shell_one.0)
    );
}
