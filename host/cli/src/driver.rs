//! Drives a pipeline with the dry-run executor: events in, decisions and applied steps out.
//!
//! Scenario tests and `simulate` both replay events through the real runtime and the same
//! [`Runner`] the daemon uses: every accepted plan is applied to the machine model as if each
//! step succeeded (unless a failure is injected), `step-failed` events go back to the policy
//! that made the failing plan, and timers fire when virtual time passes their due time. This
//! module records what happened as [`Record`]s; what to replay and how to report it is the
//! callers' business.

use haven_core::Event;
use haven_executor::runner::{Delivery, Observer, StepReport};
use haven_executor::{DryRun, Runner};
use haven_runtime::{Decision, Pipeline};

pub use haven_executor::executor::InjectedFailure;

/// What happened, in order.
#[derive(Debug, Clone)]
pub enum Record {
    /// An event entered the pipeline.
    Event {
        id: u64,
        at_ms: u64,
        event: Event,
        /// The policy it was addressed to, when it was not broadcast.
        to: Option<String>,
    },
    /// A policy decided.
    Decision(Decision),
    /// A step of an accepted plan was carried out (dry run), or failed.
    Step {
        policy: String,
        plan_id: u64,
        index: u32,
        step: haven_core::Step,
        failure: Option<String>,
    },
    /// The runner stopped feeding step failures back.
    FollowUpsCut,
    /// The runner stopped firing timers for this advance of the clock (a timer storm).
    TimersCut { fired: usize },
}

/// Collects what the runner reports as [`Record`]s.
struct Recorder<'a>(&'a mut Vec<Record>);

impl Observer for Recorder<'_> {
    fn event(&mut self, delivery: &Delivery, now_ms: u64) {
        self.0.push(Record::Event {
            id: delivery.id,
            at_ms: now_ms,
            event: delivery.event.clone(),
            to: delivery.to.clone(),
        });
    }

    fn decision(&mut self, _event_id: u64, decision: &Decision) {
        self.0.push(Record::Decision(decision.clone()));
    }

    fn step_end(&mut self, report: &StepReport<'_>) {
        self.0.push(Record::Step {
            policy: report.policy.to_owned(),
            plan_id: report.plan_id,
            index: report.index,
            step: report.step.clone(),
            failure: report.outcome.result.clone().err(),
        });
    }

    fn follow_ups_cut(&mut self, _event_id: u64) {
        self.0.push(Record::FollowUpsCut);
    }

    fn timers_cut(&mut self, fired: usize) {
        self.0.push(Record::TimersCut { fired });
    }
}

/// One simulated host: a pipeline with the dry-run executor, and its event counter.
#[derive(Debug)]
pub struct SimHost {
    runner: Runner<DryRun>,
    next_event_id: u64,
}

impl SimHost {
    pub fn new(pipeline: Pipeline) -> Self {
        SimHost {
            runner: Runner::new(pipeline, DryRun::new()),
            next_event_id: 1,
        }
    }

    /// The host's pipeline (policies, model, stores).
    pub fn pipeline(&self) -> &Pipeline {
        &self.runner.pipeline
    }

    /// The host's pipeline, to change the model between events.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.runner.pipeline
    }

    /// Move the clock to `at_ms`, firing every timer due by then, in due order.
    pub fn advance_to(&mut self, at_ms: u64, records: &mut Vec<Record>) {
        let (runner, mut ids) = self.split();
        runner.advance_to(at_ms, &mut ids, &mut Recorder(records));
    }

    /// Tell every policy the machine's state, as a daemon does when it starts.
    pub fn startup(&mut self, failure: &mut Option<InjectedFailure>, records: &mut Vec<Record>) {
        let (runner, mut ids) = self.split();
        runner.executor.fail_next = failure.take();
        runner.startup(None, &mut ids, &mut Recorder(records));
        *failure = runner.executor.fail_next.take();
    }

    /// Hand an event to the policies (all concerned, or one) and carry out their plans.
    pub fn deliver(
        &mut self,
        event: Event,
        to: Option<String>,
        failure: &mut Option<InjectedFailure>,
        records: &mut Vec<Record>,
    ) {
        let (runner, mut ids) = self.split();
        runner.executor.fail_next = failure.take();
        let delivery = Delivery {
            to,
            ..Delivery::broadcast(ids(), "scenario", event)
        };
        runner.deliver(delivery, &mut ids, &mut Recorder(records));
        *failure = runner.executor.fail_next.take();
    }

    /// The runner and an id source counting from the host's next event id.
    fn split(&mut self) -> (&mut Runner<DryRun>, impl FnMut() -> u64 + '_) {
        let next = &mut self.next_event_id;
        let ids = move || {
            let id = *next;
            *next += 1;
            id
        };
        (&mut self.runner, ids)
    }
}
