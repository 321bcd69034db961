//! Startup reconciliation: what the machine looks like, read from the system, not remembered.
//!
//! A daemon restarted in the middle of an incident must decide from facts. At start (and
//! whenever a source says events may have been missed) the daemon reads:
//!
//! - **CARP**: on FreeBSD from `ifconfig` (`carp: MASTER vhid 1 ...`); on Linux, where ucarp
//!   and keepalived keep no state a program can ask for, a configured shared address
//!   (`[[carp]]`) present on its interface means this host is master.
//! - **HAST**: one `hastctl list`, when the hastctl source is configured.
//! - **Devices**: `/dev/hast/<resource>` for each granted resource.
//! - **Mounts**: `/proc/self/mountinfo` on Linux, `mount -p` on FreeBSD.
//! - **Services**: each granted service's status command (rc.d, systemd or SysV).
//!
//! It runs the same programs as the executor's steps (`[executor.tools]` and
//! `service-manager`), and reads the resources and services granted to the policies in force
//! at each reading, so a reload that grants a new service has it read from then on.
//!
//! What cannot be read is kept from the model as it was, and reported: a reading that fails
//! must not make the daemon believe, say, that nothing is mounted.

use haven_core::{CarpAddress, Config, Machine};
use haven_executor::probe::{self, ServiceManager};
use haven_executor::{Platform, tools::Tools};
use haven_runtime::LoadedPolicy;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one service status command may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the CARP state comes from.
#[derive(Debug, Clone)]
enum CarpReading {
    /// FreeBSD's `ifconfig`.
    Ifconfig,
    /// The shared addresses of `[[carp]]` (Linux).
    Addresses(Vec<CarpAddress>),
    /// Nothing to read (no `[[carp]]` on Linux): keep what the model has.
    Nothing,
}

/// What a reading covers beyond CARP and mounts: the HAST resources and services granted to
/// the policies in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Granted {
    pub hast_resources: BTreeSet<String>,
    pub services: BTreeSet<String>,
}

impl Granted {
    /// What `policies` are granted, together.
    pub fn of(policies: &[LoadedPolicy]) -> Granted {
        let mut granted = Granted::default();
        for policy in policies {
            let grants = &policy.config.grants;
            granted
                .hast_resources
                .extend(grants.hast_resources.iter().cloned());
            granted.services.extend(grants.services.iter().cloned());
        }
        granted
    }
}

/// Reads the machine for one config's restart-only sections (`[[carp]]`, `[sources]`,
/// `[executor]`); what to read of HAST and services comes from the policies' grants.
#[derive(Debug, Clone)]
pub struct Reconciler {
    carp: CarpReading,
    hastctl: Option<(PathBuf, Duration)>,
    tools: Tools,
    service_manager: Result<ServiceManager, String>,
}

impl Reconciler {
    /// What to read for `config`.
    pub fn new(config: &Config) -> Reconciler {
        let carp = if cfg!(target_os = "freebsd") {
            CarpReading::Ifconfig
        } else if config.carp.is_empty() {
            CarpReading::Nothing
        } else {
            CarpReading::Addresses(config.carp.clone())
        };
        let platform = Platform::current();
        let service_manager = match platform {
            Some(platform) => ServiceManager::resolve(platform, config.executor.service_manager)
                .map_err(|error| error.to_string()),
            None => Err(format!(
                "no service manager is known on {}",
                std::env::consts::OS
            )),
        };
        Reconciler {
            carp,
            hastctl: config.sources.hastctl.as_ref().map(|hastctl| {
                (
                    hastctl.program.clone(),
                    Duration::from_millis(hastctl.timeout_ms),
                )
            }),
            tools: Tools::resolve(platform.unwrap_or(Platform::Linux), &config.executor.tools),
            service_manager,
        }
    }

    /// The machine as the system shows it now, starting from `previous` for what cannot be
    /// read; and a message for each reading that failed. HAST devices and services are read
    /// for what `policies` are granted.
    pub fn read(&self, previous: &Machine, policies: &[LoadedPolicy]) -> (Machine, Vec<String>) {
        let granted = Granted::of(policies);
        let mut machine = previous.clone();
        let mut problems = Vec::new();

        let carp = match &self.carp {
            CarpReading::Ifconfig => probe::read_carp_ifconfig().map(Some),
            CarpReading::Addresses(addresses) => probe::local_addresses()
                .map(|present| Some(probe::carp_from_addresses(addresses, &present))),
            CarpReading::Nothing => Ok(None),
        };
        match carp {
            Ok(Some(carp)) => {
                machine.carp = carp
                    .into_iter()
                    .map(|status| (status.vhid, status))
                    .collect();
            }
            Ok(None) => {}
            Err(error) => problems.push(format!("CARP state: {error}")),
        }

        if let Some((program, timeout)) = &self.hastctl {
            match crate::sources::hastctl_poller::poll_once(program, *timeout) {
                Ok(statuses) => {
                    machine.hast = statuses
                        .into_iter()
                        .map(|status| (status.resource.clone(), status))
                        .collect();
                }
                Err(error) => problems.push(format!("HAST status: {error}")),
            }
        }

        for resource in &granted.hast_resources {
            let device = format!("/dev/hast/{resource}");
            if Path::new(&device).exists() {
                machine.devices.insert(device);
            } else {
                machine.devices.remove(&device);
            }
        }

        match probe::read_mounts(&self.tools) {
            Ok(mounts) => {
                machine.mounts = mounts
                    .into_iter()
                    .map(|mount| (mount.mountpoint.clone(), mount))
                    .collect();
            }
            Err(error) => problems.push(format!("mounts: {error}")),
        }

        for service in &granted.services {
            let running = match &self.service_manager {
                Ok(manager) => {
                    probe::service_running(*manager, &self.tools, service, SERVICE_TIMEOUT)
                        .map_err(|error| error.to_string())
                }
                Err(error) => Err(error.clone()),
            };
            match running {
                Ok(running) => {
                    machine.services.insert(service.clone(), running);
                }
                Err(error) => problems.push(format!("service `{service}`: {error}")),
            }
        }

        for problem in &problems {
            tracing::warn!(%problem, "cannot read part of the machine's state; keeping the model's");
        }
        (machine, problems)
    }
}
