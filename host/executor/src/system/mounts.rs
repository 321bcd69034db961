//! Devices and filesystems: `wait-device`, `fsck`, `mount` and `unmount`.
//!
//! What is mounted is read before each step: on Linux from `/proc/self/mountinfo`, on FreeBSD
//! from `mount -p` (the configured mount(8)), with the strict parsers of [`crate::probe`].

use super::{Done, POLL_INTERVAL, Platform, StepRun, exit_failure, human, processes};
use crate::command::command_line;
use crate::probe::{self, MOUNTINFO};
use haven_core::{FsckRequest, MountRequest, MountStatus, UnmountRequest};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest a forced unmount waits for the processes it killed to die.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How many times a forced unmount kills the processes holding the mountpoint before it
/// gives up (a process that keeps coming back).
const KILL_ROUNDS: u32 = 3;

/// What is mounted now.
fn read_mounts(run: &mut StepRun<'_>) -> Result<Vec<MountStatus>, String> {
    match run.platform() {
        Platform::Linux => {
            let bytes =
                fs::read(MOUNTINFO).map_err(|error| format!("cannot read {MOUNTINFO}: {error}"))?;
            probe::parse_mountinfo(&String::from_utf8_lossy(&bytes)).map_err(|e| e.to_string())
        }
        Platform::FreeBsd => {
            let mount = &run.tools().mount;
            let output = run.probe(mount, &["-p"])?;
            if !output.success() {
                return Err(exit_failure(&command_line(mount, &["-p"]), &output, None));
            }
            probe::parse_mount_p(&String::from_utf8_lossy(&output.stdout))
                .map_err(|e| e.to_string())
        }
    }
}

/// The device number of a device node.
fn rdev(path: &str) -> Option<u64> {
    let meta = fs::metadata(path).ok()?;
    let kind = meta.file_type();
    (kind.is_block_device() || kind.is_char_device()).then(|| meta.rdev())
}

/// A device a step names, resolved once to compare it with every mount's source.
struct Device<'a> {
    path: &'a str,
    real: Option<PathBuf>,
    rdev: Option<u64>,
}

impl<'a> Device<'a> {
    fn new(path: &'a str) -> Device<'a> {
        Device {
            path,
            real: fs::canonicalize(path).ok(),
            rdev: rdev(path),
        }
    }

    /// Whether a mount's source is this device: the same path, the same path once symbolic
    /// links are resolved (`/dev/vg/data` and `/dev/mapper/vg-data`), or the same device node.
    fn is(&self, source: &str) -> bool {
        if source == self.path {
            return true;
        }
        if !source.starts_with('/') {
            return false;
        }
        if self.real.is_some() && fs::canonicalize(source).ok() == self.real {
            return true;
        }
        self.rdev.is_some() && rdev(source) == self.rdev
    }
}

/// What is mounted on `mountpoint` (as given, or with symbolic links resolved): the last
/// mount there, the one on top.
fn mounted_on<'m>(mounts: &'m [MountStatus], mountpoint: &str) -> Option<&'m MountStatus> {
    let real = fs::canonicalize(mountpoint).ok();
    mounts.iter().rev().find(|mount| {
        mount.mountpoint == mountpoint || real.as_deref() == Some(Path::new(&mount.mountpoint))
    })
}

/// The mountpoints `device` is mounted on.
fn mountpoints_of(mounts: &[MountStatus], device: &str) -> Vec<String> {
    let device = Device::new(device);
    mounts
        .iter()
        .filter(|mount| device.is(&mount.device))
        .map(|mount| mount.mountpoint.clone())
        .collect()
}

/// `wait-device <path>`: until the path is a device node (FreeBSD: a character device, as
/// GEOM providers are; Linux: a block or character device), looking every
/// [`POLL_INTERVAL`]; done at once when it is one.
pub(super) fn wait_device(run: &mut StepRun<'_>, path: &str) -> Result<Done, String> {
    let wanted = match run.platform() {
        Platform::FreeBsd => "a character device",
        Platform::Linux => "a block or character device",
    };
    let started = Instant::now();
    let mut first = true;
    loop {
        let found = match fs::metadata(path) {
            Ok(meta) => {
                let kind = meta.file_type();
                let ok = match run.platform() {
                    Platform::FreeBsd => kind.is_char_device(),
                    Platform::Linux => kind.is_char_device() || kind.is_block_device(),
                };
                if ok {
                    return Ok(if first {
                        Done::Already(format!("{path} is {wanted}"))
                    } else {
                        run.note(format!(
                            "{path} appeared after {}",
                            human(started.elapsed())
                        ));
                        Done::Ran
                    });
                }
                format!("{path} exists but is not {wanted}")
            }
            Err(error) => format!("{path} is not there ({error})"),
        };
        first = false;
        if !run.pause(POLL_INTERVAL) {
            return Err(run.out_of_time(&found));
        }
    }
}

