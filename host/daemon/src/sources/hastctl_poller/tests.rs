use super::*;
use crate::sources::source_thread::assert_joined;
use haven_core::{HastReplication, HastRole};
use haven_executor::command::process_gone;
use haven_test_artifacts::support::{hastctl_list, run_once, wait_until, write_script};
use nix::errno::Errno;
use nix::unistd::Pid;
use std::sync::mpsc;
use std::sync::mpsc::TryRecvError;
use std::time::Instant;

/// Generous bound for anything that should happen "soon".
const DEADLINE: Duration = Duration::from_secs(5);

/// The test interval: short, so tests do not wait for polls.
const INTERVAL: Duration = Duration::from_millis(20);

/// An interval no test waits for: the poller runs once and then only a stop wakes it.
const FOREVER: Duration = Duration::from_secs(3600);

/// A stand-in for FreeBSD's hastctl(8), test code only: the poller runs it as it runs the
/// real one. It finds its files next to itself through `$0` (the poller runs it by absolute
/// path with a cleared environment).
const STANDIN: &str = r#"#!/bin/sh
# Test stand-in for FreeBSD's hastctl(8): `hastctl list [all | name ...]` prints what the
# tests keep in the file `state` next to this script. Marker files next to it:
#   hang  `list` waits for a long sleep first (a hastd that does not answer);
#   fail  `list` prints the marker's text on stderr and exits 1;
#   env   `list` prints its environment on stderr and exits 1;
#   old   `list` is unknown, as before FreeBSD 9.2: usage() on stderr, exit EX_USAGE (64).
dir=${0%/*}
if [ "$1" = list ] && [ -e "$dir/old" ]; then
    echo "usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]" >&2
    echo "       hastctl role [-d] [-c config] <init | primary | secondary> all | name ..." >&2
    echo "       hastctl status [-d] [-c config] [all | name ...]" >&2
    echo "       hastctl dump [-d] [-c config] [all | name ...]" >&2
    exit 64
fi
case "$1" in
list) ;;
*)
    echo "hastctl: unknown command: $1" >&2
    exit 1
    ;;
esac
echo $$ >"$dir/pid"
if [ -e "$dir/hang" ]; then
    sleep 30 &
    echo $! >"$dir/sleep.pid"
    wait
fi
if [ -e "$dir/env" ]; then
    env >&2
    exit 1
fi
if [ -e "$dir/fail" ]; then
    cat "$dir/fail" >&2
    exit 1
fi
exec cat "$dir/state"
"#;

/// `test`: primary, complete, nothing dirty; `db`: primary, degraded, 1 MiB dirty.
fn two_primaries() -> String {
    hastctl_list("test", "primary", "complete", "0 (0B)")
        + &hastctl_list("db", "primary", "degraded", "1048576 (1.0MB)")
}

fn status(
    resource: &str,
    role: HastRole,
    replication: HastReplication,
    dirty: Option<u64>,
) -> HastStatus {
    HastStatus {
        resource: resource.to_owned(),
        role,
        replication,
        dirty_bytes: dirty,
    }
}

fn two_primaries_parsed() -> Vec<HastStatus> {
    vec![
        status(
            "test",
            HastRole::Primary,
            HastReplication::Complete,
            Some(0),
        ),
        status(
            "db",
            HastRole::Primary,
            HastReplication::Degraded,
            Some(1048576),
        ),
    ]
}

fn changed(status: HastStatus) -> HastMessage {
    HastMessage::Changed(Event::HastStatusChanged(status))
}

/// A tempdir holding the stand-in, its state file and its markers.
struct Standin {
    dir: tempfile::TempDir,
    program: PathBuf,
}

impl Standin {
    fn new(state: &str) -> Standin {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("hastctl");
        write_script(&program, STANDIN);
        let standin = Standin { dir, program };
        standin.set_state(state);
        // Run once, before the poller may: see `run_once`.
        let output = run_once(&standin.program);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            "hastctl: unknown command: probe\n"
        );
        standin
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replace a file atomically (a poll sees the old or the new text, never half).
    fn write(&self, name: &str, text: &str) {
        let temporary = self.path(&format!("{name}.tmp"));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.path(name)).unwrap();
    }

    fn set_state(&self, text: &str) {
        self.write("state", text);
    }

    /// From now on, `list` answers as a hastctl from before FreeBSD 9.2.
    fn write_usage_exit(&self) {
        self.write("old", "");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).unwrap();
    }

    fn pid(&self, name: &str) -> Pid {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        Pid::from_raw(text.trim().parse().unwrap())
    }

    /// The run that hung was reaped (so it is gone at once) and its `sleep`, in the same
    /// process group, was killed too (its new parent may take a moment to reap it).
    fn assert_run_gone(&self) {
        assert_eq!(
            nix::sys::signal::kill(self.pid("pid"), None),
            Err(Errno::ESRCH)
        );
        let sleep = self.pid("sleep.pid");
        wait_until("the stand-in's sleep is dead", || process_gone(sleep));
    }

    fn options(&self, interval: Duration, timeout: Duration) -> HastctlOptions {
        HastctlOptions {
            program: self.program.clone(),
            interval,
            timeout,
        }
    }
}

fn start(options: HastctlOptions) -> (HastctlPoller, Receiver<HastMessage>) {
    let (tx, rx) = mpsc::channel();
    let poller = HastctlPoller::spawn(options, move |message| {
        let _ = tx.send(message);
    });
    (poller, rx)
}

fn next(rx: &Receiver<HastMessage>) -> HastMessage {
    rx.recv_timeout(DEADLINE)
        .expect("no message from the hastctl poller in time")
}

/// The next message that is not a repeat of the failure the poller keeps seeing.
fn next_skipping(rx: &Receiver<HastMessage>, skip: impl Fn(&HastMessage) -> bool) -> HastMessage {
    let started = Instant::now();
    loop {
        let message = next(rx);
        if !skip(&message) {
            return message;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {message:?} for too long"
        );
    }
}

/// Wait until the poller finished `more` further runs after now, then check that they sent
/// nothing (a run's messages reach the sink before its poll is counted).
fn assert_quiet(poller: &HastctlPoller, rx: &Receiver<HastMessage>, more: u64) {
    let target = poller.stats().polls + more;
    wait_until("the poller ran again", || poller.stats().polls >= target);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

// -------------------------------------------------------------------------- pure helpers

#[test]
fn diff_reports_changes_then_vanished() {
    let before = two_primaries_parsed();
    assert_eq!(diff(&before, &before), vec![]);
    let mut after = before.clone();
    after[1].dirty_bytes = Some(4096);
    after.remove(0);
    after.push(status(
        "spare",
        HastRole::Init,
        HastReplication::Unknown,
        None,
    ));
    assert_eq!(
        diff(&before, &after),
        vec![
            changed(after[0].clone()),
            changed(after[1].clone()),
            HastMessage::Vanished("test".into()),
        ]
    );
    let mut degraded = before.clone();
    degraded[0].replication = HastReplication::Degraded;
    assert_eq!(diff(&before, &degraded), vec![changed(degraded[0].clone())]);
}

// ------------------------------------------------------------------------------ poll_once

#[test]
fn poll_once_parses_the_list() {
    let standin = Standin::new(&two_primaries());
    assert_eq!(
        poll_once(&standin.program, DEADLINE).unwrap(),
        two_primaries_parsed()
    );
    standin.set_state("");
    assert_eq!(poll_once(&standin.program, DEADLINE).unwrap(), vec![]);
}

#[test]
fn poll_once_reports_each_failure() {
    // A stray line costs nothing but itself (the poller reports it).
    let standin = Standin::new("hastctl: garbage\n");
    assert_eq!(poll_once(&standin.program, DEADLINE).unwrap(), vec![]);

    std::fs::write(standin.path("state"), b"test:\n  role: \xff\n").unwrap();
    assert!(matches!(
        poll_once(&standin.program, DEADLINE),
        Err(HastctlError::NotUtf8 { .. })
    ));

    standin.write("fail", "hastctl: cannot connect to hastd\n");
    match poll_once(&standin.program, DEADLINE) {
        Err(HastctlError::Exit {
            status,
            stderr_excerpt,
            ..
        }) => {
            assert_eq!(status.code(), Some(1));
            assert_eq!(stderr_excerpt, "hastctl: cannot connect to hastd");
        }
        other => panic!("{other:?}"),
    }

    let missing = standin.path("no-such-hastctl");
    match poll_once(&missing, DEADLINE) {
        Err(error @ HastctlError::Spawn { .. }) => {
            assert!(error.to_string().contains("no-such-hastctl"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn poll_once_runs_with_a_cleared_environment() {
    let standin = Standin::new(&two_primaries());
    standin.write("env", "");
    let Err(HastctlError::Exit { stderr_excerpt, .. }) = poll_once(&standin.program, DEADLINE)
    else {
        panic!("the stand-in should have printed its environment and failed");
    };
    let variables: Vec<&str> = stderr_excerpt.lines().collect();
    assert!(
        variables.contains(&format!("PATH={CHILD_PATH}").as_str()),
        "{variables:?}"
    );
    // Only what sh itself sets may appear besides PATH.
    for variable in &variables {
        let name = variable.split('=').next().unwrap();
        assert!(
            ["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name),
            "unexpected {variable:?} in {variables:?}"
        );
    }
}

#[test]
fn poll_once_kills_and_reaps_a_run_past_its_deadline() {
    let standin = Standin::new(&two_primaries());
    standin.write("hang", "");
    // Long enough for the stand-in to start and write its pid files on a loaded machine.
    let timeout = Duration::from_millis(2000);
    let started = Instant::now();
    let error = poll_once(&standin.program, timeout).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, HastctlError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out after 2s"), "{error}");
    assert!(
        elapsed >= timeout && elapsed < timeout + DEADLINE,
        "{elapsed:?}"
    );
    // The stand-in was reaped before poll_once returned; its `sleep`, in the same process
    // group, was killed too.
    standin.assert_run_gone();
}

// -------------------------------------------------------------------------------- poller

#[test]
fn snapshot_then_role_and_dirty_changes_then_quiet() {
    let standin = Standin::new(&two_primaries());
    let (poller, rx) = start(standin.options(INTERVAL, DEADLINE));
    assert_eq!(next(&rx), HastMessage::Snapshot(two_primaries_parsed()));

    // primary → secondary: the secondary's dirty count is not kept.
    standin.set_state(
        &(hastctl_list("test", "secondary", "complete", "0 (0B)")
            + &hastctl_list("db", "primary", "degraded", "1048576 (1.0MB)")),
    );
    assert_eq!(
        next(&rx),
        changed(status(
            "test",
            HastRole::Secondary,
            HastReplication::Complete,
            None
        ))
    );
    assert_quiet(&poller, &rx, 2);

    // The degraded primary's dirty count changes.
    standin.set_state(
        &(hastctl_list("test", "secondary", "complete", "0 (0B)")
            + &hastctl_list("db", "primary", "degraded", "2097152 (2.0MB)")),
    );
    assert_eq!(
        next(&rx),
        changed(status(
            "db",
            HastRole::Primary,
            HastReplication::Degraded,
            Some(2097152)
        ))
    );
    assert_quiet(&poller, &rx, 3);

    let stats = poller.stats();
    // At least the snapshot and the two polls that saw a change; `assert_quiet` already
    // checked the quiet polls in between.
    assert!(stats.polls >= 3, "{stats:?}");
    assert_eq!(stats.changes, 2, "{stats:?}");
    assert_eq!((stats.failures, stats.bad_outputs), (0, 0), "{stats:?}");
    poller.stop();
}

#[test]
fn resources_appearing_and_vanishing() {
    let standin = Standin::new(&two_primaries());
    let (poller, rx) = start(standin.options(INTERVAL, DEADLINE));
    assert_eq!(next(&rx), HastMessage::Snapshot(two_primaries_parsed()));
    standin.set_state(
        &(hastctl_list("test", "primary", "complete", "0 (0B)")
            + &hastctl_list("spare", "init", "complete", "0 (0B)")),
    );
    assert_eq!(
        next(&rx),
        changed(status(
            "spare",
            HastRole::Init,
            HastReplication::Complete,
            None
        ))
    );
    assert_eq!(next(&rx), HastMessage::Vanished("db".into()));
    assert_quiet(&poller, &rx, 2);
    assert_eq!(poller.stats().changes, 2);
}

#[test]
fn odd_resources_are_refused_alone_and_said_once_per_change() {
    let garbage = "hastctl: something unexpected\n";
    let is_changed = |m: &HastMessage| matches!(m, HastMessage::Changed(_));

    // A stray line is refused; the poll itself worked, so the snapshot follows.
    let standin = Standin::new(garbage);
    let (poller, rx) = start(standin.options(INTERVAL, DEADLINE));
    match next(&rx) {
        HastMessage::BadOutput {
            text_excerpt,
            reason,
        } => {
            assert_eq!(text_excerpt, garbage.trim_end());
            assert!(reason.contains("line 1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next(&rx), HastMessage::Snapshot(vec![]));
    standin.set_state(&two_primaries());
    for expected in two_primaries_parsed() {
        assert_eq!(next(&rx), changed(expected));
    }

    // One odd resource: refused once, while it lasts; it keeps its last status (no
    // `Vanished`), and the other resource's changes still come through.
    let mut broken = hastctl_list("test", "secondary", "complete", "0 (0B)");
    broken.push_str("db:\n  role: sideways\n");
    standin.set_state(&broken);
    match next(&rx) {
        HastMessage::BadOutput { reason, .. } => {
            assert!(reason.contains("sideways"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next(&rx),
        changed(status(
            "test",
            HastRole::Secondary,
            HastReplication::Complete,
            None
        ))
    );
    assert_quiet(&poller, &rx, 3);
    // hastd's odd names are names: `data:1` and `tank/vol0` are read like any other.
    standin.set_state(
        &(hastctl_list("data:1", "primary", "complete", "0 (0B)")
            + &hastctl_list("db", "primary", "complete", "0 (0B)")),
    );
    let message = next_skipping(&rx, |m| !is_changed(m));
    assert_eq!(
        message,
        changed(status(
            "data:1",
            HastRole::Primary,
            HastReplication::Complete,
            Some(0)
        ))
    );
    let stats = poller.stats();
    assert_eq!(stats.bad_outputs, 2, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
}

#[test]
fn a_lasting_failure_is_said_once() {
    let standin = Standin::new(&two_primaries());
    standin.write("fail", "hastctl: cannot connect to hastd\n");
    let (poller, rx) = start(standin.options(INTERVAL, DEADLINE));
    assert!(matches!(next(&rx), HastMessage::CommandFailed { .. }));
    assert_quiet(&poller, &rx, 3);
    assert!(poller.stats().failures >= 3);
}

#[test]
fn a_hastctl_without_list_says_so() {
    let standin = Standin::new(&two_primaries());
    standin.write_usage_exit();
    match poll_once(&standin.program, DEADLINE) {
        Err(error @ HastctlError::NoListCommand { .. }) => {
            assert!(
                error.to_string().contains("FreeBSD 9.2 and 10.0"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_zero_exit_is_reported_with_its_stderr() {
    let standin = Standin::new(&two_primaries());
    standin.write(
        "fail",
        "hastctl: Unable to connect to hastd via /var/run/hastctl.\n",
    );
    let (poller, rx) = start(standin.options(INTERVAL, DEADLINE));
    match next(&rx) {
        HastMessage::CommandFailed { reason } => {
            assert!(reason.contains("exit status: 1"), "{reason}");
            assert!(
                reason.contains("hastctl: Unable to connect to hastd via /var/run/hastctl."),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    standin.remove("fail");
    let is_failure = |m: &HastMessage| matches!(m, HastMessage::CommandFailed { .. });
    assert!(matches!(
        next_skipping(&rx, is_failure),
        HastMessage::Recovered { failures } if failures >= 1
    ));
    assert_eq!(next(&rx), HastMessage::Snapshot(two_primaries_parsed()));
    let stats = poller.stats();
    assert!(stats.failures >= 1, "{stats:?}");
    assert_eq!(stats.bad_outputs, 0, "{stats:?}");
}

#[test]
fn a_run_past_its_deadline_is_killed_and_reaped() {
    let standin = Standin::new(&two_primaries());
    standin.write("hang", "");
    // One run only: the pid files stay those of the run that hung.
    let (poller, rx) = start(standin.options(FOREVER, Duration::from_millis(2000)));
    match next(&rx) {
        HastMessage::CommandFailed { reason } => {
            assert!(reason.contains("timed out"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Reaped before the message was sent; its `sleep` was killed with the process group.
    standin.assert_run_gone();
    assert_eq!(poller.stats().failures, 1);
    poller.stop();
}

#[test]
fn a_missing_program_is_a_command_failure() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("hastctl");
    let (poller, rx) = start(HastctlOptions {
        program,
        interval: INTERVAL,
        timeout: DEADLINE,
    });
    match next(&rx) {
        HastMessage::CommandFailed { reason } => {
            assert!(reason.contains("cannot run"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Polling goes on, and the same failure is counted, not said again.
    assert_quiet(&poller, &rx, 2);
    assert!(poller.stats().failures >= 2);
}

#[test]
fn stop_is_prompt_during_a_long_interval() {
    let standin = Standin::new(&two_primaries());
    let (poller, rx) = start(standin.options(FOREVER, DEADLINE));
    assert_eq!(next(&rx), HastMessage::Snapshot(two_primaries_parsed()));
    wait_until("the first poll is counted", || poller.stats().polls == 1);
    poller.stop();
    assert_joined(&rx);
    // The thread is gone: it dropped the sink.
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn stop_kills_a_running_command() {
    let standin = Standin::new(&two_primaries());
    standin.write("hang", "");
    let (poller, rx) = start(standin.options(FOREVER, Duration::from_secs(60)));
    let sleep_pid = standin.path("sleep.pid");
    wait_until("the stand-in hangs", || {
        std::fs::read_to_string(&sleep_pid).is_ok_and(|text| text.ends_with('\n'))
    });
    drop(poller);
    assert_joined(&rx);
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
    standin.assert_run_gone();
}
