//! `havenctl switchover`, `maintenance on|off` and `promote --accept-incomplete`: an
//! operator's request handed to havend as an event, then followed until it is answered.
//!
//! The decision stays with the policies: havend checks the request (a peer named with `--to`
//! is the peer, a resource is granted, no plan is running), keeps a maintenance change on
//! disk, and queues the request. This module then watches havend's status (never its
//! internals): each policy's decision on the request, each step of the plan as it runs, with
//! its time, and for a switchover the peer's facts until the peer reports itself serving.

use haven_core::OperatorAsk;
use haven_core::text::escape;
use haven_daemon::control::{self, Request, Response};
use haven_daemon::journal::DecisionOutcome;
use haven_daemon::status::Status;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the status is read while following a request (an operator's view, not a
/// synchronisation: each read is complete in itself).
const POLL: Duration = Duration::from_millis(100);

/// What went wrong with a request, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("havend refused: {0}")]
    Refused(String),
    #[error("havend's answer is not what havenctl expects: {0}")]
    Unexpected(String),
    #[error("{0}")]
    TimedOut(String),
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The policies acted (and, for a switchover, the peer serves).
    Done,
    /// A policy refused or failed, or alerted critically: why, as the last such line said.
    /// A policy's refusal is an alert (the contract has no "refused" answer), so its warning
    /// alerts count as a refusal when they say `refused` or `changes nothing`, as the seed
    /// policy's do; its other warnings (e.g. "promoting … on the operator's word") do not.
    NotDone(String),
}

fn status(control_dir: &Path) -> Result<Status, OperateError> {
    match control::send(control_dir, &Request::Status, STATUS_TIMEOUT)? {
        Response::Ok { body } => serde_json::from_value(body)
            .map_err(|error| OperateError::Unexpected(error.to_string())),
        Response::Error { message } => Err(OperateError::Refused(message)),
    }
}

