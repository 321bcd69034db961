#![doc = include_str!("../README.md")]
//!
//! ## Code map
//!
//! - `lib.rs` (here): the policy type and event dispatch, which ties the modules together.
//! - `settings`: the settings and their validation, so mistakes surface at load time.
//! - `carp`: which role a CARP event asks for, and the flap hold-down.
//! - `sync`: the per-resource sync state from the peer's relayed hooks and status (and this
//!   host's own hooks), and the refusal to promote onto incomplete data.
//! - `plans`: the idempotent promotion and demotion plans, computed from queries.
//! - `failure`: what a failed (or interrupted) step means and what to do about it.
//! - `operator`: the operator's requests (switchover, maintenance, accepting an incomplete
//!   copy) and the CARP demotion they hold.
//! - `witness`: a serving host that can no longer count on the witness's leader key, or sees
//!   the peer take it; promotions the key's absence refused, tried again.

mod carp;
mod failure;
mod operator;
mod plans;
mod settings;
mod sync;
#[cfg(test)]
mod tests;
mod witness;

use carp::{Decision, SETTLE_TIMER, Target};
use failure::Phase;
use haven_sdk::{
    Action, AlertSeverity, Event, HastHook, Host, LogLevel, OperatorAsk, OperatorRequest,
    PeerEvent, Plan, Policy, PolicyInfo, Result, StartupState, StepFailure, WitnessEvent,
};

pub use settings::{Resource, Settings, Timeouts};

haven_sdk::export_policy!(CarpHastSwitch);

/// Follows CARP with HAST resources, their filesystems and services. See the crate
/// documentation for the rules.
#[derive(Debug)]
pub struct CarpHastSwitch {
    settings: Settings,
}

impl Policy for CarpHastSwitch {
    type Settings = Settings;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        Ok(CarpHastSwitch { settings })
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Plan> {
        match event {
            Event::Startup(state) => self.on_startup(state, host),
            Event::CarpChanged(_) | Event::CarpLink(_) => self.on_carp(event, host),
            Event::HastHook(hook) => self.on_hook(hook, host),
            Event::TimerFired(name) => self.on_timer(name, host),
            Event::StepFailed(failure) => self.on_step_failed(failure, host),
            Event::Peer(peer) => self.on_peer(peer, host),
            Event::Operator(request) => self.on_operator(request, host),
            Event::Witness(event) => self.on_witness(event, host),
            // Polling only confirms what the hooks and CARP already said; devd events other
            // than CARP's are not this policy's business.
            Event::HastStatusChanged(_) | Event::Devd(_) => Ok(Plan::none()),
        }
    }
}

impl CarpHastSwitch {
    /// A CARP event: if it is ours, a new decision (so a failed promotion may be retried), and
    /// converge now or once the hold-down settles.
    fn on_carp(&self, event: &Event, host: &dyn Host) -> Result<Plan> {
        let Some(target) = carp::target_of(&self.settings, event) else {
            return Ok(Plan::none());
        };
        failure::forget_promotion_failure(host);
        match carp::on_edge(target, self.settings.hold_down_ms, host)? {
            Decision::Act => {
                let plan = self.converge(target, host)?;
                if !plan.is_none() {
                    carp::acted(host)?;
                }
                Ok(plan)
            }
            Decision::Settle => Ok(carp::settle_timer(self.settings.hold_down_ms)),
        }
    }

    /// A hastd hook: the sync tracking records it. A `disconnect` of one of our resources
    /// (the peer's primary went away, and with it the secondary worker that held a promotion
    /// back) also retries a promotion that failed, when CARP still wants this host master and
    /// no settle timer is pending: otherwise a pair whose CARP settled while the old primary
    /// was still demoting (a flapping link) ends with nobody serving until the next CARP event.
    fn on_hook(&self, hook: &HastHook, host: &dyn Host) -> Result<Plan> {
        let plan = sync::on_hook(&self.settings, hook, host)?;
        let HastHook::Disconnect(resource) = hook else {
            return Ok(plan);
        };
        let refused = plan.is_none()
            && self.settings.resource(resource).is_some()
            && failure::earlier_promotion_failure(host).is_some();
        let why = format!(
            "HAST resource `{resource}`: the peer went away while CARP wants this host master \
             after a failed promotion; trying again"
        );
        Ok(self.decide_again(refused, &why, host)?.unwrap_or(plan))
    }

    /// A promotion that was refused or failed (`refused`), decided again when CARP still
    /// wants this host master and no settle timer is pending; logged with `why`. The failure
    /// is forgotten, so that the promotion is not held back by it. `None`: not now.
    fn decide_again(&self, refused: bool, why: &str, host: &dyn Host) -> Result<Option<Plan>> {
        let again = refused
            && !carp::settle_pending(host)
            && carp::current_target(&self.settings, host) == Some(Target::Master);
        if !again {
            return Ok(None);
        }
        host.log(LogLevel::Info, why);
        failure::forget_promotion_failure(host);
        self.converge(Target::Master, host).map(Some)
    }

