//! What a step of this policy's plans means when it fails (or was interrupted): which
//! convergence it belonged to, how to name it to an operator, and what to do next.
//!
//! This module exists because a failed promotion and a failed demotion call for opposite
//! answers. A promotion that fails halfway leaves this host holding some of the resources with
//! the services down: the safe answer is to give everything back (demote) and wait for the
//! next CARP event rather than retry in a loop. A demotion that fails halfway may leave this
//! host still writing to the data while the peer takes over: no automatic step can make that
//! safe, so a human is called.

use haven_sdk::{Action, AlertSeverity, HastRole, Host, LogLevel, Plan, ServiceOp, StepFailure};

/// kv: why the last promotion failed; while present, nothing promotes again until the next
/// CARP event (or a restart or reload, which are a human's doing).
const PROMOTION_FAILED: &str = "promotion-failed";

/// Which convergence a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking the resources: set role primary, wait for worker or device, fsck, mount, start.
    Promotion,
    /// Giving them back: stop, unmount, set role secondary.
    Demotion,
    /// Neither: timers and alerts.
    Other,
}

/// The phase a planned action belongs to.
pub fn phase(action: &Action) -> Phase {
    match action {
        Action::SetHastRole(set) => match set.role {
            HastRole::Primary => Phase::Promotion,
            HastRole::Secondary => Phase::Demotion,
            HastRole::Init => Phase::Other,
        },
        Action::WaitForDevice(_)
        | Action::WaitHastWorkerGone(_)
        | Action::Fsck(_)
        | Action::Mount(_) => Phase::Promotion,
        Action::Service(service) => match service.op {
            ServiceOp::Start | ServiceOp::Restart => Phase::Promotion,
            ServiceOp::Stop => Phase::Demotion,
        },
        Action::Unmount(_) => Phase::Demotion,
        Action::SetTimer(_)
        | Action::CancelTimer(_)
        | Action::Alert(_)
        | Action::DemoteCarp(_)
        | Action::LiftCarpDemotion(_) => Phase::Other,
    }
}

/// An action as an operator would recognise it, mostly the command it stands for.
pub fn describe(action: &Action) -> String {
    match action {
        Action::SetHastRole(set) => {
            format!("`hastctl role {} {}`", set.role.as_str(), set.resource)
        }
        Action::WaitForDevice(path) => format!("waiting for {path} to appear"),
        Action::WaitHastWorkerGone(worker) => format!(
            "waiting for the {} worker of `{}` to exit",
            worker.role.as_str(),
            worker.resource
        ),
        Action::Fsck(fsck) => format!("`fsck -t {} {}`", fsck.fstype, fsck.device),
        Action::Mount(mount) => format!(
            "`mount -t {} {} {}`",
            mount.fstype, mount.device, mount.mountpoint
        ),
        Action::Unmount(unmount) => {
            let flag = if unmount.force { "-f " } else { "" };
            format!("`umount {flag}{}`", unmount.mountpoint)
        }
        Action::Service(service) => {
            let op = match service.op {
                ServiceOp::Start => "onestart",
                ServiceOp::Stop => "onestop",
                ServiceOp::Restart => "onerestart",
            };
            format!("`service {} {op}`", service.name)
        }
        Action::SetTimer(timer) => format!("arming timer `{}`", timer.name),
        Action::CancelTimer(name) => format!("cancelling timer `{name}`"),
        Action::Alert(_) => "an alert".to_owned(),
        Action::DemoteCarp(vhid) => format!("demoting CARP vhid {vhid}"),
        Action::LiftCarpDemotion(vhid) => format!("lifting the demotion of CARP vhid {vhid}"),
    }
}

/// A promotion step failed: remember why, so nothing promotes again before the next CARP
/// event, and answer with an alert followed by `demotion`, the plan that gives back whatever
/// the failed promotion took. Failing to remember is logged, never allowed to stop the
/// demotion.
pub fn after_promotion(failure: &StepFailure, demotion: Plan, host: &dyn Host) -> Plan {
    if let Err(error) = host.kv_set(PROMOTION_FAILED, &failure.reason) {
        host.log(
            LogLevel::Error,
            &format!("could not record the failed promotion: {error}"),
        );
    }
    let message = format!(
        "promotion failed at {}: {}; demoting",
        describe(&failure.step.action),
        failure.reason
    );
    Plan::builder()
        .alert(AlertSeverity::Critical, message)
        .then(demotion)
        .build()
}

/// A demotion step failed: the rest of that plan did not run, so this host may still hold the
/// resource. Only a human can tell whether the peer may take it over.
pub fn after_demotion(failure: &StepFailure) -> Plan {
    let message = format!(
        "demotion failed at {}: {}. This host may still hold the HAST resources (services \
         running, filesystem mounted or role primary): a human must look before the peer uses \
         the data. Nothing more is done automatically.",
        describe(&failure.step.action),
        failure.reason
    );
    Plan::builder()
        .alert(AlertSeverity::Critical, message)
        .build()
}

/// Why the last promotion failed, if no CARP event came since.
pub fn earlier_promotion_failure(host: &dyn Host) -> Option<String> {
    host.kv_get(PROMOTION_FAILED)
}

/// Allow promotion again: a new CARP event, restart or reload is a new decision.
pub fn forget_promotion_failure(host: &dyn Host) {
    host.kv_remove(PROMOTION_FAILED);
}
