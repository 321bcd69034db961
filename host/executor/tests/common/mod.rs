//! What the system executor's tests share: building an executor from a config's text,
//! running a plan as the runner does, timing it, reading a stand-in's pid file.

use haven_core::{Config, ExecutorConfig, Machine, Step};
use haven_executor::{Executor, StepOutcome, SystemExecutor};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon".
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The `[executor]` settings of a `haven.toml` with this text.
pub fn executor_config(text: &str) -> ExecutorConfig {
    Config::parse(text, Path::new("haven.toml"))
        .unwrap()
        .executor
}

/// Run the steps in order for `policy`, as the runner does: the first failure stops the
/// plan.
pub fn run_plan(executor: &mut SystemExecutor, policy: &str, steps: &[Step]) -> Vec<StepOutcome> {
    executor.begin_plan();
    let machine = Machine::default();
    let mut outcomes = Vec::new();
    for step in steps {
        let outcome = executor.run_step(policy, step, &machine);
        let failed = !outcome.ok();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    outcomes
}

/// Which of the outcomes were done already.
pub fn skipped(outcomes: &[StepOutcome]) -> Vec<bool> {
    outcomes.iter().map(|o| o.skipped_as_done).collect()
}

pub fn assert_all_ok(outcomes: &[StepOutcome]) {
    for (index, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.ok(), "step {index}: {outcome:#?}");
    }
}

/// The time it took, and what it gave.
pub fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed(), value)
}

/// A pid a stand-in wrote to a file.
pub fn read_pid(path: &Path) -> Pid {
    let text = std::fs::read_to_string(path).unwrap();
    Pid::from_raw(text.trim().parse().unwrap())
}