    /// The peer link brought news: record what it says about our copy. A promotion refused
    /// because nothing was known is tried again once the peer is heard, if CARP still wants
    /// this host master (a lone host that booted first waits for its peer, as DRBD does).
    fn on_peer(&self, event: &PeerEvent, host: &dyn Host) -> Result<Plan> {
        sync::on_peer(&self.settings, event, host)?;
        if matches!(event, PeerEvent::Down | PeerEvent::FactsChanged(_))
            && let Some(plan) = witness::recheck_vouching(&self.settings, host)?
        {
            return Ok(plan);
        }
        if matches!(event, PeerEvent::FactsChanged(_)) {
            let plan = operator::move_away_in_maintenance(&self.settings, host)?;
            if !plan.is_none() {
                return Ok(plan);
            }
        }
        let refused = matches!(event, PeerEvent::FactsChanged(_))
            && sync::peer_heard_after_unknown_refusal(host);
        let why = "the peer is heard now; deciding the refused promotion again";
        Ok(self
            .decide_again(refused, why, host)?
            .unwrap_or_else(Plan::none))
    }

    /// The witness brought news (see `witness`): a demotion, or a refused promotion tried
    /// again when CARP still wants this host master and no settle timer is pending.
    fn on_witness(&self, event: &WitnessEvent, host: &dyn Host) -> Result<Plan> {
        match witness::on_witness(&self.settings, event, host)? {
            witness::Reaction::Act(plan) => Ok(plan),
            witness::Reaction::RetryPromotion => {
                let refused = failure::earlier_promotion_failure(host).is_some();
                let why = "the witness's leader key may be had now; deciding the refused \
                           promotion again";
                Ok(self
                    .decide_again(refused, why, host)?
                    .unwrap_or_else(Plan::none))
            }
            witness::Reaction::Nothing => Ok(Plan::none()),
        }
    }

    /// The settle timer and the witness's isolation timer are ours to act on.
    fn on_timer(&self, name: &str, host: &dyn Host) -> Result<Plan> {
        if name == SETTLE_TIMER {
            return self.settle(host);
        }
        if name == witness::ISOLATED_TIMER {
            return witness::on_isolated_timer(&self.settings, host);
        }
        host.log(LogLevel::Debug, &format!("ignoring unknown timer `{name}`"));
        Ok(Plan::none())
    }

    /// The hold-down is over: converge to the state CARP settled in.
    fn settle(&self, host: &dyn Host) -> Result<Plan> {
        match carp::settle(host)? {
            Some(target) => self.converge(target, host),
            None => Ok(Plan::none()),
        }
    }

    /// The daemon started or this policy was (re)loaded: converge to the current CARP state,
    /// without the hold-down, from the facts only. An interrupted step is not re-run as such;
    /// the convergence plans it again if, and only if, the machine still needs it. A restart or
    /// reload is a human's doing, so it also allows a failed promotion to be tried again.
    fn on_startup(&self, state: &StartupState, host: &dyn Host) -> Result<Plan> {
        if let Some(lost) = &state.state_lost {
            sync::on_state_lost(&self.settings, &lost.reason, host)?;
        }
        if let Some(interrupted) = &state.interrupted {
            let step = failure::describe(&interrupted.step.action);
            let message = format!("{step} was interrupted; converging from the current state");
            host.log(LogLevel::Info, &message);
        }
        failure::forget_promotion_failure(host);
        let target = carp::current_target(&self.settings, host);
        carp::restart(target, host)?;
        let demotion = operator::at_startup(&self.settings, host)?;
        match target {
            Some(target) => Ok(demotion.then(self.converge(target, host)?).build()),
            None => {
                host.log(
                    LogLevel::Info,
                    "CARP state unknown; no action until it is known",
                );
                Ok(Plan::none())
            }
        }
    }

    /// A step of one of our plans failed.
    fn on_step_failed(&self, failure: &StepFailure, host: &dyn Host) -> Result<Plan> {
        match failure::phase(&failure.step.action) {
            Phase::Promotion => {
                let demotion = plans::demote(&self.settings, host)?;
                Ok(failure::after_promotion(failure, demotion, host))
            }
            Phase::Demotion => Ok(failure::after_demotion(failure)),
            Phase::Other => self.after_other_failure(failure, host),
        }
    }

