//! `havenctl` as a user runs it: the real binary, real modules built from source, real files.

use haven_test_artifacts as artifacts;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run havenctl with an artifact cache of the tests' own, in cargo's temporary folder for
/// integration tests (under `target/`, so nothing is left in /tmp; the cache is keyed by module
/// hash, so runs may share it).
fn havenctl(args: &[&str]) -> Output {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("havenctl-test-cache");
    Command::new(env!("CARGO_BIN_EXE_havenctl"))
        .args(args)
        .env("HAVEN_CACHE_DIR", cache)
        .current_dir(workspace())
        .output()
        .expect("running havenctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn seed_scenarios() -> Vec<String> {
    let dir = workspace().join("policies/carp-hast-switch/scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .filter(|path| path.ends_with(".toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn simulate_with_no_arguments_replays_the_bundled_failover() {
    let output = havenctl(&["simulate"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("policy mysql = carp-hast-switch"), "{text}");
    // hastb promoted after hasta died; hasta came back as backup and stayed secondary.
    assert!(
        text.contains("hasta  CARP vhid 1 Backup; HAST test secondary; mounted none; running none"),
        "{text}"
    );
    assert!(
        text.contains(
            "hastb  CARP vhid 1 Master; HAST test primary; mounted /hast/test; running mysql-server"
        ),
        "{text}"
    );
}

/// Two simulated hosts linked by `[peer]`: hasta's syncintr reaches hastb as the daemons
/// would relay it, the link is cut, and hastb refuses to promote, naming the fact.
#[test]
fn simulate_links_two_hosts_and_cuts_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    let seed = std::fs::read_to_string(workspace().join("examples/seed/haven.toml")).unwrap();
    let seed = seed.replace(
        "/usr/local/libexec/haven/carp_hast_switch.wasm",
        artifacts::CARP_HAST_SWITCH,
    );
    std::fs::write(&config, seed).unwrap();
    let output = havenctl(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--events",
        "examples/seed/relayed-sync.toml",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{output:?}");
    for wanted in [
        "hastb  event #2 peer HAST test: sync-interrupted",
        "hastb  event #4 peer link down",
        "refusing to promote: the local copy of HAST resource `test` (interrupted: peer hasta's \
         hastd ran `syncintr` as primary",
        "hastb  CARP vhid 1 Master; HAST test secondary; mounted none; running none",
    ] {
        assert!(text.contains(wanted), "no {wanted:?} in\n{text}");
    }
    // A cut without the link configured is an error naming the fix.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[event]]\nat-ms = 0\npeer-link = false\n").unwrap();
    let output = havenctl(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--events",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs `peer-link = true` at the top"),
        "{output:?}"
    );
}

/// The witness's timelines (`examples/witness/`): a partition, an outage, an outage during a
/// crash, each with what the seed policy must do. `--events` alone: the bundled seed policy
/// with the seed's config, as the README runs them.
#[test]
fn simulate_replays_the_witness_timelines() {
    for (timeline, wanted) in [
        (
            "partition",
            &[
                "2. hast-role test primary timeout=30000  → FAILED: the witness refused: the \
                 leader key is held by hasta",
                "hasta  CARP vhid 1 Master; HAST test primary; mounted /hast/test",
                "hastb  CARP vhid 1 Master; HAST test secondary; mounted none; running none",
            ][..],
        ),
        (
            "outage",
            &[
                "but hastb is linked and serves none of our resources: going on serving \
                 (failsafe)",
                "its peer no longer vouches: demoting",
                "hasta  CARP vhid 1 Master; HAST test secondary; mounted none; running none",
            ][..],
        ),
        (
            "outage-crash",
            &[
                "FAILED: the witness refused: etcd did not answer",
                "the witness's leader key may be had now; deciding the refused promotion again",
                "hastb  CARP vhid 1 Master; HAST test primary; mounted /hast/test",
            ][..],
        ),
    ] {
        let events = format!("examples/witness/{timeline}.toml");
        let output = havenctl(&["simulate", "--events", &events]);
        let text = stdout(&output);
        assert!(output.status.success(), "{timeline}: {text}{output:?}");
        for wanted in wanted {
            assert!(
                text.contains(wanted),
                "{timeline}: no {wanted:?} in\n{text}"
            );
        }
    }
}

#[test]
fn the_seed_scenarios_pass_on_the_real_runtime() {
    let scenarios = seed_scenarios();
    assert!(scenarios.len() >= 3, "scenario files: {scenarios:?}");
    let mut args = vec!["test", artifacts::CARP_HAST_SWITCH];
    args.extend(scenarios.iter().map(String::as_str));
    let output = havenctl(&args);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let summary = text.lines().last().unwrap();
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 15, "{summary}");
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
}

#[test]
fn a_failing_case_shows_a_diff_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        r#"
[settings]
behaviour = "good"
[[case]]
name = "right"
event = { timer-fired = "t" }
expect = "plan"
plan = ["alert warning timer seen=1"]
[[case]]
name = "wrong"
event = { timer-fired = "t" }
expect = "plan"
plan = ["alert warning timer seen=2", "service start db"]
[[case]]
name = "wrong kind"
event = { timer-fired = "t" }
expect = "no-action"
"#,
    )
    .unwrap();
    let output = havenctl(&[
        "test",
        artifacts::MISBEHAVING_POLICY,
        scenario.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("  PASS  right"), "{text}");
    assert!(text.contains("  FAIL  wrong\n          plan differs (- expected, + actual):\n            - alert warning timer seen=2\n            - service start db\n            + alert warning timer seen=1"), "{text}");
    assert!(
        text.contains("  FAIL  wrong kind\n          expected NoAction, got a plan of 1 steps"),
        "{text}"
    );
    assert!(text.ends_with("1 passed, 2 failed\n"), "{text}");
}

#[test]
fn a_broken_scenario_file_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("broken.toml");
    std::fs::write(
        &scenario,
        "[settings]\nbehaviour = \"good\"\n[[case]]\nname = \"x\"\nexpect = \"maybe\"\n",
    )
    .unwrap();
    let output = havenctl(&[
        "test",
        artifacts::MISBEHAVING_POLICY,
        scenario.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ERROR line 5: unknown variant `maybe`"),
        "{text}"
    );
    assert!(text.ends_with("0 passed, 1 failed\n"), "{text}");
}

#[test]
fn check_admits_the_seed_and_its_config_entry() {
    let output = havenctl(&[
        "check",
        artifacts::CARP_HAST_SWITCH,
        "--config",
        "examples/seed/haven.toml",
        "--policy",
        "mysql",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(": admitted\n  policy    carp-hast-switch "),
        "{text}"
    );
    assert!(text.contains("  contract  haven:policy@4.0.0"), "{text}");
    assert!(
        text.contains("examples/seed/haven.toml: policy `mysql`: grants valid, settings accepted"),
        "{text}"
    );
}

#[test]
fn check_refuses_a_wasi_module_naming_the_import() {
    let output = havenctl(&["check", artifacts::WASI_IMPORT_POLICY]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "REJECTED: imports `wasi_snapshot_preview1::random_get`: policies get no WASI"
        ),
        "{text}"
    );
}

#[test]
fn check_reports_bad_settings_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    let text = std::fs::read_to_string(workspace().join("examples/seed/haven.toml"))
        .unwrap()
        .replace("hold-down-ms = 5000", "hold-down-ms = \"soon\"");
    std::fs::write(&config, text).unwrap();
    let output = havenctl(&[
        "check",
        artifacts::CARP_HAST_SWITCH,
        "--config",
        config.to_str().unwrap(),
        "--policy",
        "mysql",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "policy `mysql`: rejected its settings: init failed: bad settings for carp-hast-switch"
        ),
        "{text}"
    );
}

