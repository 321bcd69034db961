//! Building plans that read like the recipe they replace.
//!
//! ```
//! use haven_sdk::{HastRole, Plan};
//! let promote = Plan::builder()
//!     .wait_hast_worker_gone("test", HastRole::Secondary).timeout_ms(10_000)
//!     .set_hast_role("test", HastRole::Primary)
//!     .wait_for_device("/dev/hast/test").timeout_ms(30_000)
//!     .fsck("/dev/hast/test", "ufs")
//!     .mount("/dev/hast/test", "/hast/test", "ufs")
//!     .start_service("mysql-server")
//!     .build();
//! assert_eq!(promote.steps.len(), 6);
//! ```

use crate::{
    Action, Alert, AlertSeverity, FsckRequest, HastRole, HastWorker, MountRequest, Plan, ServiceOp,
    ServiceRequest, SetHastRole, Step, TimerRequest, UnmountRequest,
};

impl Plan {
    /// The empty plan: no action.
    pub fn none() -> Plan {
        Plan { steps: Vec::new() }
    }

    /// Start building a plan.
    pub fn builder() -> PlanBuilder {
        PlanBuilder::default()
    }

    /// True when the plan does nothing.
    pub fn is_none(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Step {
    /// A step with the daemon's default timeout for its kind.
    pub fn new(action: Action) -> Step {
        Step {
            action,
            timeout_ms: None,
        }
    }
}

/// Accumulates the steps of a [`Plan`] in order.
#[derive(Debug, Default, Clone)]
pub struct PlanBuilder {
    steps: Vec<Step>,
}

impl PlanBuilder {
    /// Append any step.
    pub fn step(mut self, action: Action) -> Self {
        self.steps.push(Step::new(action));
        self
    }

    /// Give the step just added a timeout. Does nothing on an empty builder.
    pub fn timeout_ms(mut self, timeout_ms: u32) -> Self {
        if let Some(last) = self.steps.last_mut() {
            last.timeout_ms = Some(timeout_ms);
        }
        self
    }

    /// Append every step of another plan.
    pub fn then(mut self, plan: Plan) -> Self {
        self.steps.extend(plan.steps);
        self
    }

    /// `hastctl role <role> <resource>`.
    pub fn set_hast_role(self, resource: &str, role: HastRole) -> Self {
        self.step(Action::SetHastRole(SetHastRole {
            resource: resource.into(),
            role,
        }))
    }

    /// Wait until a device node exists.
    pub fn wait_for_device(self, path: &str) -> Self {
        self.step(Action::WaitForDevice(path.into()))
    }

    /// Wait until no HAST worker for `resource` runs in `role`.
    pub fn wait_hast_worker_gone(self, resource: &str, role: HastRole) -> Self {
        self.step(Action::WaitHastWorkerGone(HastWorker {
            resource: resource.into(),
            role,
        }))
    }

    /// Check a filesystem, preening (fix what is safe without asking).
    pub fn fsck(self, device: &str, fstype: &str) -> Self {
        self.fsck_with(device, fstype, true)
    }

    /// Check a filesystem, choosing whether to preen.
    pub fn fsck_with(self, device: &str, fstype: &str, preen: bool) -> Self {
        self.step(Action::Fsck(FsckRequest {
            device: device.into(),
            fstype: fstype.into(),
            preen,
        }))
    }

    /// Mount a filesystem.
    pub fn mount(self, device: &str, mountpoint: &str, fstype: &str) -> Self {
        self.step(Action::Mount(MountRequest {
            device: device.into(),
            mountpoint: mountpoint.into(),
            fstype: fstype.into(),
        }))
    }

    /// Unmount a filesystem; `force` unmounts even with files open.
    pub fn unmount(self, mountpoint: &str, force: bool) -> Self {
        self.step(Action::Unmount(UnmountRequest {
            mountpoint: mountpoint.into(),
            force,
        }))
    }

    /// Start, stop or restart a service.
    pub fn service(self, name: &str, op: ServiceOp) -> Self {
        self.step(Action::Service(ServiceRequest {
            name: name.into(),
            op,
        }))
    }

    /// Start a service.
    pub fn start_service(self, name: &str) -> Self {
        self.service(name, ServiceOp::Start)
    }

    /// Stop a service.
    pub fn stop_service(self, name: &str) -> Self {
        self.service(name, ServiceOp::Stop)
    }

    /// Arm (or re-arm) a named timer.
    pub fn set_timer(self, name: &str, after_ms: u32) -> Self {
        self.step(Action::SetTimer(TimerRequest {
            name: name.into(),
            after_ms,
        }))
    }

    /// Cancel a named timer.
    pub fn cancel_timer(self, name: &str) -> Self {
        self.step(Action::CancelTimer(name.into()))
    }

    /// Make this host's CARP give `vhid` up to the peer and hold back (needs the vhid in
    /// `grants.carp-vhids`).
    pub fn demote_carp(self, vhid: u8) -> Self {
        self.step(Action::DemoteCarp(vhid))
    }

    /// Lift this host's CARP demotion of `vhid`.
    pub fn lift_carp_demotion(self, vhid: u8) -> Self {
        self.step(Action::LiftCarpDemotion(vhid))
    }

    /// Alert the operator.
    pub fn alert(self, severity: AlertSeverity, message: impl Into<String>) -> Self {
        self.step(Action::Alert(Alert {
            severity,
            message: message.into(),
        }))
    }

    /// Number of steps so far.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when no step was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan.
    pub fn build(self) -> Plan {
        Plan { steps: self.steps }
    }
}