    /// A timer or alert step failed. If the settle timer could not be armed, the hold-down
    /// would never end and every later CARP event would only re-arm it: end it now instead.
    fn after_other_failure(&self, failure: &StepFailure, host: &dyn Host) -> Result<Plan> {
        let step = failure::describe(&failure.step.action);
        if matches!(&failure.step.action, Action::SetTimer(timer) if timer.name == SETTLE_TIMER) {
            let message = format!(
                "{step} failed: {}; acting on the settled CARP state now",
                failure.reason
            );
            let warning = Plan::builder().alert(AlertSeverity::Warning, message);
            return Ok(warning.then(self.settle(host)?).build());
        }
        if matches!(
            &failure.step.action,
            Action::DemoteCarp(_) | Action::LiftCarpDemotion(_)
        ) {
            let message = format!(
                "{step} failed: {}. CARP may not be where the operator asked: check it with \
                 `havenctl status`",
                failure.reason
            );
            return Ok(Plan::builder()
                .alert(AlertSeverity::Critical, message)
                .build());
        }
        host.log(
            LogLevel::Warn,
            &format!("{step} failed: {}", failure.reason),
        );
        Ok(Plan::none())
    }

    /// The plan that brings this host to `target` from where it is now.
    fn converge(&self, target: Target, host: &dyn Host) -> Result<Plan> {
        match target {
            Target::Master => self.promote(host),
            Target::Backup => plans::demote(&self.settings, host),
        }
    }

    /// Promote, unless the last promotion failed since the last CARP event (no retry loop), or
    /// the local copy is known to be incomplete (the sync refusal's alert is the plan then).
    fn promote(&self, host: &dyn Host) -> Result<Plan> {
        if let Some(reason) = failure::earlier_promotion_failure(host) {
            let message = format!(
                "not promoting: the last promotion failed ({reason}); waiting for the next CARP \
                 event"
            );
            host.log(LogLevel::Warn, &message);
            return Ok(Plan::none());
        }
        if let Some(refusal) = operator::maintenance_refusal(&self.settings, host)? {
            return Ok(refusal);
        }
        if let Some(refusal) = sync::refusal(&self.settings, None, host)? {
            return Ok(refusal);
        }
        self.promotion(host)
    }

    /// The promotion plan, after lifting this host's CARP demotion if one is held.
    fn promotion(&self, host: &dyn Host) -> Result<Plan> {
        let lift = operator::lift_held_demotion(&self.settings, host);
        Ok(lift.then(plans::promote(&self.settings, host)?).build())
    }

    /// An operator's request (see the README's "Operator requests").
    fn on_operator(&self, request: &OperatorRequest, host: &dyn Host) -> Result<Plan> {
        let command = request.ask.command();
        host.log(
            LogLevel::Info,
            &format!("operator (uid {}): `havenctl {command}`", request.uid),
        );
        match &request.ask {
            OperatorAsk::Switchover(_) => operator::switchover(&self.settings, "switchover", host),
            OperatorAsk::Maintenance(true) => operator::maintenance_on(&self.settings, host),
            OperatorAsk::Maintenance(false) => {
                let lift = operator::maintenance_off(&self.settings, host)?;
                let serve = match carp::current_target(&self.settings, host) {
                    Some(Target::Master) => {
                        failure::forget_promotion_failure(host);
                        self.promote(host)?
                    }
                    _ => Plan::none(),
                };
                Ok(lift.then(serve).build())
            }
            OperatorAsk::AcceptIncomplete(resource) => {
                self.accept_incomplete(resource, request.uid, host)
            }
        }
    }

    /// `havenctl promote --accept-incomplete <resource>`: promote now, although the resource's
    /// copy is not known to be complete, if CARP wants this host master and nothing else holds
    /// the promotion back. Valid for this decision only: nothing is kept.
    fn accept_incomplete(&self, resource: &str, uid: u32, host: &dyn Host) -> Result<Plan> {
        let command = format!("promote --accept-incomplete {resource}");
        if let Some(reason) = operator::nothing_to_accept(&self.settings, resource, host)? {
            let message = format!("`havenctl {command}` changes nothing: {reason}");
            return Ok(Plan::builder()
                .alert(AlertSeverity::Warning, message)
                .build());
        }
        if let Some(refusal) = operator::maintenance_refusal(&self.settings, host)? {
            return Ok(refusal);
        }
        failure::forget_promotion_failure(host);
        if let Some(refusal) = sync::refusal(&self.settings, Some(resource), host)? {
            return Ok(refusal);
        }
        let overridden = sync::describe_copy(resource, host)?;
        let message = format!(
            "promoting onto the local copy of HAST resource `{resource}` ({overridden}) on the \
             operator's word: `havenctl {command}` by uid {uid}"
        );
        let warning = Plan::builder().alert(AlertSeverity::Warning, message);
        Ok(warning.then(self.promotion(host)?).build())
    }
}
