//! The policy's settings: the `[policy.settings]` table of `haven.toml`, which the daemon hands
//! over as JSON.
//!
//! This module exists so that everything the operator can get wrong is caught in one place,
//! when the policy is loaded, with a message naming the setting, rather than halfway through a
//! failover. The rest of the crate may then take the settings as sound.

use haven_sdk::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeSet;

/// What the operator configures. See the crate's README for the table as it is written in
/// `haven.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// CARP vhid whose state changes this policy follows.
    #[serde(default)]
    pub vhid: Option<u8>,
    /// Legacy carp(4) pseudo-interface (e.g. `carp0`) whose link events this policy follows.
    #[serde(default)]
    pub carp_interface: Option<String>,
    /// Services started in this order on promotion and stopped in reverse on demotion.
    #[serde(default)]
    pub services: Vec<String>,
    /// How long after acting on a CARP change further changes only settle (milliseconds;
    /// 0 turns the hold-down off).
    #[serde(default = "default_hold_down_ms")]
    pub hold_down_ms: u32,
    /// Unmount with `umount -f`, as the recipe did.
    #[serde(default = "default_force_unmount")]
    pub force_unmount: bool,
    /// Promote even onto a local copy known to be incomplete. An operator's override.
    #[serde(default)]
    pub allow_unsynchronised_promotion: bool,
    /// What to do when the peer link is configured but nothing is known about the local
    /// copy: the peer was never heard and no record survives.
    #[serde(default)]
    pub unknown_copy: UnknownCopy,
    /// Deadlines of the steps this policy plans.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The HAST resources to switch, in the order they are promoted and demoted.
    pub resources: Vec<Resource>,
}

/// What an unknown copy means (see the README's "What each host knows").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownCopy {
    /// Refuse to promote, with a critical alert: safe, and a human decides.
    #[default]
    Refuse,
    /// Promote, with a warning: availability first, at the risk of serving old data.
    Promote,
}

/// Step deadlines, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Timeouts {
    /// Waiting for the secondary worker to exit before taking the primary role.
    pub worker_gone: u32,
    /// Waiting for `/dev/hast/<resource>` to appear.
    pub device: u32,
    /// `fsck` of the resource's filesystem; large filesystems take long.
    pub fsck: u32,
    /// `mount` and `umount`.
    pub mount: u32,
    /// Starting or stopping one service.
    pub service: u32,
    /// `hastctl role`.
    pub role: u32,
}

/// One HAST resource and the filesystem on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Resource {
    /// Resource name, as in hast.conf.
    pub name: String,
    /// Device node of the primary's provider; `/dev/hast/<name>` when not given.
    #[serde(default)]
    device: Option<String>,
    /// Where the filesystem is mounted.
    pub mountpoint: String,
    /// Filesystem type, for `fsck -t` and `mount -t`.
    pub fstype: String,
}

fn default_hold_down_ms() -> u32 {
    5_000
}

fn default_force_unmount() -> bool {
    true
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            worker_gone: 10_000,
            device: 30_000,
            fsck: 600_000,
            mount: 60_000,
            service: 120_000,
            role: 30_000,
        }
    }
}

impl Timeouts {
    /// Each timeout with its name in the settings, for validation messages.
    fn named(&self) -> [(&'static str, u32); 6] {
        [
            ("worker-gone", self.worker_gone),
            ("device", self.device),
            ("fsck", self.fsck),
            ("mount", self.mount),
            ("service", self.service),
            ("role", self.role),
        ]
    }
}

impl Settings {
    /// The configured resource called `name`, if any.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|resource| resource.name == name)
    }

    /// Check everything that can be checked without the machine. The error lists every
    /// problem found, so the operator fixes them in one go.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        self.check_carp(&mut problems);
        self.check_resources(&mut problems);
        for service in &self.services {
            check_name("service", service, &mut problems);
        }
        report_duplicates(
            "service",
            self.services.iter().map(String::as_str),
            &mut problems,
        );
        for (name, value) in self.timeouts.named() {
            if value == 0 {
                problems.push(format!("timeouts.{name} must be more than 0 ms"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(format!(
                "invalid settings: {}",
                problems.join("; ")
            )))
        }
    }

    /// There must be something to follow, and it must be a real vhid or interface name.
    fn check_carp(&self, problems: &mut Vec<String>) {
        if self.vhid.is_none() && self.carp_interface.is_none() {
            problems.push(
                "give `vhid` or `carp-interface` (or both): there is nothing to follow".into(),
            );
        }
        if self.vhid == Some(0) {
            problems.push("vhid must be between 1 and 255".into());
        }
        if let Some(interface) = &self.carp_interface {
            check_name("carp-interface", interface, problems);
        }
    }

    /// At least one resource, each sound, and no two sharing a name, device or mountpoint:
    /// two resources on one device or mountpoint would undo each other's steps.
    fn check_resources(&self, problems: &mut Vec<String>) {
        if self.resources.is_empty() {
            problems.push("resources must name at least one HAST resource".into());
        }
        for resource in &self.resources {
            resource.check(problems);
        }
        let devices: Vec<String> = self.resources.iter().map(Resource::device).collect();
        let names = self.resources.iter().map(|resource| resource.name.as_str());
        let mountpoints = self
            .resources
            .iter()
            .map(|resource| resource.mountpoint.as_str());
        report_duplicates("resource name", names, problems);
        report_duplicates("device", devices.iter().map(String::as_str), problems);
        report_duplicates("mountpoint", mountpoints, problems);
    }
}

impl Resource {
    /// The device node the resource's filesystem lives on.
    pub fn device(&self) -> String {
        self.device
            .clone()
            .unwrap_or_else(|| format!("/dev/hast/{}", self.name))
    }

    /// The name must work in `/dev/hast/<name>`, the paths must be absolute (the daemon runs
    /// commands from no particular directory), and the filesystem type must be named.
    fn check(&self, problems: &mut Vec<String>) {
        check_name("resource name", &self.name, problems);
        check_path("device", &self.device(), problems);
        check_path("mountpoint", &self.mountpoint, problems);
        if self.fstype.trim().is_empty() {
            problems.push(format!(
                "resource `{}`: fstype must not be empty",
                self.name
            ));
        }
    }
}

/// A name must be non-empty and free of whitespace and `/`.
fn check_name(what: &str, name: &str, problems: &mut Vec<String>) {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
        problems.push(format!(
            "{what} `{name}` is not valid: it is empty or contains whitespace or `/`"
        ));
    }
}

/// A path must be absolute.
fn check_path(what: &str, path: &str, problems: &mut Vec<String>) {
    if !path.starts_with('/') {
        problems.push(format!(
            "{what} `{path}` must be an absolute path (start with `/`)"
        ));
    }
}

/// Report each value that occurs more than once, once.
fn report_duplicates<'a>(
    what: &str,
    values: impl IntoIterator<Item = &'a str>,
    problems: &mut Vec<String>,
) {
    let mut seen = BTreeSet::new();
    let repeated: BTreeSet<&str> = values
        .into_iter()
        .filter(|value| !seen.insert(*value))
        .collect();
    for value in repeated {
        problems.push(format!("{what} `{value}` appears more than once"));
    }
}
