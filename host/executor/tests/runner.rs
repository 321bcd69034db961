//! The runner's ordering rules on the real runtime with the seed policy: steps in order, the
//! first failure stops the plan and goes back to the policy, a stop lands between steps.

use haven_core::{Config, Event, Machine, Step};
use haven_executor::executor::InjectedFailure;
use haven_executor::runner::{Delivery, Observer, StepReport};
use haven_executor::{DryRun, Runner};
use haven_runtime::{Decision, Outcome, Pipeline, Runtime, RuntimeOptions};
use std::path::Path;
use std::sync::Arc;

const CONFIG: &str = r#"
[limits]
deadline-ms = 5000
[[policy]]
name = "mysql"
module = "MODULE"
[policy.grants]
hast-resources = ["test"]
services = ["mysql-server"]
timers = 1
mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]
[policy.settings]
vhid = 1
services = ["mysql-server"]
hold-down-ms = 10000
[[policy.settings.resources]]
name = "test"
mountpoint = "/hast/test"
fstype = "ufs"
"#;

/// A cold backup, as in the seed's promotion scenario.
const COLD_BACKUP: &str = r#"
carp = [{ vhid = 1, interface = "em0", state = "backup" }]
hast = [{ resource = "test", role = "secondary", replication = "complete" }]
services = { mysql-server = false }
"#;

fn runner() -> Runner<DryRun> {
    let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).unwrap());
    let text = CONFIG.replace("MODULE", haven_test_artifacts::CARP_HAST_SWITCH);
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let policy = runtime.load(&config.policies[0]).unwrap();
    let machine: Machine = toml::from_str(COLD_BACKUP).unwrap();
    Runner::new(Pipeline::new(runtime, vec![policy], machine), DryRun::new())
}

fn master() -> Event {
    serde_json::from_str(
        r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master","previous":"backup"}}"#,
    )
    .unwrap()
}

/// Records what the runner reports; asks for a stop once `stop_after` steps ended.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    steps_ended: usize,
    stop_after: Option<usize>,
}

impl Observer for Log {
    fn event(&mut self, delivery: &Delivery, _now_ms: u64) {
        let to = delivery.to.as_deref().unwrap_or("all");
        self.lines.push(format!(
            "event {} {} from {} to {to}",
            delivery.id,
            delivery.event.kind(),
            delivery.source
        ));
    }
    fn decision(&mut self, event_id: u64, decision: &Decision) {
        let outcome = match &decision.outcome {
            Outcome::Plan { plan_id, plan } => format!("plan {plan_id} of {}", plan.steps.len()),
            other => format!("{other:?}"),
        };
        self.lines
            .push(format!("decision on {event_id}: {outcome}"));
    }
    fn step_start(&mut self, _policy: &str, plan_id: u64, index: u32, step: &Step) {
        self.lines
            .push(format!("start {plan_id}.{index} {}", step.action.kind()));
    }
    fn step_end(&mut self, report: &StepReport<'_>) {
        self.steps_ended += 1;
        let result = match &report.outcome.result {
            Ok(()) => "ok".to_owned(),
            Err(reason) => format!("failed: {reason}"),
        };
        self.lines
            .push(format!("end {}.{} {result}", report.plan_id, report.index));
    }
    fn plan_end(&mut self, _policy: &str, plan_id: u64, completed: bool) {
        self.lines
            .push(format!("plan {plan_id} completed={completed}"));
    }
    fn stop_requested(&self) -> bool {
        self.stop_after.is_some_and(|n| self.steps_ended >= n)
    }
}

fn counter() -> impl FnMut() -> u64 {
    let mut next = 100;
    move || {
        next += 1;
        next
    }
}

#[test]
fn a_plan_runs_in_order_and_is_applied_to_the_model() {
    let mut runner = runner();
    let mut log = Log::default();
    runner.deliver(
        Delivery::broadcast(1, "test", master()),
        &mut counter(),
        &mut log,
    );
    let kinds: Vec<&str> = log
        .lines
        .iter()
        .filter_map(|line| line.strip_prefix("start 1."))
        .collect();
    assert_eq!(
        kinds,
        [
            "0 wait-worker-gone",
            "1 hast-role",
            "2 wait-device",
            "3 fsck",
            "4 mount",
            "5 service"
        ]
    );
    assert_eq!(log.lines.last().unwrap(), "plan 1 completed=true");
    let machine = runner.pipeline.machine();
    assert!(machine.mounts.contains_key("/hast/test"));
    assert!(machine.service_running("mysql-server"));
}

