//! Contract versions, with real components: a policy built against an older minor version of
//! `haven:policy` loads and runs on this host; one built against another major or a newer minor
//! is refused at admission, naming both versions. The rule is in `haven_runtime::admission`.
//!
//! The policy is `tests/policies/contract-1-0`, built against the frozen `haven:policy@1.0.0`.
//! Its other versions are made by rewriting the version in its names (`@1.0.0` is six bytes,
//! like `@2.0.0`), so they are the same policy in every other respect. That they would load but
//! for their version is shown by the patch and same-minor rewrites, which do.
//!
//! `tests/policies/contract-2-0`, built against the frozen `haven:policy@2.0.0`, shows the
//! previous major running as it is.
//!
//! Every case runs twice: as the core module `cargo build` makes (admitted by its core imports,
//! then made a component here) and as a component (admitted by its component imports/exports).

use haven_core::{CarpChange, CarpState, Config, Event, LogLevel, Machine, PolicyConfig};
use haven_runtime::admission::componentize;
use haven_runtime::{
    AdmissionError, CompiledPolicy, KvStore, LoadError, PolicyLog, Runtime, RuntimeOptions,
};
use haven_test_artifacts as artifacts;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The contract version the test policy was built against.
const BUILT_AGAINST: &str = "1.0.0";

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeOptions::default()).unwrap())
}

