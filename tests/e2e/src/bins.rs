//! Where the rig finds what it runs: the workspace's binaries (havend, havenctl, the HAST
//! stand-ins, the rig's init), the shipped scripts under `contrib/`, and the seed policy.
//!
//! The binaries are those of the same build as the program running the rig: beside it, or one
//! folder up when it is a test under `target/<profile>/deps`. `cargo test --workspace` builds
//! them all before running tests; `scripts/demo` builds them first.

use crate::RigError;
use std::path::{Path, PathBuf};

/// The folder of this build's binaries (`target/debug` or `target/release`).
fn build_dir() -> Result<PathBuf, RigError> {
    let exe = std::env::current_exe()
        .map_err(|error| RigError::new(format!("cannot find this program's path: {error}")))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| RigError::new("this program has no folder"))?
        .to_owned();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    Ok(dir)
}

/// The binary `name` of this build.
pub fn rig_binary(name: &str) -> Result<PathBuf, RigError> {
    let path = build_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(RigError::new(format!(
            "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
            path.display()
        )))
    }
}

/// A script Haven ships, under `contrib/`.
pub fn contrib(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(relative)
}

/// The seed policy's module, built by haven-test-artifacts' build script.
pub fn seed_policy() -> PathBuf {
    PathBuf::from(haven_test_artifacts::CARP_HAST_SWITCH)
}