#[test]
fn the_first_failure_stops_the_plan_and_goes_back_to_the_policy_first() {
    let mut runner = runner();
    runner.executor.fail_next = Some(InjectedFailure {
        step: 3,
        reason: "fsck exited 8".into(),
    });
    let mut log = Log::default();
    runner.deliver(
        Delivery::broadcast(1, "test", master()),
        &mut counter(),
        &mut log,
    );
    let text = log.lines.join("\n");
    assert!(text.contains("end 1.3 failed: fsck exited 8\nplan 1 completed=false\nevent 101 step-failed from executor to mysql\n"), "{text}");
    assert!(!text.contains("start 1.4"), "{text}");
    // Nothing after the failed fsck was applied: not mounted, MySQL not started.
    let machine = runner.pipeline.machine();
    assert!(!machine.mounts.contains_key("/hast/test"));
    assert!(!machine.service_running("mysql-server"));
}

#[test]
fn a_stop_lands_between_steps() {
    let mut runner = runner();
    let mut log = Log {
        stop_after: Some(2),
        ..Log::default()
    };
    runner.deliver(
        Delivery::broadcast(1, "test", master()),
        &mut counter(),
        &mut log,
    );
    assert_eq!(log.steps_ended, 2, "{:#?}", log.lines);
    assert_eq!(log.lines.last().unwrap(), "plan 1 completed=false");
    assert!(!log.lines.iter().any(|l| l.contains("step-failed")));
}

/// A runner over the misbehaving policy that re-arms its own timer at 0 ms on every event.
fn timer_zero_runner() -> Runner<DryRun> {
    let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).unwrap());
    let text = format!(
        "[limits]\ndeadline-ms = 5000\n[[policy]]\nname = \"loop\"\nmodule = \"{}\"\n\
         [policy.grants]\ntimers = 1\n[policy.settings]\nbehaviour = \"timer-zero\"\n",
        haven_test_artifacts::MISBEHAVING_POLICY
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let policy = runtime.load(&config.policies[0]).unwrap();
    Runner::new(
        Pipeline::new(runtime, vec![policy], Machine::default()),
        DryRun::new(),
    )
}

/// Counts timer firings and notes a cut.
#[derive(Default)]
struct TimerCount {
    fired: usize,
    cut: Option<usize>,
}

impl Observer for TimerCount {
    fn event(&mut self, delivery: &Delivery, _now_ms: u64) {
        if delivery.source == "timer" {
            self.fired += 1;
        }
    }
    fn timers_cut(&mut self, fired: usize) {
        self.cut = Some(fired);
    }
}

#[test]
fn a_timer_rearmed_at_zero_fires_at_most_once_per_pass_and_minimum_delay() {
    let mut runner = timer_zero_runner();
    let mut ids = counter();
    let mut count = TimerCount::default();
    runner.startup(None, &mut ids, &mut count);
    let armed = runner.pipeline.machine().timer_due("loop", "again");
    assert_eq!(armed, Some(u64::from(haven_core::model::MIN_TIMER_MS)));

    // The daemon's case: the clock is now, so the timer fires once and the call returns for
    // the next event, with the timer re-armed for later.
    let now = armed.unwrap();
    runner.advance_to(now, &mut ids, &mut count);
    assert_eq!(count.fired, 1);
    assert!(
        runner
            .pipeline
            .machine()
            .timer_due("loop", "again")
            .unwrap()
            > now
    );

    // Simulated time jumping one second: once per MIN_TIMER_MS, not forever.
    runner.advance_to(now + 1_000, &mut ids, &mut count);
    assert_eq!(count.fired, 11);
    assert_eq!(count.cut, None);

    // A jump of days: cut at MAX_TIMER_FIRINGS, reported, and the clock still moves on.
    let far = now + 10 * 86_400_000;
    runner.advance_to(far, &mut ids, &mut count);
    assert_eq!(count.cut, Some(haven_executor::runner::MAX_TIMER_FIRINGS));
    assert_eq!(runner.pipeline.machine().now_ms, far);
}
