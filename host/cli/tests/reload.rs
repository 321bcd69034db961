//! Hot reload (issue 5) with the real `havend`: policy modules and configs replaced on disk
//! while the daemon runs (atomically, by rename, or written in place), SIGHUP and
//! `havenctl reload`, read back from the journal and from `havenctl status --json`.
//!
//! The two good versions of a module are the misbehaving test policy in its `good` behaviour
//! (a one-alert plan for every event), as built (A) and with a custom section appended (B):
//! the same code, a different file, so a different module hash in every decision record. The
//! broken versions are a truncated module, a module importing WASI, and bytes that are not
//! WebAssembly at all.
//!
//! Every wait is a bounded poll of a condition; the only sleeps are pacing (the event stream)
//! and letting time pass where the test is about time passing (a file held half-written, a
//! hold-down that must have ended). Every process a test starts is stopped and reaped by a
//! guard, also when the test fails.

mod common;

use common::{
    DEADLINE, DevdServer, Havend, Setup, poll_until, seed, send_line, stderr_text, stdout_text,
    toml_path,
};
use haven_core::{Action, CarpChange, CarpState, DevdAttribute, DevdEvent, DevdKind, Event, Plan};
use haven_daemon::control::{self, Request, Response};
use haven_daemon::journal::{DecisionOutcome, Entry, Record};
use haven_daemon::reload::ReloadOutcome;
use haven_daemon::status::Status;
use haven_test_artifacts::support::hastctl_list;
use nix::sys::signal::{Signal, kill};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Milliseconds since the Unix epoch, as the journal's `at`.
fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The first 12 characters of a module hash, as the journal's reload records and notes name
/// modules.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

// ------------------------------------------------------------------------------- modules

/// The versions of a policy module the tests write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// The misbehaving policy as built.
    A,
    /// The same with a custom section: another module hash.
    B,
    /// The first two thirds of B.
    Truncated,
    /// A policy importing WASI, which admission refuses.
    Wasi,
    /// Not WebAssembly at all.
    Garbage,
}

impl Version {
    fn bytes(self) -> Vec<u8> {
        let a = fs::read(haven_test_artifacts::MISBEHAVING_POLICY).unwrap();
        match self {
            Version::A => a,
            Version::B => {
                haven_test_artifacts::support::with_custom_section(&a, "haven-test-version", b"B")
            }
            Version::Truncated => {
                let b = Version::B.bytes();
                b[..b.len() * 2 / 3].to_vec()
            }
            Version::Wasi => fs::read(haven_test_artifacts::WASI_IMPORT_POLICY).unwrap(),
            Version::Garbage => b"#!/bin/sh\necho this is not a policy\n".repeat(64),
        }
    }

    fn good(self) -> bool {
        matches!(self, Version::A | Version::B)
    }

    /// What the reason of a rejected reload of this version says.
    fn rejected_because(self) -> &'static str {
        match self {
            Version::Truncated => "invalid WebAssembly",
            Version::Wasi => "policies get no WASI",
            Version::Garbage => "not a WebAssembly module or component",
            Version::A | Version::B => unreachable!("a good version"),
        }
    }
}

// ------------------------------------------------------------------------------- the setup

/// A `[[policy]]` entry running the misbehaving policy in `behaviour`, with `grants` (TOML
/// lines of `[policy.grants]`) and `limits` (of `[policy.limits]`).
fn misbehaving(name: &str, module: &Path, behaviour: &str, grants: &str, limits: &str) -> String {
    format!(
        "[[policy]]\nname = \"{name}\"\nmodule = {module}\non-failure = \"alert\"\n\n\
         [policy.grants]\n{grants}\n\n[policy.settings]\nbehaviour = \"{behaviour}\"\n\n\
         [policy.limits]\n{limits}\n\n",
        module = toml_path(module),
    )
}

impl Setup {
    fn new() -> Setup {
        Setup::in_tmp("havend-reload-")
    }

    /// havend's stderr: not in the watched folder, where its writes would be file events.
    fn stderr(&self) -> PathBuf {
        let logs = self.path("logs");
        fs::create_dir_all(&logs).unwrap();
        logs.join("havend.stderr")
    }

    /// The module file of the tests with one replaceable policy.
    fn module(&self) -> PathBuf {
        self.path("policy.wasm")
    }

    /// A whole config: `policies` (entries from [`misbehaving`] or [`seed`]), a dry-run
    /// daemon whose journal is never rotated, and devd if asked for.
    fn config_text(&self, policies: &[String], devd: bool) -> String {
        let mut text = policies.concat();
        text += &format!(
            "[daemon]\nexecutor = \"dry-run\"\nstate-dir = {}\ncontrol-dir = {}\n\
             journal-max-bytes = 1073741824\n",
            toml_path(&self.state_dir()),
            toml_path(&self.control_dir()),
        );
        if self.hastctl().exists() {
            // Read at startup; polled again only after this test is long over.
            text += &format!(
                "\n[sources.hastctl]\nprogram = {}\ninterval-ms = 3600000\ntimeout-ms = 20000\n",
                toml_path(&self.hastctl())
            );
        }
        if devd {
            text += &format!(
                "\n[sources.devd]\nsocket = {}\n",
                toml_path(&self.devd_socket())
            );
        }
        text
    }

    /// Replace a file atomically: write a temporary file in the same folder, then rename it
    /// over the file. A reader sees the old bytes or the new, never half.
    fn replace_bytes(&self, path: &Path, bytes: &[u8]) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let temporary = path.with_file_name(format!(".{name}.partial"));
        fs::write(&temporary, bytes).unwrap();
        fs::rename(&temporary, path).unwrap();
    }

    fn replace_config(&self, text: &str) {
        self.replace_bytes(&self.config(), text.as_bytes());
    }
}

