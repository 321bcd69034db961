//! `havend` as an operator runs it: the real binary with the seed policy, fed real-format input
//! by stand-ins the tests control (a devd seqpacket server, a `hastctl` script, a keepalived
//! FIFO, and the hooks through the real `havenctl`), and read back from its journal and from
//! `havenctl status --json`.
//!
//! Every wait is a bounded poll of a condition (never a bare sleep), and every process a test
//! starts is stopped and reaped by a guard, also when the test fails.

mod common;

use common::{
    DEADLINE, DevdServer, HAVENCTL, HAVEND, Havend, Setup, poll_until, seed, send_line,
    stderr_text, stdout_text, toml_path, wait_exit,
};
use haven_core::{
    Action, CarpChange, CarpState, Event, HastHook, HastReplication, HastRole, HastRoleChange,
    HastStatus, InterruptedStep, Plan, Step,
};
use haven_daemon::journal::{DecisionOutcome, Entry, Journal, Record};
use haven_daemon::status::Status;
use haven_test_artifacts::support::hastctl_list;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(25);

/// An interval or hold-down no test lives long enough to see end.
const FOREVER_MS: u64 = 3_600_000;

const CARP_MASTER: &str = "!system=CARP subsystem=1@em0 type=MASTER\n";
const CARP_BACKUP: &str = "!system=CARP subsystem=1@em0 type=BACKUP\n";

// ------------------------------------------------------------------------------- the setup

/// Which sources (and which seed settings) a test's `haven.toml` has.
#[derive(Debug, Clone, Default)]
struct Options {
    /// The seed policy's `hold-down-ms` (0 turns the hold-down off: no timers).
    hold_down_ms: u64,
    /// `[sources.devd]` on `<tmp>/devd.pipe`.
    devd: bool,
    /// `[sources.hastctl]` running `<tmp>/hastctl` at this interval.
    hastctl_interval_ms: Option<u64>,
    /// `[sources.keepalived]` on `<tmp>/keepalived.fifo`, with VI_1 as vhid 1 on this interface.
    keepalived_interface: Option<&'static str>,
    /// One `[[carp]]` entry: vhid 1 on this (interface, address).
    carp: Option<(&'static str, &'static str)>,
    /// Carry plans out on this machine (`executor = "linux"`, HAST through the hastctl
    /// stand-in) instead of in monitor mode.
    real_executor: bool,
}

impl Setup {
    fn new() -> Setup {
        Setup::in_tmp("havend-")
    }

    /// A setup with the `hastctl` stand-in (resource `test`: secondary, in sync) and a config
    /// with `options`.
    fn with(options: &Options) -> Setup {
        let setup = Setup::new();
        setup.install_hastctl(&hast_list("secondary", "complete", "0 (0B)"));
        setup.write_config(options);
        setup
    }

    fn fifo(&self) -> PathBuf {
        self.path("keepalived.fifo")
    }

    fn config_text(&self, options: &Options) -> String {
        let mut text = format!(
            r#"# The seed recipe (examples/seed/haven.toml), in monitor mode.
{policy}[daemon]
executor = "{executor}"
state-dir = {state}
control-dir = {control}

[executor.tools]
hastctl = {hastctl}
"#,
            executor = if options.real_executor {
                "linux"
            } else {
                "dry-run"
            },
            hastctl = toml_path(&self.hastctl()),
            policy = seed(
                "mysql",
                Path::new(haven_test_artifacts::CARP_HAST_SWITCH),
                options.hold_down_ms,
            ),
            state = toml_path(&self.state_dir()),
            control = toml_path(&self.control_dir()),
        );
        if options.devd {
            text += &format!(
                "\n[sources.devd]\nsocket = {}\n",
                toml_path(&self.devd_socket())
            );
        }
        if let Some(interval) = options.hastctl_interval_ms {
            text += &format!(
                "\n[sources.hastctl]\nprogram = {}\ninterval-ms = {interval}\ntimeout-ms = 20000\n",
                toml_path(&self.hastctl())
            );
        }
        if let Some(interface) = options.keepalived_interface {
            text += &format!(
                "\n[sources.keepalived]\nfifo = {}\ninstances = {{ VI_1 = {{ vhid = 1, interface = \"{interface}\" }} }}\n",
                toml_path(&self.fifo())
            );
        }
        if let Some((interface, address)) = options.carp {
            text += &format!(
                "\n[[carp]]\nvhid = 1\ninterface = \"{interface}\"\naddress = \"{address}\"\n"
            );
        }
        text
    }

    fn write_config(&self, options: &Options) {
        fs::write(self.config(), self.config_text(options)).unwrap();
    }

    /// How many times `hastctl list` has run.
    fn hastctl_runs(&self) -> usize {
        fs::read_to_string(self.path("hastctl.calls"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }
}

/// `hastctl list` for the seed's resource `test`.
fn hast_list(role: &str, status: &str, dirty: &str) -> String {
    hastctl_list("test", role, status, dirty)
}

// ---------------------------------------------------------------------------- the daemon

impl Havend {
    /// Start havend on the setup's config with `args` added, without waiting for it.
    fn spawn(setup: &Setup, args: &[&str], stderr_name: &str) -> Havend {
        Havend::launch(setup, args, setup.path(stderr_name), POLL, None)
    }

    /// Start havend and wait until `havenctl status` gets an answer from it.
    fn start(setup: &Setup, args: &[&str]) -> Havend {
        let mut daemon = Havend::spawn(setup, args, "havend.stderr");
        daemon.wait_ready();
        daemon
    }

    /// Start havend and wait until its first startup event is decided.
    fn start_up(setup: &Setup, args: &[&str]) -> Havend {
        let daemon = Havend::start(setup, args);
        wait_started(&daemon);
        daemon
    }

    /// Every journal record so far (a line being written is skipped, as a torn one).
    fn records(&self) -> Vec<Record> {
        Journal::read_all(&self.state_dir)
            .expect("reading the journal")
            .records
    }

    /// Wait until `probe` finds what it looks for in the journal.
    fn wait_journal<T>(&self, what: &str, mut probe: impl FnMut(&[Record]) -> Option<T>) -> T {
        poll_until(POLL, || probe(&self.records()))
            .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", self.diagnostics()))
    }

    /// Wait until `probe` finds what it looks for in `havenctl status`.
    fn wait_status<T>(&self, what: &str, mut probe: impl FnMut(&Status) -> Option<T>) -> T {
        poll_until(POLL, || probe(&self.status()))
            .unwrap_or_else(|| panic!("timed out waiting for {what}\n{}", self.diagnostics()))
    }

    /// Wait until `havenctl status` says the source `name` is up.
    fn wait_source_up(&self, name: &str) {
        self.wait_status(&format!("the {name} source up"), |status| {
            status
                .sources
                .get(name)
                .is_some_and(|counters| counters.up == Some(true))
                .then_some(())
        });
    }

    /// Wait until the `n`th (from 0) handled `carp-changed` event from `source` is journaled;
    /// its change.
    fn wait_carp_change(&self, what: &str, source: &str, n: usize) -> CarpChange {
        self.wait_journal(what, |records| {
            carp_events(records, source)
                .get(n)
                .map(|(_, change)| (*change).clone())
        })
    }

    /// Wait until a `bad-input` record from `source` quotes a text holding `quoting`.
    fn wait_bad_input(&self, what: &str, source: &str, quoting: &str) {
        self.wait_journal(what, |records| {
            bad_inputs(records)
                .into_iter()
                .find(|(from, _, text)| *from == source && text.contains(quoting))
                .map(|_| ())
        });
    }

    /// SIGTERM, and wait for the exit.
    fn terminate(&mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).expect("sending SIGTERM to havend");
        match wait_exit(&mut self.child, DEADLINE) {
            Some(status) => status,
            None => panic!("havend did not exit after SIGTERM\n{}", self.diagnostics()),
        }
    }
}

// ------------------------------------------------------------------------ reading journals

/// An `event` record.
#[derive(Debug, Clone, Copy)]
struct Handled<'a> {
    /// Its position in the journal.
    index: usize,
    id: u64,
    source: &'a str,
    event: &'a Event,
    coalesced: u32,
}

