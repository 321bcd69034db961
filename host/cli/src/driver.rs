//! Drives a pipeline with the dry-run executor: events in, decisions and applied steps out.
//!
//! Scenario tests and `simulate` both replay events through the real runtime, apply every
//! accepted plan to the machine model as if each step succeeded (unless a failure is
//! injected), feed `step-failed` events back to the policy that made the failing plan, and
//! fire timers when virtual time passes their due time. This module is that loop; what to
//! replay and how to report it is the callers' business.

use haven_core::{Event, StepFailure};
use haven_runtime::pipeline::Recipients;
use haven_runtime::{Decision, Outcome, Pipeline};
use serde::Deserialize;
use std::collections::VecDeque;

/// Follow-up events (step failures) one delivery may cause before the driver stops: a policy
/// that answers every failure with another failing plan must not spin forever.
const MAX_FOLLOW_UPS: usize = 32;

/// A step failure to inject into the next plan carried out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InjectedFailure {
    /// Index of the step that fails, from 0.
    pub step: u32,
    /// The reason reported to the policy.
    pub reason: String,
}

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
    /// The driver stopped feeding step failures back (see [`MAX_FOLLOW_UPS`]).
    FollowUpsCut,
}

/// One simulated host: a pipeline and its event counter.
#[derive(Debug)]
pub struct SimHost {
    pub pipeline: Pipeline,
    next_event_id: u64,
}

impl SimHost {
    pub fn new(pipeline: Pipeline) -> Self {
        SimHost {
            pipeline,
            next_event_id: 1,
        }
    }

    /// Move the clock to `at_ms`, firing every timer due by then, in due order.
    pub fn advance_to(&mut self, at_ms: u64, records: &mut Vec<Record>) {
        while let Some((due, policy, name)) = self.pipeline.machine().next_due_timer(at_ms) {
            let machine = self.pipeline.machine_mut();
            machine.now_ms = machine.now_ms.max(due);
            machine.cancel_timer(&policy, &name);
            self.deliver(Event::TimerFired(name), Some(policy), &mut None, records);
        }
        let machine = self.pipeline.machine_mut();
        machine.now_ms = machine.now_ms.max(at_ms);
    }

    /// Tell every policy the machine's state, as a daemon does when it starts.
    pub fn startup(&mut self, failure: &mut Option<InjectedFailure>, records: &mut Vec<Record>) {
        let queue = self
            .pipeline
            .startup_events()
            .into_iter()
            .map(|(policy, event)| (event, Some(policy)))
            .collect();
        self.drain(queue, failure, records);
    }

    /// Hand an event to the policies (all concerned, or one) and carry out their plans.
    pub fn deliver(
        &mut self,
        event: Event,
        to: Option<String>,
        failure: &mut Option<InjectedFailure>,
        records: &mut Vec<Record>,
    ) {
        self.drain(VecDeque::from([(event, to)]), failure, records);
    }

    fn drain(
        &mut self,
        mut queue: VecDeque<(Event, Option<String>)>,
        failure: &mut Option<InjectedFailure>,
        records: &mut Vec<Record>,
    ) {
        let mut delivered = 0;
        while let Some((event, to)) = queue.pop_front() {
            if delivered > MAX_FOLLOW_UPS {
                records.push(Record::FollowUpsCut);
                return;
            }
            delivered += 1;
            let id = self.take_event_id();
            records.push(Record::Event {
                id,
                at_ms: self.pipeline.machine().now_ms,
                event: event.clone(),
                to: to.clone(),
            });
            let recipients = match &to {
                Some(policy) => Recipients::Only(policy),
                None => Recipients::Concerned,
            };
            for decision in self.pipeline.dispatch(id, &event, recipients) {
                self.carry_out(decision, failure, &mut queue, records);
            }
        }
    }

    /// Apply an accepted plan step by step (dry run); a failure queues `step-failed`.
    fn carry_out(
        &mut self,
        decision: Decision,
        failure: &mut Option<InjectedFailure>,
        queue: &mut VecDeque<(Event, Option<String>)>,
        records: &mut Vec<Record>,
    ) {
        let policy = decision.policy.clone();
        let Outcome::Plan { plan_id, plan } = decision.outcome.clone() else {
            records.push(Record::Decision(decision));
            return;
        };
        records.push(Record::Decision(decision));
        let failing = failure.take();
        for (index, step) in (0u32..).zip(plan.steps) {
            let failed = failing
                .as_ref()
                .filter(|injected| injected.step == index)
                .map(|injected| injected.reason.clone());
            if failed.is_none() {
                self.pipeline.machine_mut().apply(&policy, &step);
            }
            records.push(Record::Step {
                policy: policy.clone(),
                plan_id,
                index,
                step: step.clone(),
                failure: failed.clone(),
            });
            if let Some(reason) = failed {
                let event = Event::StepFailed(StepFailure {
                    plan_id,
                    step_index: index,
                    step,
                    reason,
                });
                queue.push_back((event, Some(policy)));
                return;
            }
        }
    }

    fn take_event_id(&mut self) -> u64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        id
    }
}
