//! Hands one event to the policies and carries out the plans that come back.
//!
//! This is the heart of the ordering guarantees, written once for the daemon and for
//! `havenctl simulate`/`test`:
//!
//! - **One plan at a time.** A decision's plan runs to its end (or its first failure) before
//!   the next decision's plan starts, and the next event is not taken before all of them are
//!   done. No two plans ever interleave.
//! - **The first failing step stops the plan.** The remaining steps are not run, and a
//!   `step-failed` event goes to the policy that made the plan, at once, before any other
//!   event: the policy decides what next (demote back, alert) while it still matters. A policy
//!   that answers every failure with another failing plan is cut off after
//!   [`MAX_FOLLOW_UPS`] follow-ups.
//! - **Every step goes to the [`Executor`]**; a step that succeeds is applied to the model
//!   (so host-side steps, timers and alerts, take effect when the executor says "done").
//! - **A stop between steps**: when the observer says a stop was requested, the plan is
//!   abandoned after the step that is running, never in the middle of one.
//!
//! What happened is reported, as it happens, to an [`Observer`]: the daemon journals it, the
//! CLI collects it for display.

use crate::executor::{Executor, StepOutcome};
use haven_core::{Event, InterruptedStep, Step, StepFailure};
use haven_runtime::pipeline::Recipients;
use haven_runtime::{Decision, Outcome, Pipeline};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Follow-up events (step failures) one delivery may cause before the runner stops feeding
/// them back: a policy that answers every failure with another failing plan must not spin.
pub const MAX_FOLLOW_UPS: usize = 32;

/// Timer firings one [`Runner::advance_to`] carries out at most (see there).
pub const MAX_TIMER_FIRINGS: usize = 10_000;

/// An event to deliver, with what the journal needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event's id (from the daemon's queue, or the runner's id source for follow-ups).
    pub id: u64,
    /// Where it came from: a source name, `timer`, `executor`, `startup`.
    pub source: String,
    /// The event.
    pub event: Event,
    /// Only this policy gets it (its timers, its plans' failures, its startup); `None` means
    /// every policy the event concerns.
    pub to: Option<String>,
    /// How many older events it superseded in the queue.
    pub coalesced: u32,
}

impl Delivery {
    /// An event for every policy it concerns, from `source`, that superseded nothing.
    pub fn broadcast(id: u64, source: impl Into<String>, event: Event) -> Delivery {
        Delivery {
            id,
            source: source.into(),
            event,
            to: None,
            coalesced: 0,
        }
    }

    /// An event for one policy only.
    pub fn to(id: u64, source: impl Into<String>, event: Event, policy: &str) -> Delivery {
        Delivery {
            to: Some(policy.to_owned()),
            ..Delivery::broadcast(id, source, event)
        }
    }
}

/// Where the runner reports what happens, in order. Every method has a do-nothing default.
pub trait Observer {
    /// An event is about to be handed to the policies; `now_ms` is the model's clock.
    fn event(&mut self, _delivery: &Delivery, _now_ms: u64) {}
    /// A policy decided about event `event_id`.
    fn decision(&mut self, _event_id: u64, _decision: &Decision) {}
    /// A step is about to run (for an executor that acts on the system, this is the moment
    /// to make the journal durable).
    fn step_start(&mut self, _policy: &str, _plan_id: u64, _index: u32, _step: &Step) {}
    /// A step ended.
    fn step_end(&mut self, _report: &StepReport<'_>) {}
    /// A plan is over: all steps done (`completed`), or stopped by a failure or a stop.
    fn plan_end(&mut self, _policy: &str, _plan_id: u64, _completed: bool) {}
    /// Policies' stores could not be saved before a step that acts (the step runs anyway:
    /// the decision is made; a restart would lose what the stores recorded since).
    fn stores_not_saved(&mut self, _alerts: &[String]) {}
    /// The runner stopped feeding step failures back (see [`MAX_FOLLOW_UPS`]).
    fn follow_ups_cut(&mut self, _event_id: u64) {}
    /// [`Runner::advance_to`] stopped after `fired` timer firings (see [`MAX_TIMER_FIRINGS`]).
    fn timers_cut(&mut self, _fired: usize) {}
    /// Whether the daemon is stopping: checked between steps.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// One step's end, for [`Observer::step_end`].
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    pub policy: &'a str,
    pub plan_id: u64,
    pub index: u32,
    pub step: &'a Step,
    pub outcome: &'a StepOutcome,
    pub elapsed: Duration,
}

/// A pipeline and the executor that carries out its plans.
#[derive(Debug)]
pub struct Runner<E> {
    pub pipeline: Pipeline,
    pub executor: E,
}

impl<E: Executor> Runner<E> {
    /// A runner over a pipeline and an executor.
    pub fn new(pipeline: Pipeline, executor: E) -> Runner<E> {
        Runner { pipeline, executor }
    }

