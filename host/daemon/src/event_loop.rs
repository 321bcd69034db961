//! The event loop: one thread that takes events off the inbox, one at a time, hands each to the
//! policies, carries out their plans and journals everything.
//!
//! ```text
//! inbox (queue + reports) → runner (pipeline → executor) → journal, status board
//! ```
//!
//! Everything that decides or acts happens on this thread, so plans never interleave. Its
//! rules:
//!
//! - **Journal before acting.** Event and decision lines are appended as they happen
//!   (buffered); before a step that acts on the system starts, the journal is synced to disk,
//!   and it is synced whenever the inbox runs dry. A daemon killed mid-step leaves a
//!   `step-start` without its `step-end`, which the next start hands to the policy.
//! - **The clock** the policies see is milliseconds since the daemon started (monotonic).
//!   Timers due by the time an event is taken fire first, in due order; when the inbox is
//!   quiet the loop wakes for the next timer.
//! - **Bad input and source trouble** arrive as reports; each is journaled and counted (the
//!   inbox counts per source) and the loop goes on. A source that may have missed events
//!   (devd reconnected, the FIFO reopened) makes the loop re-read the machine and tell the
//!   policies with a fresh `startup` event.
//! - **A stop** (SIGTERM) is noticed between steps: the running step finishes, the rest of
//!   its plan is abandoned and journaled as such, and the loop ends.

use crate::inbox::{Inbox, Next, Report};
use crate::journal::{Entry, Journal, JournalError};
use crate::reconcile::Granted;
use crate::reload::{Prepared, ReloadOutcome};
use crate::sources::peer::PeerPublisher;
use crate::sources::witness::{self, WitnessSource};
use crate::status::{
    PolicyStatus, RecentAlert, RecentDecision, RunningStep, StatusBoard, StepEnded,
};
use haven_core::{Action, AlertSeverity, Event, InterruptedStep, Machine, Step};
use haven_executor::runner::{Delivery, Observer, StepReport};
use haven_executor::{Executor, Runner};
use haven_runtime::pipeline::short_hash;
use haven_runtime::{Decision, LoadedPolicy, Outcome};
use std::time::{Duration, Instant};

/// Re-reads the machine's state from the system (startup, and after missed events).
/// What it reads of HAST and services follows the grants of the policies in force.
pub type ReadMachine = Box<dyn FnMut(&Machine, &[LoadedPolicy]) -> Machine + Send>;

/// The loop and everything it owns.
pub struct EventLoop<E> {
    pub runner: Runner<E>,
    pub journal: Journal,
    pub inbox: Inbox,
    pub board: StatusBoard,
    /// Re-reads the machine (for a resync).
    pub read_machine: ReadMachine,
    /// The plan step a crash interrupted, and its policy, for the first startup event.
    pub interrupted: Option<(String, InterruptedStep)>,
    /// When the daemon started: the policies' clock counts from here.
    pub started: Instant,
    /// The peer link's sending side, when `[peer]` is configured: this host's facts after
    /// each event, and hastd's hooks as they arrive.
    pub peer: Option<PeerPublisher>,
    /// Whether saving the policies' stores failed last time (one alert per outage).
    pub stores_failing: bool,
    /// The witness's session, when `[witness]` is configured: its news arrive as `witness`
    /// events (and as reports, for the daemon's own alerts), and this host's member record is
    /// written when it changes.
    pub witness: Option<WitnessSource>,
    /// Whether decisions are journaled with what their call saw (`[daemon] journal-inputs`).
    pub journal_inputs: bool,
}

impl<E> std::fmt::Debug for EventLoop<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

