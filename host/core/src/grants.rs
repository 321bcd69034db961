//! What a policy may touch, and the check every plan passes before anything runs.
//!
//! A policy names resources, mountpoints and services in its steps and queries; the operator's
//! grants in `haven.toml` say which of those it may name. A plan with one step outside its
//! grants is refused whole. Because a step's arguments must equal granted strings exactly, and
//! grants are validated when the config is read ([`crate::names`]), nothing a policy invents
//! ever reaches a command line.

use crate::config::Limits;
use crate::names::check_name;
use crate::text::{clip, escape};
use crate::types::{
    Action, FsckRequest, HastWorker, MountRequest, Plan, ServiceRequest, SetHastRole, Step,
    TimerRequest, UnmountRequest,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One filesystem a policy may check, mount and unmount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MountGrant {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// A policy's grants: the `[policy.grants]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Grants {
    /// HAST resources whose role it may set and whose status it may read.
    #[serde(default)]
    pub hast_resources: BTreeSet<String>,
    /// Filesystems it may check, mount and unmount.
    #[serde(default)]
    pub mounts: Vec<MountGrant>,
    /// Services it may start, stop and query.
    #[serde(default)]
    pub services: BTreeSet<String>,
    /// How many timers it may have armed at once.
    #[serde(default)]
    pub timers: u32,
    /// CARP vhids it may demote and lift the demotion of (each must be a `[[carp]]` entry's).
    #[serde(default)]
    pub carp_vhids: BTreeSet<u8>,
}

/// What a refused step or query lacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("HAST resource `{0}` is not in grants.hast-resources")]
    HastResource(String),
    #[error("mount of `{device}` on `{mountpoint}` as {fstype} is not in grants.mounts")]
    Mount {
        device: String,
        mountpoint: String,
        fstype: String,
    },
    #[error("fsck of `{device}` as {fstype} is not in grants.mounts")]
    Fsck { device: String, fstype: String },
    #[error("mountpoint `{0}` is not in grants.mounts")]
    Mountpoint(String),
    #[error("device `{0}` is neither in grants.mounts nor a granted HAST resource's device")]
    Device(String),
    #[error("service `{0}` is not in grants.services")]
    Service(String),
    #[error("CARP vhid {0} is not in grants.carp-vhids")]
    CarpVhid(u8),
    #[error("timer `{name}` would be armed timer number {wanted}, over grants.timers = {limit}")]
    Timers {
        name: String,
        wanted: usize,
        limit: u32,
    },
    #[error("{0}")]
    TimerName(String),
    #[error("{what} of {value} ms is over limits.{limit_key} = {limit}")]
    OverLimit {
        what: &'static str,
        value: u32,
        limit_key: &'static str,
        limit: u32,
    },
}

/// How much of a refused step, and of what it lacked, a refusal shows: they hold a policy's
/// text, and the refusal is journaled with every event that repeats it.
const MAX_SHOWN_BYTES: usize = 512;

/// Why a plan was refused: the first step outside the grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "step {index} `{}` refused: {}",
    escape(&clip(&step.to_string(), MAX_SHOWN_BYTES)),
    escape(&clip(&missing.to_string(), MAX_SHOWN_BYTES))
)]
pub struct PlanRefusal {
    /// Position of the refused step, from 0.
    pub index: usize,
    /// The refused step.
    pub step: Box<Step>,
    /// The grant it lacked.
    pub missing: Missing,
}

/// The device node HAST gives a resource in role primary.
pub fn hast_device(resource: &str) -> String {
    format!("/dev/hast/{resource}")
}

/// A step's timeout and a timer's delay, against the policy's limits.
fn check_step_limits(step: &Step, limits: &Limits) -> Result<(), Missing> {
    let over = |what, value, limit_key, limit| {
        Err(Missing::OverLimit {
            what,
            value,
            limit_key,
            limit,
        })
    };
    if let Some(timeout) = step.timeout_ms
        && timeout > limits.max_step_timeout_ms
    {
        return over(
            "timeout",
            timeout,
            "max-step-timeout-ms",
            limits.max_step_timeout_ms,
        );
    }
    if let Action::SetTimer(TimerRequest { after_ms, .. }) = &step.action
        && *after_ms > limits.max_timer_ms
    {
        return over(
            "timer delay",
            *after_ms,
            "max-timer-ms",
            limits.max_timer_ms,
        );
    }
    Ok(())
}