    /// Tell every policy the machine's state (daemon start, or after events may have been
    /// missed), each its own `startup` event, and carry out what they decide. `interrupted`
    /// names the policy whose step a crash interrupted, and the step: that policy's startup
    /// event carries it, so it can decide what to do (never a blind re-run).
    pub fn startup(
        &mut self,
        interrupted: Option<(&str, &InterruptedStep)>,
        ids: &mut dyn FnMut() -> u64,
        observer: &mut dyn Observer,
    ) {
        self.startup_of(|_| true, interrupted, ids, observer);
    }

    /// [`Runner::startup`] for the policies `wanted` names only (a reload tells the policies
    /// it added or changed).
    pub fn startup_of(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        interrupted: Option<(&str, &InterruptedStep)>,
        ids: &mut dyn FnMut() -> u64,
        observer: &mut dyn Observer,
    ) {
        let events: Vec<(String, Event)> = self
            .pipeline
            .startup_events()
            .into_iter()
            .filter(|(policy, _)| wanted(policy))
            .collect();
        let deliveries = events
            .into_iter()
            .map(|(policy, mut event)| {
                if let Event::Startup(state) = &mut event {
                    if let Some((owner, step)) = interrupted
                        && owner == policy
                    {
                        state.interrupted = Some(step.clone());
                    }
                    state.state_lost = self.pipeline.take_state_lost(&policy);
                }
                Delivery::to(ids(), "startup", event, &policy)
            })
            .collect();
        self.drain(deliveries, ids, observer);
    }

    /// Fire every timer due by `now_ms`, in due order, moving the model's clock to each due
    /// time and finally to `now_ms`.
    ///
    /// Timers fire in passes: a pass fires each timer that was due when it began at most once,
    /// so a timer that its own firing re-armed waits for the next pass (and for at least
    /// [`MIN_TIMER_MS`](haven_core::model::MIN_TIMER_MS) of model time). The daemon's clock is
    /// the wall clock, so a re-armed timer is rarely due again within the call, and the events
    /// waiting in the queue come first. Simulated time may jump far ahead; there a timer that
    /// keeps re-arming fires at most [`MAX_TIMER_FIRINGS`] times in one call, which is
    /// reported, and the rest wait for the next call.
    pub fn advance_to(
        &mut self,
        now_ms: u64,
        ids: &mut dyn FnMut() -> u64,
        observer: &mut dyn Observer,
    ) {
        let mut fired = 0;
        loop {
            let due = self.pipeline.machine().due_timers(now_ms);
            if due.is_empty() {
                break;
            }
            for (due, policy, name) in due {
                if fired == MAX_TIMER_FIRINGS {
                    observer.timers_cut(fired);
                    let machine = self.pipeline.machine_mut();
                    machine.advance_clock(now_ms);
                    return;
                }
                // An earlier firing of this pass may have cancelled or re-armed it.
                if self.pipeline.machine().timer_due(&policy, &name) != Some(due) {
                    continue;
                }
                let machine = self.pipeline.machine_mut();
                machine.advance_clock(due);
                machine.cancel_timer(&policy, &name);
                fired += 1;
                let delivery = Delivery::to(ids(), "timer", Event::TimerFired(name), &policy);
                self.deliver(delivery, ids, observer);
            }
        }
        let machine = self.pipeline.machine_mut();
        machine.advance_clock(now_ms);
    }