impl<E: Executor> EventLoop<E> {
    /// Run until a stop is requested: the startup event first, then every event in order.
    pub fn run(mut self) {
        let interrupted = self.interrupted.take();
        self.with_observer(|runner, observer, ids| {
            let interrupted = interrupted.as_ref().map(|(p, s)| (p.as_str(), s));
            runner.startup(interrupted, ids, observer)
        });
        // The policy has been told; close the interrupted plan in the journal, so that the next
        // start does not report the same step again.
        if let Some((policy, step)) = interrupted {
            self.append(&Entry::PlanEnd {
                plan_id: step.plan_id,
                policy,
                completed: false,
            });
        }
        self.publish_to_peer();
        let syncer = Syncer::start(self.board.clone());
        loop {
            if self.inbox.is_empty() {
                // Quiet: save what the policies recorded, show the model, and get the
                // journal to disk off the event path.
                self.save_stores();
                self.publish();
                self.background_sync(syncer.as_ref());
            }
            let deadline = self.next_timer();
            match self.inbox.next(deadline) {
                Next::Stop => break,
                Next::Idle => self.fire_timers(),
                Next::Reports(reports) => {
                    for report in reports {
                        self.handle_report(report);
                    }
                }
                Next::Event(queued) => {
                    self.fire_timers();
                    let mut event = queued.event;
                    // The peer hears a hook first: it may be the only one that can use it.
                    if let (Some(peer), Event::HastHook(hook)) = (&self.peer, &event) {
                        peer.hook(hook.clone());
                    }
                    self.fill_previous(&mut event);
                    let delivery = Delivery {
                        coalesced: queued.coalesced,
                        ..Delivery::broadcast(queued.id, queued.source, event)
                    };
                    self.with_observer(|runner, observer, ids| {
                        runner.deliver(delivery, ids, observer)
                    });
                }
            }
            self.publish_to_peer();
            if let Some(witness) = &self.witness {
                witness.publish(self.runner.pipeline.machine());
            }
            self.flush_journal();
        }
        let waiting = self.inbox.queue_stats().depth;
        self.note(format!(
            "havend stopping; {waiting} queued event(s) not handled (the next start reads the \
             machine afresh)"
        ));
        self.save_stores();
        self.sync_journal();
        self.publish();
    }

    /// Save the policies' stores changed by calls no plan followed (a plan's store is saved
    /// before its first step). A failure is one critical alert until saving works again.
    fn save_stores(&mut self) {
        let failures = self.runner.pipeline.save_stores();
        let failing = !failures.is_empty();
        if failing && !self.stores_failing {
            let message = failures.join("; ");
            raise_alert(
                &mut self.journal,
                &self.board,
                None,
                AlertSeverity::Critical,
                &message,
            );
        } else if !failing && self.stores_failing {
            self.note("the policies' stores are saved again".to_owned());
        }
        self.stores_failing = failing;
    }

    /// The clock the policies see.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When the next timer is due, as an instant.
    fn next_timer(&self) -> Option<Instant> {
        let (due, _, _) = self.runner.pipeline.machine().next_due_timer(u64::MAX)?;
        Some(self.started + Duration::from_millis(due))
    }

    fn fire_timers(&mut self) {
        let now = self.now_ms();
        self.with_observer(|runner, observer, ids| runner.advance_to(now, ids, observer));
    }

    /// ucarp and keepalived do not say what the state was before: the model does.
    fn fill_previous(&self, event: &mut Event) {
        if let Event::CarpChanged(change) = event
            && change.previous.is_none()
        {
            change.previous = self.runner.pipeline.machine().carp_state(change.vhid);
        }
    }