/// Send `ask`, print what the policies decided and each step as it runs, and for a switchover
/// wait (up to `wait`) until the peer reports itself serving. Lines go to `out`.
pub fn request(
    control_dir: &Path,
    ask: OperatorAsk,
    wait: Duration,
    out: &mut dyn FnMut(String),
) -> Result<Ending, OperateError> {
    let started = Instant::now();
    let stamp = |started: Instant| format!("{:>7.3} s", started.elapsed().as_secs_f64());
    let before = status(control_dir)?;
    let mut alerts_seen = before.alerts_total;
    let response = control::send(
        control_dir,
        &Request::Operator { ask: ask.clone() },
        STATUS_TIMEOUT,
    )?;
    let event_id = match response {
        Response::Ok { body } => body
            .get("event-id")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| OperateError::Unexpected(format!("no event id in {body}")))?,
        Response::Error { message } => return Err(OperateError::Refused(message)),
    };
    out(format!(
        "{} `havenctl {}` queued as event {event_id}",
        stamp(started),
        escape(&ask.command())
    ));
    let deadline = started + wait;
    let mut ending = Ending::Done;
    let mut seen_decisions = 0;
    let mut seen_steps: Vec<(u64, u32)> = Vec::new();
    loop {
        let now = status(control_dir)?;
        let decisions: Vec<_> = now
            .last_decisions
            .iter()
            .filter(|decision| decision.event_id == event_id)
            .collect();
        for decision in decisions.iter().skip(seen_decisions) {
            let what = match decision.outcome {
                DecisionOutcome::NoAction => "no action".to_owned(),
                DecisionOutcome::Plan => format!("plan {}", decision.plan_id.unwrap_or(0)),
                DecisionOutcome::Refused => {
                    let why = format!("the plan was refused: {}", decision.detail.join("; "));
                    ending = Ending::NotDone(escape(&why).into_owned());
                    "plan refused by the grants".to_owned()
                }
                DecisionOutcome::Failed => {
                    let why = format!("the policy failed: {}", decision.detail.join("; "));
                    ending = Ending::NotDone(escape(&why).into_owned());
                    "failed".to_owned()
                }
            };
            out(format!(
                "{} policy {}: {what}",
                stamp(started),
                escape(&decision.policy)
            ));
            for line in &decision.detail {
                out(format!("            {}", escape(line)));
            }
        }
        seen_decisions = decisions.len().max(seen_decisions);
        // The last `new` of the kept alerts are those raised since the last look.
        let new =
            usize::try_from(now.alerts_total.saturating_sub(alerts_seen)).unwrap_or(usize::MAX);
        let skip = now.alerts.len().saturating_sub(new);
        for alert in now.alerts.iter().skip(skip) {
            if alert.severity == "critical"
                || alert.message.contains("refused")
                || alert.message.contains("changes nothing")
            {
                ending = Ending::NotDone(escape(&alert.message).into_owned());
            }
            out(format!(
                "{} alert ({}): {}",
                stamp(started),
                escape(&alert.severity),
                escape(&alert.message)
            ));
        }
        alerts_seen = alerts_seen.max(now.alerts_total);
        let plans: Vec<u64> = decisions.iter().filter_map(|d| d.plan_id).collect();
        for step in now
            .last_steps
            .iter()
            .filter(|step| plans.contains(&step.plan_id))
        {
            let key = (step.plan_id, step.index);
            if seen_steps.contains(&key) {
                continue;
            }
            seen_steps.push(key);
            let how = match (step.ok, step.already_done) {
                (true, true) => "already done".to_owned(),
                (true, false) => format!("done in {} ms", step.duration_ms),
                (false, _) => format!("FAILED after {} ms", step.duration_ms),
            };
            out(format!(
                "{} plan {} step {} {how}: {}",
                stamp(started),
                step.plan_id,
                step.index,
                escape(&step.step)
            ));
        }
        // Decided, and every plan decided on the request ended.
        let last_plan = decisions
            .iter()
            .filter_map(|decision| decision.plan_id)
            .max();
        let ended = match (last_plan, now.last_plan_end) {
            (None, _) => true,
            (Some(plan), Some(end)) => end.plan_id >= plan,
            (Some(_), None) => false,
        };
        if seen_decisions > 0 && ended && now.running.is_none() {
            if let (Some(plan), Some(end)) = (last_plan, now.last_plan_end)
                && end.plan_id == plan
                && !end.completed
                && ending == Ending::Done
            {
                ending = Ending::NotDone(format!(
                    "plan {plan} stopped at a failed step; see `havenctl status` and `havenctl log`"
                ));
            }
            // This host gave the service up: the request ends when the peer serves.
            let handed_over = decisions.iter().flat_map(|d| d.detail.iter()).any(|step| {
                step.starts_with("service stop")
                    || step.starts_with("unmount")
                    || (step.starts_with("hast-role") && step.contains(" secondary"))
            });
            if !handed_over || ending != Ending::Done {
                return Ok(ending);
            }
            if let Some(host) = peer_serving(&now) {
                out(format!(
                    "{} the peer ({}) reports itself serving",
                    stamp(started),
                    escape(&host)
                ));
                return Ok(Ending::Done);
            }
        }
        if Instant::now() >= deadline {
            return Err(OperateError::TimedOut(format!(
                "after {} s the request has not ended; see `havenctl status`",
                wait.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// The peer's name if its last facts say it serves: every CARP vhid master, every HAST
/// resource primary, every service running, and no plan running.
pub fn peer_serving(status: &Status) -> Option<String> {
    let facts = status.peer.as_ref()?.state.facts.as_ref()?;
    let serving = !facts.carp.is_empty()
        && facts
            .carp
            .iter()
            .all(|carp| carp.state == haven_core::CarpState::Master)
        && facts
            .hast
            .iter()
            .all(|hast| hast.role == haven_core::HastRole::Primary)
        && facts.services.iter().all(|service| service.running)
        && facts.running_plan.is_none();
    serving.then(|| facts.host.clone())
}