    /// Hand an event to the policies and carry out their plans, then any follow-ups.
    pub fn deliver(
        &mut self,
        delivery: Delivery,
        ids: &mut dyn FnMut() -> u64,
        observer: &mut dyn Observer,
    ) {
        self.drain(VecDeque::from([delivery]), ids, observer);
    }

    fn drain(
        &mut self,
        mut queue: VecDeque<Delivery>,
        ids: &mut dyn FnMut() -> u64,
        observer: &mut dyn Observer,
    ) {
        let mut follow_ups = 0;
        while let Some(delivery) = queue.pop_front() {
            observer.event(&delivery, self.pipeline.machine().now_ms);
            let recipients = match &delivery.to {
                Some(policy) => Recipients::Only(policy),
                None => Recipients::Concerned,
            };
            let decisions = self
                .pipeline
                .dispatch(delivery.id, &delivery.event, recipients);
            for decision in decisions {
                observer.decision(delivery.id, &decision);
                if let Some(failure) = self.carry_out(decision, observer) {
                    follow_ups += 1;
                    if follow_ups > MAX_FOLLOW_UPS {
                        observer.follow_ups_cut(delivery.id);
                        continue;
                    }
                    let (policy, failure) = failure;
                    let event = Event::StepFailed(failure);
                    queue.push_back(Delivery::to(ids(), "executor", event, &policy));
                }
            }
        }
    }

    /// Carry out an accepted plan step by step; returns the failure to feed back, if any.
    fn carry_out(
        &mut self,
        decision: Decision,
        observer: &mut dyn Observer,
    ) -> Option<(String, StepFailure)> {
        let Outcome::Plan { plan_id, plan } = decision.outcome else {
            return None;
        };
        let policy = decision.policy;
        let _span = tracing::info_span!("plan", id = plan_id, policy = %policy).entered();
        self.executor.begin_plan();
        for (index, step) in (0u32..).zip(plan.steps) {
            if observer.stop_requested() {
                tracing::warn!(step = index, "stopping: plan abandoned before this step");
                observer.plan_end(&policy, plan_id, false);
                return None;
            }
            let _span = tracing::info_span!("step", index, kind = step.action.kind()).entered();
            observer.step_start(&policy, plan_id, index, &step);
            // What the policies recorded is on disk before anything acts on the system.
            if self.executor.acts_on_system() && !crate::executor::is_host_side(&step) {
                let alerts = self.pipeline.save_stores();
                if !alerts.is_empty() {
                    observer.stores_not_saved(&alerts);
                }
            }
            let started = Instant::now();
            let outcome = self.run_step(&policy, &step);
            let report = StepReport {
                policy: &policy,
                plan_id,
                index,
                step: &step,
                outcome: &outcome,
                elapsed: started.elapsed(),
            };
            observer.step_end(&report);
            if let Err(reason) = outcome.result {
                tracing::warn!(%reason, "step failed; plan stopped");
                observer.plan_end(&policy, plan_id, false);
                let failure = StepFailure {
                    plan_id,
                    step_index: index,
                    step,
                    reason,
                };
                return Some((policy, failure));
            }
        }
        observer.plan_end(&policy, plan_id, true);
        None
    }

    /// One step through the executor; what succeeded is applied to the model.
    fn run_step(&mut self, policy: &str, step: &Step) -> StepOutcome {
        let outcome = self
            .executor
            .run_step(policy, step, self.pipeline.machine());
        if outcome.ok() {
            self.pipeline.machine_mut().apply(policy, step);
        }
        outcome
    }
}
