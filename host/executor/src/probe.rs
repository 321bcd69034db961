//! Reading the machine's state from the system: mounts, addresses, CARP and services.
//!
//! A daemon restarted in the middle of an incident must decide from facts, not from what its
//! journal says it did: a mount may have been undone by hand, a vhid may have flapped while it
//! was down, a service may have died. At startup (and after a plan, to see what it changed)
//! the daemon asks the system directly:
//!
//! - **Mounts**: [`read_mounts`] reads `/proc/self/mountinfo` on Linux ([`parse_mountinfo`])
//!   and runs `mount -p` on FreeBSD ([`parse_mount_p`]).
//! - **CARP on FreeBSD**: [`read_carp_ifconfig`] runs `/sbin/ifconfig` and reads its
//!   `carp: MASTER vhid 1 advbase 1 advskew 0` lines ([`parse_ifconfig_carp`]).
//! - **Shared addresses on Linux** (ucarp, keepalived): [`local_addresses`] lists the
//!   addresses configured on each interface and [`carp_from_addresses`] turns the configured
//!   [`CarpAddress`]es into vhid states (an address that is here makes its vhid master).
//! - **Services**: [`service_running`] asks the service manager ([`ServiceManager`]: rc(8),
//!   systemd or SysV init) whether a service runs, after checking its name.
//!
//! Commands run through [`crate::command::run`] (no shell, cleared environment, deadline).
//! Parsers are strict: a line they cannot read is an error naming the line and quoting it,
//! rather than a mount or a vhid silently missing from the picture.

use crate::command::{self, CommandError, excerpt};
use crate::tools::Tools;
use haven_core::names::check_name;
use haven_core::{CarpAddress, CarpState, CarpStatus, MountStatus};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Linux's list of the calling process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// FreeBSD's ifconfig(8), run without arguments.
pub const IFCONFIG: &str = "/sbin/ifconfig";

/// The deadline for `mount -p` and `ifconfig`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the machine's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A command could not be run, or overran its deadline (the error names the program).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A command ended with a non-zero status (or was killed by a signal).
    #[error("`{command}` ended with {status}; stderr: {stderr_excerpt:?}")]
    Exit {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The start of its stderr, trimmed (see [`crate::command::excerpt`]).
        stderr_excerpt: String,
    },
    /// A command's output is not UTF-8.
    #[error("the output of `{command}` is not valid UTF-8: {text_excerpt:?}")]
    NotUtf8 {
        /// The command line.
        command: String,
        /// The start of the output, invalid bytes replaced.
        text_excerpt: String,
    },
    /// A line of a file or of a command's output could not be read.
    #[error("{origin}, line {line_number}: {reason}: {line:?}")]
    Malformed {
        /// Where the text came from: a file or a command line.
        origin: String,
        /// The 1-based line number.
        line_number: usize,
        /// The line (at most [`crate::command::EXCERPT_LIMIT`] bytes of it).
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `getifaddrs(3)` failed.
    #[error("cannot list the network interfaces' addresses (getifaddrs): {source}")]
    Interfaces {
        /// What the system said.
        #[source]
        source: nix::errno::Errno,
    },
    /// A service name that may not reach a command line (see
    /// [`haven_core::names::check_name`]); nothing was run.
    #[error("{message}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why it was refused, quoting the name.
        message: String,
    },
    /// This operating system has no way (known to Haven) to read this.
    #[error("reading {what} is not supported on {os}")]
    Unsupported {
        /// What was to be read.
        what: &'static str,
        /// [`std::env::consts::OS`].
        os: &'static str,
    },
}