    /// Run `f` with the runner, a journaling observer and the inbox's id source.
    fn with_observer(
        &mut self,
        f: impl FnOnce(&mut Runner<E>, &mut dyn Observer, &mut dyn FnMut() -> u64),
    ) {
        let inbox = self.inbox.clone();
        let mut ids = || inbox.take_id();
        let acts = self.runner.executor.acts_on_system();
        let mut observer = Journaling {
            journal: &mut self.journal,
            board: &self.board,
            inbox: &self.inbox,
            acts,
            event_names: Vec::new(),
            plans_ended: 0,
            acted: false,
            peer: self.peer.as_ref(),
            journal_inputs: self.journal_inputs,
        };
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let machine = self.runner.pipeline.machine_mut();
        machine.now_ms = machine.now_ms.max(now);
        machine.unix_ms = crate::journal::unix_ms();
        f(&mut self.runner, &mut observer, &mut ids);
        // The model follows what the steps did; after a plan on the real system, read the
        // system again, so the next decision sees facts (a service that died at start, a
        // mount someone else made) and not only what the plan meant to do.
        let plans_ran = observer.plans_ended > 0;
        if acts && observer.acted {
            self.reread_machine();
        }
        if plans_ran {
            self.publish();
        }
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::BadInput {
                source,
                reason,
                text,
            } => {
                tracing::warn!(%source, %reason, text = %text, "bad input");
                self.append(&Entry::BadInput {
                    source,
                    reason,
                    text,
                });
            }
            Report::SourceState {
                source,
                up,
                message,
            } => {
                if up {
                    tracing::info!(%source, "{message}");
                } else {
                    tracing::warn!(%source, "{message}");
                }
                self.note(format!("{source}: {message}"));
            }
            Report::Dropped(dropped) => {
                let message = format!(
                    "event queue full: event {} ({}) from {} dropped",
                    dropped.id, dropped.kind, dropped.source
                );
                tracing::error!(alert = %message, "operator alert");
                let severity = AlertSeverity::Critical;
                raise_alert(&mut self.journal, &self.board, None, severity, &message);
            }
            Report::Reload(prepared) => self.swap_in(*prepared),
            Report::ReloadRejected { why, outcome } => {
                let ReloadOutcome::Rejected { reason } = &outcome else {
                    return;
                };
                self.append(&Entry::Reload {
                    why: why.clone(),
                    result: "rejected".to_owned(),
                    changes: Vec::new(),
                    policies: Vec::new(),
                    reason: Some(reason.clone()),
                });
                let message = format!("reload rejected, the running policies stay: {reason}");
                let severity = AlertSeverity::Warning;
                raise_alert(&mut self.journal, &self.board, None, severity, &message);
                self.board.reloaded(why, outcome);
            }
            Report::Witness(news) => self.witness_news(news),
            Report::PeerHeard => {
                let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
                let peer = &mut self.runner.pipeline.machine_mut().peer;
                if peer.facts.is_some() {
                    peer.facts_heard_ms = Some(now);
                }
            }
            Report::Resync { source, why } => {
                tracing::info!(%source, %why, "re-reading the machine: events may have been missed");
                self.note(format!("{source}: {why}; re-reading the machine's state"));
                self.reread_machine();
                self.with_observer(|runner, observer, ids| runner.startup(None, ids, observer));
            }
        }
    }

    /// Swap in a reload's policies, between two events; tell the policies that are new or
    /// changed the machine's state, as at startup.
    fn swap_in(&mut self, mut prepared: Prepared) {
        let changed: std::collections::BTreeSet<String> = {
            let old = self.runner.pipeline.policies();
            prepared
                .policies
                .iter()
                .filter(|new| {
                    !old.iter().any(|old| {
                        old.name == new.name
                            && old.compiled.module_hash == new.compiled.module_hash
                            && old.config == new.config
                    })
                })
                .map(|policy| policy.name.clone())
                .collect()
        };
        let policies_now: Vec<String> = prepared
            .policies
            .iter()
            .map(|policy| {
                format!(
                    "{}@{}",
                    policy.name,
                    short_hash(&policy.compiled.module_hash)
                )
            })
            .collect();
        let granted_before = Granted::of(self.runner.pipeline.policies());
        self.board.set_grants(&prepared.policies);
        let removed = self
            .runner
            .pipeline
            .replace_policies(std::mem::take(&mut prepared.policies));
        tracing::info!(changes = ?prepared.changes, ?removed, "reloaded");
        self.append(&Entry::Reload {
            why: prepared.why.clone(),
            result: "loaded".to_owned(),
            changes: prepared.changes.clone(),
            policies: policies_now,
            reason: None,
        });
        self.board.reloaded(
            prepared.why.clone(),
            ReloadOutcome::Loaded {
                changes: prepared.changes.clone(),
            },
        );
        self.publish();
        prepared.answer();
        if !changed.is_empty() {
            // As at startup, they decide from facts: a service or resource granted only by
            // this reload has never been read, so read the machine for the grants now in force
            // (only then: a new module under the same grants needs no reading).
            if granted_before != Granted::of(self.runner.pipeline.policies()) {
                self.reread_machine();
            }
            self.with_observer(|runner, observer, ids| {
                runner.startup_of(|name| changed.contains(name), None, ids, observer)
            });
        }
    }

    /// Read the machine from the system again, for the policies in force. What the peer
    /// said is not on this system: it stays.
    fn reread_machine(&mut self) {
        let mut fresh = (self.read_machine)(
            self.runner.pipeline.machine(),
            self.runner.pipeline.policies(),
        );
        let machine = self.runner.pipeline.machine_mut();
        fresh.peer = std::mem::take(&mut machine.peer);
        fresh.unix_ms = machine.unix_ms;
        fresh.maintenance = machine.maintenance;
        fresh.carp_demoted = std::mem::take(&mut machine.carp_demoted);
        *machine = fresh;
    }

    /// The witness's alert (its events reach the policies as any other source's).
    fn witness_news(&mut self, news: haven_witness::WitnessNews) {
        if let Some((severity, message)) = witness::alert_for(&news) {
            tracing::error!(source = witness::SOURCE, alert = %message, "operator alert");
            raise_alert(&mut self.journal, &self.board, None, severity, &message);
        }
    }

    /// Hand this host's facts to the peer link (sent at once if they changed).
    fn publish_to_peer(&self) {
        let Some(peer) = &self.peer else {
            return;
        };
        let pipeline = &self.runner.pipeline;
        let mut facts = pipeline.peer_facts(peer.host(), env!("CARGO_PKG_VERSION"));
        facts.alerts = self.board.alerts_for_peer();
        peer.facts(facts);
    }

    fn note(&mut self, message: String) {
        self.append(&Entry::Note { message });
    }

    fn append(&mut self, entry: &Entry) {
        append(&mut self.journal, &self.board, entry);
    }

    fn sync_journal(&mut self) {
        let wrote = !self.journal.is_clean();
        let synced = self.journal.sync();
        journal_outcome(&mut self.journal, &self.board, "sync", wrote, synced);
    }

    /// Write what this event appended, with one `write`.
    fn flush_journal(&mut self) {
        let wrote = !self.journal.is_clean();
        let flushed = self.journal.flush();
        journal_outcome(&mut self.journal, &self.board, "write", wrote, flushed);
    }

    /// Hand the journal to the syncer thread (or sync here, without one).
    fn background_sync(&mut self, syncer: Option<&Syncer>) {
        let Some(syncer) = syncer else {
            return self.sync_journal();
        };
        let wrote = !self.journal.is_clean();
        let flushed = self.journal.flush_for_background_sync().map(|file| {
            if let Some(file) = file {
                syncer.sync(file);
            }
        });
        journal_outcome(&mut self.journal, &self.board, "write", wrote, flushed);
    }

    /// Pin the model and the policies' counters on the status board.
    fn publish(&self) {
        let pipeline = &self.runner.pipeline;
        let policies = pipeline
            .policies()
            .iter()
            .map(|policy| {
                let stats = pipeline.stats(&policy.name);
                PolicyStatus {
                    name: policy.name.clone(),
                    module_hash: policy.compiled.module_hash.clone(),
                    version: policy.compiled.info.version.clone(),
                    events: stats.events,
                    plans: stats.plans,
                    refused: stats.refused,
                    failed: stats.failed,
                }
            })
            .collect();
        self.board.publish(pipeline.machine_shared(), policies);
    }
}

