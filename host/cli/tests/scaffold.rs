//! From an empty folder to a tested policy in three commands, as the README promises:
//! `havenctl new`, `cargo test`, then build the module and `havenctl test` it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The toolchain the workspace pins, so the new crate builds with the same compiler.
fn pinned_toolchain() -> String {
    let text = std::fs::read_to_string(workspace().join("rust-toolchain.toml")).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("channel"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawning");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn a_new_policy_builds_and_passes_its_unit_test_and_scenario() {
    let folder = tempfile::tempdir().unwrap();
    let crate_dir = folder.path().join("my-policy");
    // Shared between runs so the SDK's dependencies are built once.
    let target = workspace().join("target/scaffold-test");
    let cargo = || {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTUP_TOOLCHAIN", pinned_toolchain());
        command
    };

    let created = run(Command::new(env!("CARGO_BIN_EXE_havenctl"))
        .arg("new")
        .arg(&crate_dir));
    assert!(created.contains("created"), "{created}");

    let tested = run(cargo().arg("test"));
    assert!(tested.contains("test result: ok. 2 passed"), "{tested}");

    run(cargo().args(["build", "--release", "--target", "wasm32-unknown-unknown"]));
    let wasm = target.join("wasm32-unknown-unknown/release/my_policy.wasm");
    let scenario = run(Command::new(env!("CARGO_BIN_EXE_havenctl"))
        .arg("test")
        .arg(&wasm)
        .arg(crate_dir.join("scenarios/basic.toml"))
        .env("HAVEN_CACHE_DIR", folder.path().join("cache")));
    assert!(scenario.ends_with("3 passed, 0 failed\n"), "{scenario}");

    let again = Command::new(env!("CARGO_BIN_EXE_havenctl"))
        .arg("new")
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