/// The devd line of the steady stream's `seq`th event: an IFNET notify about a physical
/// interface, a generic `devd` event that never coalesces.
fn stream_line(seq: u64) -> String {
    format!("!system=IFNET subsystem=em0 type=LINK_UP seq={seq}\n")
}

/// The `seq` attribute of a stream event.
fn stream_seq(event: &Event) -> Option<u64> {
    let Event::Devd(devd) = event else {
        return None;
    };
    devd.attributes
        .iter()
        .find(|attribute| attribute.key == "seq")
        .and_then(|attribute| attribute.value.parse().ok())
}

/// A generic devd event for probes sent with `havenctl notify`'s request.
fn probe_event(tag: &str) -> Event {
    let attribute = |key: &str, value: &str| DevdAttribute {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    Event::Devd(DevdEvent {
        kind: DevdKind::Notify,
        device: None,
        parent: None,
        attributes: vec![
            attribute("system", "IFNET"),
            attribute("subsystem", "em1"),
            attribute("type", "LINK_UP"),
            attribute("probe", tag),
        ],
    })
}

fn carp_event(state: CarpState) -> Event {
    Event::CarpChanged(CarpChange {
        vhid: 1,
        interface: "em0".to_owned(),
        state,
        previous: None,
    })
}

// ------------------------------------------------------------------------ reading journals

/// An `event` record.
#[derive(Debug, Clone)]
struct Handled {
    index: usize,
    id: u64,
    source: String,
    event: Event,
    coalesced: u32,
}

fn events(records: &[Record]) -> Vec<Handled> {
    records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| match &record.entry {
            Entry::Event {
                event_id,
                source,
                event,
                coalesced,
            } => Some(Handled {
                index,
                id: *event_id,
                source: source.clone(),
                event: event.clone(),
                coalesced: *coalesced,
            }),
            _ => None,
        })
        .collect()
}

/// A `decision` record.
#[derive(Debug, Clone)]
struct Decided {
    index: usize,
    event_id: u64,
    policy: String,
    module_hash: String,
    outcome: DecisionOutcome,
    plan_id: Option<u64>,
    plan: Option<Plan>,
    reason: Option<String>,
}