fn events(records: &[Record]) -> Vec<Handled<'_>> {
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
                source,
                event,
                coalesced: *coalesced,
            }),
            _ => None,
        })
        .collect()
}

/// A `decision` record.
#[derive(Debug, Clone, Copy)]
struct Decided<'a> {
    index: usize,
    outcome: DecisionOutcome,
    plan: Option<&'a Plan>,
}

impl Decided<'_> {
    fn steps(&self) -> Vec<String> {
        self.plan
            .map(|plan| plan.steps.iter().map(Step::to_string).collect())
            .unwrap_or_default()
    }
}

/// The decisions about event `id`.
fn decisions(records: &[Record], id: u64) -> Vec<Decided<'_>> {
    records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| match &record.entry {
            Entry::Decision {
                event_id,
                outcome,
                plan,
                ..
            } if *event_id == id => Some(Decided {
                index,
                outcome: *outcome,
                plan: plan.as_ref(),
            }),
            _ => None,
        })
        .collect()
}

/// The event's decision (the seed is the only policy), once journaled after it.
fn decided<'a>(records: &'a [Record], event: &Handled<'_>) -> Option<Decided<'a>> {
    let found = decisions(records, event.id);
    assert!(found.len() <= 1, "two decisions about event {}", event.id);
    found.into_iter().next().filter(|d| d.index > event.index)
}

/// `(source, reason, text)` of each `bad-input` record.
fn bad_inputs(records: &[Record]) -> Vec<(&str, &str, &str)> {
    records
        .iter()
        .filter_map(|record| match &record.entry {
            Entry::BadInput {
                source,
                reason,
                text,
            } => Some((source.as_str(), reason.as_str(), text.as_str())),
            _ => None,
        })
        .collect()
}

/// `(index, message)` of each `note` record.
fn notes(records: &[Record]) -> Vec<(usize, &str)> {
    records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| match &record.entry {
            Entry::Note { message } => Some((index, message.as_str())),
            _ => None,
        })
        .collect()
}

fn carp_change(event: &Event) -> Option<&CarpChange> {
    match event {
        Event::CarpChanged(change) => Some(change),
        _ => None,
    }
}

/// The handled (decided) `carp-changed` events from `source`, in journal order.
fn carp_events<'a>(records: &'a [Record], source: &str) -> Vec<(Handled<'a>, &'a CarpChange)> {
    events(records)
        .into_iter()
        .filter(|event| event.source == source && decided(records, event).is_some())
        .filter_map(|event| carp_change(event.event).map(|change| (event, change)))
        .collect()
}

/// Event ids in journal order increase strictly.
fn assert_ids_increase(records: &[Record]) {
    let ids: Vec<u64> = events(records).iter().map(|event| event.id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "event ids out of order: {ids:?}"
    );
}

/// Wait until the first `startup` event is decided (the loop runs it before anything else).
fn wait_started(daemon: &Havend) {
    daemon.wait_journal("the startup event's decision", |records| {
        events(records)
            .iter()
            .find(|event| event.source == "startup")
            .and_then(|event| decided(records, event))
            .map(|_| ())
    });
}

/// havenctl exited 1 because havend refused what it sent, with a reason naming `naming`.
fn assert_refused(output: &Output, naming: &str) {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr_text(output);
    assert!(
        stderr.starts_with("havenctl: havend refused: ") && stderr.contains(naming),
        "{stderr}"
    );
}

/// Start havend on a setup whose config has `[sources.devd]`, with a devd stand-in to connect
/// to: the stand-in, the daemon and its connection, once the startup event is decided.
fn start_with_devd(setup: &Setup) -> (DevdServer, Havend, OwnedFd) {
    let devd = DevdServer::bind(&setup.devd_socket());
    let daemon = Havend::start(setup, &[]);
    let connection = devd.accept();
    wait_started(&daemon);
    (devd, daemon, connection)
}