impl Grants {
    /// Check every step of a plan against the grants and the policy's limits (a step's
    /// timeout, a timer's delay). `armed_timers` are the policy's timers armed now; timers the
    /// plan arms and cancels are counted in step order.
    pub fn check_plan(
        &self,
        plan: &Plan,
        armed_timers: &BTreeSet<String>,
        limits: &Limits,
    ) -> Result<(), PlanRefusal> {
        let mut timers = armed_timers.clone();
        for (index, step) in plan.steps.iter().enumerate() {
            check_step_limits(step, limits)
                .and_then(|()| self.check_action(&step.action, &mut timers))
                .map_err(|missing| PlanRefusal {
                    index,
                    step: Box::new(step.clone()),
                    missing,
                })?;
        }
        Ok(())
    }

    fn check_action(&self, action: &Action, timers: &mut BTreeSet<String>) -> Result<(), Missing> {
        match action {
            Action::SetHastRole(SetHastRole { resource, .. })
            | Action::WaitHastWorkerGone(HastWorker { resource, .. }) => self.hast(resource),
            Action::WaitForDevice(path) => self.device(path),
            Action::Fsck(FsckRequest { device, fstype, .. }) => {
                if self
                    .mounts
                    .iter()
                    .any(|grant| &grant.device == device && &grant.fstype == fstype)
                {
                    Ok(())
                } else {
                    Err(Missing::Fsck {
                        device: device.clone(),
                        fstype: fstype.clone(),
                    })
                }
            }
            Action::Mount(MountRequest {
                device,
                mountpoint,
                fstype,
            }) => {
                let wanted = MountGrant {
                    device: device.clone(),
                    mountpoint: mountpoint.clone(),
                    fstype: fstype.clone(),
                };
                if self.mounts.contains(&wanted) {
                    Ok(())
                } else {
                    Err(Missing::Mount {
                        device: wanted.device,
                        mountpoint: wanted.mountpoint,
                        fstype: wanted.fstype,
                    })
                }
            }
            Action::Unmount(UnmountRequest { mountpoint, .. }) => self.mountpoint(mountpoint),
            Action::Service(ServiceRequest { name, .. }) => self.service(name),
            Action::SetTimer(TimerRequest { name, .. }) => {
                check_name("timer", name).map_err(Missing::TimerName)?;
                timers.insert(name.clone());
                if timers.len() > self.timers as usize {
                    return Err(Missing::Timers {
                        name: name.clone(),
                        wanted: timers.len(),
                        limit: self.timers,
                    });
                }
                Ok(())
            }
            Action::CancelTimer(name) => {
                check_name("timer", name).map_err(Missing::TimerName)?;
                timers.remove(name);
                Ok(())
            }
            Action::Alert(_) => Ok(()),
            Action::DemoteCarp(vhid) | Action::LiftCarpDemotion(vhid) => self.carp_vhid(*vhid),
        }
    }

    /// May the policy demote this CARP vhid?
    pub fn carp_vhid(&self, vhid: u8) -> Result<(), Missing> {
        if self.carp_vhids.contains(&vhid) {
            Ok(())
        } else {
            Err(Missing::CarpVhid(vhid))
        }
    }

    /// May the policy set the role of, or query, this HAST resource?
    pub fn hast(&self, resource: &str) -> Result<(), Missing> {
        if self.hast_resources.contains(resource) {
            Ok(())
        } else {
            Err(Missing::HastResource(resource.to_owned()))
        }
    }

    /// May the policy unmount, or query, this mountpoint?
    pub fn mountpoint(&self, mountpoint: &str) -> Result<(), Missing> {
        if self
            .mounts
            .iter()
            .any(|grant| grant.mountpoint == mountpoint)
        {
            Ok(())
        } else {
            Err(Missing::Mountpoint(mountpoint.to_owned()))
        }
    }

    /// May the policy wait for, or query, this device node?
    pub fn device(&self, path: &str) -> Result<(), Missing> {
        let granted_mount = self.mounts.iter().any(|grant| grant.device == path);
        let granted_hast = path
            .strip_prefix("/dev/hast/")
            .is_some_and(|resource| self.hast_resources.contains(resource));
        if granted_mount || granted_hast {
            Ok(())
        } else {
            Err(Missing::Device(path.to_owned()))
        }
    }

