//! Compiles policy crates of this workspace to WebAssembly from a build script, the way
//! wasmtime's `test-programs` artifacts are built: the crates that need `.wasm` files (the
//! bundled policies, the test artifacts) get them from `cargo build`, and no binary is ever
//! committed.
//!
//! The guests are built by a nested `cargo build --release --target wasm32-unknown-unknown`
//! into `<target>/guests`, shared by every caller so each guest is compiled once.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest crate to build: its package name and its folder relative to the workspace root.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    pub package: &'static str,
    pub dir: &'static str,
}

/// A built guest.
#[derive(Debug, Clone)]
pub struct Built {
    pub package: &'static str,
    pub wasm: PathBuf,
}

/// Build the guests; `workspace_root` is relative to the calling crate's manifest folder.
/// Panics with cargo's output if the build fails (a build script has no better way to fail).
pub fn build(workspace_root: &str, guests: &[Guest]) -> Vec<Built> {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    let root = manifest_dir.join(workspace_root);
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");

    for dir in ["sdk", "wit", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in guests {
        println!("cargo:rerun-if-changed={}", root.join(guest.dir).display());
        cargo.args(["-p", guest.package]);
    }
    // The outer build's flags and wrappers are for the host; the guests use the workspace's
    // own `[target.wasm32-unknown-unknown]` settings.
    for variable in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cargo.env_remove(variable);
    }
    let output = cargo.output().expect("running cargo for the wasm guests");
    if !output.status.success() {
        panic!(
            "building the wasm guests failed ({}); is the target installed? \
             `rustup target add wasm32-unknown-unknown`\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    guests
        .iter()
        .map(|guest| Built {
            package: guest.package,
            wasm: wasm_path(&target_dir, guest.package),
        })
        .collect()
}

fn wasm_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join("wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}
