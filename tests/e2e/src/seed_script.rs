//! The seed recipe's `carp-hast-switch` shell script, adapted to the rig's Linux hosts, for
//! the benchmark's comparison: ucarp runs it through the wrappers in `tests/e2e/seed/`.

use std::path::{Path, PathBuf};

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seed")
}

/// ucarp's up script for the seed's way: add the address, run `carp-hast-switch master`.
pub fn up_script() -> PathBuf {
    seed_dir().join("vip-up")
}

/// ucarp's down script for the seed's way: remove the address, run `carp-hast-switch slave`.
pub fn down_script() -> PathBuf {
    seed_dir().join("vip-down")
}