fn malformed(
    origin: &str,
    line_number: usize,
    line: &str,
    reason: impl Into<String>,
) -> ProbeError {
    ProbeError::Malformed {
        origin: origin.to_owned(),
        line_number,
        line: excerpt(line),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------- mounts

/// Decode the octal escapes the kernel (and fstab(5)) use for white space and backslashes in
/// names: `\040` space, `\011` tab, `\012` newline, `\134` backslash (any `\` and three octal
/// digits, in fact). A backslash not followed by three octal digits stays as it is.
fn unescape_octal(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'));
            // `\400` and up do not fit a byte: keep such text as it is.
            if let Ok(byte) = u8::try_from(value) {
                decoded.push(byte);
                i += 4;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Parse Linux's `/proc/<pid>/mountinfo` (proc(5)): one mount per line,
///
/// ```text
/// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
/// ```
///
/// that is mount id, parent id, `major:minor`, root, mountpoint, mount options, zero or more
/// optional fields, a `-`, the filesystem type, the source and the superblock options. The
/// mountpoint and the source have white space and backslashes escaped in octal (`\040`),
/// which is decoded. Mounts come in the kernel's order, so a mount stacked on the same
/// mountpoint comes after the one it hides. Empty lines are skipped; any other line that
/// does not have this shape is an error naming it.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountStatus>, ProbeError> {
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| malformed(MOUNTINFO, index + 1, line, reason);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(separator) = fields.iter().position(|field| *field == "-") else {
            return Err(bad("no `-` separator before the filesystem type"));
        };
        if separator < 6 {
            return Err(bad(
                "fewer than 6 fields (id, parent, major:minor, root, mountpoint, options) before `-`",
            ));
        }
        if fields.len() < separator + 3 {
            return Err(bad("no filesystem type and source after `-`"));
        }
        let numeric = |field: &str| !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
        if !numeric(fields[0]) || !numeric(fields[1]) {
            return Err(bad("the mount id and the parent id are not numbers"));
        }
        if !fields[2]
            .split_once(':')
            .is_some_and(|(major, minor)| numeric(major) && numeric(minor))
        {
            return Err(bad("the device is not major:minor"));
        }
        if !fields[4].starts_with('/') {
            return Err(bad("the mountpoint is not an absolute path"));
        }
        mounts.push(MountStatus {
            device: unescape_octal(fields[separator + 2]),
            mountpoint: unescape_octal(fields[4]),
            fstype: unescape_octal(fields[separator + 1]),
        });
    }
    Ok(mounts)
}

/// Parse FreeBSD's `mount -p` output: the mounted filesystems in fstab(5) format, one per
/// line,
///
/// ```text
/// /dev/ada0p2             /                       ufs     rw              1 1
/// ```
///
/// that is device, mountpoint, filesystem type, options, dump and pass, separated by tabs and
/// spaces. White space in names may be escaped in octal (`\040`), which is decoded. Older
/// mount(8)s print names as they are; since they pad short names with tabs, a line with more
/// than six white-space separated fields is read again split at tabs (so `map -hosts`, the
/// autofs source, is one device), and is an error if that does not give the six fields
/// either. Empty lines and `#` comments are skipped.
pub fn parse_mount_p(text: &str) -> Result<Vec<MountStatus>, ProbeError> {
    const ORIGIN: &str = "/sbin/mount -p";
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields: Vec<&str> = trimmed.split_whitespace().collect();
        if fields.len() > 6 {
            // device, mountpoint, type, options, then "dump pass" (tab-separated from the
            // options, space-separated from each other).
            let by_tabs: Vec<&str> = trimmed
                .split('\t')
                .map(str::trim)
                .filter(|field| !field.is_empty())
                .collect();
            let plain = |field: &str| !field.contains(char::is_whitespace);
            if let [device, mountpoint, fstype, options, numbers] = by_tabs[..]
                && plain(fstype)
                && plain(options)
                && numbers.split_whitespace().count() == 2
            {
                fields = vec![device, mountpoint, fstype, options];
                fields.extend(numbers.split_whitespace());
            }
        }
        let bad = |reason: &str| malformed(ORIGIN, index + 1, line, reason);
        match fields[..] {
            [device, mountpoint, fstype, _options, ..] if fields.len() <= 6 => {
                if !mountpoint.starts_with('/') {
                    return Err(bad("the mountpoint is not an absolute path"));
                }
                if fields[4..].iter().any(|n| n.parse::<u32>().is_err()) {
                    return Err(bad("dump and pass are not numbers"));
                }
                mounts.push(MountStatus {
                    device: unescape_octal(device),
                    mountpoint: unescape_octal(mountpoint),
                    fstype: unescape_octal(fstype),
                });
            }
            _ if fields.len() > 6 => {
                return Err(bad(
                    "more than 6 fields (device, mountpoint, type, options, dump, pass): \
                     white space in a name?",
                ));
            }
            _ => {
                return Err(bad(
                    "fewer than 4 fields (device, mountpoint, type, options)",
                ));
            }
        }
    }
    Ok(mounts)
}

/// The mounted filesystems: on Linux from `/proc/self/mountinfo`, on FreeBSD from
/// `mount -p` (`tools.mount`, deadline [`READ_TIMEOUT`]); [`ProbeError::Unsupported`]
/// elsewhere.
pub fn read_mounts(tools: &Tools) -> Result<Vec<MountStatus>, ProbeError> {
    #[cfg(target_os = "linux")]
    {
        let _no_program_needed = tools;
        let bytes = std::fs::read(MOUNTINFO).map_err(|source| ProbeError::Read {
            path: PathBuf::from(MOUNTINFO),
            source,
        })?;
        // The kernel escapes white space and backslashes but not other bytes; a name that is
        // not UTF-8 cannot equal a configured (UTF-8) path, so replacing its bytes loses
        // nothing and keeps one odd mount from hiding all the others.
        parse_mountinfo(&String::from_utf8_lossy(&bytes))
    }
    #[cfg(target_os = "freebsd")]
    {
        let text = run_for_text(&tools.mount, &["-p"], READ_TIMEOUT)?;
        parse_mount_p(&text)
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        Err(ProbeError::Unsupported {
            what: "mounts",
            os: std::env::consts::OS,
        })
    }
}

/// Run a command that must succeed and print UTF-8.
fn run_for_text(program: &Path, args: &[&str], timeout: Duration) -> Result<String, ProbeError> {
    let output = command::run(program, args, timeout, &|| false)?;
    if !output.success() {
        return Err(ProbeError::Exit {
            command: command::command_line(program, args),
            status: output.status,
            stderr_excerpt: output.stderr_excerpt(),
        });
    }
    String::from_utf8(output.stdout).map_err(|error| ProbeError::NotUtf8 {
        command: command::command_line(program, args),
        text_excerpt: excerpt(&String::from_utf8_lossy(error.as_bytes())),
    })
}

// ------------------------------------------------------------------------------------ CARP

/// Parse FreeBSD's `ifconfig` output for CARP (carp(4), sbin/ifconfig/ifcarp.c): each
/// interface starts with an unindented header line, `em0: flags=8843<UP,…> metric 0 mtu
/// 1500`, followed by indented lines; each vhid on the interface has a line (indented with a
/// tab)
///
/// ```text
///     carp: MASTER vhid 1 advbase 1 advskew 0
/// ```
///
/// (the state is `INIT`, `BACKUP` or `MASTER`; a `key "…"` may follow, and newer ifconfigs
/// print a `peer … peer6 …` line after it). Other lines, including `vrrp:` lines, are
/// ignored. A `carp:` line with an unknown state or a vhid that is not 1-255, or one before
/// any interface, is an error naming it. The result is in ifconfig's order.
pub fn parse_ifconfig_carp(text: &str) -> Result<Vec<CarpStatus>, ProbeError> {
    const ORIGIN: &str = "/sbin/ifconfig";
    let mut interface: Option<&str> = None;
    let mut statuses = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let bad = |reason: &str| malformed(ORIGIN, index + 1, line, reason);
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            // A header: `<name>: flags=…`.
            let Some((name, _)) = line.split_once(':') else {
                return Err(bad("an interface header without `:`"));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad("an interface header without an interface name"));
            }
            interface = Some(name);
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("carp:") {
            continue;
        }
        let Some(interface) = interface else {
            return Err(bad("a carp line before any interface"));
        };
        let state = match words.next() {
            Some("INIT") => CarpState::Init,
            Some("BACKUP") => CarpState::Backup,
            Some("MASTER") => CarpState::Master,
            _ => return Err(bad("the CARP state is not INIT, BACKUP or MASTER")),
        };
        if words.next() != Some("vhid") {
            return Err(bad("no `vhid` after the state"));
        }
        let vhid = match words.next().map(str::parse::<u8>) {
            Some(Ok(vhid)) if vhid > 0 => vhid,
            _ => return Err(bad("the vhid is not a number from 1 to 255")),
        };
        statuses.push(CarpStatus {
            vhid,
            interface: interface.to_owned(),
            state,
        });
    }
    Ok(statuses)
}