fn all_decisions(records: &[Record]) -> Vec<Decided> {
    records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| match &record.entry {
            Entry::Decision {
                event_id,
                policy,
                module_hash,
                outcome,
                plan_id,
                plan,
                reason,
                ..
            } => Some(Decided {
                index,
                event_id: *event_id,
                policy: policy.clone(),
                module_hash: module_hash.clone(),
                outcome: *outcome,
                plan_id: *plan_id,
                plan: plan.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The decisions about event `id`.
fn decisions(records: &[Record], id: u64) -> Vec<Decided> {
    all_decisions(records)
        .into_iter()
        .filter(|decision| decision.event_id == id)
        .collect()
}

/// A `reload` record.
#[derive(Debug, Clone)]
struct Reloaded {
    index: usize,
    at: u64,
    why: String,
    result: String,
    changes: Vec<String>,
    /// `name@short-hash` of each policy in force after it (`loaded` only).
    policies: Vec<String>,
    reason: Option<String>,
}

impl Reloaded {
    fn loaded(&self) -> bool {
        self.result == "loaded"
    }

    /// The short module hash the reload put in force for `policy`.
    fn hash_of(&self, policy: &str) -> Option<&str> {
        self.policies
            .iter()
            .find_map(|entry| entry.strip_prefix(&format!("{policy}@")))
    }
}

fn reloads(records: &[Record]) -> Vec<Reloaded> {
    records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| match &record.entry {
            Entry::Reload {
                why,
                result,
                changes,
                policies,
                reason,
            } => Some(Reloaded {
                index,
                at: record.at,
                why: why.clone(),
                result: result.clone(),
                changes: changes.clone(),
                policies: policies.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The policies havend started with, `name → short hash`, from its start note
/// (`havend … started (…, policies: a@0123456789ab, b@…)`).
fn started_with(records: &[Record]) -> Option<BTreeMap<String, String>> {
    records.iter().find_map(|record| match &record.entry {
        Entry::Note { message } if message.starts_with("havend ") => {
            let list = message.split_once("policies: ")?.1.strip_suffix(')')?;
            Some(
                list.split(", ")
                    .filter(|entry| !entry.is_empty())
                    .filter_map(|entry| entry.split_once('@'))
                    .map(|(name, hash)| (name.to_owned(), hash.to_owned()))
                    .collect(),
            )
        }
        _ => None,
    })
}

/// Check, over the whole journal, that every decision was made by the module in force for its
/// policy when its event was taken: the one of the last `reload loaded` record before the
/// event record, or the one havend started with. Returns how many decisions were checked.
fn assert_each_decision_by_the_version_in_force(records: &[Record]) -> usize {
    let mut in_force = started_with(records).expect("havend's start note");
    let mut at_event: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
    let mut checked = 0;
    for (index, record) in records.iter().enumerate() {
        match &record.entry {
            Entry::Reload {
                result, policies, ..
            } if result == "loaded" => {
                in_force = policies
                    .iter()
                    .filter_map(|entry| entry.split_once('@'))
                    .map(|(name, hash)| (name.to_owned(), hash.to_owned()))
                    .collect();
            }
            Entry::Event { event_id, .. } => {
                assert!(
                    at_event.insert(*event_id, in_force.clone()).is_none(),
                    "event {event_id} journaled twice"
                );
            }
            Entry::Decision {
                event_id,
                policy,
                module_hash,
                ..
            } => {
                let versions = at_event
                    .get(event_id)
                    .unwrap_or_else(|| panic!("decision at {index} before its event"));
                assert_eq!(
                    versions.get(policy).map(String::as_str),
                    Some(short(module_hash)),
                    "decision at record {index} about event {event_id} by {policy}@{} while \
                     {versions:?} were in force when the event was taken",
                    short(module_hash)
                );
                checked += 1;
            }
            _ => {}
        }
    }
    checked
}

/// No reload was swapped in while a plan ran: every `reload` record lies outside every span
/// from a decision with a plan to that plan's `plan-end`.
fn assert_no_reload_mid_plan(records: &[Record]) {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        match &record.entry {
            Entry::Decision {
                plan_id: Some(plan_id),
                outcome: DecisionOutcome::Plan,
                ..
            } => {
                open.insert(*plan_id, index);
            }
            Entry::PlanEnd { plan_id, .. } => {
                open.remove(plan_id);
            }
            Entry::Reload { .. } => assert!(
                open.is_empty(),
                "reload record {index} while plans {open:?} were running"
            ),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------- the daemon

impl Havend {
    /// Start havend on the setup's config and wait until `havenctl status` gets an answer
    /// and every policy has decided its startup event.
    fn start(setup: &Setup) -> Havend {
        let mut daemon = Havend::launch(setup, &[], setup.stderr(), POLL, Some(60));
        daemon.wait_ready();
        daemon.wait_journal("every startup event decided", |records| {
            let policies = started_with(records)?.len();
            let startups: Vec<Handled> = events(records)
                .into_iter()
                .filter(|event| event.source == "startup")
                .collect();
            (startups.len() >= policies
                && startups
                    .iter()
                    .all(|event| !decisions(records, event.id).is_empty()))
            .then_some(())
        });
        daemon
    }

    /// `f` over every journal record so far.
    fn with_records<T>(&self, f: impl FnOnce(&[Record]) -> T) -> T {
        let mut journal = self.journal.borrow_mut();
        journal.refresh();
        f(&journal.records)
    }

    /// How many records the journal has now.
    fn mark(&self) -> usize {
        self.with_records(<[Record]>::len)
    }

    /// Wait until `probe` finds what it looks for in the journal.
    fn wait_journal<T>(&self, what: &str, mut probe: impl FnMut(&[Record]) -> Option<T>) -> T {
        poll_until(POLL, || self.with_records(&mut probe))
            .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", self.diagnostics()))
    }

    /// Wait for the first `reload` record at or after record `from`.
    fn wait_reload(&self, what: &str, from: usize) -> Reloaded {
        self.wait_journal(what, |records| {
            reloads(records)
                .into_iter()
                .find(|reload| reload.index >= from)
        })
    }

    /// Hand `event` to the daemon as `havenctl notify` does; its id.
    fn notify(&self, event: Event) -> u64 {
        let response = control::send(
            &self.control_dir,
            &Request::Notify { event },
            Duration::from_secs(10),
        )
        .expect("sending an event to havend");
        match response {
            Response::Ok { body } => body["event-id"]
                .as_u64()
                .unwrap_or_else(|| panic!("no event id in {body}")),
            Response::Error { message } => panic!("havend refused the event: {message}"),
        }
    }

    /// Send `event` and wait until `policies` decisions about it are journaled.
    fn decide(&self, what: &str, event: Event, policies: usize) -> Vec<Decided> {
        let id = self.notify(event);
        self.wait_journal(what, |records| {
            let found = decisions(records, id);
            assert!(found.len() <= policies, "{found:?}");
            (found.len() == policies).then_some(found)
        })
    }

    /// Send a probe event to a daemon with one policy; its decision.
    fn probe(&self, tag: &str) -> Decided {
        let what = format!("the decision about probe {tag}");
        self.decide(&what, probe_event(tag), 1).remove(0)
    }
}

/// The steps of a decision's plan, as text.
fn steps(decision: &Decided) -> Vec<String> {
    decision
        .plan
        .as_ref()
        .map(|plan| plan.steps.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

// ----------------------------------------------------------------------------------- tests

/// The event stream of the first test: devd lines with increasing `seq`, one every ~2 ms,
/// and never more than ~70 ahead of the loop (flow control through the control socket's
/// status, so that a slow, shared machine cannot overflow the queue). Returns how many lines were sent, and the connection (kept open until the end of the
/// test, so that havend does not see devd go away and resync).
fn stream(connection: OwnedFd, control_dir: PathBuf, stop: Arc<AtomicBool>) -> (u64, OwnedFd) {
    let mut sent = 0;
    while !stop.load(Ordering::Acquire) {
        send_line(&connection, &stream_line(sent));
        sent += 1;
        if sent % 8 == 0 {
            let started = Instant::now();
            loop {
                let response = control::send(&control_dir, &Request::Status, DEADLINE)
                    .expect("asking havend for its status");
                let Response::Ok { body } = response else {
                    panic!("status refused: {response:?}");
                };
                let status: Status = serde_json::from_value(body).unwrap();
                if status.queue.depth < 64 {
                    break;
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "the loop took no event for {DEADLINE:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (sent, connection)
}

#[test]
fn under_a_steady_stream_many_replacements_lose_or_repeat_no_event() {
    use Version::{A, B, Garbage, Truncated, Wasi};
    let setup = Setup::new();
    fs::write(setup.module(), A.bytes()).unwrap();
    let policy = misbehaving("stream", &setup.module(), "good", "", "");
    fs::write(setup.config(), setup.config_text(&[policy], true)).unwrap();
    let devd = DevdServer::bind(&setup.devd_socket());
    let daemon = Havend::start(&setup);
    let connection = devd.accept();
    let initial = daemon.with_records(|records| started_with(records).unwrap()["stream"].clone());

    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        let control_dir = setup.control_dir();
        std::thread::Builder::new()
            .name("devd-stream".to_owned())
            .spawn(move || stream(connection, control_dir, stop))
            .unwrap()
    };
    // Stop the stream also when an assertion below fails, so the thread ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let stopper = StopOnDrop(Arc::clone(&stop));

    // Good and broken versions alternating, two broken ones in a row once.
    let versions = [
        B, Truncated, A, Wasi, Garbage, B, Truncated, A, Garbage, B, Wasi, A, Truncated, B,
    ];
    let mut loaded_hashes = Vec::new();
    let mut in_force = initial.clone();
    for (n, version) in versions.into_iter().enumerate() {
        let from = daemon.mark();
        setup.replace_bytes(&setup.module(), &version.bytes());
        let what = format!("the outcome of replacement {n} ({version:?})");
        let outcome = daemon.wait_journal(&what, |records| {
            reloads(records).into_iter().find(|reload| {
                reload.index >= from
                    && if version.good() {
                        reload.loaded()
                    } else {
                        reload.result == "rejected"
                            && reload
                                .reason
                                .as_deref()
                                .is_some_and(|r| r.contains(version.rejected_because()))
                    }
            })
        });
        if version.good() {
            let hash = outcome.hash_of("stream").unwrap().to_owned();
            assert_ne!(hash, in_force, "{outcome:?}");
            assert_eq!(
                outcome.changes,
                vec![format!("policy `stream`: module {in_force} → {hash}")]
            );
            in_force = hash.clone();
            loaded_hashes.push(hash);
        } else {
            let reason = outcome.reason.as_deref().unwrap();
            assert!(
                reason.contains(&setup.module().display().to_string()),
                "the reason names the module file: {reason}"
            );
        }
        // The version in force (the new one, or the last good one after a rejection) decides
        // stream events before the next replacement.
        let what = format!("stream events decided after replacement {n} ({version:?})");
        daemon.wait_journal(&what, |records| {
            let decided_after = events(records)
                .iter()
                .filter(|event| event.index > outcome.index && event.source == "devd")
                .filter(|event| !decisions(records, event.id).is_empty())
                .count();
            (decided_after >= 3).then_some(())
        });
    }
    stop.store(true, Ordering::Release);
    let (sent, _connection) = sender.join().expect("the devd stream thread");
    drop(stopper);
    assert!(sent >= 100, "only {sent} events sent");

    let records = daemon.wait_journal("every streamed event decided", |records| {
        let handled: Vec<Handled> = events(records)
            .into_iter()
            .filter(|event| event.source == "devd")
            .collect();
        (handled.len() as u64 >= sent
            && handled
                .iter()
                .all(|event| !decisions(records, event.id).is_empty()))
        .then(|| records.to_vec())
    });

    // Every line sent was handled exactly once, in order, none coalesced, each decided once.
    let handled: Vec<Handled> = events(&records)
        .into_iter()
        .filter(|event| event.source == "devd")
        .collect();
    let seqs: Vec<u64> = handled
        .iter()
        .map(|event| stream_seq(&event.event).expect("a stream event"))
        .collect();
    assert_eq!(
        seqs,
        (0..sent).collect::<Vec<_>>(),
        "lost, repeated or reordered"
    );
    assert!(handled.iter().all(|event| event.coalesced == 0));
    let ids: BTreeSet<u64> = records_event_ids(&records);
    assert_eq!(
        ids.len(),
        events(&records).len(),
        "an event id journaled twice"
    );
    for event in &handled {
        let found = decisions(&records, event.id);
        assert_eq!(found.len(), 1, "event {}: {found:?}", event.id);
        assert!(found[0].index > event.index);
        assert_eq!(found[0].outcome, DecisionOutcome::Plan, "{found:?}");
    }
    // Each decided by the version in force when it was taken; never a swap mid-plan.
    let checked = assert_each_decision_by_the_version_in_force(&records);
    assert!(checked as u64 > sent);
    assert_no_reload_mid_plan(&records);

    // The loaded versions alternate between B and A, A being the one havend started with;
    // every broken version was rejected with its reason, once.
    let all = reloads(&records);
    let loaded: Vec<&str> = all
        .iter()
        .filter(|reload| reload.loaded())
        .map(|reload| reload.hash_of("stream").unwrap())
        .collect();
    assert_eq!(loaded, loaded_hashes);
    let (hash_a, hash_b) = (initial.as_str(), loaded_hashes[0].as_str());
    assert_ne!(hash_a, hash_b);
    let expected: Vec<&str> = versions
        .iter()
        .filter(|version| version.good())
        .map(|version| if *version == A { hash_a } else { hash_b })
        .collect();
    assert_eq!(loaded, expected);
    let rejected: Vec<&str> = all
        .iter()
        .filter(|reload| reload.result == "rejected")
        .map(|reload| reload.reason.as_deref().unwrap())
        .collect();
    // One rename is two watcher events (moved-to, and the pair); when they do not come within
    // the reloader's settle wait of each other, the same file is tried twice: the same
    // reason again.
    let mut distinct = rejected.clone();
    distinct.dedup();
    let broken: Vec<Version> = versions.into_iter().filter(|v| !v.good()).collect();
    assert_eq!(
        distinct.len(),
        broken.len(),
        "one rejection per broken version: {rejected:#?}"
    );
    for (reason, version) in distinct.iter().zip(&broken) {
        assert!(reason.contains(version.rejected_because()), "{reason}");
    }
    assert!(all.iter().all(|reload| reload.why.contains("policy.wasm")));

    println!(
        "{sent} events streamed, {checked} decisions checked, {} replacements: {} loaded, {} \
         rejected ({} broken versions)",
        versions.len(),
        loaded.len(),
        rejected.len(),
        broken.len()
    );
    let status = daemon.status();
    assert_eq!(status.queue.dropped, 0, "{status:?}");
    assert_eq!(status.queue.coalesced, 0, "{status:?}");
    assert_eq!(status.queue.depth, 0, "{status:?}");
    assert_eq!(status.sources["devd"].events, sent, "{status:?}");
    assert_eq!(status.reports_dropped, 0, "{status:?}");
    assert_eq!(status.reloads.loaded, loaded.len() as u64, "{status:?}");
    assert_eq!(status.reloads.rejected, rejected.len() as u64, "{status:?}");
    assert_eq!(status.policies.len(), 1);
    assert_eq!(short(&status.policies[0].module_hash), hash_b);
    drop(devd);
}

/// Every event id in the journal.
fn records_event_ids(records: &[Record]) -> BTreeSet<u64> {
    events(records).iter().map(|event| event.id).collect()
}

#[test]
fn a_half_written_module_is_never_loaded() {
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let policy = misbehaving("half", &setup.module(), "good", "", "");
    fs::write(setup.config(), setup.config_text(&[policy], false)).unwrap();
    let daemon = Havend::start(&setup);
    let initial = daemon.with_records(|records| started_with(records).unwrap()["half"].clone());
    assert_eq!(short(&daemon.probe("before").module_hash), initial);

    // Written in place, as `cp` does: truncated, then half of the new module, then a pause.
    let new = Version::B.bytes();
    let (first, rest) = new.split_at(new.len() / 2);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(setup.module())
        .unwrap();
    file.write_all(first).unwrap();
    let held = Instant::now();
    // Held open for four times the watcher's quiet fallback; the old version keeps deciding.
    let hold = haven_daemon::reload::QUIET_FALLBACK * 4;
    let mut probes = 0;
    while held.elapsed() < hold {
        std::thread::sleep(Duration::from_millis(100));
        let decision = daemon.probe(&format!("held {probes}"));
        assert_eq!(short(&decision.module_hash), initial, "{decision:?}");
        probes += 1;
    }
    let during = daemon.with_records(reloads);
    assert!(
        during.iter().all(|reload| !reload.loaded()),
        "a half-written module was loaded: {during:?}"
    );
    // inotify reports the writer's close, so a file still open is not even tried there.
    if cfg!(target_os = "linux") {
        assert!(
            during.is_empty(),
            "a half-written module was read for a reload: {during:?}\n{}",
            daemon.diagnostics()
        );
    }

    let from = daemon.mark();
    file.write_all(rest).unwrap();
    drop(file);
    let reload = daemon.wait_reload("the reload once the file is closed", from);
    assert!(reload.loaded(), "{reload:?}\n{}", daemon.diagnostics());
    let hash = reload.hash_of("half").unwrap().to_owned();
    assert_ne!(hash, initial);
    assert_eq!(short(&daemon.probe("after").module_hash), hash);
    let status = daemon.status();
    assert_eq!(status.reloads.loaded, 1, "{status:?}");
    let rejected = if cfg!(target_os = "linux") {
        0
    } else {
        status.reloads.rejected
    };
    assert_eq!(status.reloads.rejected, rejected, "{status:?}");
}

#[test]
fn a_broken_module_or_config_leaves_the_old_version_serving() {
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let policy = misbehaving("keeper", &setup.module(), "good", "", "");
    let good_config = setup.config_text(&[policy], false);
    fs::write(setup.config(), &good_config).unwrap();
    let daemon = Havend::start(&setup);
    let initial = daemon.with_records(|records| started_with(records).unwrap()["keeper"].clone());

    // Nothing changed.
    let output = daemon.havenctl(&["reload"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_text(&output), "unchanged\n");

    // A module importing WASI: rejected, and the old version keeps deciding.
    let from = daemon.mark();
    setup.replace_bytes(&setup.module(), &Version::Wasi.bytes());
    let reload = daemon.wait_reload("the rejection of the WASI module", from);
    assert_eq!(reload.result, "rejected", "{reload:?}");
    let reason = reload.reason.clone().unwrap();
    assert!(
        reason.contains("policy `keeper`")
            && reason.contains(&setup.module().display().to_string())
            && reason.contains("policies get no WASI"),
        "{reason}"
    );
    daemon.wait_journal("the rejection's alert", |records| {
        records[reload.index..]
            .iter()
            .any(|record| {
                matches!(&record.entry, Entry::Alert { message, .. }
                    if message.contains("reload rejected") && message.contains("WASI"))
            })
            .then_some(())
    });
    assert_eq!(short(&daemon.probe("after wasi").module_hash), initial);
    let json = daemon.status_json();
    assert_eq!(
        json["last-reload"]["outcome"]["result"], "rejected",
        "{json}"
    );
    assert_eq!(json["last-reload"]["outcome"]["reason"], reason.as_str());
    assert_eq!(json["reloads"]["rejected"], 1, "{json}");
    assert_eq!(json["reloads"]["loaded"], 0, "{json}");
    let status = daemon.status();
    assert_eq!(short(&status.policies[0].module_hash), initial);
    assert!(matches!(
        status.last_reload.as_ref().map(|last| &last.outcome),
        Some(ReloadOutcome::Rejected { .. })
    ));
    assert!(
        status
            .alerts
            .iter()
            .any(|alert| alert.message.contains("reload rejected")),
        "{status:?}"
    );

    // Asked for while the module is still broken: havenctl reload says why, and fails.
    let output = daemon.havenctl(&["reload"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr_text(&output);
    assert!(
        stderr.starts_with("havenctl: havend refused: reload rejected")
            && stderr.contains(&setup.module().display().to_string())
            && stderr.contains("policies get no WASI"),
        "{stderr}"
    );

    // A good module again: loaded.
    let from = daemon.mark();
    setup.replace_bytes(&setup.module(), &Version::B.bytes());
    let reload = daemon.wait_reload("the good module loaded", from);
    assert!(reload.loaded(), "{reload:?}");
    let hash_b = reload.hash_of("keeper").unwrap().to_owned();
    assert_eq!(short(&daemon.probe("after b").module_hash), hash_b);

    // A config with a typo in the grants, on a known line: rejected, with file:line.
    let typo = good_config.replace("[policy.grants]\n", "[policy.grants]\nservicez = [\"x\"]\n");
    let line = typo
        .lines()
        .position(|line| line.starts_with("servicez"))
        .unwrap()
        + 1;
    let at = format!("{}:{line}:", setup.config().display());
    let from = daemon.mark();
    setup.replace_config(&typo);
    let reload = daemon.wait_reload("the rejection of the broken config", from);
    assert_eq!(reload.result, "rejected", "{reload:?}");
    let reason = reload.reason.clone().unwrap();
    assert!(
        reason.contains(&at) && reason.contains("servicez"),
        "{reason}"
    );
    let output = daemon.havenctl(&["reload"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr_text(&output);
    assert!(
        stderr.contains("reload rejected") && stderr.contains(&at) && stderr.contains("servicez"),
        "{stderr}"
    );
    assert_eq!(short(&daemon.probe("after typo").module_hash), hash_b);

    // The good config back: nothing the policies depend on changed.
    setup.replace_config(&good_config);
    let output = daemon.havenctl(&["reload"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_text(&output), "unchanged\n");
    let status = daemon.status();
    // Rejected: the WASI module (watcher, havenctl), the typo (watcher, havenctl); the
    // watcher's may have been tried twice (see the stream test).
    let rejected = daemon.with_records(|records| {
        reloads(records)
            .iter()
            .filter(|reload| reload.result == "rejected")
            .count() as u64
    });
    assert!((4..=6).contains(&rejected), "{rejected}");
    assert_eq!(status.reloads.rejected, rejected, "{status:?}");
    assert_eq!(status.reloads.loaded, 1, "{status:?}");
    assert_eq!(short(&status.policies[0].module_hash), hash_b);
    daemon.with_records(|records| {
        assert_each_decision_by_the_version_in_force(records);
    });
}

#[test]
fn a_config_reload_that_changes_grants_takes_effect_for_the_next_event() {
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    // service(8) as [executor.tools] names it: sshd runs. The daemon reads the services of
    // the grants in force with it, so a reload that grants sshd has it read as running.
    let service = setup.state_dir().with_file_name("service");
    haven_test_artifacts::support::write_script(
        &service,
        "#!/bin/sh\n[ \"$1\" = sshd ] && [ \"$2\" = status ] && exit 0\nexit 3\n",
    );
    // The policy always asks for an alert and a start of sshd.
    let config = |grants: &str| {
        let policy = misbehaving("guarded", &setup.module(), "outside-grants", grants, "");
        setup.config_text(&[policy], false)
            + &format!(
                "\n[executor]\nservice-manager = \"sysv\"\n[executor.tools]\nservice = {}\n",
                toml_path(&service)
            )
    };
    fs::write(setup.config(), config("")).unwrap();
    let daemon = Havend::start(&setup);

    let refused = daemon.probe("not granted");
    assert_eq!(refused.outcome, DecisionOutcome::Refused, "{refused:?}");
    assert!(
        refused
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("sshd")),
        "{refused:?}"
    );

    for (n, (grants, outcome)) in [
        ("services = [\"sshd\"]", DecisionOutcome::Plan),
        ("", DecisionOutcome::Refused),
        ("services = [\"sshd\"]", DecisionOutcome::Plan),
    ]
    .into_iter()
    .enumerate()
    {
        let from = daemon.mark();
        setup.replace_config(&config(grants));
        let reload = daemon.wait_reload(&format!("config reload {n}"), from);
        assert!(reload.loaded(), "{reload:?}\n{}", daemon.diagnostics());
        assert_eq!(
            reload.changes,
            vec!["policy `guarded`: grants, settings or limits changed".to_owned()]
        );
        // The very next event is the policy's startup event, under the new grants.
        let next = daemon.wait_journal("the event after the reload", |records| {
            let event = events(records)
                .into_iter()
                .find(|event| event.index > reload.index)?;
            let found = decisions(records, event.id);
            (!found.is_empty()).then_some((event, found))
        });
        assert_eq!(next.0.source, "startup", "{next:?}");
        let Event::Startup(state) = &next.0.event else {
            panic!("not a startup: {next:?}");
        };
        let sshd_running = state.services.iter().any(|s| s.name == "sshd" && s.running);
        assert_eq!(sshd_running, outcome == DecisionOutcome::Plan, "{state:?}");
        assert_eq!(next.1.len(), 1);
        assert_eq!(next.1[0].outcome, outcome, "{next:?}");
        // And the same probe event as before.
        let decision = daemon.probe(&format!("after reload {n}"));
        assert_eq!(decision.outcome, outcome, "{decision:?}");
        if outcome == DecisionOutcome::Plan {
            assert_eq!(
                steps(&decision),
                vec!["alert warning first", "service start sshd"]
            );
        }
    }
    let status = daemon.status();
    assert_eq!(status.reloads.loaded, 3, "{status:?}");
    assert_eq!(status.policies[0].name, "guarded");
    assert!(status.policies[0].plans >= 2 && status.policies[0].refused >= 1);
}

#[test]
fn a_removed_policy_is_unloaded_and_its_timers_cancelled() {
    const HOLD_DOWN_MS: u64 = 4_000;
    let setup = Setup::new();
    setup.install_hastctl(&hastctl_list("test", "secondary", "complete", "0 (0B)"));
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let seed_module = Path::new(haven_test_artifacts::CARP_HAST_SWITCH);
    let other = misbehaving("other", &setup.module(), "good", "", "");
    let both = setup.config_text(
        &[seed("mysql", seed_module, HOLD_DOWN_MS), other.clone()],
        false,
    );
    fs::write(setup.config(), both).unwrap();
    let daemon = Havend::start(&setup);

    // CARP edges until the seed's hold-down arms its settle timer; the time it was armed.
    let mut master = true;
    let mut arm_settle_timer = |what: &str| -> u64 {
        for _ in 0..8 {
            let state = if master {
                CarpState::Master
            } else {
                CarpState::Backup
            };
            master = !master;
            let found = daemon.decide(what, carp_event(state), 2);
            let seed = found.iter().find(|d| d.policy == "mysql").unwrap();
            let arms = seed.plan.as_ref().is_some_and(|plan| {
                plan.steps
                    .iter()
                    .any(|step| matches!(&step.action, Action::SetTimer(t) if t.name == "settle"))
            });
            if arms {
                let plan_id = seed.plan_id.unwrap();
                return daemon.wait_journal("the settle timer armed", |records| {
                    records.iter().find_map(|record| match &record.entry {
                        Entry::PlanEnd {
                            plan_id: ended,
                            completed: true,
                            ..
                        } if *ended == plan_id => Some(record.at),
                        _ => None,
                    })
                });
            }
        }
        panic!(
            "the seed never armed its settle timer\n{}",
            daemon.diagnostics()
        );
    };
    let timer_fired = |records: &[Record], after: usize| {
        events(records)
            .into_iter()
            .filter(|event| {
                event.index > after && event.event == Event::TimerFired("settle".into())
            })
            .count()
    };

    // With the seed in place, the armed timer fires: what the removal must prevent.
    arm_settle_timer("a CARP edge");
    daemon.wait_journal("the settle timer firing", |records| {
        (timer_fired(records, 0) == 1).then_some(())
    });

    // Armed again, and the seed removed from the config before it fires.
    let armed_at = arm_settle_timer("a CARP edge after the first settle");
    let from = daemon.mark();
    setup.replace_config(&setup.config_text(&[other], false));
    let reload = daemon.wait_reload("the config without the seed loaded", from);
    assert!(reload.loaded(), "{reload:?}");
    assert_eq!(
        reload.changes,
        vec!["policy `mysql` removed; its timers are cancelled".to_owned()]
    );
    assert!(
        reload.at + 500 < armed_at + HOLD_DOWN_MS,
        "the reload came too late to tell (armed at {armed_at}, reloaded at {})",
        reload.at
    );
    assert_eq!(
        daemon.with_records(|records| timer_fired(records, 0)),
        1,
        "{}",
        daemon.diagnostics()
    );

    // Past the hold-down: an event now would come after the timer, had it stayed armed (the
    // loop fires due timers before it takes an event).
    let past = armed_at + HOLD_DOWN_MS + 1_000;
    while unix_ms() < past {
        std::thread::sleep(Duration::from_millis(50));
    }
    let found = daemon.decide(
        "a CARP edge after the hold-down",
        carp_event(CarpState::Master),
        1,
    );
    assert_eq!(found[0].policy, "other");
    daemon.with_records(|records| {
        assert_eq!(
            timer_fired(records, reload.index),
            0,
            "{}",
            daemon.diagnostics()
        );
        assert!(
            all_decisions(records)
                .iter()
                .filter(|decision| decision.index > reload.index)
                .all(|decision| decision.policy == "other")
        );
    });
    let status = daemon.status();
    let names: Vec<&str> = status.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["other"], "{status:?}");
}

#[test]
fn sighup_reloads() {
    // The config names a link; the module is replaced behind it, in a folder the watcher does
    // not watch: only SIGHUP can make havend notice.
    let setup = Setup::new();
    let store = setup.path("store");
    fs::create_dir(&store).unwrap();
    let target = store.join("current.wasm");
    fs::write(&target, Version::A.bytes()).unwrap();
    std::os::unix::fs::symlink(&target, setup.module()).unwrap();
    let policy = misbehaving("hup", &setup.module(), "good", "", "");
    fs::write(setup.config(), setup.config_text(&[policy], false)).unwrap();
    let daemon = Havend::start(&setup);
    let initial = daemon.with_records(|records| started_with(records).unwrap()["hup"].clone());

    let from = daemon.mark();
    setup.replace_bytes(&target, &Version::B.bytes());
    // Unnoticed until the signal.
    assert_eq!(short(&daemon.probe("before").module_hash), initial);
    assert!(daemon.with_records(|records| reloads(&records[from..]).is_empty()));

    kill(daemon.pid(), Signal::SIGHUP).unwrap();
    let reload = daemon.wait_reload("the reload after SIGHUP", from);
    assert!(reload.loaded(), "{reload:?}");
    assert_eq!(reload.why, "SIGHUP");
    let hash = reload.hash_of("hup").unwrap().to_owned();
    assert_ne!(hash, initial);
    assert_eq!(short(&daemon.probe("after").module_hash), hash);

    // SIGHUP with nothing changed: no reload record, the same version.
    kill(daemon.pid(), Signal::SIGHUP).unwrap();
    poll_until(POLL, || {
        fs::read_to_string(setup.stderr())
            .unwrap()
            .contains("reload: nothing changed")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no unchanged reload logged\n{}", daemon.diagnostics()));
    assert_eq!(short(&daemon.probe("unchanged").module_hash), hash);
    assert_eq!(daemon.with_records(reloads).len(), 1);
    let status = daemon.status();
    assert_eq!(status.reloads.loaded, 1, "{status:?}");
}

#[test]
fn a_reload_is_not_lost_when_the_loop_is_busy_and_reports_pile_up() {
    // A policy that spins until its deadline, for every event: while it does, the loop takes
    // nothing, and reports from the sources pile up.
    const BUSY_MS: u64 = 10_000;
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let busy_module = setup.path("busy.wasm");
    fs::write(&busy_module, Version::A.bytes()).unwrap();
    let config = |deadline_ms: u64| {
        let busy = misbehaving(
            "busy",
            &busy_module,
            "loop-forever",
            "",
            &format!("deadline-ms = {deadline_ms}"),
        );
        let main = misbehaving("main", &setup.module(), "good", "", "");
        setup.config_text(&[busy, main], true)
    };
    fs::write(setup.config(), config(50)).unwrap();
    let devd = DevdServer::bind(&setup.devd_socket());
    let daemon = Havend::start(&setup);
    let connection = devd.accept();
    let initial = daemon.with_records(|records| started_with(records).unwrap()["main"].clone());
    let status = |what: &str, until: &dyn Fn(&Status) -> bool| -> Status {
        poll_until(POLL, || {
            let status = daemon.status();
            until(&status).then_some(status)
        })
        .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", daemon.diagnostics()))
    };

    // The busy policy's new deadline: the reload's startup event keeps the loop busy.
    setup.replace_config(&config(BUSY_MS));
    let busy = status("the config reload swapped in", &|status| {
        status.reloads.loaded == 1
    });
    let busy_since = Instant::now();
    // More reports than the inbox keeps, while the loop is busy.
    for n in 0..haven_daemon::inbox::MAX_REPORTS + 100 {
        send_line(&connection, &format!("not a devd line {n}\n"));
    }
    status("reports dropped", &|status| status.reports_dropped > 0);

    // A new module for `main`, prepared while the loop is still busy.
    setup.replace_bytes(&setup.module(), &Version::B.bytes());
    poll_until(POLL, || {
        let stderr = fs::read_to_string(setup.stderr()).unwrap();
        (stderr.matches("reload ready").count() == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("the module reload not prepared\n{}", daemon.diagnostics()));
    let still = daemon.status();
    assert!(
        still.decisions_total == busy.decisions_total
            && busy_since.elapsed() < Duration::from_millis(BUSY_MS),
        "the loop was no longer busy when the reload was ready: cannot tell"
    );

    // Once the loop is free again, the new module is in force.
    let reload = daemon.wait_journal("the module reload", |records| {
        reloads(records)
            .into_iter()
            .filter(|reload| reload.loaded())
            .nth(1)
    });
    let hash = reload.hash_of("main").unwrap();
    assert_ne!(hash, initial);
    let status = daemon.status();
    assert_eq!(short(&status.policies[1].module_hash), hash, "{status:?}");
    assert_eq!(status.reloads.loaded, 2, "{status:?}");
    drop(connection);
}

#[test]
fn a_module_rejected_while_running_does_not_stop_the_next_start() {
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let keeper = misbehaving("keeper", &setup.module(), "good", "", "");
    fs::write(
        setup.config(),
        setup.config_text(std::slice::from_ref(&keeper), false),
    )
    .unwrap();
    let daemon = Havend::start(&setup);
    let hash_a = short(&daemon.probe("before").module_hash).to_owned();

    // The module is replaced by one that does not load: rejected, the old version serves.
    let from = daemon.mark();
    setup.replace_bytes(&setup.module(), &Version::Wasi.bytes());
    let reload = daemon.wait_reload("the rejection of the WASI module", from);
    assert_eq!(reload.result, "rejected", "{reload:?}");
    drop(daemon);

    // The next start, with the broken file still in place and a new policy whose module never
    // loaded: the keeper runs its last good version from the cache, the newcomer is reported
    // not running, and the daemon serves.
    let newcomer_module = setup.path("newcomer.wasm");
    fs::write(&newcomer_module, Version::Garbage.bytes()).unwrap();
    let newcomer = misbehaving("newcomer", &newcomer_module, "good", "", "");
    fs::write(
        setup.config(),
        setup.config_text(&[keeper, newcomer], false),
    )
    .unwrap();
    let daemon = Havend::start(&setup);
    assert_eq!(short(&daemon.probe("after restart").module_hash), hash_a);
    let status = daemon.status();
    let alerts: Vec<&str> = status.alerts.iter().map(|a| a.message.as_str()).collect();
    assert!(
        alerts.iter().any(|alert| alert.contains("policy `keeper`")
            && alert.contains("policies get no WASI")
            && alert.contains(&format!("running its last good version {hash_a}"))),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().any(
            |alert| alert.starts_with("policy `newcomer` is not running")
                && alert.contains("not a WebAssembly module")
        ),
        "{alerts:?}"
    );
    assert_eq!(status.policies.len(), 1, "{status:?}");
}

#[test]
fn text_a_policy_controls_is_escaped_in_log_and_status() {
    let setup = Setup::new();
    fs::write(setup.module(), Version::A.bytes()).unwrap();
    let policy = misbehaving("forger", &setup.module(), "injection", "", "");
    fs::write(setup.config(), setup.config_text(&[policy], false)).unwrap();
    let daemon = Havend::start(&setup);
    // Its alert (raised for its startup event) tries to forge a journal line and to clear the
    // operator's screen.
    daemon.wait_journal("the forger's alert", |records| {
        records
            .iter()
            .any(|record| matches!(&record.entry, Entry::Alert { message, .. } if message.contains("forged")))
            .then_some(())
    });
    let log = daemon.havenctl(&[
        "log",
        "--state-dir",
        &setup.state_dir().display().to_string(),
    ]);
    assert!(log.status.success(), "{log:?}");
    let status = daemon.havenctl(&["status"]);
    assert!(status.status.success(), "{status:?}");
    for (what, output) in [("log", &log.stdout), ("status", &status.stdout)] {
        assert!(
            !output.iter().any(|byte| *byte == 0x1b || *byte == 0),
            "{what}: an escape or NUL byte reached the terminal"
        );
        let text = String::from_utf8_lossy(output);
        assert!(
            text.contains("all good\\n2026-12-04T00:00:00Z decision 9 by mysql@ffff"),
            "{what}: {text}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{what}: {text}");
    }
    // Every line of the log is a record of its own: none was forged.
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.lines()
            .all(|line| line.starts_with("20") && line.contains(" #")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|line| line.starts_with("2026-12-04T00:00:00Z")),
        "{log}"
    );
}
