use super::*;
use haven_core::Machine;
use haven_core::{
    Action, CarpChange, CarpState, HastRole, Missing, PlanRefusal, ServiceOp, ServiceRequest,
    SetHastRole,
};
use haven_runtime::{CallFailure, Outcome as RuntimeOutcome};
use std::sync::Arc;
use std::time::Duration;

fn step(resource: &str) -> Step {
    Step {
        action: Action::SetHastRole(SetHastRole {
            resource: resource.into(),
            role: HastRole::Primary,
        }),
        timeout_ms: Some(30_000),
    }
}

fn note(n: usize) -> Entry {
    Entry::Note {
        message: format!("note {n}"),
    }
}

fn step_start(policy: &str, plan_id: u64, index: u32) -> Entry {
    Entry::StepStart {
        plan_id,
        policy: policy.into(),
        index,
        step: step("test"),
    }
}

fn step_end(policy: &str, plan_id: u64, index: u32) -> Entry {
    Entry::StepEnd {
        plan_id,
        policy: policy.into(),
        index,
        ok: true,
        skipped_as_done: false,
        detail: None,
        fencing_token: None,
        duration_us: 10,
    }
}

fn plan_end(policy: &str, plan_id: u64) -> Entry {
    Entry::PlanEnd {
        plan_id,
        policy: policy.into(),
        completed: false,
    }
}

fn every_kind() -> Vec<Entry> {
    vec![
        Entry::Event {
            event_id: 7,
            source: "devd".into(),
            event: Event::CarpChanged(CarpChange {
                vhid: 1,
                interface: "em0".into(),
                state: CarpState::Master,
                previous: Some(CarpState::Backup),
            }),
            coalesced: 3,
        },
        Entry::Decision {
            event_id: 7,
            policy: "carp-hast-switch".into(),
            module_hash: "ab".repeat(32),
            outcome: DecisionOutcome::Plan,
            plan_id: Some(1),
            plan: Some(Plan {
                steps: vec![
                    step("test"),
                    Step {
                        action: Action::Service(ServiceRequest {
                            name: "mysql-server".into(),
                            op: ServiceOp::Start,
                        }),
                        timeout_ms: None,
                    },
                ],
            }),
            reason: None,
            elapsed_us: 1234,
            inputs: Some(inputs()),
        },
        Entry::Decision {
            event_id: 8,
            policy: "other".into(),
            module_hash: "cd".repeat(32),
            outcome: DecisionOutcome::Refused,
            plan_id: None,
            plan: None,
            reason: Some("step 0 refused".into()),
            elapsed_us: 5,
            inputs: None,
        },
        step_start("carp-hast-switch", 1, 0),
        Entry::StepEnd {
            plan_id: 1,
            policy: "carp-hast-switch".into(),
            index: 0,
            ok: false,
            skipped_as_done: true,
            detail: Some("hastctl: exit 1\nsecond line \"quoted\"".into()),
            fencing_token: None,
            duration_us: 99,
        },
        Entry::PlanEnd {
            plan_id: 1,
            policy: "carp-hast-switch".into(),
            completed: true,
        },
        Entry::Alert {
            policy: Some("carp-hast-switch".into()),
            severity: AlertSeverity::Critical,
            message: "fsck failed".into(),
        },
        Entry::Alert {
            policy: None,
            severity: AlertSeverity::Warning,
            message: "event queue overflow: 3 dropped".into(),
        },
        Entry::BadInput {
            source: "devd".into(),
            reason: "no system=".into(),
            text: "!garbage\u{0}\u{7f}ünïcode".into(),
        },
        note(0),
    ]
}

