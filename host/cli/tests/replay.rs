//! `havenctl replay` and `havenctl deploy` against a real havend's journal (monitor mode):
//! the running module reproduces every recorded decision; another module's differences are
//! shown as plan diffs; deploy refuses a module that fails its check or whose differences are
//! not confirmed (the file in place untouched), and with `--yes` renames it into place and
//! reports havend's reload.

mod common;

use common::{Havend, Setup, monitor_config, poll_until, stdout_text};
use haven_daemon::journal::{Entry, Journal};
use haven_test_artifacts::support::hastctl_list;
use std::path::{Path, PathBuf};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);
const SEED: &str = haven_test_artifacts::CARP_HAST_SWITCH;
const OTHER: &str = haven_test_artifacts::CONTRACT_2_0_POLICY;
const WASI: &str = haven_test_artifacts::WASI_IMPORT_POLICY;

fn carp(state: &str) -> String {
    format!(r#"{{"carp-changed":{{"vhid":1,"interface":"em0","state":"{state}"}}}}"#)
}

/// A havend running the seed from a copy in the setup (deploy replaces it), after a few
/// failovers; and the copy's path.
fn start() -> (Setup, Havend, PathBuf) {
    let setup = Setup::in_tmp("replay-");
    setup.install_hastctl(&hastctl_list("test", "secondary", "complete", "0"));
    let module = setup.path("policy.wasm");
    std::fs::copy(SEED, &module).unwrap();
    let config = monitor_config(&setup, "").replace(
        &common::toml_path(Path::new(SEED)),
        &common::toml_path(&module),
    );
    assert!(config.contains("policy.wasm"), "{config}");
    std::fs::write(setup.config(), config).unwrap();
    let mut daemon = Havend::launch(&setup, &[], setup.path("havend.stderr"), POLL, Some(60));
    daemon.wait_ready();
    for state in ["master", "backup", "master", "backup"] {
        let before = daemon.status().decisions_total;
        assert!(daemon.havenctl(&["notify", &carp(state)]).status.success());
        poll_until(POLL, || {
            (daemon.status().decisions_total > before).then_some(())
        })
        .unwrap_or_else(|| panic!("no decision\n{}", daemon.diagnostics()));
    }
    (setup, daemon, module)
}

fn havenctl(daemon: &Havend, setup: &Setup, args: &[&str]) -> std::process::Output {
    let config = setup.config().display().to_string();
    let mut all = args.to_vec();
    all.extend(["--config", &config]);
    daemon.havenctl(&all)
}

fn recorded_decisions(setup: &Setup) -> usize {
    Journal::read_all(setup.state_dir())
        .unwrap()
        .records
        .iter()
        .filter(|record| {
            matches!(
                &record.entry,
                Entry::Decision {
                    inputs: Some(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn the_running_module_reproduces_every_recorded_decision() {
    let (setup, daemon, module) = start();
    let recorded = recorded_decisions(&setup);
    assert!(recorded >= 5, "startup and four CARP changes: {recorded}");
    let output = havenctl(&daemon, &setup, &["replay", module.to_str().unwrap()]);
    let text = stdout_text(&output);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text.contains(&format!("{recorded} recorded decision(s) replayed"))
            && text.contains(": 0 differ"),
        "{text}"
    );
    // --since in the future replays nothing.
    let output = havenctl(
        &daemon,
        &setup,
        &[
            "replay",
            module.to_str().unwrap(),
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(
        stdout_text(&output).contains(": 0 recorded decision(s) replayed"),
        "{output:?}"
    );
}

#[test]
fn another_module_shows_its_differences_as_plan_diffs() {
    let (setup, daemon, _module) = start();
    let output = havenctl(&daemon, &setup, &["replay", OTHER]);
    let text = stdout_text(&output);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    // The seed promoted on master; the other module does nothing.
    assert!(text.contains("CARP vhid 1 on em0"), "{text}");
    assert!(text.contains("  - hast-role test primary"), "{text}");
    assert!(text.contains("  + (no action)"), "{text}");
}

#[test]
fn deploy_refuses_without_changing_the_file_and_installs_when_confirmed() {
    let (setup, daemon, module) = start();
    let original = std::fs::read(&module).unwrap();

    // A module that fails its check.
    let output = havenctl(&daemon, &setup, &["deploy", "mysql", WASI]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        common::stderr_text(&output).contains("check failed; nothing was changed"),
        "{output:?}"
    );
    assert_eq!(std::fs::read(&module).unwrap(), original);

    // Differences, no terminal, no --yes.
    let output = havenctl(&daemon, &setup, &["deploy", "mysql", OTHER]);
    let text = stdout_text(&output);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        text.contains("[3/5] replay") && text.contains("  + (no action)"),
        "{text}"
    );
    assert!(
        common::stderr_text(&output).contains("was not confirmed; nothing was changed"),
        "{output:?}"
    );
    assert_eq!(std::fs::read(&module).unwrap(), original);

    // Confirmed: in place, the old one kept, havend reloaded.
    let output = havenctl(&daemon, &setup, &["deploy", "mysql", OTHER, "--yes"]);
    let text = stdout_text(&output);
    assert!(
        output.status.success(),
        "{output:?}\n{}",
        daemon.diagnostics()
    );
    assert!(text.contains("[5/5] reload: loaded"), "{text}");
    assert_eq!(
        std::fs::read(&module).unwrap(),
        std::fs::read(OTHER).unwrap()
    );
    assert_eq!(
        std::fs::read(setup.path("policy.wasm.previous")).unwrap(),
        original
    );
    let status = daemon.status();
    let other_hash = haven_runtime::pipeline::short_hash(&sha256(OTHER)).to_owned();
    assert!(
        status
            .policies
            .iter()
            .any(|p| p.name == "mysql" && p.module_hash.starts_with(&other_hash)),
        "{:?}",
        status.policies
    );

    // And back: the seed again decides as it did when it ran.
    let output = havenctl(&daemon, &setup, &["deploy", "mysql", SEED, "--yes"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read(&module).unwrap(), original);
}

fn sha256(path: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