/// Start havend with a keepalived FIFO (VI_1 as vhid 1 on `interface`), once it holds the FIFO
/// open (the source is up): the setup and the daemon.
fn start_with_fifo(interface: &'static str) -> (Setup, Havend) {
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        keepalived_interface: Some(interface),
        ..Options::default()
    });
    nix::unistd::mkfifo(
        &setup.fifo(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let daemon = Havend::start(&setup, &[]);
    daemon.wait_source_up("keepalived");
    (setup, daemon)
}

// ----------------------------------------------------------------------------------- tests

#[test]
fn devd_lines_are_handled_in_order_bad_lines_survived_and_a_reconnect_resyncs() {
    let setup = Setup::with(&Options {
        devd: true,
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let (devd, daemon, connection) = start_with_devd(&setup);

    // CARP master: the seed promotes.
    send_line(&connection, CARP_MASTER);
    let steps = daemon.wait_journal("the MASTER line's decision", |records| {
        let (event, change) = carp_events(records, "devd").into_iter().next()?;
        assert_eq!((change.vhid, change.state), (1, CarpState::Master));
        assert_eq!(change.interface, "em0");
        let decision = decided(records, &event)?;
        assert_eq!(decision.outcome, DecisionOutcome::Plan, "{decision:?}");
        Some(decision.steps())
    });
    assert!(
        steps
            .first()
            .is_some_and(|step| step.starts_with("wait-worker-gone test secondary")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|step| step.starts_with("hast-role test primary")),
        "{steps:?}"
    );
    assert!(
        steps
            .last()
            .is_some_and(|step| step.starts_with("service start mysql-server")),
        "{steps:?}"
    );

    // Malformed lines are journaled, quoted, counted, and survived.
    let malformed = [
        "!system=CARP subsystem=1@em0 type=SIDEWAYS",
        "!system=CARP subsystem=0@em0 type=MASTER",
        "this is not a devd line",
    ];
    for line in malformed {
        send_line(&connection, &format!("{line}\n"));
    }
    daemon.wait_journal("a bad-input record per malformed line", |records| {
        let found = bad_inputs(records);
        (found.len() == malformed.len()).then_some(())
    });
    let records = daemon.records();
    for ((source, reason, text), line) in bad_inputs(&records).into_iter().zip(malformed) {
        assert_eq!(source, "devd");
        assert_eq!(text, line);
        assert!(!reason.is_empty());
    }
    let status = daemon.status();
    let counters = &status.sources["devd"];
    assert_eq!(counters.events, 1, "{status:?}");
    assert_eq!(counters.bad_input, 3, "{status:?}");
    assert_eq!(counters.up, Some(true), "{status:?}");
    assert!(counters.last_problem.is_some(), "{status:?}");

    // devd goes away and comes back: the client reconnects and the machine is read afresh.
    let before = daemon.records().len();
    drop(connection);
    let connection = devd.accept();
    daemon.wait_journal("the resync after the reconnect", |records| {
        let (note, _) = notes(records).into_iter().find(|(index, message)| {
            *index >= before && message.contains("re-reading the machine")
        })?;
        let startup = events(records)
            .into_iter()
            .find(|event| event.index > note && event.source == "startup")?;
        decided(records, &startup).map(|_| ())
    });
    let records = daemon.records();
    assert!(
        notes(&records)
            .iter()
            .any(|(index, message)| *index >= before
                && message.contains("devd: devd closed the connection")),
        "{}",
        daemon.diagnostics()
    );

    // The new connection is read like the first.
    send_line(&connection, CARP_BACKUP);
    let (change, decision_steps) = daemon.wait_journal("the BACKUP line's decision", |records| {
        let (event, change) = carp_events(records, "devd")
            .into_iter()
            .find(|(_, change)| change.state == CarpState::Backup)?;
        let decision = decided(records, &event)?;
        assert_eq!(decision.outcome, DecisionOutcome::Plan, "{decision:?}");
        Some((change.clone(), decision.steps()))
    });
    // devd does not say what the state was: the model does (master, from the first line).
    assert_eq!(change.previous, Some(CarpState::Master));
    assert!(
        decision_steps
            .iter()
            .any(|step| step.starts_with("hast-role test secondary")),
        "{decision_steps:?}"
    );

    let records = daemon.records();
    assert_ids_increase(&records);
    let kinds: Vec<(&str, &str)> = events(&records)
        .iter()
        .map(|event| (event.source, event.event.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("startup", "startup"),
            ("devd", "carp-changed"),
            ("startup", "startup"),
            ("devd", "carp-changed"),
        ]
    );
    let status = daemon.status();
    assert_eq!(status.sources["devd"].events, 2, "{status:?}");
    assert_eq!(status.sources["devd"].bad_input, 3, "{status:?}");
    assert_eq!(status.queue.received, 2, "{status:?}");
}

#[test]
fn concurrent_hast_hooks_are_each_queued_and_handled() {
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);

    let hooks: [&[&str]; 8] = [
        &["role", "test", "secondary", "primary"],
        &["role", "test", "primary", "secondary"],
        &["connect", "test"],
        &["disconnect", "test"],
        &["syncstart", "test"],
        &["syncdone", "test"],
        &["syncintr", "test"],
        &["split-brain", "test"],
    ];
    let expected: Vec<HastHook> = vec![
        HastHook::RoleChanged(HastRoleChange {
            resource: "test".into(),
            old: HastRole::Secondary,
            new: HastRole::Primary,
        }),
        HastHook::RoleChanged(HastRoleChange {
            resource: "test".into(),
            old: HastRole::Primary,
            new: HastRole::Secondary,
        }),
        HastHook::Connect("test".into()),
        HastHook::Disconnect("test".into()),
        HastHook::SyncStart("test".into()),
        HastHook::SyncDone("test".into()),
        HastHook::SyncInterrupted("test".into()),
        HastHook::SplitBrain("test".into()),
    ];
    // All at once, as hastd runs them: fire and forget, nothing waits for the one before.
    let mut children: Vec<Child> = hooks
        .iter()
        .map(|args| {
            Command::new(HAVENCTL)
                .arg("--control-dir")
                .arg(setup.control_dir())
                .arg("hast-hook")
                .args(*args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting havenctl hast-hook")
        })
        .collect();
    for (child, args) in children.iter_mut().zip(hooks) {
        let status = wait_exit(child, DEADLINE);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            status.is_some_and(|status| status.success()),
            "havenctl hast-hook {args:?}: {status:?}\n{}",
            daemon.diagnostics()
        );
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        // Hooks print nothing on success: hastd logs its children's output.
        assert!(
            output.stdout.is_empty() && output.stderr.is_empty(),
            "{output:?}"
        );
    }

    let records = daemon.wait_journal("every hook handled", |records| {
        let hooks: Vec<Handled<'_>> = events(records)
            .into_iter()
            .filter(|event| event.source == "hast-hook")
            .collect();
        (hooks.len() == expected.len() && hooks.iter().all(|e| decided(records, e).is_some()))
            .then(|| records.to_vec())
    });
    let handled: Vec<Handled<'_>> = events(&records)
        .into_iter()
        .filter(|event| event.source == "hast-hook")
        .collect();
    let mut ids: Vec<u64> = handled.iter().map(|event| event.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected.len(), "ids not distinct: {ids:?}");
    // Arrival order is the daemon's to choose; each hook arrived exactly once.
    let mut seen: Vec<String> = handled
        .iter()
        .map(|event| match event.event {
            Event::HastHook(hook) => format!("{hook:?}"),
            other => panic!("a hast-hook event that is {other:?}"),
        })
        .collect();
    let mut wanted: Vec<String> = expected.iter().map(|hook| format!("{hook:?}")).collect();
    seen.sort();
    wanted.sort();
    assert_eq!(seen, wanted);
    // The split-brain hook raises the recipe's alert.
    let split = handled
        .iter()
        .find(|event| matches!(event.event, Event::HastHook(HastHook::SplitBrain(_))))
        .unwrap();
    let decision = decided(&records, split).unwrap();
    assert_eq!(decision.outcome, DecisionOutcome::Plan, "{decision:?}");
    assert!(
        decision
            .steps()
            .iter()
            .any(|step| step.starts_with("alert critical")),
        "{decision:?}"
    );
    assert_ids_increase(&records);

    // Arguments hastd never sends: refused to the caller, journaled as bad input.
    let output = daemon.havenctl(&["hast-hook", "bogus", "test"]);
    assert_refused(&output, "\"bogus\" is not one of role, connect");
    daemon.wait_bad_input("the bogus hook's bad-input record", "hast-hook", "bogus");
    let status = daemon.status();
    assert_eq!(status.sources["hast-hook"].events, 8, "{status:?}");
    assert_eq!(status.sources["hast-hook"].bad_input, 1, "{status:?}");
}

#[test]
fn ucarp_hooks_are_mapped_to_their_vhid_and_take_previous_from_the_model() {
    // 127.0.0.77 is not on lo: startup reads vhid 1 as backup.
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        carp: Some(("lo", "127.0.0.77")),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    let startup_state = daemon.wait_journal("the startup event", |records| {
        events(records)
            .into_iter()
            .find_map(|event| match event.event {
                Event::Startup(state) => Some(state.clone()),
                _ => None,
            })
    });
    assert_eq!(startup_state.carp.len(), 1, "{startup_state:?}");
    assert_eq!(
        (startup_state.carp[0].vhid, startup_state.carp[0].state),
        (1, CarpState::Backup)
    );

    let output = daemon.havenctl(&["hook", "ucarp", "up", "lo", "127.0.0.77"]);
    assert!(output.status.success(), "{output:?}");
    let (change, outcome) = daemon.wait_journal("the ucarp up event", |records| {
        let (event, change) = carp_events(records, "ucarp").into_iter().next()?;
        Some((change.clone(), decided(records, &event)?.outcome))
    });
    assert_eq!(
        change,
        CarpChange {
            vhid: 1,
            interface: "lo".into(),
            state: CarpState::Master,
            previous: Some(CarpState::Backup),
        }
    );
    assert_eq!(outcome, DecisionOutcome::Plan);

    // ucarp's down script, with its optional extra parameter.
    let output = daemon.havenctl(&["hook", "ucarp", "down", "lo", "127.0.0.77", "x"]);
    assert!(output.status.success(), "{output:?}");
    let change = daemon.wait_carp_change("the ucarp down event", "ucarp", 1);
    assert_eq!(change.state, CarpState::Backup);
    assert_eq!(change.previous, Some(CarpState::Master));

    // An address no [[carp]] entry names.
    let output = daemon.havenctl(&["hook", "ucarp", "up", "lo", "127.0.0.99"]);
    assert_refused(&output, "127.0.0.99");
    daemon.wait_bad_input(
        "the unmapped address's bad-input record",
        "ucarp",
        "127.0.0.99",
    );
    let records = daemon.records();
    assert_eq!(carp_events(&records, "ucarp").len(), 2);
    assert_ids_increase(&records);
}

#[test]
fn keepalived_fifo_lines_become_carp_events_and_garbage_is_bad_input() {
    let (setup, daemon) = start_with_fifo("eth0");
    // havend holds the FIFO open, so a non-blocking open for writing succeeds.
    let mut fifo = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(setup.fifo())
        .expect("opening the FIFO for writing");
    let garbage = [
        "INSTANCE \"VI_1\" SIDEWAYS 100",
        "INSTANCE \"VI_9\" MASTER 100",
        "hello",
    ];
    let mut text = String::from("INSTANCE \"VI_1\" MASTER 100\n");
    for line in garbage {
        text += line;
        text += "\n";
    }
    fifo.write_all(text.as_bytes()).unwrap();

    let change = daemon.wait_carp_change("the MASTER transition", "keepalived", 0);
    assert_eq!(
        change,
        CarpChange {
            vhid: 1,
            interface: "eth0".into(),
            state: CarpState::Master,
            previous: None,
        }
    );
    daemon.wait_journal("a bad-input record per garbage line", |records| {
        let found: Vec<&str> = bad_inputs(records)
            .into_iter()
            .filter(|(source, _, _)| *source == "keepalived")
            .map(|(_, _, text)| text)
            .collect();
        (found == garbage).then_some(())
    });

    // Still reading; keepalived gives no previous state, the model does.
    fifo.write_all(b"INSTANCE \"VI_1\" BACKUP 100\n").unwrap();
    let change = daemon.wait_carp_change("the BACKUP transition", "keepalived", 1);
    assert_eq!(change.state, CarpState::Backup);
    assert_eq!(change.previous, Some(CarpState::Master));
    let status = daemon.status();
    assert_eq!(status.sources["keepalived"].events, 2, "{status:?}");
    assert_eq!(status.sources["keepalived"].bad_input, 3, "{status:?}");
}

#[test]
fn hastctl_changes_are_events_and_garbage_output_is_survived() {
    let setup = Setup::new();
    // hastd counts dirty extents on the primary only, and hastctl's parser reads them there.
    setup.install_hastctl(&hast_list("primary", "complete", "0 (0B)"));
    setup.write_config(&Options {
        hastctl_interval_ms: Some(20),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    // Up after the first poll, whose snapshot equals what startup read: no event.
    daemon.wait_source_up("hastctl");

    let hast_events = |records: &[Record]| -> Vec<HastStatus> {
        events(records)
            .into_iter()
            .filter(|event| event.source == "hastctl")
            .filter_map(|event| match event.event {
                Event::HastStatusChanged(status) => Some(status.clone()),
                _ => None,
            })
            .collect()
    };

    setup.set_hastctl_output(&hast_list("primary", "complete", "1048576 (1.0MB)"));
    let changed = daemon.wait_journal("the dirty change", |records| {
        hast_events(records).first().cloned()
    });
    assert_eq!(
        changed,
        HastStatus {
            resource: "test".into(),
            role: HastRole::Primary,
            replication: HastReplication::Complete,
            dirty_bytes: Some(1048576),
        }
    );

    let garbage = "hastctl: this is not what hastctl list prints\n";
    setup.set_hastctl_output(garbage);
    daemon.wait_bad_input("hastctl's garbage reported", "hastctl", "not what hastctl");
    let status = daemon.status();
    assert!(status.sources["hastctl"].bad_input >= 1, "{status:?}");

    // Back to sense: compared with the last good poll, the change is picked up.
    setup.set_hastctl_output(&hast_list("primary", "degraded", "1048576 (1.0MB)"));
    let changed = daemon.wait_journal("the change after the garbage", |records| {
        hast_events(records).get(1).cloned()
    });
    assert_eq!(changed.replication, HastReplication::Degraded);
    assert_eq!(changed.dirty_bytes, Some(1048576));
    // Every event is handled; the garbage made none.
    let records = daemon.wait_journal("every event decided", |records| {
        events(records)
            .iter()
            .all(|event| decided(records, event).is_some())
            .then(|| records.to_vec())
    });
    assert_eq!(hast_events(&records).len(), 2, "{}", daemon.diagnostics());
    daemon.wait_status("the model updated", |status| {
        (status.hast.first().map(|hast| hast.replication) == Some(HastReplication::Degraded))
            .then_some(())
    });
}

/// A marker file, removed when dropped (also when a test fails, so nothing waits on it).
#[derive(Debug)]
struct RemovedOnDrop(PathBuf);

impl RemovedOnDrop {
    fn create(path: PathBuf) -> RemovedOnDrop {
        fs::write(&path, "").unwrap();
        RemovedOnDrop(path)
    }
}

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// 200 alternating MASTER/BACKUP lines for vhid 1, MASTER first.
fn flap_storm(connection: &OwnedFd) {
    for n in 0..200 {
        send_line(
            connection,
            if n % 2 == 0 { CARP_MASTER } else { CARP_BACKUP },
        );
    }
}

#[test]
fn a_flap_storm_accounts_for_every_line() {
    let setup = Setup::with(&Options {
        hold_down_ms: FOREVER_MS,
        devd: true,
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let (_devd, daemon, connection) = start_with_devd(&setup);

    flap_storm(&connection);
    // Each handled event stands for itself and the events it superseded.
    let records = daemon.wait_journal("all 200 lines accounted for", |records| {
        let handled = carp_events(records, "devd");
        let lines: u32 = handled.iter().map(|(event, _)| 1 + event.coalesced).sum();
        assert!(lines <= 200, "{lines} lines accounted for 200 sent");
        (lines == 200).then(|| records.to_vec())
    });
    let handled = carp_events(&records, "devd");
    let (_, last) = handled.last().unwrap();
    assert_eq!((last.vhid, last.state), (1, CarpState::Backup));
    let coalesced: u64 = handled
        .iter()
        .map(|(event, _)| u64::from(event.coalesced))
        .sum();
    let status = daemon.status();
    assert_eq!(status.queue.received, 200, "{status:?}");
    assert_eq!(status.queue.coalesced, coalesced, "{status:?}");
    assert_eq!(status.queue.dropped, 0, "{status:?}");
    assert_eq!(status.queue.depth, 0, "{status:?}");
    assert_eq!(status.sources["devd"].events, 200, "{status:?}");
    daemon.wait_status("the model at the final state", |status| {
        (status
            .carp
            .iter()
            .find(|carp| carp.vhid == 1)
            .map(|c| c.state)
            == Some(CarpState::Backup))
        .then_some(())
    });
    // Nothing but the lines (and the startup) was handled: no timer fired, nothing else came.
    assert_eq!(
        events(&records)
            .iter()
            .filter(|event| event.source != "startup")
            .count(),
        handled.len()
    );
}

#[test]
fn flaps_while_the_loop_is_busy_coalesce_into_one_event() {
    let setup = Setup::with(&Options {
        hold_down_ms: FOREVER_MS,
        devd: true,
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let (devd, daemon, connection) = start_with_devd(&setup);
    // The poller ran once at start; from now on only a resync runs hastctl.
    let runs = poll_until(POLL, || {
        (setup.hastctl_runs() >= 2).then(|| setup.hastctl_runs())
    })
    .expect("hastctl ran at startup and for the poller's first poll");

    // Make the loop busy: a reconnect makes it re-read the machine, and hastctl is slow to
    // answer until the hold file goes.
    let hold = RemovedOnDrop::create(setup.path("hastctl.hold"));
    drop(connection);
    let connection = devd.accept();
    poll_until(POLL, || (setup.hastctl_runs() > runs).then_some(()))
        .unwrap_or_else(|| panic!("the resync did not run hastctl\n{}", daemon.diagnostics()));

    flap_storm(&connection);
    daemon.wait_status("all 200 lines queued", |status| {
        (status.sources.get("devd").map(|c| c.events) == Some(200)).then_some(())
    });
    let status = daemon.status();
    assert_eq!(status.queue.depth, 1, "{status:?}");
    assert_eq!(status.queue.coalesced, 199, "{status:?}");
    drop(hold);

    let records = daemon.wait_journal("the coalesced event handled", |records| {
        (!carp_events(records, "devd").is_empty()).then(|| records.to_vec())
    });
    let handled = carp_events(&records, "devd");
    assert_eq!(handled.len(), 1, "{}", daemon.diagnostics());
    let (event, change) = handled[0];
    assert_eq!(event.coalesced, 199);
    assert_eq!((change.vhid, change.state), (1, CarpState::Backup));
    // It carries the newest line's id (the first startup event took id 1).
    assert_eq!(event.id, 201, "{}", daemon.diagnostics());
    let status = daemon.status();
    assert_eq!(status.queue.received, 200, "{status:?}");
    assert_eq!(status.queue.depth, 0, "{status:?}");
}

#[test]
fn a_step_interrupted_by_a_crash_is_handed_to_the_startup_event() {
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    // What a havend killed in the middle of a promotion leaves behind.
    let plan: Plan = Plan {
        steps: [
            "wait-worker-gone test secondary timeout=10000",
            "hast-role test primary timeout=30000",
            "wait-device /dev/hast/test timeout=30000",
        ]
        .iter()
        .map(|line| line.parse::<Step>().unwrap())
        .collect(),
    };
    let last_seq = {
        let mut journal = Journal::open(setup.state_dir(), 8 << 20, 4).unwrap();
        journal
            .append(&Entry::Note {
                message: "havend 0.1.0 started (an earlier run)".into(),
            })
            .unwrap();
        journal
            .append(&Entry::Event {
                event_id: 41,
                source: "devd".into(),
                event: Event::CarpChanged(CarpChange {
                    vhid: 1,
                    interface: "em0".into(),
                    state: CarpState::Master,
                    previous: Some(CarpState::Backup),
                }),
                coalesced: 0,
            })
            .unwrap();
        journal
            .append(&Entry::Decision {
                event_id: 41,
                policy: "mysql".into(),
                module_hash: "0".repeat(64),
                outcome: DecisionOutcome::Plan,
                plan_id: Some(7),
                plan: Some(plan.clone()),
                reason: None,
                elapsed_us: 900,
                inputs: None,
            })
            .unwrap();
        for (index, step) in plan.steps.iter().enumerate().take(2) {
            let index = u32::try_from(index).unwrap();
            journal
                .append(&Entry::StepStart {
                    plan_id: 7,
                    policy: "mysql".into(),
                    index,
                    step: step.clone(),
                })
                .unwrap();
            if index == 0 {
                journal
                    .append(&Entry::StepEnd {
                        plan_id: 7,
                        policy: "mysql".into(),
                        index,
                        ok: true,
                        skipped_as_done: false,
                        detail: None,
                        fencing_token: None,
                        duration_us: 10,
                    })
                    .unwrap();
            }
        }
        journal.next_seq() - 1
    };

    let daemon = Havend::start(&setup, &[]);
    let (seq, state) = daemon.wait_journal("the startup event", |records| {
        records.iter().find_map(|record| match &record.entry {
            Entry::Event {
                event: Event::Startup(state),
                source,
                ..
            } if source == "startup" => Some((record.seq, state.clone())),
            _ => None,
        })
    });
    assert!(seq > last_seq, "the journal's numbering goes on");
    assert_eq!(
        state.interrupted,
        Some(InterruptedStep {
            plan_id: 7,
            step_index: 1,
            step: plan.steps[1].clone(),
        }),
        "{}",
        daemon.diagnostics()
    );
    wait_started(&daemon);
}

#[test]
fn sigterm_stops_cleanly_and_a_held_pid_file_refuses_a_second_daemon() {
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let pid_file = setup.path("havend.pid");
    let pid_arg = pid_file.to_str().unwrap();
    let mut daemon = Havend::start_up(&setup, &["--pid-file", pid_arg]);
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", daemon.child.id())
    );
    let socket = setup.control_dir().join("havend.sock");
    assert!(socket.exists());

    let mut second = Havend::spawn(&setup, &["--pid-file", pid_arg], "second.stderr");
    let status = wait_exit(&mut second.child, DEADLINE).expect("the second havend exits");
    let stderr = fs::read_to_string(setup.path("second.stderr")).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another havend is running (pid {})",
            daemon.child.id()
        )),
        "{stderr}"
    );
    // The first one is untouched.
    assert_eq!(daemon.status().pid, daemon.child.id());

    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.diagnostics());
    assert!(!socket.exists(), "the control socket is left behind");
    assert!(!pid_file.exists(), "the pid file is left behind");
    let records = daemon.records();
    match &records.last().unwrap().entry {
        Entry::Note { message } => assert!(
            message.starts_with("havend stopping; 0 queued event(s) not handled"),
            "{message}"
        ),
        other => panic!("the journal ends with {other:?}"),
    }
    // havenctl now says so.
    let output = daemon.havenctl(&["status"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        stderr_text(&output).contains("is havend running?"),
        "{output:?}"
    );
}

#[test]
fn a_config_error_exits_2_naming_file_line_and_reason() {
    let setup = Setup::new();
    let good = setup.config_text(&Options {
        devd: true,
        ..Options::default()
    });
    fs::write(setup.config(), &good).unwrap();
    let output = Command::new(HAVEND)
        .arg("--config")
        .arg(setup.config())
        .arg("--check")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{}: ok (1 policies)\n", setup.config().display())
    );

    // A typo in [daemon].
    let typo = good.replace("state-dir = ", "state-dri = ");
    let line = typo
        .lines()
        .position(|line| line.starts_with("state-dri"))
        .unwrap()
        + 1;
    fs::write(setup.config(), typo).unwrap();
    for args in [&[][..], &["--check"][..]] {
        let output = Command::new(HAVEND)
            .arg("--config")
            .arg(setup.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = stderr_text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}:", setup.config().display()))
                && stderr.contains("state-dri"),
            "{stderr}"
        );
    }
    assert!(!setup.state_dir().exists());
    assert!(!setup.control_dir().exists());
}

// ------------------------------------------------------------------ real keepalived (root)

/// A network namespace with keepalived running in it; both gone when dropped.
#[derive(Debug)]
struct Namespace {
    name: String,
    keepalived: Option<Child>,
    vrrp_pid_file: PathBuf,
}

impl Namespace {
    fn create(name: String) -> Namespace {
        let namespace = Namespace {
            name,
            keepalived: None,
            vrrp_pid_file: PathBuf::new(),
        };
        namespace.ip(&["netns", "add", &namespace.name]);
        namespace
    }

    /// Run `ip args`; it must succeed.
    fn ip(&self, args: &[&str]) {
        let output = Command::new("ip").args(args).output().unwrap();
        assert!(output.status.success(), "ip {args:?}: {output:?}");
    }

    /// Run `ip -n <namespace> args`; whether it succeeded.
    fn ip_in(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut keepalived) = self.keepalived.take() {
            let pid = Pid::from_raw(i32::try_from(keepalived.id()).unwrap());
            let _ = kill(pid, Signal::SIGTERM);
            if wait_exit(&mut keepalived, Duration::from_secs(10)).is_none() {
                let _ = keepalived.kill();
                let _ = keepalived.wait();
            }
            // Its VRRP child, should it have outlived the parent.
            if let Some(pid) = fs::read_to_string(&self.vrrp_pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn have_program(name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]
        .iter()
        .any(|dir| Path::new(dir).join(name).exists())
}

/// keepalived in a namespace, reporting through its `notify_fifo`; its instance also tracks
/// the file Haven's `demote-carp` writes (`weight 0`: a non-zero value is FAULT), so the test
/// also shows the executor's demotion and its lift acting on a real keepalived.
#[test]
fn real_keepalived_in_a_network_namespace_reports_master_through_the_fifo() {
    if !nix::unistd::geteuid().is_root() || !have_program("keepalived") || !have_program("ip") {
        println!("skipped: needs root and keepalived (and ip)");
        return;
    }
    let (setup, daemon) = start_with_fifo("hv0");

    let mut namespace = Namespace::create(format!("haven-test-{}", std::process::id()));
    assert!(namespace.ip_in(&["link", "set", "lo", "up"]));
    // A dummy interface where the kernel has the driver; else a veth pair, both ends inside.
    if !namespace.ip_in(&["link", "add", "hv0", "type", "dummy"]) {
        assert!(
            namespace.ip_in(&["link", "add", "hv0", "type", "veth", "peer", "name", "hv1"]),
            "neither a dummy nor a veth interface can be made"
        );
        assert!(namespace.ip_in(&["link", "set", "hv1", "up"]));
    }
    assert!(namespace.ip_in(&["link", "set", "hv0", "up"]));
    assert!(namespace.ip_in(&["addr", "add", "10.203.0.1/24", "dev", "hv0"]));

    let conf = setup.path("keepalived.conf");
    let track = setup.path("haven-demote-1");
    fs::write(&track, "0\n").unwrap();
    fs::write(
        &conf,
        format!(
            r#"global_defs {{
    notify_fifo {fifo}
    vrrp_version 3
}}
vrrp_track_file haven_demote {{
    file {track}
}}
vrrp_instance VI_1 {{
    track_file {{
        haven_demote weight 0
    }}
    state MASTER
    interface hv0
    virtual_router_id 51
    priority 100
    advert_int 0.1
    virtual_ipaddress {{
        10.203.0.50/24
    }}
}}
"#,
            fifo = setup.fifo().display(),
            track = track.display()
        ),
    )
    .unwrap();
    namespace.vrrp_pid_file = setup.path("v.pid");
    let keepalived_log = setup.path("keepalived.log");
    namespace.keepalived = Some(
        Command::new("ip")
            .args(["netns", "exec", &namespace.name, "keepalived"])
            .args(["--dont-fork", "--log-console", "--no-syslog", "-f"])
            .arg(&conf)
            .arg("--pid")
            .arg(setup.path("k.pid"))
            .arg("--vrrp_pid")
            .arg(&namespace.vrrp_pid_file)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&keepalived_log).unwrap())
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&keepalived_log)
                    .unwrap(),
            ))
            .spawn()
            .expect("starting keepalived"),
    );

    let change = poll_until(POLL, || {
        let records = daemon.records();
        carp_events(&records, "keepalived")
            .into_iter()
            .find(|(_, change)| change.state == CarpState::Master)
            .map(|(_, change)| change.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no master transition from keepalived\n--- keepalived ---\n{}\n{}",
            fs::read_to_string(&keepalived_log).unwrap_or_default(),
            daemon.diagnostics()
        )
    });
    assert_eq!((change.vhid, change.interface.as_str()), (1, "hv0"));
    let records = daemon.records();
    // keepalived enters BACKUP first (init), then MASTER: both arrive, in order.
    let states: Vec<CarpState> = carp_events(&records, "keepalived")
        .iter()
        .map(|(_, change)| change.state)
        .collect();
    assert_eq!(states.last(), Some(&CarpState::Master), "{states:?}");
    assert!(
        bad_inputs(&records)
            .iter()
            .all(|(source, _, _)| *source != "keepalived"),
        "{}",
        daemon.diagnostics()
    );

    // Haven's demotion: `1` into the track file puts the instance in FAULT (init here); the
    // lift, `0`, brings it back to MASTER.
    let carp = format!(
        "[[carp]]\nvhid = 1\ninterface = \"hv0\"\naddress = \"10.203.0.50\"\n\
         keepalived-track-file = \"{}\"\n",
        track.display()
    );
    let config = haven_core::Config::parse(&carp, Path::new("haven.toml")).unwrap();
    let mut executor =
        haven_executor::SystemExecutor::new(haven_executor::Platform::Linux, &config.executor)
            .unwrap()
            .with_carp(&config.carp);
    let mut run = |action| {
        use haven_executor::Executor as _;
        let step = haven_core::Step {
            action,
            timeout_ms: None,
        };
        let outcome = executor.run_step("t", &step, &haven_core::Machine::default());
        assert!(outcome.ok(), "{outcome:?}");
    };
    let seen = || carp_events(&daemon.records(), "keepalived").len();
    let reached = |since: usize, state: CarpState| {
        poll_until(POLL, || {
            let records = daemon.records();
            let events = carp_events(&records, "keepalived");
            events[since..]
                .iter()
                .any(|(_, change)| change.state == state)
                .then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "keepalived never reached {state:?}\n{}",
                fs::read_to_string(&keepalived_log).unwrap_or_default()
            )
        })
    };
    let since = seen();
    run(Action::DemoteCarp(1));
    reached(since, CarpState::Init);
    let since = seen();
    run(Action::LiftCarpDemotion(1));
    reached(since, CarpState::Master);
    drop(namespace);
}