#[test]
fn round_trip_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let entries = every_kind();
    let mut journal = Journal::open(dir.path(), 1 << 20, 3).unwrap();
    assert_eq!(journal.next_seq(), 1);
    assert!(journal.torn_tail().is_none());
    for (n, entry) in entries.iter().enumerate() {
        assert_eq!(journal.append(entry).unwrap(), n as u64 + 1);
    }
    let contents = Journal::read_all(dir.path()).unwrap();
    assert!(contents.torn.is_empty());
    let read: Vec<Entry> = contents.records.iter().map(|r| r.entry.clone()).collect();
    assert_eq!(read, entries);
    let seqs: Vec<u64> = contents.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let now = unix_ms();
    assert!(
        contents
            .records
            .iter()
            .all(|r| r.at > 1_600_000_000_000 && r.at <= now)
    );

    // The lines read as documented: seq and at first, then the kind, kebab-case throughout.
    let text = fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), entries.len());
    assert!(lines[0].starts_with(r#"{"seq":1,"at":"#), "{}", lines[0]);
    assert!(lines[0].contains(r#""kind":"event","event-id":7,"source":"devd""#));
    assert!(lines[0].contains(r#""event":{"carp-changed":{"vhid":1"#));
    assert!(lines[1].contains(r#""kind":"decision""#));
    assert!(lines[1].contains(r#""module-hash":"#));
    assert!(lines[1].contains(r#""outcome":"plan","plan-id":1,"plan":[{"action""#));
    assert!(lines[2].contains(r#""outcome":"refused""#) && !lines[2].contains("plan-id"));
    assert!(lines[3].contains(r#""kind":"step-start""#));
    assert!(lines[4].contains(r#""kind":"step-end""#) && lines[4].contains("skipped-as-done"));
    assert!(lines[5].contains(r#""kind":"plan-end""#));
    assert!(lines[6].contains(r#""kind":"alert""#));
    assert!(lines[8].contains(r#""kind":"bad-input""#));
    assert!(lines[9].contains(r#""kind":"note""#));
    for (line, entry) in lines.iter().zip(&entries) {
        assert!(line.contains(&format!(r#""kind":"{}""#, entry.kind())));
    }
}

fn decision(outcome: RuntimeOutcome) -> Decision {
    Decision {
        policy: "p".into(),
        module_hash: "00ff".into(),
        outcome,
        host_alert: None,
        logs: Vec::new(),
        dropped_logs: 0,
        refused_queries: Vec::new(),
        refused_count: 0,
        elapsed: Duration::from_micros(1500),
        inputs: inputs(),
    }
}

/// What a call saw: a machine with something in every part the journal must keep exactly,
/// including what the scenario format would otherwise imply (a primary's device node that is
/// not there yet, a peer heard before the daemon started), and a store.
fn inputs() -> DecisionInputs {
    use haven_core::{
        CarpStatus, HastReplication, HastRole, HastStatus, MountStatus, PeerLink, PeerModel,
        WitnessLeader, WitnessState,
    };
    let mut machine = Machine {
        now_ms: 90_000,
        unix_ms: 1_800_000_000_000,
        ..Machine::default()
    };
    machine.carp.insert(
        1,
        CarpStatus {
            vhid: 1,
            interface: "em0".into(),
            state: CarpState::Master,
        },
    );
    machine.workers.insert(("test".into(), HastRole::Primary));
    machine.hast.insert(
        "test".into(),
        HastStatus {
            resource: "test".into(),
            role: HastRole::Primary,
            replication: HastReplication::Degraded,
            dirty_bytes: Some(4096),
        },
    );
    // No /dev/hast/test: the primary's node has not appeared yet.
    machine.devices.insert("/dev/ada1".into());
    machine.mounts.insert(
        "/hast/test".into(),
        MountStatus {
            device: "/dev/hast/test".into(),
            mountpoint: "/hast/test".into(),
            fstype: "ufs".into(),
        },
    );
    machine.services.insert("mysql-server".into(), false);
    machine
        .timers
        .entry("p".into())
        .or_default()
        .insert("hold".into(), 95_000);
    machine.peer = PeerModel {
        link: PeerLink::Up,
        link_since_ms: -5_000,
        facts: Some(haven_core::PeerFacts {
            host: "hastb".into(),
            ..haven_core::PeerFacts::default()
        }),
        facts_heard_ms: Some(89_000),
    };
    machine.carp_demoted.insert(2);
    machine.witness = Some(WitnessState {
        reachable: true,
        leader: Some(WitnessLeader {
            host: "hasta".into(),
            token: 7,
            since_unix_ms: 1_799_999_000_000,
        }),
        holding: true,
        isolated_serve_ms: 0,
    });
    let kv = [("state".to_owned(), "promoting".to_owned())].into();
    DecisionInputs {
        machine: Arc::new(machine),
        kv: Arc::new(kv),
    }
}

#[test]
fn a_decisions_inputs_come_back_from_the_journal_exactly() {
    let inputs = inputs();
    let text = serde_json::to_string(&inputs).unwrap();
    let back: DecisionInputs = serde_json::from_str(&text).unwrap();
    assert_eq!(back, inputs, "{text}");
}

#[test]
fn from_decision_maps_every_outcome() {
    let base = |outcome, plan_id, plan, reason| Entry::Decision {
        event_id: 42,
        policy: "p".into(),
        module_hash: "00ff".into(),
        outcome,
        plan_id,
        plan,
        reason,
        elapsed_us: 1500,
        inputs: None,
    };
    assert_eq!(
        Entry::from_decision(42, &decision(RuntimeOutcome::NoAction), false),
        base(DecisionOutcome::NoAction, None, None, None)
    );
    let Entry::Decision { inputs, .. } =
        Entry::from_decision(42, &decision(RuntimeOutcome::NoAction), true)
    else {
        unreachable!()
    };
    assert_eq!(inputs, Some(super::tests::inputs()));
    let plan = Plan {
        steps: vec![step("test")],
    };
    assert_eq!(
        Entry::from_decision(
            42,
            &decision(RuntimeOutcome::Plan {
                plan_id: 9,
                plan: plan.clone()
            }),
            false
        ),
        base(DecisionOutcome::Plan, Some(9), Some(plan), None)
    );
    let refusal = PlanRefusal {
        index: 0,
        step: Box::new(step("other")),
        missing: Missing::HastResource("other".into()),
    };
    let expected_reason = refusal.to_string();
    assert!(expected_reason.contains("not in grants"));
    assert_eq!(
        Entry::from_decision(42, &decision(RuntimeOutcome::Refused(refusal)), false),
        base(DecisionOutcome::Refused, None, None, Some(expected_reason))
    );
    assert_eq!(
        Entry::from_decision(
            42,
            &decision(RuntimeOutcome::Failed(CallFailure::Deadline(50))),
            false
        ),
        base(
            DecisionOutcome::Failed,
            None,
            None,
            Some("exceeded its deadline of 50 ms".into())
        )
    );
}

#[test]
fn seq_continues_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
        for n in 0..3 {
            journal.append(&note(n)).unwrap();
        }
    }
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    assert_eq!(journal.next_seq(), 4);
    assert_eq!(journal.append(&note(3)).unwrap(), 4);
    drop(journal);
    let seqs: Vec<u64> = Journal::read_all(dir.path())
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn seq_continues_from_a_rotated_file_when_the_current_one_is_gone() {
    // As after a crash between rotating and writing the next line.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
        for n in 0..5 {
            journal.append(&note(n)).unwrap();
        }
    }
    fs::rename(
        dir.path().join(JOURNAL_FILE),
        dir.path().join("journal.jsonl.1"),
    )
    .unwrap();
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    assert_eq!(journal.append(&note(5)).unwrap(), 6);
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn rotation_keeps_at_most_keep_files_and_the_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let max = 1000;
    let mut journal = Journal::open(dir.path(), max, 3).unwrap();
    for n in 0..300 {
        journal.append(&note(n)).unwrap();
        let names = file_names(dir.path());
        assert!(names.len() <= 4, "{names:?}");
        for name in &names {
            let len = fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= max, "{name} has {len} bytes");
        }
    }
    assert_eq!(
        file_names(dir.path()),
        vec![
            "journal.jsonl",
            "journal.jsonl.1",
            "journal.jsonl.2",
            "journal.jsonl.3"
        ]
    );
    // What is left is contiguous, oldest first, and ends with the last line written.
    let contents = Journal::read_all(dir.path()).unwrap();
    assert!(contents.torn.is_empty());
    let seqs: Vec<u64> = contents.records.iter().map(|r| r.seq).collect();
    assert_eq!(*seqs.last().unwrap(), 300);
    assert!(seqs[0] > 1, "the oldest lines were rotated away");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // Each rotated file was nearly full: no rotation came early.
    for name in ["journal.jsonl.1", "journal.jsonl.2", "journal.jsonl.3"] {
        let len = fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(len > max - 100, "{name} has only {len} bytes");
    }
    // Reopening continues where it was.
    drop(journal);
    let mut journal = Journal::open(dir.path(), max, 3).unwrap();
    assert_eq!(journal.append(&note(300)).unwrap(), 301);
}

#[test]
fn fewer_keep_files_on_reopen_prunes_at_the_next_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 500, 4).unwrap();
    for n in 0..200 {
        journal.append(&note(n)).unwrap();
    }
    assert_eq!(file_names(dir.path()).len(), 5);
    drop(journal);
    let mut journal = Journal::open(dir.path(), 500, 1).unwrap();
    for n in 0..20 {
        journal.append(&note(n)).unwrap();
    }
    assert_eq!(
        file_names(dir.path()),
        vec!["journal.jsonl", "journal.jsonl.1"]
    );
}

#[test]
fn keep_files_zero_keeps_only_the_current_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 300, 0).unwrap();
    for n in 0..50 {
        journal.append(&note(n)).unwrap();
    }
    assert_eq!(file_names(dir.path()), vec!["journal.jsonl"]);
    let records = Journal::read_all(dir.path()).unwrap().records;
    assert_eq!(records.last().unwrap().seq, 50);
}

#[test]
fn a_line_larger_than_the_bound_is_written_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 100, 2).unwrap();
    journal.append(&note(0)).unwrap();
    let big = Entry::Note {
        message: "x".repeat(500),
    };
    journal.append(&big).unwrap();
    journal.append(&note(2)).unwrap();
    let contents = Journal::read_all(dir.path()).unwrap();
    let entries: Vec<Entry> = contents.records.into_iter().map(|r| r.entry).collect();
    assert_eq!(entries, vec![note(0), big, note(2)]);
    let text = fs::read_to_string(dir.path().join("journal.jsonl.1")).unwrap();
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn zero_max_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Journal::open(dir.path(), 0, 1),
        Err(JournalError::Limits(_))
    ));
}

#[test]
fn torn_final_line_is_skipped_reported_and_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    {
        let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
        for n in 0..3 {
            journal.append(&note(n)).unwrap();
        }
    }
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"seq":4,"at":1,"kind":"no"#).unwrap();
    drop(file);

    let contents = Journal::read_all(dir.path()).unwrap();
    assert_eq!(contents.records.len(), 3);
    assert_eq!(contents.torn.len(), 1);
    let torn = &contents.torn[0];
    assert_eq!(torn.path, path);
    assert_eq!(torn.line, 4);
    assert_eq!(torn.text, r#"{"seq":4,"at":1,"kind":"no"#);
    assert_eq!(torn.bytes, torn.text.len());

    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    let cut = journal.torn_tail().unwrap();
    assert_eq!(cut.line, 4);
    assert_eq!(cut.text, torn.text);
    assert_eq!(journal.append(&note(3)).unwrap(), 4);
    drop(journal);
    let contents = Journal::read_all(dir.path()).unwrap();
    assert!(contents.torn.is_empty());
    let entries: Vec<Entry> = contents.records.into_iter().map(|r| r.entry).collect();
    assert_eq!(entries, (0..4).map(note).collect::<Vec<_>>());
}

#[test]
fn a_file_that_is_only_a_torn_line_is_cut_to_empty() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(JOURNAL_FILE), b"{\"seq\":1,").unwrap();
    let contents = Journal::read_all(dir.path()).unwrap();
    assert!(contents.records.is_empty());
    assert_eq!(contents.torn.len(), 1);
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    assert_eq!(journal.torn_tail().unwrap().line, 1);
    assert_eq!(journal.append(&note(0)).unwrap(), 1);
}

#[test]
fn an_unreadable_complete_last_line_is_skipped_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    journal.append(&note(0)).unwrap();
    drop(journal);
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    file.write_all(b"{\"seq\":2,\"at\":1,\"kind\":\"from-the-future\"}\n")
        .unwrap();
    drop(file);
    let contents = Journal::read_all(dir.path()).unwrap();
    assert_eq!(contents.records.len(), 1);
    assert_eq!(contents.torn.len(), 1);
    // Its seq still counts: numbering never goes back.
    let journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    assert!(journal.torn_tail().is_none());
    assert_eq!(journal.next_seq(), 3);
}

#[test]
fn a_damaged_line_in_the_middle_is_skipped_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    journal.append(&note(0)).unwrap();
    drop(journal);
    let path = dir.path().join(JOURNAL_FILE);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"{\"seq\":2,\"at\":1,\"kind\":\"no\0te\"\n")
        .unwrap();
    drop(file);
    let mut journal = Journal::open(dir.path(), 1 << 20, 2).unwrap();
    journal.append(&note(1)).unwrap();
    drop(journal);
    let contents = Journal::read_all(dir.path()).unwrap();
    assert_eq!(contents.records.len(), 2, "both good lines are read");
    assert_eq!(contents.torn.len(), 1);
    assert_eq!((&contents.torn[0].path, contents.torn[0].line), (&path, 2));
    assert_eq!(Journal::interrupted(dir.path()).unwrap(), None);
}

#[test]
fn a_missing_journal_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("never-created");
    assert_eq!(Journal::read_all(&missing).unwrap(), Contents::default());
    assert_eq!(Journal::interrupted(&missing).unwrap(), None);
}

fn write(dir: &Path, entries: &[Entry]) {
    let mut journal = Journal::open(dir, 1 << 20, 2).unwrap();
    for entry in entries {
        journal.append(entry).unwrap();
    }
}

#[test]
fn interrupted_step_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            note(0),
            step_start("p", 1, 0),
            step_end("p", 1, 0),
            step_start("p", 1, 1),
            Entry::Alert {
                policy: None,
                severity: AlertSeverity::Warning,
                message: "unrelated".into(),
            },
        ],
    );
    let interrupted = Journal::interrupted(dir.path()).unwrap().unwrap();
    assert_eq!(
        interrupted,
        Interrupted {
            policy: "p".into(),
            plan_id: 1,
            step_index: 1,
            step: step("test"),
        }
    );
    assert_eq!(
        InterruptedStep::from(interrupted),
        InterruptedStep {
            plan_id: 1,
            step_index: 1,
            step: step("test"),
        }
    );
}

#[test]
fn an_ended_step_or_plan_is_not_interrupted() {
    for ending in [step_end("p", 4, 2), plan_end("p", 4)] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[step_start("p", 4, 2), ending.clone()]);
        assert_eq!(
            Journal::interrupted(dir.path()).unwrap(),
            None,
            "{ending:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[note(0)]);
    assert_eq!(Journal::interrupted(dir.path()).unwrap(), None);
}

#[test]
fn ends_for_another_step_plan_or_policy_do_not_close_it() {
    for ending in [
        step_end("p", 4, 1),
        step_end("p", 5, 2),
        step_end("q", 4, 2),
        plan_end("p", 5),
        plan_end("q", 4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[step_start("p", 4, 2), ending.clone()]);
        let interrupted = Journal::interrupted(dir.path()).unwrap();
        assert!(
            matches!(&interrupted, Some(i) if i.plan_id == 4 && i.step_index == 2 && i.policy == "p"),
            "{ending:?}: {interrupted:?}"
        );
    }
}

#[test]
fn an_older_crash_is_superseded_by_later_plans() {
    // Step 3 of plan 5 was cut short; after the restart plan ids start again at 1 and a plan
    // ran to completion: nothing is in progress now.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            step_start("p", 5, 3),
            step_start("p", 1, 0),
            step_end("p", 1, 0),
            plan_end("p", 1),
        ],
    );
    assert_eq!(Journal::interrupted(dir.path()).unwrap(), None);
}

#[test]
fn interrupted_is_found_across_rotation_and_with_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 600, 5).unwrap();
    journal.append(&step_start("p", 2, 0)).unwrap();
    for n in 0..20 {
        journal.append(&note(n)).unwrap();
    }
    drop(journal);
    assert!(dir.path().join("journal.jsonl.2").exists());
    let mut file = OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    file.write_all(br#"{"seq":22,"at":1,"kind":"step-e"#)
        .unwrap();
    drop(file);
    let interrupted = Journal::interrupted(dir.path()).unwrap().unwrap();
    assert_eq!((interrupted.plan_id, interrupted.step_index), (2, 0));
}

#[cfg(unix)]
#[test]
fn directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("var/db/haven");
    let mut journal = Journal::open(&dir, 1 << 20, 2).unwrap();
    journal.append(&note(0)).unwrap();
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    let mode = fs::metadata(dir.join(JOURNAL_FILE))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let error = Journal::open(file.join("sub"), 1 << 20, 2).unwrap_err();
    assert!(matches!(error, JournalError::Io { op: "create", .. }));
    assert!(error.to_string().contains("a-file"), "{error}");
}

#[test]
fn recover_finds_the_highest_ids_so_they_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = every_kind();
    entries.push(step_start("p", 4, 0));
    entries.push(plan_end("p", 4));
    write(dir.path(), &entries);
    let recovered = Journal::recover(dir.path()).unwrap();
    assert_eq!(recovered.last_event_id, 8, "every_kind's last event id");
    assert_eq!(recovered.last_plan_id, 4);
    assert_eq!(recovered.interrupted, None);
    let mut queue = crate::queue::EventQueue::new(4).unwrap();
    queue.continue_ids_after(recovered.last_event_id);
    assert_eq!(queue.take_id(), 9);
}

#[test]
fn lines_that_cannot_be_written_stay_pending_up_to_a_file_and_are_then_counted() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 4096, 2).unwrap();
    // Every write fails as on a full disk.
    journal.file = OpenOptions::new().write(true).open(full).unwrap();
    journal.append_buffered(&note(0)).unwrap();
    assert!(journal.flush().is_err());
    assert!(!journal.is_clean(), "kept for the next attempt");
    assert_eq!(journal.take_dropped_lines(), 0);
    let mut appended = 1;
    while journal.flush().is_err() && !journal.is_clean() {
        journal.append_buffered(&note(appended)).unwrap();
        appended += 1;
        assert!(appended < 1000, "pending lines were never given up");
    }
    assert!(
        journal.is_clean(),
        "past a file's worth, the pending lines are dropped"
    );
    assert_eq!(journal.take_dropped_lines(), appended as u64);
    assert_eq!(journal.take_dropped_lines(), 0);
}

#[test]
fn a_huge_damaged_line_is_skipped_without_being_held_and_reports_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), 1 << 30, 2).unwrap();
    journal.append(&note(0)).unwrap();
    drop(journal);
    let path = dir.path().join(JOURNAL_FILE);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    // A damaged block: 20 MiB with no newline, then a thousand short garbage lines.
    file.write_all(&vec![b'x'; 20 << 20]).unwrap();
    file.write_all(b"\n").unwrap();
    file.write_all(&b"garbage\n".repeat(1000)).unwrap();
    drop(file);
    let mut journal = Journal::open(dir.path(), 1 << 30, 2).unwrap();
    journal.append(&note(1)).unwrap();
    drop(journal);

    let contents = Journal::read_all(dir.path()).unwrap();
    assert_eq!(
        contents.records.len(),
        2,
        "the good lines on both sides are read"
    );
    assert_eq!(contents.torn_total, 1001);
    assert_eq!(contents.torn.len(), 100, "only the first reports are kept");
    assert_eq!(contents.torn[0].bytes, 20 << 20);
    assert!(
        contents.torn[0].reason.starts_with("longer than"),
        "{:?}",
        contents.torn[0]
    );
    assert!(contents.torn[0].text.len() <= 512);
    let recovered = Journal::recover(dir.path()).unwrap();
    assert_eq!(recovered.interrupted, None);

    // A huge unfinished last line is cut back to the last complete one.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&vec![b'y'; 20 << 20]).unwrap();
    drop(file);
    let journal = Journal::open(dir.path(), 1 << 30, 2).unwrap();
    let torn = journal.torn_tail().unwrap();
    assert_eq!(torn.bytes, 20 << 20);
    assert_eq!(journal.next_seq(), 3);
}