/// The test policy as if it had been built against `haven:policy@{version}`, in both forms a
/// policy may come in: `(form, bytes)`.
fn built_against(version: &str) -> [(&'static str, Vec<u8>); 2] {
    let core = std::fs::read(artifacts::CONTRACT_1_0_POLICY).unwrap();
    let component = componentize(&core).unwrap();
    [
        ("core module", with_version(&core, version)),
        ("component", with_version(&component, version)),
    ]
}

/// `bytes` with every `@1.0.0` (the version in each of the contract's import and export names,
/// and in the embedded WIT) replaced by `@{version}`, which must be as long.
fn with_version(bytes: &[u8], version: &str) -> Vec<u8> {
    let from = format!("@{BUILT_AGAINST}");
    let to = format!("@{version}");
    assert_eq!(from.len(), to.len(), "a rewrite must keep every length");
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = bytes.to_vec();
    let mut rewritten = 0;
    let mut at = 0;
    while let Some(found) = out[at..]
        .windows(from.len())
        .position(|window| window == from)
    {
        out[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + to.len();
        rewritten += 1;
    }
    assert!(rewritten > 0, "no `{BUILT_AGAINST}` names in the policy");
    out
}

fn config() -> PolicyConfig {
    let text = format!(
        "[[policy]]\nname = \"old\"\nmodule = \"{}\"\n",
        artifacts::CONTRACT_1_0_POLICY
    );
    Config::parse(&text, Path::new("test.toml"))
        .unwrap()
        .policies
        .remove(0)
}

/// Configure a compiled policy and hand it a timer event; check what it did through its
/// imports (carp, kv, log) and answered.
fn assert_runs(compiled: CompiledPolicy, context: &str) {
    let policy = runtime().configure(compiled, &config()).unwrap();
    let mut machine = Machine::default();
    machine.observe(&Event::CarpChanged(CarpChange {
        vhid: 1,
        interface: "em0".into(),
        state: CarpState::Master,
        previous: None,
    }));
    let kv = KvStore::from([("seen".to_owned(), "2".to_owned())]);
    let call = runtime().call(
        &policy,
        &Event::TimerFired("tick".into()),
        Arc::new(machine),
        Arc::new(kv),
    );
    let plan = call
        .result
        .unwrap_or_else(|failure| panic!("{context}: {failure}"));
    assert_eq!(
        plan.steps[0].to_string(),
        "alert warning contract 1.0 timer=tick seen=3 vhid1=master",
        "{context}"
    );
    assert_eq!(
        call.kv_writes,
        BTreeMap::from([("seen".to_owned(), Some("3".to_owned()))]),
        "{context}"
    );
    assert_eq!(
        call.logs,
        [PolicyLog {
            level: LogLevel::Info,
            message: "timer tick, seen 3".into(),
        }],
        "{context}"
    );
}

#[test]
fn a_policy_built_against_an_older_minor_loads_and_runs() {
    // 1.0.0 as built; 1.0.9 and 1.1.0 show that the rewrite alone keeps a policy loadable.
    for version in [BUILT_AGAINST, "1.0.9", "1.1.0"] {
        for (form, bytes) in built_against(version) {
            let context = format!("{form} built against {version}");
            let compiled = runtime()
                .compile(&bytes, &Default::default())
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            assert_eq!(compiled.contract, version, "{context}");
            assert_eq!(compiled.info.name, "contract-1-0", "{context}");
            assert!(
                compiled
                    .imports
                    .contains(&format!("haven:policy/kv@{version}")),
                "{context}: {:?}",
                compiled.imports
            );
            assert_runs(compiled, &context);
        }
    }
}

/// Compile the test policy as built against `version`, in both forms; each must be refused at
/// admission as built against `version`, with the host's message.
fn assert_refused(version: &str) {
    for (form, bytes) in built_against(version) {
        let error = runtime().compile(&bytes, &Default::default()).unwrap_err();
        assert!(
            matches!(
                &error,
                LoadError::Admission(AdmissionError::IncompatibleContract { found }) if found == version
            ),
            "{form} built against {version}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "was built against haven:policy@{version}; this host speaks haven:policy@4.0.0 \
                 and runs policies built against 1.0 to 1.1, 2.0, 3.0, 4.0"
            ),
            "{form}"
        );
    }
}

#[test]
fn a_policy_built_against_another_major_is_refused_naming_both_versions() {
    assert_refused("5.0.0");
    // The contract before it was declared stable: what every policy was built against before.
    assert_refused("0.1.0");
}

#[test]
fn a_policy_built_against_a_newer_minor_is_refused_naming_both_versions() {
    // It may import what this host lacks. Wasmtime alone would link it when it happens not to,
    // and otherwise fail naming a missing function rather than the versions that disagree.
    assert_refused("1.2.0");
    assert_refused("2.1.0");
    assert_refused("3.1.0");
}

/// A `1.x` policy that claims `2.0.0`, `3.0.0` or `4.0.0` passes admission (the versions are spoken)
/// but not the types of that contract: it is refused when loaded, never run with the wrong
/// types.
#[test]
fn a_policy_whose_types_do_not_match_its_claimed_major_is_refused_at_load() {
    for claimed in ["2.0.0", "3.0.0", "4.0.0"] {
        for (form, bytes) in built_against(claimed) {
            let error = runtime().compile(&bytes, &Default::default()).unwrap_err();
            assert!(
                error.to_string().contains("variant"),
                "{form} as {claimed}: {error}"
            );
        }
    }
}

/// A `1.x` policy cannot express the peer's events: the host does not deliver them to it.
#[test]
fn a_1_x_policy_is_not_handed_peer_events() {
    let [(_, core), _] = built_against(BUILT_AGAINST);
    let compiled = runtime().compile(&core, &Default::default()).unwrap();
    let loaded = runtime().configure(compiled, &config()).unwrap();
    assert!(!loaded.receives(&Event::Peer(haven_core::PeerEvent::Up)));
    assert!(
        !loaded.receives(&Event::Operator(haven_core::OperatorRequest {
            uid: 0,
            ask: haven_core::OperatorAsk::Switchover(None),
        }))
    );
    assert!(loaded.receives(&Event::TimerFired("tick".into())));
}

/// A `2.0` policy (`tests/policies/contract-2-0`, built against the frozen `wit/v2/`) runs on
/// this `3.x` host: it asks for the peer and the wall clock, hears the peer's events, and is
/// handed no operator request, which its contract cannot express.
#[test]
fn a_2_0_policy_runs_sees_the_peer_and_is_handed_no_operator_request() {
    let bytes = std::fs::read(artifacts::CONTRACT_2_0_POLICY).unwrap();
    let compiled = runtime().compile(&bytes, &Default::default()).unwrap();
    assert_eq!(compiled.contract, "2.0.0");
    let text = format!(
        "[[policy]]\nname = \"two\"\nmodule = \"{}\"\n",
        artifacts::CONTRACT_2_0_POLICY
    );
    let config = Config::parse(&text, Path::new("test.toml"))
        .unwrap()
        .policies
        .remove(0);
    let policy = runtime().configure(compiled, &config).unwrap();
    let operator = Event::Operator(haven_core::OperatorRequest {
        uid: 0,
        ask: haven_core::OperatorAsk::Maintenance(true),
    });
    assert!(!policy.receives(&operator));
    let witness = Event::Witness(haven_core::WitnessEvent {
        change: haven_core::WitnessChange::Reachable,
        state: haven_core::WitnessState::default(),
    });
    assert!(!policy.receives(&witness), "a 4.0 event");
    let facts = haven_core::PeerFacts {
        host: "hastb".into(),
        maintenance: true,
        alerts: vec!["critical: a 3.0 field".into()],
        ..Default::default()
    };
    let peer_event = Event::Peer(haven_core::PeerEvent::FactsChanged(facts.clone()));
    assert!(policy.receives(&peer_event));

    let mut machine = Machine {
        unix_ms: 1_764_876_003_000,
        ..Machine::default()
    };
    machine.peer.link = haven_core::PeerLink::Up;
    machine.peer.heard(facts, 0);
    let machine = Arc::new(machine);
    let answer = |event: &Event| {
        let call = runtime().call(&policy, event, Arc::clone(&machine), Arc::default());
        call.result
            .unwrap_or_else(|failure| panic!("{event:?}: {failure}"))
            .steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        answer(&Event::TimerFired("tick".into())),
        ["alert warning contract 2.0 timer=tick peer=up host=hastb wall=true"]
    );
    assert_eq!(
        answer(&peer_event),
        ["alert warning contract 2.0 facts from hastb"]
    );
}