/// `fsck <type> <dev> [preen]`: FreeBSD `fsck [-p] -y -t <type> <dev>`, Linux
/// `fsck -t <type> -p|-y <dev>`. A device that is mounted is never checked: the step is done
/// without running anything (it was checked before it was mounted). The mounts must be
/// readable: if they are not, nothing is checked and the step fails.
pub(super) fn fsck(run: &mut StepRun<'_>, request: &FsckRequest) -> Result<Done, String> {
    let device = request.device.as_str();
    let mounts = read_mounts(run).map_err(|why| {
        format!("not checking {device}: cannot tell whether it is mounted: {why}")
    })?;
    let mounted = mountpoints_of(&mounts, device);
    if !mounted.is_empty() {
        return Ok(Done::Already(format!(
            "{device} is mounted on {}: not checked (a mounted filesystem is never checked)",
            mounted.join(", ")
        )));
    }
    let fstype = request.fstype.as_str();
    let platform = run.platform();
    let args: Vec<&str> = match (platform, request.preen) {
        (Platform::FreeBsd, true) => vec!["-p", "-y", "-t", fstype, device],
        (Platform::FreeBsd, false) => vec!["-y", "-t", fstype, device],
        (Platform::Linux, true) => vec!["-t", fstype, "-p", device],
        (Platform::Linux, false) => vec!["-t", fstype, "-y", device],
    };
    let fsck = &run.tools().fsck;
    let output = run.act(fsck, &args)?;
    let code = output.status.code();
    match fsck_verdict(platform, code) {
        FsckVerdict::Clean => Ok(Done::Ran),
        FsckVerdict::Corrected => {
            run.note(format!("fsck corrected errors on {device}"));
            Ok(Done::Ran)
        }
        FsckVerdict::Failed(meaning) => Err(exit_failure(
            &command_line(fsck, &args),
            &output,
            meaning.as_deref(),
        )),
    }
}

/// What an fsck exit status means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FsckVerdict {
    /// No errors.
    Clean,
    /// Errors were found and corrected (Linux's status 1).
    Corrected,
    /// The filesystem must not be mounted; what the status means, when known.
    Failed(Option<String>),
}

/// Read an fsck exit status. Linux's fsck(8) ORs these bits: 1 errors corrected, 2 reboot
/// needed, 4 errors left uncorrected, 8 operational error, 16 usage or syntax error, 32
/// cancelled, 128 shared-library error; 0 and 1 are success. FreeBSD's fsck exits 0 on
/// success and non-zero on any error (fsck_ffs(8)); rc.d/fsck reads 2, 4, 8, 12 and 16.
pub(super) fn fsck_verdict(platform: Platform, code: Option<i32>) -> FsckVerdict {
    let Some(code) = code else {
        return FsckVerdict::Failed(None);
    };
    match platform {
        Platform::Linux => match code {
            0 => FsckVerdict::Clean,
            1 => FsckVerdict::Corrected,
            _ => {
                let bits = [
                    (1, "errors corrected"),
                    (2, "the system should be rebooted"),
                    (4, "errors left uncorrected"),
                    (8, "operational error"),
                    (16, "usage or syntax error"),
                    (32, "checking cancelled"),
                    (128, "shared-library error"),
                ];
                let meanings: Vec<&str> = bits
                    .iter()
                    .filter(|(bit, _)| code & bit != 0)
                    .map(|(_, meaning)| *meaning)
                    .collect();
                FsckVerdict::Failed((!meanings.is_empty()).then(|| meanings.join(", ")))
            }
        },
        Platform::FreeBsd => match code {
            0 => FsckVerdict::Clean,
            2 => FsckVerdict::Failed(Some("stopped before the end: a human must look".into())),
            4 => FsckVerdict::Failed(Some(
                "the root filesystem was changed: reboot without syncing".into(),
            )),
            8 => FsckVerdict::Failed(Some("unexpected inconsistency: run fsck by hand".into())),
            12 => FsckVerdict::Failed(Some("interrupted".into())),
            16 => FsckVerdict::Failed(Some("fsck must be run again".into())),
            _ => FsckVerdict::Failed(None),
        },
    }
}