/// The CARP vhids on this machine and their states, from `/sbin/ifconfig` (FreeBSD; deadline
/// [`READ_TIMEOUT`]).
pub fn read_carp_ifconfig() -> Result<Vec<CarpStatus>, ProbeError> {
    let text = run_for_text(Path::new(IFCONFIG), &[], READ_TIMEOUT)?;
    parse_ifconfig_carp(&text)
}

/// Every address configured on this machine, as `(interface, address)` pairs (IPv4 and IPv6;
/// IPv6 scope ids are not kept), from `getifaddrs(3)`.
pub fn local_addresses() -> Result<BTreeSet<(String, IpAddr)>, ProbeError> {
    let addresses =
        nix::ifaddrs::getifaddrs().map_err(|source| ProbeError::Interfaces { source })?;
    let mut present = BTreeSet::new();
    for entry in addresses {
        let Some(address) = entry.address else {
            continue;
        };
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = address.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        present.insert((entry.interface_name, ip));
    }
    Ok(present)
}

/// The state of each configured vhid, judged from the addresses present (ucarp and
/// keepalived add a vhid's shared addresses on becoming master and remove them otherwise):
/// one status per vhid, in the order vhids first appear in `configured`, on the interface of
/// its first address; [`CarpState::Master`] when every address configured for the vhid is on
/// its interface, else [`CarpState::Backup`] (half the addresses is not enough to act as
/// master: the peer may still hold the others).
pub fn carp_from_addresses(
    configured: &[CarpAddress],
    present: &BTreeSet<(String, IpAddr)>,
) -> Vec<CarpStatus> {
    let mut statuses: Vec<CarpStatus> = Vec::new();
    for address in configured {
        let here = present.contains(&(address.interface.clone(), address.address));
        match statuses
            .iter_mut()
            .find(|status| status.vhid == address.vhid)
        {
            Some(status) => {
                if !here {
                    status.state = CarpState::Backup;
                }
            }
            None => statuses.push(CarpStatus {
                vhid: address.vhid,
                interface: address.interface.clone(),
                state: if here {
                    CarpState::Master
                } else {
                    CarpState::Backup
                },
            }),
        }
    }
    statuses
}

