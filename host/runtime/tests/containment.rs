//! Containment: a broken, hostile or slow policy is stopped or refused with a clear reason,
//! and the next event to a good policy is served normally.
//!
//! Every misbehaviour runs in the real runtime, from real modules built by
//! `haven-test-artifacts`.

use haven_core::{Action, Config, Event, Machine, PolicyConfig};
use haven_runtime::pipeline::Recipients;
use haven_runtime::{
    AdmissionError, CallFailure, LoadError, Outcome, Pipeline, Runtime, RuntimeOptions,
};
use haven_test_artifacts as artifacts;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// One runtime (and its compiled modules, via the cache) for the whole test binary. Every
/// policy's instances are made ahead ([`RuntimeOptions::spares`] zero), so each misbehaviour
/// is contained on that path too; the rest of the tests use the default, where the small Rust
/// modules make their own.
fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            // In cargo's temporary folder for integration tests (under `target/`, so nothing
            // is left in /tmp); the cache is keyed by module hash, so runs may share it.
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("haven-containment-cache");
            Arc::new(
                Runtime::new(RuntimeOptions {
                    cache_dir: Some(cache),
                    spares: Some(std::time::Duration::ZERO),
                    ..RuntimeOptions::default()
                })
                .unwrap(),
            )
        })
        .clone()
}

/// A config entry for the misbehaving module with a behaviour and extra TOML lines. Calls get
/// a generous deadline unless a test sets its own: these tests are about containment, and
/// must not depend on how loaded the machine is.
fn misbehaving(name: &str, behaviour: &str, extra: &str) -> PolicyConfig {
    let text = format!(
        "[limits]\ndeadline-ms = 5000\n[[policy]]\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n[policy.settings]\nbehaviour = \"{behaviour}\"\n",
        artifacts::MISBEHAVING_POLICY
    );
    Config::parse(&text, Path::new("test.toml"))
        .unwrap()
        .policies
        .remove(0)
}

fn timer_event() -> Event {
    Event::TimerFired("tick".into())
}

/// A pipeline with the misbehaving policy and a good one after it.
fn pipeline_with(bad: PolicyConfig) -> Pipeline {
    let runtime = runtime();
    let good = misbehaving("good", "good", "");
    let policies = vec![runtime.load(&bad).unwrap(), runtime.load(&good).unwrap()];
    Pipeline::new(runtime, policies, Machine::default())
}

/// Dispatch one event: the bad policy's outcome, after checking the good one was served.
/// What an outcome's failure says, as the journal and the operator read it.
trait FailureText {
    fn failure_text(&self) -> String;
}

impl FailureText for Outcome {
    fn failure_text(&self) -> String {
        match self {
            Outcome::Failed(failure) => failure.to_string(),
            other => panic!("not a failure: {other:?}"),
        }
    }
}

fn bad_outcome(bad: PolicyConfig) -> Outcome {
    let mut pipeline = pipeline_with(bad);
    let mut decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert_good_served(&decisions[1]);
    // And again: a trapped instance must not poison the next call.
    let again = pipeline.dispatch(2, &timer_event(), Recipients::Concerned);
    assert_good_served(&again[1]);
    assert_eq!(
        again[0].outcome, decisions[0].outcome,
        "same misbehaviour, same outcome"
    );
    decisions.swap_remove(0).outcome
}