    /// May the policy start, stop, or query this service?
    pub fn service(&self, name: &str) -> Result<(), Missing> {
        if self.services.contains(name) {
            Ok(())
        } else {
            Err(Missing::Service(name.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants {
            hast_resources: ["test".to_owned()].into(),
            mounts: vec![MountGrant {
                device: "/dev/hast/test".into(),
                mountpoint: "/hast/test".into(),
                fstype: "ufs".into(),
            }],
            services: ["mysql-server".to_owned()].into(),
            timers: 1,
            carp_vhids: [1].into(),
        }
    }

    fn plan(lines: &[&str]) -> Plan {
        Plan {
            steps: lines.iter().map(|line| line.parse().unwrap()).collect(),
        }
    }

    fn refusal(lines: &[&str]) -> Option<String> {
        grants()
            .check_plan(&plan(lines), &BTreeSet::new(), &Limits::default())
            .err()
            .map(|refusal| refusal.to_string())
    }

    #[test]
    fn the_seed_promotion_is_allowed() {
        assert_eq!(
            refusal(&[
                "wait-worker-gone test secondary",
                "hast-role test primary",
                "wait-device /dev/hast/test",
                "fsck ufs /dev/hast/test preen",
                "mount ufs /dev/hast/test /hast/test",
                "service start mysql-server",
                "set-timer settle 100",
                "alert warning done",
            ]),
            None
        );
    }

    #[test]
    fn one_step_outside_refuses_the_plan_naming_step_and_grant() {
        let cases = [
            (
                vec!["hast-role other primary"],
                "step 0 `hast-role other primary` refused: HAST resource `other`",
            ),
            (
                vec!["service start sshd"],
                "service `sshd` is not in grants.services",
            ),
            (
                vec!["mount ufs /dev/hast/test /mnt"],
                "mount of `/dev/hast/test` on `/mnt` as ufs",
            ),
            (
                vec!["mount ext4 /dev/hast/test /hast/test"],
                "mount of `/dev/hast/test` on `/hast/test` as ext4",
            ),
            (
                vec!["fsck ext4 /dev/hast/test"],
                "fsck of `/dev/hast/test` as ext4",
            ),
            (
                vec!["unmount /", "service start mysql-server"],
                "mountpoint `/` is not in grants.mounts",
            ),
            (vec!["wait-device /dev/sda"], "device `/dev/sda`"),
            (
                vec!["set-timer a 1", "set-timer b 1"],
                "step 1 `set-timer b 1` refused: timer `b` would be armed timer number 2",
            ),
        ];
        for (lines, expected) in cases {
            let refusal = refusal(&lines).unwrap_or_default();
            assert!(refusal.contains(expected), "{lines:?}: {refusal}");
        }
    }

    #[test]
    fn timers_count_what_is_armed_after_cancels() {
        assert_eq!(
            refusal(&["set-timer a 1", "cancel-timer a", "set-timer b 1"]),
            None
        );
        assert_eq!(refusal(&["set-timer a 1", "set-timer a 2"]), None);
        let armed: BTreeSet<String> = ["a".to_owned()].into();
        assert!(
            grants()
                .check_plan(&plan(&["set-timer b 1"]), &armed, &Limits::default())
                .is_err()
        );
    }

    #[test]
    fn limits_refuse_long_step_timeouts_and_timer_delays() {
        assert_eq!(
            refusal(&["service start mysql-server timeout=4294967295"]).unwrap(),
            "step 0 `service start mysql-server timeout=4294967295` refused: timeout of \
             4294967295 ms is over limits.max-step-timeout-ms = 3600000"
        );
        assert_eq!(
            refusal(&["set-timer settle 86400001"]).unwrap(),
            "step 0 `set-timer settle 86400001` refused: timer delay of 86400001 ms is over \
             limits.max-timer-ms = 86400000"
        );
        assert_eq!(
            refusal(&[
                "service start mysql-server timeout=3600000",
                "set-timer settle 86400000"
            ]),
            None
        );
    }

    #[test]
    fn timer_names_are_checked_like_every_name() {
        for name in ["a\nb", "-x", "\u{1b}[31m", &"t".repeat(65)] {
            let step = Step {
                action: Action::SetTimer(TimerRequest {
                    name: name.to_owned(),
                    after_ms: 1,
                }),
                timeout_ms: None,
            };
            let plan = Plan { steps: vec![step] };
            let refused = grants().check_plan(&plan, &BTreeSet::new(), &Limits::default());
            assert!(
                matches!(
                    refused,
                    Err(PlanRefusal {
                        missing: Missing::TimerName(_),
                        ..
                    })
                ),
                "{name:?}: {refused:?}"
            );
            let cancel = Plan {
                steps: vec![Step {
                    action: Action::CancelTimer(name.to_owned()),
                    timeout_ms: None,
                }],
            };
            assert!(
                grants()
                    .check_plan(&cancel, &BTreeSet::new(), &Limits::default())
                    .is_err()
            );
        }
    }

    #[test]
    fn hast_device_of_granted_resource_is_a_granted_device() {
        let mut grants = grants();
        grants.mounts.clear();
        assert!(grants.device(&hast_device("test")).is_ok());
        assert!(grants.device("/dev/hast/other").is_err());
    }
}
