//! Haven's live rig: the seed recipe's two-host HA pair, built for real on one Linux machine
//! (network namespaces with their own mounts, ucarp, an ext4 loop device behind a HAST
//! stand-in, MariaDB, havend), and what the failover scenarios, the live demo and the crash
//! benchmark share. Linux only, as root.
//!
//! - [`rig`]: the pair itself ([`rig::Rig`]), booted, crashed, partitioned and inspected;
//! - [`crash`]: the master crash with a writing client, timed (test, demo and benchmark);
//! - [`ns`]: one machine of the rig (its namespaces and processes);
//! - [`disk`]: the shared ext4 disk with MariaDB's datadir;
//! - [`mariadb`]: each host's MariaDB configuration, the client that writes and probes;
//! - [`hast_standin`]: what the rig says to the HAST stand-in (`hastd`, `hastctl` binaries);
//! - [`seed_script`]: the seed's `carp-hast-switch` shell script, for comparison;
//! - [`log`]: the timeline of everything the rig's daemons print;
//! - [`bins`]: where the binaries and scripts are.

pub mod bins;
pub mod crash;
pub mod disk;
pub mod hast_standin;
pub mod log;
pub mod mariadb;
pub mod ns;
pub mod rig;
pub mod seed_script;
pub mod switchover;

use std::fmt;
use std::process::Command;

/// What went wrong building or driving the rig, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RigError(String);

impl RigError {
    pub fn new(message: impl Into<String>) -> RigError {
        RigError(message.into())
    }

    /// The same error, said to have happened in `context`.
    pub fn context(self, context: &str) -> RigError {
        RigError(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for RigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RigError {}

/// Run `command` to its end: its stdout, or an error naming it, its status and its stderr.
pub fn command_output(command: &mut Command) -> Result<String, RigError> {
    let line = format!("{command:?}");
    let output = command
        .output()
        .map_err(|error| RigError::new(format!("cannot run {line}: {error}")))?;
    stdout_of(&line, output)
}

/// The stdout of a finished program, or an error naming `what`, its status and its stderr.
fn stdout_of(what: &str, output: std::process::Output) -> Result<String, RigError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(RigError::new(format!(
            "{what}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Whether the rig can run here: Linux, as root. Tests skip (and say so) when it cannot.
pub fn can_run() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("the rig needs Linux".to_owned());
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err("the rig needs root (network and mount namespaces, loop devices)".to_owned());
    }
    for program in [
        "ucarp",
        "mariadbd",
        "mariadb-install-db",
        "unshare",
        "nsenter",
        "setpriv",
    ] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
            .unwrap_or(false)
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|dir| std::path::Path::new(dir).join(program).is_file());
        if !found {
            return Err(format!(
                "{program} is not installed (apt-get install ucarp mariadb-server)"
            ));
        }
    }
    Ok(())
}