fn assert_good_served(decision: &haven_runtime::Decision) {
    assert_eq!(decision.policy, "good");
    let Outcome::Plan { plan, .. } = &decision.outcome else {
        panic!("good policy not served: {:?}", decision.outcome)
    };
    assert_eq!(plan.steps[0].to_string(), "alert warning timer seen=1");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let started = Instant::now();
    let outcome = bad_outcome(misbehaving(
        "bad",
        "loop-forever",
        "[policy.limits]\ndeadline-ms = 20",
    ));
    assert_eq!(outcome, Outcome::Failed(CallFailure::Deadline(20)));
    // Two loops ran to their deadline; not a timing assertion, a sanity bound on "stopped".
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_cap() {
    let outcome = bad_outcome(misbehaving(
        "bad",
        "allocate-forever",
        "[policy.limits]\nmemory-mib = 8",
    ));
    assert_eq!(outcome, Outcome::Failed(CallFailure::Memory(8)));
}

#[test]
fn unbounded_recursion_is_stopped() {
    let outcome = bad_outcome(misbehaving("bad", "recurse-forever", ""));
    let Outcome::Failed(failure) = outcome else {
        panic!("recursion not stopped: {outcome:?}")
    };
    // Either wasmtime's native stack guard or the guest's shadow stack running off the bottom
    // of linear memory stops it.
    assert!(
        failure == CallFailure::StackOverflow || failure.to_string().contains("out of bounds"),
        "{failure}"
    );
}

#[test]
fn a_panic_is_a_trap_with_a_reason() {
    let outcome = bad_outcome(misbehaving("bad", "panic", ""));
    assert_eq!(
        outcome.clone(),
        Outcome::Failed(CallFailure::Trap(
            "unreachable code reached (a panic or abort in the policy)".into()
        ))
    );
}

#[test]
fn a_huge_plan_is_refused() {
    // A generous deadline: lifting 100,000 steps in an unoptimised test build takes a while,
    // and this test is about the length limit, not the deadline.
    // 100,000 steps are more than the default transfer budget: refused while wasmtime lifts
    // them, before the host allocates them.
    let outcome = bad_outcome(misbehaving("bad", "huge-plan", ""));
    assert_eq!(
        outcome,
        Outcome::Failed(CallFailure::TooMuchText(256 * 1024))
    );
    // With a budget that lets them through, the step limit refuses the plan.
    let outcome = bad_outcome(misbehaving(
        "bad",
        "huge-plan",
        "[policy.limits]\ndeadline-ms = 10000\nmax-text-bytes = 67108864",
    ));
    assert_eq!(
        outcome,
        Outcome::Failed(CallFailure::PlanTooLong {
            steps: 100_000,
            limit: 64
        })
    );
}

#[test]
fn oversized_text_fails_the_call_before_it_reaches_the_host() {
    let generous = "[policy.limits]\nmemory-mib = 64";
    for behaviour in ["huge-error", "huge-alert"] {
        let outcome = bad_outcome(misbehaving("bad", behaviour, generous));
        assert_eq!(
            outcome,
            Outcome::Failed(CallFailure::TooMuchText(256 * 1024)),
            "{behaviour}"
        );
        assert_eq!(
            outcome.failure_text(),
            "handed the host more than 262144 bytes in one transfer (a string or list over \
             limits.max-text-bytes)"
        );
    }
}

#[test]
fn text_that_is_not_utf8_is_one_clear_line() {
    let outcome = bad_outcome(misbehaving("bad", "not-utf8", ""));
    let text = outcome.failure_text();
    assert!(
        text.starts_with("handed the host text that is not valid UTF-8 (invalid utf-8 sequence"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line, no backtrace: {text}");
}

#[test]
fn a_query_flood_costs_a_counter() {
    let mut pipeline = pipeline_with(misbehaving("bad", "query-flood", ""));
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert_eq!(decisions[0].refused_count, 200_000);
    assert_eq!(
        decisions[0].refused_queries.len(),
        haven_runtime::call_context::MAX_REFUSED_KEPT
    );
    assert_eq!(pipeline.stats("bad").refused_queries, 200_000);
}

#[test]
fn removing_absent_keys_keeps_nothing() {
    let mut pipeline = pipeline_with(misbehaving("bad", "kv-remove-flood", ""));
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert!(matches!(decisions[0].outcome, Outcome::Plan { .. }));
    assert!(pipeline.kv("bad").is_empty());
}

#[test]
fn a_step_timeout_over_the_limit_is_refused() {
    let outcome = bad_outcome(misbehaving(
        "bad",
        "long-timeout",
        "[policy.grants]\nservices = [\"mysql-server\"]",
    ));
    let Outcome::Refused(refusal) = outcome else {
        panic!("not refused: {outcome:?}")
    };
    assert_eq!(
        refusal.to_string(),
        "step 0 `service start mysql-server timeout=4294967295` refused: timeout of 4294967295 \
         ms is over limits.max-step-timeout-ms = 3600000"
    );
}

#[test]
fn a_failing_policy_alerts_once_and_counts_the_repeats() {
    let mut pipeline = pipeline_with(misbehaving("bad", "panic", ""));
    let alerts: Vec<Option<String>> = (1..=5)
        .map(|id| {
            pipeline.dispatch(id, &timer_event(), Recipients::Concerned)[0]
                .host_alert
                .clone()
        })
        .collect();
    assert!(alerts[0].is_some());
    assert_eq!(alerts[1..], [None, None, None, None]);
    assert_eq!(pipeline.stats("bad").alerts_coalesced, 4);
    assert_eq!(pipeline.stats("bad").failed, 5);
    // Long enough later, it is raised again, with the count.
    pipeline.machine_mut().now_ms += haven_runtime::pipeline::ALERT_REPEAT_MS;
    let again = pipeline.dispatch(6, &timer_event(), Recipients::Concerned);
    let alert = again[0].host_alert.as_deref().unwrap();
    assert!(
        alert.ends_with("(repeated 5 times in the last 600 s)"),
        "{alert}"
    );
}

#[test]
fn a_plan_outside_the_grants_is_refused_whole() {
    let outcome = bad_outcome(misbehaving(
        "bad",
        "outside-grants",
        "[policy.grants]\nservices = [\"mysql-server\"]",
    ));
    let Outcome::Refused(refusal) = outcome else {
        panic!("not refused: {outcome:?}")
    };
    assert_eq!(
        refusal.to_string(),
        "step 1 `service start sshd` refused: service `sshd` is not in grants.services"
    );
}

#[test]
fn queries_outside_the_grants_are_refused_and_recorded() {
    let mut pipeline = pipeline_with(misbehaving("bad", "query-outside-grants", ""));
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert_eq!(
        decisions[0].refused_queries,
        vec!["service `sshd` is not in grants.services"]
    );
    let Outcome::Plan { plan, .. } = &decisions[0].outcome else {
        panic!()
    };
    assert!(
        plan.steps[0].to_string().contains("NotGranted"),
        "{}",
        plan.steps[0]
    );
}

#[test]
fn a_log_flood_is_cut_at_the_budget() {
    let mut pipeline = pipeline_with(misbehaving("bad", "log-flood", ""));
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert_eq!(decisions[0].logs.len(), 100);
    assert_eq!(decisions[0].dropped_logs, 10_000 - 100);
    assert!(matches!(decisions[0].outcome, Outcome::Plan { .. }));
}

#[test]
fn failure_mode_alert_raises_an_operator_alert() {
    let mut pipeline = pipeline_with(misbehaving("bad", "panic", ""));
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    let alert = decisions[0].host_alert.as_deref().unwrap();
    assert!(
        alert.starts_with("policy `bad` trapped: unreachable"),
        "{alert}"
    );

    let mut quiet = pipeline_with(misbehaving("bad", "panic", "on-failure = \"log\""));
    let decisions = quiet.dispatch(1, &timer_event(), Recipients::Concerned);
    assert_eq!(decisions[0].host_alert, None);
}

#[test]
fn every_event_gets_a_fresh_instance_and_kv_writes_stick_only_on_success() {
    let mut pipeline = pipeline_with(misbehaving("bad", "kv-counter", ""));
    // Odd counts fail after writing: the write must be discarded, so the count stays 0, 1...
    let first = pipeline.dispatch(1, &timer_event(), Recipients::Only("bad"));
    assert!(matches!(
        first[0].outcome,
        Outcome::Failed(CallFailure::Returned(_))
    ));
    assert_eq!(pipeline.kv("bad").get("count"), None);
    // The good policy's counter of events seen by its instance stays at 1: no state leaks.
    for id in 2..5 {
        let decisions = pipeline.dispatch(id, &timer_event(), Recipients::Only("good"));
        assert_good_served(&decisions[0]);
    }
}

#[test]
fn instances_made_ahead_are_fresh_and_more_policies_than_spares_are_all_served() {
    let runtime = runtime();
    let policies: Vec<_> = (0..haven_runtime::MAX_SPARES + 3)
        .map(|i| {
            runtime
                .load(&misbehaving(&format!("good{i}"), "good", ""))
                .unwrap()
        })
        .collect();
    for round in 0..4 {
        for policy in &policies {
            assert!(policy.spared(), "{}: instances not made ahead", policy.name);
            let call = runtime.call(policy, &timer_event(), Arc::default(), Arc::default());
            // Seen=1 every time: each call's instance, spare or not, is fresh.
            let plan = call
                .result
                .unwrap_or_else(|failure| panic!("round {round}, {}: {failure}", policy.name));
            assert_eq!(plan.steps[0].to_string(), "alert warning timer seen=1");
        }
    }
}

fn load_error(module: &str) -> LoadError {
    let mut config = misbehaving("bad", "good", "");
    config.module = module.into();
    runtime().load(&config).unwrap_err()
}

#[test]
fn a_wasi_import_is_refused_at_admission_naming_it() {
    let error = load_error(artifacts::WASI_IMPORT_POLICY);
    assert!(
        matches!(&error, LoadError::Admission(AdmissionError::ImportsWasi(_))),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("imports `wasi_snapshot_preview1::random_get`: policies get no WASI"),
        "{error}"
    );
}

#[test]
fn an_unknown_import_is_refused_at_admission_naming_it() {
    let error = load_error(artifacts::UNKNOWN_IMPORT_POLICY);
    assert_eq!(
        error.to_string(),
        "imports `evil:net/socket@1.0.0::connect`, which is not part of Haven's contract (haven:policy/*)"
    );
}

#[test]
fn bad_settings_and_garbage_are_refused_at_load() {
    let rejected = runtime()
        .load(&misbehaving("bad", "reject-settings", ""))
        .unwrap_err();
    assert_eq!(
        rejected.to_string(),
        "rejected its settings: init failed: these settings are rejected on purpose"
    );
    let garbage = std::env::temp_dir().join(format!("haven-garbage-{}.wasm", std::process::id()));
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    assert_eq!(
        load_error(garbage.to_str().unwrap()).to_string(),
        "not a WebAssembly module or component"
    );
    std::fs::remove_file(garbage).unwrap();
    let missing = load_error("/nonexistent/policy.wasm").to_string();
    assert!(
        missing.starts_with("cannot read /nonexistent/policy.wasm:"),
        "{missing}"
    );
}

#[test]
fn a_second_load_comes_from_the_artifact_cache() {
    let config = misbehaving("cached", "good", "");
    let first = runtime().load(&config).unwrap();
    let second = runtime().load(&config).unwrap();
    assert!(second.compiled.from_cache);
    assert_eq!(first.compiled.module_hash, second.compiled.module_hash);
    assert_eq!(second.compiled.info.name, "misbehaving");
}

#[test]
fn the_startup_event_reaches_each_policy_with_its_own_view() {
    let mut pipeline = pipeline_with(misbehaving("bad", "good", ""));
    let decisions = pipeline.startup(1);
    assert_eq!(decisions.len(), 2);
    for decision in decisions {
        let Outcome::Plan { plan, .. } = decision.outcome else {
            panic!()
        };
        assert!(
            matches!(&plan.steps[0].action, Action::Alert(alert) if alert.message == "startup seen=1")
        );
    }
}

#[test]
fn a_component_is_accepted_as_it_is() {
    let core = std::fs::read(artifacts::MISBEHAVING_POLICY).unwrap();
    let component = haven_runtime::admission::componentize(&core).unwrap();
    assert!(wasmparser_is_component(&component));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("component.wasm");
    std::fs::write(&path, &component).unwrap();
    let mut config = misbehaving("component", "good", "");
    config.module = path;
    let policy = runtime().load(&config).unwrap();
    assert_eq!(policy.compiled.info.name, "misbehaving");
    let mut pipeline = Pipeline::new(runtime(), vec![policy], Machine::default());
    let decisions = pipeline.dispatch(1, &timer_event(), Recipients::Concerned);
    assert!(matches!(decisions[0].outcome, Outcome::Plan { .. }));
}

/// A component's preamble: magic, then version 0x0d and layer 1.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00])
}

/// A config entry for a module that misbehaves in `describe`, with extra `[policy.limits]` and
/// a generous deadline (these tests are about memory and text, not time).
fn describing(module: &str, limits: &str) -> PolicyConfig {
    let text = format!(
        "[limits]\ndeadline-ms = 5000\n[[policy]]\nname = \"d\"\nmodule = \"{module}\"\n\
         [policy.limits]\n{limits}\n"
    );
    Config::parse(&text, Path::new("test.toml"))
        .unwrap()
        .policies
        .remove(0)
}

#[test]
fn describe_runs_under_the_policys_own_limits() {
    let runtime = runtime();
    let refused = runtime
        .load(&describing(artifacts::BIG_DESCRIBE_POLICY, ""))
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("describe failed: exceeded its memory limit of 16 MiB (memory-mib in"),
        "{refused}"
    );
    let loaded = runtime
        .load(&describing(
            artifacts::BIG_DESCRIBE_POLICY,
            "memory-mib = 64",
        ))
        .unwrap();
    assert_eq!(loaded.compiled.info.name, "big-describe");
}

#[test]
fn a_huge_version_string_is_refused_at_load() {
    let refused = runtime()
        .load(&describing(
            artifacts::HUGE_VERSION_POLICY,
            "memory-mib = 64",
        ))
        .unwrap_err();
    assert!(
        matches!(refused, LoadError::Describe(CallFailure::TooMuchText(_))),
        "{refused}"
    );
    // Under a transfer budget that lets it through, the length of a version is still bounded.
    let refused = runtime()
        .load(&describing(
            artifacts::HUGE_VERSION_POLICY,
            "memory-mib = 64\nmax-text-bytes = 67108864",
        ))
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "describe failed: described itself with a version of 12582912 bytes (1 to 64 allowed)"
    );
}