// -------------------------------------------------------------------------------- services

/// How services are asked whether they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceManager {
    /// FreeBSD's rc(8): `/usr/sbin/service <name> onestatus` (`one`: also for services not
    /// enabled in rc.conf, as the seed's MySQL is).
    Rc,
    /// systemd: `/usr/bin/systemctl is-active --quiet <name>`.
    Systemd,
    /// SysV init scripts through `/usr/sbin/service <name> status`.
    SysV,
}

impl ServiceManager {
    /// This machine's: [`Rc`](ServiceManager::Rc) on FreeBSD; on Linux
    /// [`Systemd`](ServiceManager::Systemd) when systemd runs (`/run/systemd/system` is a
    /// directory, as sd_booted(3) checks), else [`SysV`](ServiceManager::SysV);
    /// [`ProbeError::Unsupported`] elsewhere.
    pub fn detect() -> Result<ServiceManager, ProbeError> {
        #[cfg(target_os = "freebsd")]
        {
            Ok(ServiceManager::Rc)
        }
        #[cfg(target_os = "linux")]
        {
            if Path::new("/run/systemd/system").is_dir() {
                Ok(ServiceManager::Systemd)
            } else {
                Ok(ServiceManager::SysV)
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
        {
            Err(ProbeError::Unsupported {
                what: "services",
                os: std::env::consts::OS,
            })
        }
    }

    /// The program (from `tools`) and arguments that ask whether `name` runs: exit status 0
    /// means it does. `name` is not checked here; [`service_running`] and the executor's
    /// service steps check it.
    pub fn status_command<'t>(self, tools: &'t Tools, name: &'t str) -> (&'t Path, Vec<&'t str>) {
        match self {
            ServiceManager::Rc => (&tools.service, vec![name, "onestatus"]),
            ServiceManager::Systemd => (&tools.systemctl, vec!["is-active", "--quiet", name]),
            ServiceManager::SysV => (&tools.service, vec![name, "status"]),
        }
    }
}

/// Whether the service `name` runs, as `manager` says: exit status 0 → `true`, any other exit
/// status → `false`. A name that fails [`check_name`] is refused before anything runs; a
/// program that cannot be run, overruns `timeout` or is killed by a signal is an error.
pub fn service_running(
    manager: ServiceManager,
    tools: &Tools,
    name: &str,
    timeout: Duration,
) -> Result<bool, ProbeError> {
    check_name("service", name).map_err(|message| ProbeError::BadName {
        name: name.to_owned(),
        message,
    })?;
    let (program, args) = manager.status_command(tools, name);
    let output = command::run(program, &args, timeout, &|| false)?;
    if output.success() {
        return Ok(true);
    }
    if output.status.code().is_some() {
        return Ok(false);
    }
    Err(ProbeError::Exit {
        command: command::command_line(program, &args),
        status: output.status,
        stderr_excerpt: output.stderr_excerpt(),
    })
}