/// A thread that `fsync`s the journal when the loop goes quiet, so that the next event does not
/// wait for the disk. Syncs before a step that acts are still done on the loop, and waited for.
struct Syncer {
    files: std::sync::mpsc::Sender<std::fs::File>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// `None` if the thread cannot be started: the loop then syncs itself.
    fn start(board: StatusBoard) -> Option<Syncer> {
        let (files, requests) = std::sync::mpsc::channel::<std::fs::File>();
        let thread = std::thread::Builder::new()
            .name("journal-sync".to_owned())
            .spawn(move || {
                while let Ok(mut file) = requests.recv() {
                    // Requests that queued up meanwhile are covered by one sync.
                    while let Ok(newer) = requests.try_recv() {
                        file = newer;
                    }
                    if let Err(error) = file.sync_data()
                        && board.journal_error(&error).is_none()
                    {
                        tracing::debug!(%error, "the journal still cannot be synced");
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Syncer {
                files,
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::warn!(%error, "no journal sync thread; syncing on the event loop");
                None
            }
        }
    }

    fn sync(&self, file: std::fs::File) {
        let _ = self.files.send(file);
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.files, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Append to the journal (see [`journal_outcome`] for what a failure leads to).
fn append(journal: &mut Journal, board: &StatusBoard, entry: &Entry) {
    // Appending only buffers (unless it rotates): a success says nothing of the disk.
    let appended = journal.append_buffered(entry).map(drop);
    journal_outcome(journal, board, entry.kind(), false, appended);
}

/// What became of a journal write or sync. A failure is counted, and the first one of an
/// outage (a full state disk, say) raises a critical alert; the daemon goes on, since refusing
/// to fail over because a disk is full would be worse than an incomplete record. The first
/// success that wrote something (`wrote`) after an outage journals that it is over, with how
/// many writes failed.
fn journal_outcome(
    journal: &mut Journal,
    board: &StatusBoard,
    what: &str,
    wrote: bool,
    result: Result<(), JournalError>,
) {
    match result {
        Ok(()) if !wrote => {}
        Ok(()) => {
            if let Some(message) = board.journal_ok(journal.take_dropped_lines()) {
                let _ = journal.append_buffered(&Entry::Alert {
                    policy: None,
                    severity: AlertSeverity::Warning,
                    message,
                });
            }
        }
        Err(error) => {
            if board.journal_error(&error).is_none() {
                tracing::debug!(%error, what, "the journal still cannot be written");
            }
        }
    }
}

/// Journal an operator alert and pin it on the status board.
pub(crate) fn raise_alert(
    journal: &mut Journal,
    board: &StatusBoard,
    policy: Option<&str>,
    severity: AlertSeverity,
    message: &str,
) {
    append(
        journal,
        board,
        &Entry::Alert {
            policy: policy.map(str::to_owned),
            severity,
            message: message.to_owned(),
        },
    );
    board.add_alert(RecentAlert {
        policy: policy.map(str::to_owned),
        severity: match severity {
            AlertSeverity::Critical => "critical",
            AlertSeverity::Warning => "warning",
        }
        .to_owned(),
        message: message.to_owned(),
    });
}

/// The observer that journals what the runner reports, and pins it on the status board.
struct Journaling<'a> {
    journal: &'a mut Journal,
    board: &'a StatusBoard,
    inbox: &'a Inbox,
    /// Whether steps act on the system (sync the journal before each).
    acts: bool,
    /// The kind of each event being handled, by id, for the status board.
    event_names: Vec<(u64, &'static str)>,
    /// Plans that ended (completed or not) during this delivery.
    plans_ended: u32,
    /// Whether a step that acts on the system (not a timer or alert) started.
    acted: bool,
    /// The peer hears which plan runs here.
    peer: Option<&'a PeerPublisher>,
    /// Whether decisions are journaled with their inputs.
    journal_inputs: bool,
}

impl Journaling<'_> {
    fn append(&mut self, entry: &Entry) {
        append(self.journal, self.board, entry);
    }
}

impl Observer for Journaling<'_> {
    fn event(&mut self, delivery: &Delivery, _now_ms: u64) {
        tracing::info!(
            id = delivery.id,
            source = %delivery.source,
            kind = delivery.event.kind(),
            coalesced = delivery.coalesced,
            "event"
        );
        self.event_names.push((delivery.id, delivery.event.kind()));
        self.board
            .metrics()
            .event(&delivery.source, delivery.event.kind());
        self.append(&Entry::Event {
            event_id: delivery.id,
            source: delivery.source.clone(),
            event: delivery.event.clone(),
            coalesced: delivery.coalesced,
        });
    }

    fn decision(&mut self, event_id: u64, decision: &Decision) {
        self.append(&Entry::from_decision(
            event_id,
            decision,
            self.journal_inputs,
        ));
        if let Some(alert) = &decision.host_alert {
            raise_alert(
                self.journal,
                self.board,
                None,
                AlertSeverity::Critical,
                alert,
            );
        }
        let (outcome, plan_id, detail) = match &decision.outcome {
            Outcome::NoAction => (crate::DecisionOutcome::NoAction, None, Vec::new()),
            Outcome::Plan { plan_id, plan } => (
                crate::DecisionOutcome::Plan,
                Some(*plan_id),
                plan.steps.iter().map(Step::to_string).collect(),
            ),
            Outcome::Refused(refusal) => (
                crate::DecisionOutcome::Refused,
                None,
                vec![refusal.to_string()],
            ),
            Outcome::Failed(failure) => (
                crate::DecisionOutcome::Failed,
                None,
                vec![failure.to_string()],
            ),
        };
        self.board
            .metrics()
            .decision(&decision.policy, outcome.as_str(), decision.elapsed);
        let event = self
            .event_names
            .iter()
            .rev()
            .find(|(id, _)| *id == event_id)
            .map_or("?", |(_, kind)| kind)
            .to_owned();
        self.board.add_decision(RecentDecision {
            event_id,
            event,
            policy: decision.policy.clone(),
            module_hash: short_hash(&decision.module_hash).to_owned(),
            outcome,
            plan_id,
            detail,
            elapsed_us: u64::try_from(decision.elapsed.as_micros()).unwrap_or(u64::MAX),
        });
    }

    fn step_start(&mut self, policy: &str, plan_id: u64, index: u32, step: &Step) {
        tracing::info!(%step, "step started");
        self.append(&Entry::StepStart {
            plan_id,
            policy: policy.to_owned(),
            index,
            step: step.clone(),
        });
        let host_side = haven_executor::executor::is_host_side(step);
        self.acted |= self.acts && !host_side;
        if self.acts && !host_side {
            let wrote = !self.journal.is_clean();
            let synced = self.journal.sync();
            journal_outcome(
                self.journal,
                self.board,
                "sync before a step",
                wrote,
                synced,
            );
        }
        if let Some(peer) = self.peer {
            peer.running_plan(Some(plan_id));
        }
        self.board.set_running(Some(RunningStep {
            policy: policy.to_owned(),
            plan_id,
            index,
            step: step.to_string(),
        }));
    }

    fn step_end(&mut self, report: &StepReport<'_>) {
        self.board.set_running(None);
        let outcome = report.outcome;
        self.board.add_step_end(StepEnded {
            plan_id: report.plan_id,
            index: report.index,
            step: report.step.to_string(),
            ok: outcome.ok(),
            already_done: outcome.skipped_as_done,
            duration_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        match &outcome.result {
            Ok(()) => tracing::info!(
                skipped_as_done = outcome.skipped_as_done,
                duration_us = report.elapsed.as_micros() as u64,
                "step done"
            ),
            Err(reason) => tracing::warn!(%reason, "step failed"),
        }
        let step_outcome = match (&outcome.result, outcome.skipped_as_done) {
            (Err(_), _) => "failed",
            (Ok(()), true) => "already-done",
            (Ok(()), false) => "ok",
        };
        self.board
            .metrics()
            .step(report.step.action.kind(), step_outcome, report.elapsed);
        let detail = match (&outcome.result, &outcome.detail) {
            (Err(reason), Some(detail)) => Some(format!("{detail}: {reason}")),
            (Err(reason), None) => Some(reason.clone()),
            (Ok(()), detail) => detail.clone(),
        };
        self.append(&Entry::StepEnd {
            plan_id: report.plan_id,
            policy: report.policy.to_owned(),
            index: report.index,
            ok: outcome.ok(),
            skipped_as_done: outcome.skipped_as_done,
            detail,
            fencing_token: outcome.fencing_token,
            duration_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
        });
        if let (Ok(()), Action::Alert(alert)) = (&outcome.result, &report.step.action) {
            match alert.severity {
                AlertSeverity::Critical => {
                    tracing::error!(policy = report.policy, alert = %alert.message, "operator alert")
                }
                AlertSeverity::Warning => {
                    tracing::warn!(policy = report.policy, alert = %alert.message, "operator alert")
                }
            }
            let policy = Some(report.policy);
            raise_alert(
                self.journal,
                self.board,
                policy,
                alert.severity,
                &alert.message,
            );
        }
    }

    fn stores_not_saved(&mut self, alerts: &[String]) {
        let message = alerts.join("; ");
        tracing::error!(alert = %message, "operator alert");
        raise_alert(
            self.journal,
            self.board,
            None,
            AlertSeverity::Critical,
            &message,
        );
    }

    fn plan_end(&mut self, policy: &str, plan_id: u64, completed: bool) {
        self.plans_ended += 1;
        if let Some(peer) = self.peer {
            peer.running_plan(None);
        }
        self.board.set_running(None);
        self.board.set_plan_ended(plan_id, completed);
        self.append(&Entry::PlanEnd {
            plan_id,
            policy: policy.to_owned(),
            completed,
        });
    }

    fn follow_ups_cut(&mut self, event_id: u64) {
        self.append(&Entry::Note {
            message: format!(
                "event {event_id}: too many step failures in a row; no more fed back to the policy"
            ),
        });
    }

    fn timers_cut(&mut self, fired: usize) {
        self.append(&Entry::Note {
            message: format!("{fired} timer firings in one pass; the rest wait for the next"),
        });
    }

    fn stop_requested(&self) -> bool {
        self.inbox.stopping()
    }
}