#[test]
fn a_second_havend_on_the_same_control_dir_refuses_before_deciding_anything() {
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    // The poller's first run is journaled too; after it the journal stays still.
    daemon.wait_journal("the hastctl poller's first run", |records| {
        notes(records)
            .iter()
            .any(|(_, message)| message.contains("hastctl list works"))
            .then_some(())
    });
    let before = daemon.records();

    // No pid file: the control socket is what tells that another havend runs.
    let mut second = Havend::spawn(&setup, &[], "second.stderr");
    let status = wait_exit(&mut second.child, DEADLINE).expect("the second havend exits");
    let stderr = fs::read_to_string(setup.path("second.stderr")).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another havend is listening on it"),
        "{stderr}"
    );
    // It neither wrote to the first one's journal nor handed its policies a startup event
    // (with a real executor, that startup's plan would have acted on the system).
    let after = daemon.records();
    assert_eq!(after, before, "{}", daemon.diagnostics());
    assert_eq!(daemon.status().pid, daemon.child.id());
}

#[test]
fn a_failing_command_stops_the_plan_is_journaled_and_goes_back_to_the_policy() {
    // The stand-in answers `list` (secondary, in sync) and fails anything else, as a hastctl
    // that cannot reach hastd does: `hastctl role primary test` exits 1.
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        carp: Some(("lo", "127.0.0.77")),
        real_executor: true,
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    let output = daemon.havenctl(&["hook", "ucarp", "up", "lo", "127.0.0.77"]);
    assert!(output.status.success(), "{output:?}");

    let records = daemon.wait_journal("the policy's answer to the failed step", |records| {
        let failed = events(records)
            .into_iter()
            .find(|event| matches!(event.event, Event::StepFailed(_)))?;
        decided(records, &failed)?;
        Some(records.to_vec())
    });
    let ends: Vec<(u32, bool, bool, String)> = records
        .iter()
        .filter_map(|record| match &record.entry {
            Entry::StepEnd {
                index,
                ok,
                skipped_as_done,
                detail,
                ..
            } => Some((
                *index,
                *ok,
                *skipped_as_done,
                detail.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect();
    // Step 0 (no secondary worker runs here) was already done; step 1, the role change, ran
    // the stand-in and failed with its exit status and stderr; nothing after it started.
    assert!(ends.len() >= 2, "{ends:#?}");
    assert_eq!(
        (ends[0].0, ends[0].1, ends[0].2),
        (0, true, true),
        "{ends:#?}"
    );
    let (index, ok, _, detail) = &ends[1];
    assert_eq!((*index, *ok), (1, false), "{ends:#?}");
    assert!(
        detail.contains("role primary test") && detail.contains("unknown command: role"),
        "{detail}"
    );
    assert!(
        !records.iter().any(|record| matches!(
            &record.entry,
            Entry::StepStart { plan_id, index: 2, .. } if *plan_id == 1
        )),
        "a step after the failure started"
    );
    assert!(records.iter().any(|record| matches!(
        &record.entry,
        Entry::PlanEnd {
            completed: false,
            ..
        }
    )));
    let failure = events(&records)
        .into_iter()
        .find_map(|event| match event.event {
            Event::StepFailed(failure) => Some(failure.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(failure.step_index, 1);
    assert!(failure.reason.contains("exit"), "{}", failure.reason);
}

#[test]
fn idle_control_clients_never_hold_up_a_hook() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    let socket = setup.control_dir().join(haven_daemon::control::SOCKET_NAME);
    // Five clients connect and say nothing: each holds the server until its deadline.
    let idle: Vec<UnixStream> = (0..5)
        .map(|_| UnixStream::connect(&socket).expect("connect to the control socket"))
        .collect();
    let output = Command::new(HAVENCTL)
        .arg("--control-dir")
        .arg(setup.control_dir())
        .args(["hast-hook", "connect", "test"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // The hook was answered while every idle client is still held: none has been answered
    // (timed out and closed) yet, so the hook waited behind none of them.
    for mut client in idle {
        client.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let error = client
            .read(&mut byte)
            .expect_err("an idle client is not answered yet");
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::WouldBlock,
            "{error}\n{}",
            daemon.diagnostics()
        );
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount tmpfs on {}", dir.display());
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_disk_is_alerted_once_and_again_when_it_is_over() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to mount a small tmpfs as the state directory");
        return;
    }
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let _disk = SmallDisk::mount(&setup.state_dir(), "16m");
    let daemon = Havend::start_up(&setup, &[]);

    // Fill the disk to the last byte.
    let filler = setup.state_dir().join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    drop(file);

    let alerts_about = |status: &Status, text: &str| {
        status
            .alerts
            .iter()
            .filter(|alert| alert.message.contains(text))
            .count()
    };
    let hook = || {
        let output = daemon.havenctl(&["hast-hook", "connect", "test"]);
        assert!(output.status.success(), "{output:?}");
    };
    // Events go on being decided; the first write that fails raises one alert.
    let status = poll_until(POLL, || {
        hook();
        let status = daemon.status();
        (alerts_about(&status, "the journal cannot be written") > 0).then_some(status)
    })
    .unwrap_or_else(|| panic!("no alert about the journal\n{}", daemon.diagnostics()));
    assert!(status.journal_errors > 0, "{status:?}");
    for _ in 0..20 {
        hook();
    }
    let status = daemon.status();
    assert_eq!(
        alerts_about(&status, "the journal cannot be written"),
        1,
        "{status:?}"
    );
    assert!(status.journal_errors > 1, "{status:?}");

    // Room again: the next write works, and the journal says the outage is over.
    fs::remove_file(&filler).unwrap();
    let over = poll_until(POLL, || {
        hook();
        daemon
            .records()
            .into_iter()
            .find_map(|record| match record.entry {
                Entry::Alert { message, .. } if message.contains("can be written again") => {
                    Some(message)
                }
                _ => None,
            })
    })
    .unwrap_or_else(|| {
        panic!(
            "the end of the outage was not journaled\n{}",
            daemon.diagnostics()
        )
    });
    assert!(over.contains("No space left on device"), "{over}");
}

// ------------------------------------------------------------------------ operator requests

#[test]
fn operator_requests_are_checked_before_they_are_queued_and_maintenance_is_kept() {
    // HAST `test` known (secondary) from the hastctl stand-in, polled once at start.
    let setup = Setup::with(&Options {
        hastctl_interval_ms: Some(FOREVER_MS),
        ..Options::default()
    });
    let daemon = Havend::start_up(&setup, &[]);
    // Bad input changes nothing: havend answers an error, and no event is queued.
    assert_refused(
        &daemon.havenctl(&["switchover"]),
        "switchover needs the peer link: haven.toml has no [peer]",
    );
    assert_refused(
        &daemon.havenctl(&["promote", "--accept-incomplete", "nope"]),
        "HAST resource `nope` is not granted to any policy",
    );
    assert_refused(
        &daemon.havenctl(&["promote", "--accept-incomplete", "../etc"]),
        "has an empty, `.` or `..` path component",
    );
    let queued = |records: &[Record]| {
        events(records)
            .iter()
            .filter(|event| matches!(event.event, haven_core::Event::Operator(_)))
            .count()
    };
    assert_eq!(queued(&daemon.records()), 0);

    // Maintenance on: kept on disk before the policy hears it, shown in status. The seed
    // policy's demotion is refused here (no grants.carp-vhids), and havenctl says so.
    let output = daemon.havenctl(&["maintenance", "on", "--wait", "20"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = stderr_text(&output);
    assert!(
        said.contains("not done: ") && said.contains("CARP vhid 1 is not in grants.carp-vhids"),
        "{said}"
    );
    assert!(setup.state_dir().join("maintenance.json").is_file());
    let maintenance = daemon
        .status()
        .maintenance
        .expect("maintenance on in status");
    assert_eq!(maintenance.uid, 0);
    assert_eq!(queued(&daemon.records()), 1);
    let text = stdout_text(&daemon.havenctl(&["status"]));
    assert!(text.contains("MAINTENANCE on since"), "{text}");

    // The journal keeps who asked.
    let asked = daemon
        .records()
        .into_iter()
        .find_map(|record| match record.entry {
            Entry::Event {
                event: haven_core::Event::Operator(request),
                source,
                ..
            } => Some((request, source)),
            _ => None,
        });
    let (request, source) = asked.expect("the request is journaled");
    assert_eq!(source, "havenctl");
    assert_eq!(request.uid, 0);
    assert_eq!(request.ask, haven_core::OperatorAsk::Maintenance(true));

    let _ = daemon.havenctl(&["maintenance", "off", "--wait", "20"]);
    assert!(!setup.state_dir().join("maintenance.json").exists());
    assert_eq!(daemon.status().maintenance, None);
}
