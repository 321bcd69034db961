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
//! What cannot be read is kept from the model as it was, and reported: a reading that fails
//! must not make the daemon believe, say, that nothing is mounted.

use haven_core::{CarpAddress, Config, Machine};
use haven_executor::probe::{self, ServiceManager};
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

/// Reads the machine for one config.
#[derive(Debug, Clone)]
pub struct Reconciler {
    carp: CarpReading,
    hastctl: Option<(PathBuf, Duration)>,
    hast_resources: BTreeSet<String>,
    services: BTreeSet<String>,
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
        let granted = |f: fn(&haven_core::Grants) -> Vec<String>| {
            config
                .policies
                .iter()
                .flat_map(|policy| f(&policy.grants))
                .collect::<BTreeSet<String>>()
        };
        Reconciler {
            carp,
            hastctl: config.sources.hastctl.as_ref().map(|hastctl| {
                (
                    hastctl.program.clone(),
                    Duration::from_millis(hastctl.timeout_ms),
                )
            }),
            hast_resources: granted(|grants| grants.hast_resources.iter().cloned().collect()),
            services: granted(|grants| grants.services.iter().cloned().collect()),
            service_manager: ServiceManager::detect().map_err(|error| error.to_string()),
        }
    }

    /// The machine as the system shows it now, starting from `previous` for what cannot be
    /// read; and a message for each reading that failed.
    pub fn read(&self, previous: &Machine) -> (Machine, Vec<String>) {
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
            match crate::hastctl_poller::poll_once(program, *timeout) {
                Ok(statuses) => {
                    machine.hast = statuses
                        .into_iter()
                        .map(|status| (status.resource.clone(), status))
                        .collect();
                }
                Err(error) => problems.push(format!("HAST status: {error}")),
            }
        }

        for resource in &self.hast_resources {
            let device = format!("/dev/hast/{resource}");
            if Path::new(&device).exists() {
                machine.devices.insert(device);
            } else {
                machine.devices.remove(&device);
            }
        }

        match probe::read_mounts() {
            Ok(mounts) => {
                machine.mounts = mounts
                    .into_iter()
                    .map(|mount| (mount.mountpoint.clone(), mount))
                    .collect();
            }
            Err(error) => problems.push(format!("mounts: {error}")),
        }

        for service in &self.services {
            let running = match &self.service_manager {
                Ok(manager) => probe::service_running(*manager, service, SERVICE_TIMEOUT)
                    .map_err(|error| error.to_string()),
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
