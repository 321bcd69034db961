//! The programs the executors and the probes run, as absolute paths: `[executor.tools]` over
//! each platform's defaults. One table, so that a step and the daemon's own reading of the
//! machine (startup reconciliation) run the same `service`, `systemctl` and `mount`.

use crate::system::Platform;
use haven_core::ExecutorTools;
use std::path::PathBuf;

/// The programs an executor runs, as absolute paths: `[executor.tools]` over the platform's
/// defaults (see [`ExecutorTools`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub hastctl: PathBuf,
    pub drbdadm: PathBuf,
    pub mount: PathBuf,
    pub umount: PathBuf,
    pub fsck: PathBuf,
    pub service: PathBuf,
    pub systemctl: PathBuf,
    pub ps: PathBuf,
    pub ifconfig: PathBuf,
}

impl Tools {
    /// The platform's default paths.
    pub fn defaults(platform: Platform) -> Tools {
        let path = PathBuf::from;
        match platform {
            Platform::FreeBsd => Tools {
                hastctl: path("/sbin/hastctl"),
                drbdadm: path("/usr/local/sbin/drbdadm"),
                mount: path("/sbin/mount"),
                umount: path("/sbin/umount"),
                fsck: path("/sbin/fsck"),
                service: path("/usr/sbin/service"),
                systemctl: path("/usr/bin/systemctl"),
                ps: path("/bin/ps"),
                ifconfig: path("/sbin/ifconfig"),
            },
            Platform::Linux => Tools {
                hastctl: path("/usr/local/sbin/hastctl"),
                drbdadm: path("/usr/sbin/drbdadm"),
                mount: path("/usr/bin/mount"),
                umount: path("/usr/bin/umount"),
                fsck: path("/usr/sbin/fsck"),
                service: path("/usr/sbin/service"),
                systemctl: path("/usr/bin/systemctl"),
                ps: path("/usr/bin/ps"),
                ifconfig: path("/usr/sbin/ifconfig"),
            },
        }
    }

    /// The platform's defaults with the configured paths put in.
    pub fn resolve(platform: Platform, configured: &ExecutorTools) -> Tools {
        let defaults = Tools::defaults(platform);
        let pick = |set: &Option<PathBuf>, default: PathBuf| set.clone().unwrap_or(default);
        Tools {
            hastctl: pick(&configured.hastctl, defaults.hastctl),
            drbdadm: pick(&configured.drbdadm, defaults.drbdadm),
            mount: pick(&configured.mount, defaults.mount),
            umount: pick(&configured.umount, defaults.umount),
            fsck: pick(&configured.fsck, defaults.fsck),
            service: pick(&configured.service, defaults.service),
            systemctl: pick(&configured.systemctl, defaults.systemctl),
            ps: pick(&configured.ps, defaults.ps),
            ifconfig: pick(&configured.ifconfig, defaults.ifconfig),
        }
    }
}