/// `mount <type> <dev> <dir>`: `mount -t <type> <dev> <dir>`; done at once when the device is
/// mounted there. It fails without running anything when something else is mounted on the
/// mountpoint, when the device is mounted elsewhere, or when the mountpoint is not a
/// directory (Haven creates nothing).
pub(super) fn mount(run: &mut StepRun<'_>, request: &MountRequest) -> Result<Done, String> {
    let (device, mountpoint) = (request.device.as_str(), request.mountpoint.as_str());
    let mounts = read_mounts(run)
        .map_err(|why| format!("not mounting {device}: cannot read the mounts: {why}"))?;
    if let Some(top) = mounted_on(&mounts, mountpoint) {
        if Device::new(device).is(&top.device) {
            return Ok(Done::Already(format!(
                "{device} is mounted on {mountpoint} ({})",
                top.fstype
            )));
        }
        return Err(format!(
            "not mounting {device}: {} ({}) is mounted on {mountpoint}",
            top.device, top.fstype
        ));
    }
    let elsewhere = mountpoints_of(&mounts, device);
    if !elsewhere.is_empty() {
        return Err(format!(
            "not mounting {device} on {mountpoint}: it is mounted on {}",
            elsewhere.join(", ")
        ));
    }
    match fs::metadata(mountpoint) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "not mounting {device}: the mountpoint {mountpoint} is not a directory"
            ));
        }
        Err(error) => {
            return Err(format!(
                "not mounting {device}: the mountpoint directory {mountpoint} is missing \
                 ({error}); Haven creates nothing"
            ));
        }
    }
    let args = ["-t", request.fstype.as_str(), device, mountpoint];
    let retries = run.setup.config.retries("mount");
    let goal = |run: &mut StepRun<'_>| {
        let mounts = read_mounts(run).ok()?;
        let top = mounted_on(&mounts, mountpoint)?;
        Device::new(device)
            .is(&top.device)
            .then(|| format!("{device} is mounted on {mountpoint}"))
    };
    run.act_with_retries(retries, &run.tools().mount, &args, &goal)
}

/// `unmount <dir> [force]`: done at once when nothing is mounted there. FreeBSD:
/// `umount [-f] <dir>`. Linux: `umount <dir>`; when that fails and `force` is set, the
/// processes holding files under the mountpoint are killed and it is tried again.
pub(super) fn unmount(run: &mut StepRun<'_>, request: &UnmountRequest) -> Result<Done, String> {
    let mountpoint = request.mountpoint.as_str();
    let mounts = read_mounts(run)
        .map_err(|why| format!("not unmounting {mountpoint}: cannot read the mounts: {why}"))?;
    if mounted_on(&mounts, mountpoint).is_none() {
        return Ok(Done::Already(format!("nothing is mounted on {mountpoint}")));
    }
    let retries = run.setup.config.retries("unmount");
    let goal = |run: &mut StepRun<'_>| {
        let mounts = read_mounts(run).ok()?;
        mounted_on(&mounts, mountpoint)
            .is_none()
            .then(|| format!("nothing is mounted on {mountpoint}"))
    };
    let umount = &run.tools().umount;
    match run.platform() {
        Platform::FreeBsd => {
            let args: Vec<&str> = if request.force {
                vec!["-f", mountpoint]
            } else {
                vec![mountpoint]
            };
            run.act_with_retries(retries, umount, &args, &goal)
        }
        Platform::Linux => unmount_linux(run, umount, mountpoint, request.force, retries, &goal),
    }
}

fn unmount_linux(
    run: &mut StepRun<'_>,
    umount: &Path,
    mountpoint: &str,
    force: bool,
    retries: u32,
    goal: &dyn Fn(&mut StepRun<'_>) -> Option<String>,
) -> Result<Done, String> {
    let args = [mountpoint];
    let line = command_line(umount, &args);
    let mut attempt = 0;
    let mut kill_rounds = 0;
    loop {
        let output = run.act(umount, &args)?;
        if output.success() {
            return Ok(Done::Ran);
        }
        let mut reason = exit_failure(&line, &output, None);
        if force && kill_rounds < KILL_ROUNDS {
            let real = fs::canonicalize(mountpoint).unwrap_or_else(|_| PathBuf::from(mountpoint));
            let holders = processes::holders(&real)
                .map_err(|why| format!("{reason}; cannot find what holds it: {why}"))?;
            if !holders.is_empty() {
                kill_rounds += 1;
                let named: Vec<String> = holders
                    .iter()
                    .map(|h| format!("{} ({}) holding {}", h.pid, h.comm, h.path.display()))
                    .collect();
                let pids: Vec<i32> = holders.iter().map(|h| h.pid).collect();
                let deadline = Instant::now() + KILL_WAIT.min(run.remaining());
                let killed = processes::kill_and_wait(&pids, deadline, POLL_INTERVAL);
                run.note(format!("killed with SIGKILL: {}", named.join(", ")));
                if let Err(why) = killed {
                    return Err(format!("{reason}; killed {}, but {why}", named.join(", ")));
                }
                continue;
            }
            reason = format!("{reason}; no process holds files under {mountpoint}");
        }
        if attempt > 0 {
            reason = format!("{reason} (attempt {} of {})", attempt + 1, retries + 1);
        }
        if attempt >= retries {
            return Err(reason);
        }
        attempt += 1;
        if !run.pause(super::RETRY_PAUSE) {
            return Err(run.out_of_time(&format!("{reason}; not tried again")));
        }
        if let Some(why) = goal(run) {
            run.note(format!("after the failed attempt: {why}"));
            return Ok(Done::Ran);
        }
    }
}
