//! The shared disk: an ext4 filesystem on a loop device that both rig hosts can reach, holding
//! MariaDB's datadir. It stands in for the HAST resource: the stand-in's role decides which
//! host may use it, Haven's executor checks and mounts it.
//!
//! Building the datadir (`mariadb-install-db`) takes seconds, so it is done once per image
//! version into a base image kept beside the system's temporary files; each rig starts from a
//! sparse copy of it. The loop device is detached when the [`SharedDisk`] is dropped.

use crate::ns::Machine;
use crate::{RigError, command_output};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image's size: small, sparse, and enough for InnoDB's files and the test rows.
const IMAGE_MIB: u64 = 192;
/// Where the datadir lives inside the filesystem.
pub const DATADIR_IN_FS: &str = "mysql";
/// Bump when what the base image holds changes.
const BASE_VERSION: u32 = 1;

/// An ext4 image attached to a loop device.
#[derive(Debug)]
pub struct SharedDisk {
    image: PathBuf,
    device: String,
}

impl SharedDisk {
    /// A fresh copy of the base image in `dir`, attached to a free loop device.
    pub fn create(dir: &Path) -> Result<SharedDisk, RigError> {
        let base = base_image()?;
        let image = dir.join("shared-disk.img");
        command_output(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&base)
                .arg(&image),
        )?;
        let device = attach(&image)?;
        Ok(SharedDisk { image, device })
    }

    /// The loop device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The image file behind it.
    pub fn image(&self) -> &Path {
        &self.image
    }
}

impl Drop for SharedDisk {
    fn drop(&mut self) {
        let _ = command_output(Command::new("losetup").args(["--detach", &self.device]));
    }
}

fn attach(image: &Path) -> Result<String, RigError> {
    let device = command_output(
        Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image),
    )?;
    Ok(device.trim().to_owned())
}

/// The base image: ext4 with MariaDB's system tables in `/mysql`, owned by `mysql`. Built
/// once (under a lock, so concurrent rigs wait for one build) and reused.
fn base_image() -> Result<PathBuf, RigError> {
    let path = std::env::temp_dir().join(format!("haven-e2e-base-v{BASE_VERSION}.img"));
    let lock = File::create(path.with_extension("lock"))
        .map_err(|error| RigError::new(format!("cannot create the base image's lock: {error}")))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, error)| RigError::new(format!("cannot lock the base image: {error}")))?;
    if path.exists() {
        return Ok(path);
    }
    let building = path.with_extension("building");
    let _ = std::fs::remove_file(&building);
    File::create(&building)
        .and_then(|file| file.set_len(IMAGE_MIB << 20))
        .map_err(|error| RigError::new(format!("cannot create {}: {error}", building.display())))?;
    command_output(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "haven-shared", "-E", "lazy_itable_init=0"])
            .arg(&building),
    )?;
    let device = attach(&building)?;
    let result = install_datadir(&device);
    let _ = command_output(Command::new("losetup").args(["--detach", &device]));
    result?;
    std::fs::rename(&building, &path)
        .map_err(|error| RigError::new(format!("cannot rename the base image: {error}")))?;
    Ok(path)
}

/// Mount `device` in a throwaway machine (so nothing shows in the rig's own mount table) and
/// run `mariadb-install-db` into it.
fn install_datadir(device: &str) -> Result<(), RigError> {
    let machine = Machine::start("haven-base")?;
    machine.run("mount", &["-t", "tmpfs", "tmpfs", "/mnt"])?;
    machine.run("mkdir", &["/mnt/disk"])?;
    machine.run("mount", &["-t", "ext4", device, "/mnt/disk"])?;
    let datadir = format!("/mnt/disk/{DATADIR_IN_FS}");
    machine.run(
        "mariadb-install-db",
        &[
            "--no-defaults",
            "--user=mysql",
            &format!("--datadir={datadir}"),
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
    )?;
    machine.run("umount", &["/mnt/disk"])?;
    Ok(())
}