#[test]
fn a_config_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(&config, "[[policy]]\nname = \"a\"\nmodule = \"a.wasm\"\n[policy.grants]\nservices = [\"ok\", \"no way\"]\n").unwrap();
    let events = dir.path().join("events.toml");
    std::fs::write(&events, "[[event]]\nat-ms = 0\nstartup = true\n").unwrap();
    let output = havenctl(&[
        "simulate",
        "--config",
        config.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("haven.toml:4: policy `a`: grants: service `no way` is not a valid name"),
        "{stderr}"
    );
}

#[test]
fn log_without_a_state_directory_says_so() {
    let missing = std::env::temp_dir().join(format!("havenctl-no-state-{}", std::process::id()));
    let output = havenctl(&["log", "--state-dir", &missing.display().to_string()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "no journal: the state directory {} does not exist",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn havend_says_a_startup_error_once() {
    let dir = tempfile::tempdir().unwrap();
    // The control directory would be inside a file: it cannot be made.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let config = dir.path().join("haven.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nexecutor = \"dry-run\"\nstate-dir = {:?}\ncontrol-dir = {:?}\n",
            dir.path().join("state"),
            blocker.join("control")
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_havend"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.starts_with("havend: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let reason = "Not a directory (os error 20)";
    assert_eq!(line.matches(reason).count(), 1, "{line}");
    assert_eq!(line.matches("control socket").count(), 1, "{line}");
}

#[test]
fn havend_check_and_the_daemon_use_the_policys_own_limits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haven.toml");
    let write = |limits: &str| {
        std::fs::write(
            &config,
            format!(
                "[[policy]]\nname = \"big\"\nmodule = {:?}\n[policy.limits]\n{limits}\n",
                artifacts::BIG_DESCRIBE_POLICY
            ),
        )
        .unwrap()
    };
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_havend"))
            .arg("--check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    // A generous deadline: describing fills 20 MiB, which a loaded test machine may take a
    // while to do; this test is about the memory limit.
    write("deadline-ms = 5000");
    let refused = check();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("exceeded its memory limit of 16 MiB"),
        "{refused:?}"
    );
    write("deadline-ms = 5000\nmemory-mib = 64");
    let accepted = check();
    assert!(accepted.status.success(), "{accepted:?}");
}

/// `havenctl completions <shell>` prints a script that knows every command.
#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = havenctl(&["completions", shell]);
        let text = stdout(&output);
        assert!(output.status.success(), "{shell}: {output:?}");
        for command in ["switchover", "maintenance", "fleet", "simulate"] {
            assert!(text.contains(command), "{shell}: no {command} in\n{text}");
        }
    }
    let output = havenctl(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
