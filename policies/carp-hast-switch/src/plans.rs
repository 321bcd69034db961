//! Building the plans that converge this host to master (promotion) or to backup (demotion)
//! from the machine's current state.
//!
//! This module exists so that every plan is computed from facts, not from a remembered
//! script position: each step is planned only if a query shows it is still needed. That makes
//! both plans idempotent, so they are safe to compute again after a restart, a failed step, or
//! a hold-down that ends in the state we are already in.
//!
//! Should a query be refused (not granted), the plan cannot be computed and the error says
//! which grant is missing.

use crate::settings::{Resource, Settings};
use haven_sdk::{Error, HastRole, Host, Plan, PlanBuilder, Result};

/// The recipe's `master` branch, minus what is already done: per resource, in order, take the
/// primary role, wait for the device, check and mount the filesystem; then start the services
/// in order.
pub fn promote(settings: &Settings, host: &dyn Host) -> Result<Plan> {
    let mut plan = Plan::builder();
    for resource in &settings.resources {
        plan = promote_resource(plan, settings, resource, host)?;
    }
    for service in &settings.services {
        if !host.service_running(service)? {
            plan = plan
                .start_service(service)
                .timeout_ms(settings.timeouts.service);
        }
    }
    Ok(plan.build())
}

/// The recipe's `slave` branch, minus what is already done: stop the services in reverse
/// order; then per resource unmount the filesystem and take the secondary role. A failed
/// unmount stops the plan, so the role is never set secondary under a mounted filesystem.
pub fn demote(settings: &Settings, host: &dyn Host) -> Result<Plan> {
    let timeouts = &settings.timeouts;
    let mut plan = Plan::builder();
    for service in settings.services.iter().rev() {
        if host.service_running(service)? {
            plan = plan.stop_service(service).timeout_ms(timeouts.service);
        }
    }
    for resource in &settings.resources {
        if holds_mount(resource, host)? {
            plan = plan
                .unmount(&resource.mountpoint, settings.force_unmount)
                .timeout_ms(timeouts.mount);
        }
        if host.hast_status(&resource.name)?.role != HastRole::Secondary {
            plan = plan
                .set_hast_role(&resource.name, HastRole::Secondary)
                .timeout_ms(timeouts.role);
        }
    }
    Ok(plan.build())
}

/// One resource's promotion steps. The recipe's fixed `sleep 3` and `pgrep` loop become a wait
/// for the secondary worker to exit: hastd refuses the primary role while it runs.
fn promote_resource(
    mut plan: PlanBuilder,
    settings: &Settings,
    resource: &Resource,
    host: &dyn Host,
) -> Result<PlanBuilder> {
    let timeouts = &settings.timeouts;
    let device = resource.device();
    let takes_role = host.hast_status(&resource.name)?.role != HastRole::Primary;
    if takes_role {
        plan = plan
            .wait_hast_worker_gone(&resource.name, HastRole::Secondary)
            .timeout_ms(timeouts.worker_gone)
            .set_hast_role(&resource.name, HastRole::Primary)
            .timeout_ms(timeouts.role);
    }
    if takes_role || !host.device_exists(&device)? {
        plan = plan.wait_for_device(&device).timeout_ms(timeouts.device);
    }
    if !holds_mount(resource, host)? {
        plan = plan
            .fsck(&device, &resource.fstype)
            .timeout_ms(timeouts.fsck)
            .mount(&device, &resource.mountpoint, &resource.fstype)
            .timeout_ms(timeouts.mount);
    }
    Ok(plan)
}

/// Whether the resource's device is mounted at its mountpoint. Something else mounted there is
/// an error: mounting over it or unmounting it could both hurt, and only a human knows which.
fn holds_mount(resource: &Resource, host: &dyn Host) -> Result<bool> {
    let device = resource.device();
    match host.mounted(&resource.mountpoint)? {
        None => Ok(false),
        Some(mount) if mount.device == device => Ok(true),
        Some(mount) => Err(Error::new(format!(
            "{} has {} mounted, not {device} of HAST resource `{}`; unmount it or fix the \
             settings",
            resource.mountpoint, mount.device, resource.name
        ))),
    }
}
