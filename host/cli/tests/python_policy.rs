//! A Python policy, as an author makes one: `havenctl new --lang python`, its unit tests under
//! pytest, built by componentize-py, and its scenario file on Haven's runtime, all with the real
//! tools. Then the runtime's side: an exception in the policy reaches the operator with its type,
//! message and line, not as a bare trap; and the component imports nothing but Haven's contract.
//!
//! The tools come from PyPI (`scripts/install-test-tools`). Without them the tests skip, saying
//! so, unless `HAVEN_REQUIRE_POLICY_TOOLCHAINS` is set (CI sets it): then a missing tool fails.

mod common;

use common::{HAVENCTL, stderr_text, stdout_text};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// Whether the Python toolchain is here; panics when it must be and is not.
fn toolchain() -> bool {
    let found = ["componentize-py", "python3"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    }) && Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("HAVEN_REQUIRE_POLICY_TOOLCHAINS").is_none(),
            "componentize-py or pytest is missing: scripts/install-test-tools"
        );
        eprintln!("skipped: componentize-py or pytest is missing (scripts/install-test-tools)");
    }
    found
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        stdout_text(&output),
        stderr_text(&output)
    );
    output
}

fn componentize(dir: &Path, app: &str, module: &str) {
    run(
        dir,
        "componentize-py",
        &[
            "-d",
            "wit",
            "-w",
            "policy",
            "componentize",
            "--stub-wasi",
            app,
            "-o",
            module,
        ],
    );
}

#[test]
fn a_new_python_policy_passes_its_unit_tests_and_its_scenarios() {
    if !toolchain() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    run(
        root.path(),
        HAVENCTL,
        &["new", "--lang", "python", "follow-carp"],
    );
    let created = started.elapsed();
    let dir = root.path().join("follow-carp");

    let started = Instant::now();
    let pytest = run(
        &dir,
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
    );
    assert!(stdout_text(&pytest).contains("4 passed"), "{pytest:?}");
    let unit = started.elapsed();

    let started = Instant::now();
    componentize(&dir, "app", "follow_carp.wasm");
    let built = started.elapsed();
    let started = Instant::now();
    let scenarios = run(
        &dir,
        HAVENCTL,
        &[
            "--no-cache",
            "test",
            "follow_carp.wasm",
            "scenarios/basic.toml",
        ],
    );
    assert!(
        stdout_text(&scenarios).contains("3 passed, 0 failed"),
        "{scenarios:?}"
    );
    let tested = started.elapsed();
    eprintln!(
        "python: new {created:?}, pytest {unit:?}, componentize {built:?}, havenctl test {tested:?}"
    );

    // Nothing but the contract: havenctl check lists the imports.
    let check = run(&dir, HAVENCTL, &["check", "follow_carp.wasm"]);
    let text = stdout_text(&check);
    let imports = text
        .lines()
        .find(|line| line.trim_start().starts_with("imports"))
        .unwrap_or_default();
    assert!(!imports.contains("wasi"), "{text}");
    assert!(imports.contains("haven:policy/services@4.0.0"), "{text}");
}

#[test]
fn an_exception_reaches_the_operator_with_its_type_message_and_line() {
    if !toolchain() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    run(
        root.path(),
        HAVENCTL,
        &["new", "--lang", "python", "raises"],
    );
    let dir = root.path().join("raises");
    std::fs::write(
        dir.join("broken.py"),
        r#"import haven_policy
from haven_policy import Plan, Policy, types


class Broken(Policy):
    @staticmethod
    def info():
        return types.PolicyInfo(name="broken", version="0.1.0")

    def handle(self, event, host):
        if isinstance(event, types.Event_TimerFired):
            return {"not": "a plan"}
        return Plan.builder().start_service(self.settings["missing"]).build()


Handler = haven_policy.export(Broken)
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        r#"description = "a policy that raises, and one that returns the wrong thing"
[grants]
services = ["nginx"]
[[case]]
name = "a KeyError is the call's error, with the line"
event = { carp-changed = { vhid = 1, interface = "em0", state = "master" } }
expect = "failed"
reason = "returned an error: KeyError: 'missing' (at broken.py:13)"
[[case]]
name = "not a plan"
event = { timer-fired = "t" }
expect = "failed"
reason = "handle returned dict, not a Plan"
"#,
    )
    .unwrap();
    componentize(&dir, "broken", "broken.wasm");
    let output = run(&dir, HAVENCTL, &["test", "broken.wasm", "broken.toml"]);
    assert!(
        stdout_text(&output).contains("2 passed, 0 failed"),
        "{output:?}"
    );
}
