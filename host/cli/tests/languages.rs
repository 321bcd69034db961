//! Python and JavaScript policies, as an author makes them: `havenctl new --lang python|js`,
//! the unit tests under pytest or Node's test runner, the component built by componentize-py or
//! ComponentizeJS, and the scenario file on Haven's runtime, all with the real tools. Then the
//! runtime's side: an exception in the policy reaches the operator with its type, message and
//! line, not as a bare trap; and the component imports nothing but Haven's contract. And the
//! seed policy's Python and JavaScript ports pass their unit tests and every one of the seed's
//! scenario files, unchanged.
//!
//! The tools come from PyPI and npm (`scripts/install-test-tools`). Without them the tests
//! skip, saying so, unless `HAVEN_REQUIRE_POLICY_TOOLCHAINS` is set (CI sets it): then a missing
//! tool fails.

mod common;

use common::{HAVENCTL, Havend, Setup, poll_until, stderr_text, stdout_text, toml_path};
use haven_cli::scaffold::Lang;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Whether every command in `probes` answers; panics when the toolchain must be here and is not.
fn toolchain(name: &str, probes: &[&[&str]]) -> bool {
    let found = probes.iter().all(|probe| {
        Command::new(probe[0])
            .args(&probe[1..])
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if !found {
        assert!(
            std::env::var_os("HAVEN_REQUIRE_POLICY_TOOLCHAINS").is_none(),
            "the {name} policy toolchain is missing: scripts/install-test-tools"
        );
        eprintln!("skipped: the {name} policy toolchain is missing (scripts/install-test-tools)");
    }
    found
}

fn python() -> bool {
    toolchain(
        "Python",
        &[
            &["componentize-py", "--version"],
            &["python3", "-m", "pytest", "--version"],
        ],
    )
}

fn javascript() -> bool {
    toolchain(
        "JavaScript",
        &[&["componentize-js", "--version"], &["node", "--version"]],
    )
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

/// Build `entry` in `dir` into `module` with `lang`'s toolchain, as the scaffold says to.
fn build(lang: Lang, dir: &Path, entry: &str, module: &str) {
    let command = lang.build_command(entry, module);
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    run(dir, &command[0], &args);
}

fn componentize_py(dir: &Path, app: &str, module: &str) {
    build(Lang::Python, dir, app, module);
}

#[test]
fn a_new_python_policy_passes_its_unit_tests_and_its_scenarios() {
    if !python() {
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
    componentize_py(&dir, "app", "follow_carp.wasm");
    let built = started.elapsed();
    let tested = scaffold_scenarios_pass(&dir);
    eprintln!(
        "python: new {created:?}, pytest {unit:?}, componentize {built:?}, havenctl test {tested:?}"
    );

    imports_only_the_contract(&dir, "follow_carp.wasm");
}

/// The scaffold's scenario file against its build, with no artifact cache (as an author's first
/// `havenctl test` runs); how long that took.
fn scaffold_scenarios_pass(dir: &Path) -> Duration {
    let started = Instant::now();
    let args = ["follow_carp.wasm", "scenarios/basic.toml"];
    assert_scenarios_pass(dir, &args, "3 passed, 0 failed");
    started.elapsed()
}

/// `havenctl check` admits the module, and lists no import but Haven's contract; and so says
/// the Bytecode Alliance's `jco wit`, which reads the component's world with a parser of its
/// own.
fn imports_only_the_contract(dir: &Path, module: &str) {
    let check = run(dir, HAVENCTL, &["check", module]);
    let text = stdout_text(&check);
    let imports = text
        .lines()
        .find(|line| line.trim_start().starts_with("imports"))
        .unwrap_or_default();
    assert!(!imports.contains("wasi"), "{text}");
    assert!(imports.contains("haven:policy/services@4.0.0"), "{text}");

    if !toolchain("component inspection (jco)", &[&["jco", "--version"]]) {
        return;
    }
    let world = stdout_text(&run(dir, "jco", &["wit", module]));
    let imports: Vec<&str> = world
        .lines()
        .filter_map(|line| line.trim().strip_prefix("import "))
        .collect();
    assert!(imports.contains(&"haven:policy/services@4.0.0;"), "{world}");
    for import in imports {
        assert!(
            import.starts_with("haven:policy/") && import.ends_with("@4.0.0;"),
            "jco wit: `{import}` is not Haven's contract\n{world}"
        );
    }
}

fn componentize_js(dir: &Path, entry: &str, module: &str) {
    build(Lang::Js, dir, entry, module);
}

#[test]
fn a_new_javascript_policy_passes_its_unit_tests_and_its_scenarios() {
    if !javascript() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    run(
        root.path(),
        HAVENCTL,
        &["new", "--lang", "js", "follow-carp"],
    );
    let dir = root.path().join("follow-carp");
    let started = Instant::now();
    let unit = run(&dir, "node", &["--test"]);
    assert!(stdout_text(&unit).contains("# pass 4"), "{unit:?}");
    let unit = started.elapsed();
    let started = Instant::now();
    componentize_js(&dir, "component.js", "follow_carp.wasm");
    let built = started.elapsed();
    let tested = scaffold_scenarios_pass(&dir);
    eprintln!(
        "javascript: node --test {unit:?}, componentize-js {built:?}, havenctl test {tested:?}"
    );
    imports_only_the_contract(&dir, "follow_carp.wasm");
}

#[test]
fn a_javascript_exception_reaches_the_operator_with_its_name_message_and_line() {
    if !javascript() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    run(root.path(), HAVENCTL, &["new", "--lang", "js", "throws"]);
    let dir = root.path().join("throws");
    std::fs::write(
        dir.join("broken.js"),
        r#"import { Plan, Policy, exportPolicy } from './haven_policy.js';
import { WasmHost } from './wasm_host.js';

class Broken extends Policy {
  static info() { return { name: 'broken', version: '0.1.0' }; }
  handle(event, host) {
    if (event.tag === 'timer-fired') return { steps: [] };
    return Plan.builder().startService(this.settings.missing.name).build();
  }
}

export const handler = exportPolicy(Broken, new WasmHost());
"#,
    )
    .unwrap();
    componentize_js(&dir, "broken.js", "broken.wasm");
    assert_broken_policy_reported(
        &dir,
        "returned an error: TypeError: can't access property \\\"name\\\", this.settings.missing is \
         undefined (at broken.js:8:40)",
        "handle returned object, not a Plan",
    );
}

#[test]
fn a_python_exception_reaches_the_operator_with_its_type_message_and_line() {
    if !python() {
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
    componentize_py(&dir, "broken", "broken.wasm");
    assert_broken_policy_reported(
        &dir,
        "returned an error: KeyError: 'missing' (at broken.py:13)",
        "handle returned dict, not a Plan",
    );
}

/// `broken.wasm` in `dir` fails a CARP event with the reason `thrown` (its handler threw) and
/// a timer with `not_a_plan` (its handler returned something else), as scenario cases say.
fn assert_broken_policy_reported(dir: &Path, thrown: &str, not_a_plan: &str) {
    let scenario = format!(
        "description = \"a policy that throws, and one that returns the wrong thing\"\n\
         [grants]\nservices = [\"nginx\"]\n\
         [[case]]\nname = \"the exception is the call's error, with the line\"\n\
         event = {{ carp-changed = {{ vhid = 1, interface = \"em0\", state = \"master\" }} }}\n\
         expect = \"failed\"\nreason = \"{thrown}\"\n\
         [[case]]\nname = \"not a Plan\"\nevent = {{ timer-fired = \"t\" }}\n\
         expect = \"failed\"\nreason = \"{not_a_plan}\"\n"
    );
    std::fs::write(dir.join("broken.toml"), scenario).unwrap();
    assert_scenarios_pass(dir, &["broken.wasm", "broken.toml"], "2 passed, 0 failed");
}

/// `havenctl --no-cache test` with `args` in `dir` says `summary` (no artifact cache: each
/// test compiles the module it built, as an author's first run does).
fn assert_scenarios_pass(dir: &Path, args: &[&str], summary: &str) {
    let mut all = vec!["--no-cache", "test"];
    all.extend_from_slice(args);
    let output = run(dir, HAVENCTL, &all);
    assert!(
        stdout_text(&output).contains(summary),
        "{}",
        stdout_text(&output)
    );
}

/// A dry-run havend running `module` as policy `follow` (the scaffold's settings).
fn start_havend(setup: &Setup, module: &Path) -> Havend {
    let config = format!(
        "[[policy]]\nname = \"follow\"\nmodule = {module}\n[policy.grants]\nservices = \
         [\"nginx\"]\n[policy.settings]\nvhid = 1\nservice = \"nginx\"\n\n[daemon]\nexecutor = \
         \"dry-run\"\nstate-dir = {state}\ncontrol-dir = {control}\n",
        module = toml_path(module),
        state = toml_path(&setup.state_dir()),
        control = toml_path(&setup.control_dir()),
    );
    std::fs::write(setup.config(), config).unwrap();
    let mut daemon = Havend::launch(
        setup,
        &[],
        setup.path("havend.stderr"),
        std::time::Duration::from_millis(20),
        Some(40),
    );
    daemon.wait_ready();
    daemon
}

#[test]
fn a_python_policy_reloads_while_events_keep_being_decided() {
    if !python() {
        return;
    }
    let setup = Setup::in_tmp("python-reload-");
    run(
        setup.path("").as_path(),
        HAVENCTL,
        &["new", "--lang", "python", "follow"],
    );
    let dir = setup.path("follow");
    componentize_py(&dir, "app", "v1.wasm");
    // Version 2 says so in its name; a module the cache has never seen, so the reload compiles.
    let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
    std::fs::write(
        dir.join("app.py"),
        app.replace("version=\"0.1.0\"", "version=\"0.2.0\""),
    )
    .unwrap();
    componentize_py(&dir, "app", "v2.wasm");
    let module = dir.join("policy.wasm");
    std::fs::copy(dir.join("v1.wasm"), &module).unwrap();
    let daemon = start_havend(&setup, &module);
    let before = daemon.status().last_reload;

    std::fs::copy(dir.join("v2.wasm"), &module).unwrap();
    let reload = {
        let control = setup.control_dir();
        std::thread::spawn(move || {
            Command::new(HAVENCTL)
                .arg("--control-dir")
                .arg(control)
                .arg("reload")
                .output()
        })
    };
    // Events while the new version compiles: each is decided by the running version.
    let mut decided_during_reload = 0;
    let mut state = "master";
    loop {
        let status = daemon.status();
        if status.last_reload != before {
            break;
        }
        let event =
            format!(r#"{{"carp-changed":{{"vhid":1,"interface":"em0","state":"{state}"}}}}"#);
        state = if state == "master" {
            "backup"
        } else {
            "master"
        };
        assert!(daemon.havenctl(&["notify", &event]).status.success());
        let decided = poll_until(std::time::Duration::from_millis(5), || {
            let now = daemon.status();
            (now.decisions_total > status.decisions_total).then_some(now)
        })
        .unwrap_or_else(|| panic!("an event waited for the reload\n{}", daemon.diagnostics()));
        if decided.last_reload == before {
            decided_during_reload += 1;
        }
    }
    let _ = reload.join();
    let status = daemon.status();
    assert!(
        decided_during_reload >= 1,
        "the reload ended before an event could be sent: {:?}",
        status.last_reload
    );
    let policy = &status.policies[0];
    assert_eq!(policy.version, "0.2.0", "{:?}", status.last_reload);
    eprintln!("python reload: {decided_during_reload} events decided while it compiled");
}

/// `files` from the repository copied into `dir` under their own names, and the contract.
fn assemble(dir: &Path, files: &[&str]) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(dir.join("wit")).unwrap();
    std::fs::copy(
        repo.join("wit/haven-policy.wit"),
        dir.join("wit/haven-policy.wit"),
    )
    .unwrap();
    for file in files {
        let from = repo.join(file);
        std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
    }
}

/// Every scenario file of the seed, unchanged, against a port's `module`: every case passes,
/// as it does against the Rust seed (a file added to the seed is run here too).
fn seed_scenarios_pass(dir: &Path, module: &str) {
    let scenarios =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/carp-hast-switch/scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&scenarios)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 17, "{files:?}");
    let mut args = vec!["test", module];
    args.extend(files.iter().map(String::as_str));
    let output = run(dir, HAVENCTL, &args);
    let text = stdout_text(&output);
    // `N passed, 0 failed`, with every case of the seed's files (130 when this was written).
    let passed = text
        .lines()
        .last()
        .and_then(|summary| summary.strip_suffix(" passed, 0 failed"))
        .and_then(|count| count.parse::<u32>().ok());
    assert!(passed.is_some_and(|count| count >= 130), "{text}");
}

#[test]
fn the_python_port_of_the_seed_passes_its_scenario_files_unchanged() {
    if !python() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    assemble(
        dir,
        &[
            "policies/carp-hast-switch-py/app.py",
            "policies/carp-hast-switch-py/test_app.py",
            "sdk/python/haven_policy.py",
        ],
    );
    run(
        dir,
        "componentize-py",
        &["-d", "wit", "-w", "policy", "bindings", "."],
    );
    let unit = run(
        dir,
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
    );
    assert!(stdout_text(&unit).contains("6 passed"), "{unit:?}");
    componentize_py(dir, "app", "carp_hast_switch.wasm");
    seed_scenarios_pass(dir, "carp_hast_switch.wasm");
    imports_only_the_contract(dir, "carp_hast_switch.wasm");
}

#[test]
fn the_javascript_port_of_the_seed_passes_its_scenario_files_unchanged() {
    if !javascript() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    assemble(
        dir,
        &[
            "policies/carp-hast-switch-js/app.js",
            "policies/carp-hast-switch-js/app.test.js",
            "policies/carp-hast-switch-js/component.js",
            "sdk/js/haven_policy.js",
            "sdk/js/wasm_host.js",
        ],
    );
    // Node reads a folder's .js files as ES modules only with a package.json saying so.
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    let unit = run(dir, "node", &["--test"]);
    assert!(stdout_text(&unit).contains("# pass 6"), "{unit:?}");
    componentize_js(dir, "component.js", "carp_hast_switch.wasm");
    seed_scenarios_pass(dir, "carp_hast_switch.wasm");
    imports_only_the_contract(dir, "carp_hast_switch.wasm");
}
