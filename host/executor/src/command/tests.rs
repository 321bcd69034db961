use super::*;
use haven_test_artifacts::support::wait_until;
use std::cell::Cell;

/// Generous bound for anything that should happen "soon" (and that proves a run did not wait
/// for its 60 s sleep).
const DEADLINE: Duration = Duration::from_secs(20);

const SH: &str = "/bin/sh";

fn never() -> bool {
    false
}

fn sh(script: &str, timeout: Duration) -> Result<Output, CommandError> {
    run(Path::new(SH), &["-c", script], timeout, &never)
}

/// A pid the test script wrote to a file, once the line is complete.
fn read_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.strip_suffix('\n')?;
    Some(Pid::from_raw(line.parse().ok()?))
}

/// Test code only: a shell that writes its own pid to `$1`, starts `sleep 60` in the
/// background (same process group), writes the sleep's pid to `$2` and waits for it.
const HANG: &str = r#"echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; sleep 60 & echo $! >"$2.tmp" && mv "$2.tmp" "$2"; wait"#;

struct Hang {
    _dir: tempfile::TempDir,
    shell_pid: PathBuf,
    sleep_pid: PathBuf,
}

impl Hang {
    fn new() -> Hang {
        let dir = tempfile::tempdir().unwrap();
        Hang {
            shell_pid: dir.path().join("shell.pid"),
            sleep_pid: dir.path().join("sleep.pid"),
            _dir: dir,
        }
    }

    fn run(&self, timeout: Duration, should_stop: &dyn Fn() -> bool) -> CommandError {
        self.run_script(HANG, timeout, should_stop)
    }

    /// Run `script` instead of [`HANG`]; it gets the same two paths as `$1` and `$2`.
    fn run_script(
        &self,
        script: &str,
        timeout: Duration,
        should_stop: &dyn Fn() -> bool,
    ) -> CommandError {
        let shell_pid = self.shell_pid.to_str().unwrap();
        let sleep_pid = self.sleep_pid.to_str().unwrap();
        run(
            Path::new(SH),
            &["-c", script, "sh", shell_pid, sleep_pid],
            timeout,
            should_stop,
        )
        .unwrap_err()
    }

    fn started(&self) -> bool {
        read_pid(&self.sleep_pid).is_some()
    }

    /// The shell was reaped by `run` (so it is gone at once) and its sleep, in the same process
    /// group, was killed too (its new parent may take a moment to reap it).
    fn assert_all_gone(&self) {
        let shell = read_pid(&self.shell_pid).expect("the shell wrote its pid");
        assert_eq!(nix::sys::signal::kill(shell, None), Err(Errno::ESRCH));
        let sleep = read_pid(&self.sleep_pid).expect("the shell wrote the sleep's pid");
        wait_until("the background sleep is dead", || process_gone(sleep));
    }
}

// ------------------------------------------------------------------------------------- run

#[test]
fn success_captures_both_streams() {
    let output = sh("echo out; echo err >&2; printf 'no newline'", DEADLINE).unwrap();
    assert!(output.success());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"out\nno newline");
    assert_eq!(output.stderr, b"err\n");
    assert_eq!(output.stderr_excerpt(), "err");
    assert!(output.elapsed < DEADLINE, "{:?}", output.elapsed);
}

#[test]
fn arguments_are_passed_as_they_are() {
    let tricky = "$HOME; echo injected `id` \"quoted\" *";
    let output = run(
        Path::new(SH),
        &["-c", "printf '%s' \"$1\"", "sh", tricky],
        DEADLINE,
        &never,
    )
    .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), tricky);
}

#[test]
fn non_zero_exit_is_an_output_not_an_error() {
    let output = sh("echo partial; echo '  oops  ' >&2; exit 3", DEADLINE).unwrap();
    assert!(!output.success());
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.stdout, b"partial\n");
    assert_eq!(output.stderr_excerpt(), "oops");
}

#[test]
fn environment_is_cleared_but_for_path() {
    let output = run(Path::new("/usr/bin/env"), &[], DEADLINE, &never).unwrap();
    assert!(output.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("PATH={CHILD_PATH}\n")
    );
}

#[test]
fn runs_in_root_with_stdin_from_dev_null() {
    let output = sh("pwd; cat; echo end", DEADLINE).unwrap();
    assert_eq!(output.stdout, b"/\nend\n");
}

#[test]
fn the_child_leads_its_own_process_group() {
    let hang = Hang::new();
    let started = Instant::now();
    let seen = Cell::new(None);
    // Look at the running shell once its sleep runs, then stop the run.
    let error = hang.run(DEADLINE * 3, &|| {
        if !hang.started() {
            return started.elapsed() > DEADLINE;
        }
        let shell = read_pid(&hang.shell_pid).expect("the shell wrote its pid first");
        seen.set(Some((shell, nix::unistd::getpgid(Some(shell)))));
        true
    });
    assert!(matches!(error, CommandError::Stopped { .. }), "{error:?}");
    let (shell, group) = seen.get().expect("the shell never got to start its sleep");
    assert_eq!(group, Ok(shell));
    assert_ne!(group, Ok(nix::unistd::getpgrp()));
    hang.assert_all_gone();
}

#[test]
fn timeout_kills_the_whole_process_group() {
    timeout_kills(HANG);
}

/// A child that closed its stdout and stderr has not exited: it is still waited for, and
/// killed with its group at the deadline.
#[test]
fn timeout_kills_a_child_that_closed_its_output() {
    timeout_kills(&format!("exec >&- 2>&-; {HANG}"));
}

/// `script` (like [`HANG`]) runs past its timeout and is killed with its whole group.
fn timeout_kills(script: &str) {
    // Long enough for the shell to start and write its pid files on a loaded machine; a run
    // that timed out before the shell got that far is retried with a longer timeout.
    let mut timeout = Duration::from_millis(1000);
    let hang = loop {
        let hang = Hang::new();
        let started = Instant::now();
        let error = hang.run_script(script, timeout, &never);
        let elapsed = started.elapsed();
        match &error {
            CommandError::Timeout {
                program,
                timeout: reported,
            } => {
                assert_eq!(program, Path::new(SH));
                assert_eq!(*reported, timeout);
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("timed out after"), "{error}");
        assert!(error.to_string().contains(SH), "{error}");
        // It did not wait for the sleep.
        assert!(elapsed < timeout + DEADLINE, "{elapsed:?}");
        if hang.started() {
            break hang;
        }
        assert!(timeout < DEADLINE, "the shell never got to start its sleep");
        timeout *= 4;
    };
    hang.assert_all_gone();
}

#[test]
fn should_stop_kills_the_whole_process_group() {
    let hang = Hang::new();
    let calls = Cell::new(0u32);
    let started = Instant::now();
    // Stop as soon as the sleep runs (bounded: stop anyway after DEADLINE).
    let error = hang.run(DEADLINE * 3, &|| {
        calls.set(calls.get() + 1);
        hang.started() || started.elapsed() > DEADLINE
    });
    assert!(matches!(error, CommandError::Stopped { .. }), "{error:?}");
    assert!(error.to_string().contains(SH), "{error}");
    assert!(hang.started(), "stopped before the sleep ran");
    assert!(started.elapsed() < DEADLINE * 2);
    assert!(calls.get() >= 2);
    hang.assert_all_gone();
}

#[test]
fn should_stop_before_the_start_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let error = run(
        Path::new("/usr/bin/touch"),
        &[marker.to_str().unwrap()],
        DEADLINE,
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(error, CommandError::Stopped { .. }), "{error:?}");
    assert!(!marker.exists());
}

#[test]
fn output_up_to_the_cap_is_kept_and_more_is_refused() {
    let exactly = format!("head -c {MAX_OUTPUT} /dev/zero");
    let output = sh(&exactly, DEADLINE).unwrap();
    assert!(output.success());
    assert_eq!(output.stdout.len(), MAX_OUTPUT);

    let on_stderr = format!("head -c {MAX_OUTPUT} /dev/zero >&2; echo fine");
    let output = sh(&on_stderr, DEADLINE).unwrap();
    assert_eq!(output.stderr.len(), MAX_OUTPUT);
    assert_eq!(output.stdout, b"fine\n");

    let one_more = format!("head -c {} /dev/zero", MAX_OUTPUT + 1);
    let error = sh(&one_more, DEADLINE).unwrap_err();
    assert!(
        matches!(error, CommandError::TooMuchOutput { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(SH), "{error}");

    // A program that never stops printing is killed, not waited for.
    let error = sh("exec yes", Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(error, CommandError::TooMuchOutput { .. }),
        "{error:?}"
    );
}

/// Too much output is refused and the whole group killed, also when the shell prints it and
/// exits at once, leaving its background sleep behind (the exit is seen before the child is
/// reaped, so the group can still be killed).
#[test]
fn too_much_output_kills_the_whole_process_group() {
    let flood = format!("head -c {} /dev/zero", MAX_OUTPUT + 1);
    let waits = format!(r#"{HANG_START}; {flood} >&2; wait"#);
    let exits = format!(r#"{HANG_START}; {flood}; exit 0"#);
    for script in [waits, exits] {
        let hang = Hang::new();
        let error = hang.run_script(&script, DEADLINE * 3, &never);
        assert!(
            matches!(error, CommandError::TooMuchOutput { .. }),
            "{script}: {error:?}"
        );
        hang.assert_all_gone();
    }
}

/// Test code only: [`HANG`] without its `wait`: the shell's pid in `$1`, a background
/// `sleep 60` in the same group, its pid in `$2`.
const HANG_START: &str =
    r#"echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; sleep 60 & echo $! >"$2.tmp" && mv "$2.tmp" "$2""#;

/// Kills a process when dropped (a test's background process, also when the test fails).
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
    }
}

/// Like Debian's `/etc/init.d/mariadb start` (its `mysqld_safe … | logger &` keeps the
/// script's stdout and stderr): the run ends when the shell exits, with its status and its
/// output, although a background process still holds both streams, and that process is
/// neither waited for nor killed.
#[test]
fn a_background_process_holding_the_output_neither_holds_the_run_nor_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleep.pid");
    let script =
        r#"echo started; echo note >&2; sleep 600 & echo $! >"$1.tmp" && mv "$1.tmp" "$1"; exit 0"#;
    let output = run(
        Path::new(SH),
        &["-c", script, "sh", pid_file.to_str().unwrap()],
        Duration::from_secs(600),
        &never,
    )
    .unwrap();
    let sleep = read_pid(&pid_file).expect("the shell wrote the sleep's pid before exiting");
    let _kill = KillOnDrop(sleep);
    assert!(output.success(), "{output:?}");
    assert_eq!(output.stdout, b"started\n");
    assert_eq!(output.stderr, b"note\n");
    // It did not wait for the deadline (nor for the sleep).
    assert!(output.elapsed < DEADLINE, "{:?}", output.elapsed);
    assert!(!process_gone(sleep), "the background sleep was killed");
    #[cfg(target_os = "linux")]
    for (fd, name) in [(1, "haven-stdout"), (2, "haven-stderr")] {
        // The premise: the sleep does hold the run's output files.
        let target = std::fs::read_link(format!("/proc/{sleep}/fd/{fd}")).unwrap();
        let target = target.to_string_lossy();
        assert!(target.contains(&format!("memfd:{name}")), "{target}");
    }
    nix::sys::signal::kill(sleep, Signal::SIGKILL).unwrap();
    wait_until("the background sleep is dead", || process_gone(sleep));
}

/// What a run leaves behind holding its output cannot write into it any more once the run has
/// ended (the file is sealed against growing and emptied): the write fails, so the memory it
/// costs stays bounded however long it runs and whatever it prints.
#[test]
fn what_is_left_behind_cannot_write_into_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let result = dir.path().join("result");
    // Test code only: the background subshell waits (bounded, 20 s) for `$1` to exist, then
    // tries to print and reports whether `/bin/echo` succeeded in `$2`.
    let script = r#"(
        i=0; while [ ! -e "$1" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
        if /bin/echo late; then r=written; else r=refused; fi
        echo $r >"$2.tmp" && mv "$2.tmp" "$2"
    ) &
    echo own"#;
    let output = run(
        Path::new(SH),
        &[
            "-c",
            script,
            "sh",
            go.to_str().unwrap(),
            result.to_str().unwrap(),
        ],
        Duration::from_secs(600),
        &never,
    )
    .unwrap();
    assert!(output.success(), "{output:?}");
    assert_eq!(output.stdout, b"own\n");
    assert!(output.elapsed < DEADLINE, "{:?}", output.elapsed);
    std::fs::write(&go, "").unwrap();
    wait_until("the background subshell reported", || result.exists());
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "refused\n");
}

#[test]
fn a_missing_program_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-program");
    let error = run(&missing, &["x"], DEADLINE, &never).unwrap_err();
    match &error {
        CommandError::Spawn { program, source } => {
            assert_eq!(program, &missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(message.starts_with("cannot run "), "{message}");
    assert!(message.contains("no-such-program"), "{message}");
}

#[test]
fn a_zero_timeout_times_out_at_once() {
    let error = sh("sleep 60", Duration::ZERO).unwrap_err();
    assert!(matches!(error, CommandError::Timeout { .. }), "{error:?}");
}

// --------------------------------------------------------------------------------- helpers

#[test]
fn excerpt_cuts_at_a_char_boundary() {
    assert_eq!(excerpt("short"), "short");
    assert_eq!(
        excerpt(&"a".repeat(EXCERPT_LIMIT)),
        "a".repeat(EXCERPT_LIMIT)
    );
    let long = "é".repeat(EXCERPT_LIMIT);
    let cut = excerpt(&long);
    assert!(cut.ends_with('…'));
    assert!(cut.len() <= EXCERPT_LIMIT + '…'.len_utf8());
    assert_eq!(cut.trim_end_matches('…'), "é".repeat(EXCERPT_LIMIT / 2));
}

#[test]
fn stderr_excerpt_replaces_invalid_utf8() {
    let output = sh(r"printf ' bad \377 byte \n' >&2", DEADLINE).unwrap();
    assert_eq!(output.stderr_excerpt(), "bad \u{fffd} byte");
}

#[test]
fn command_lines_quote_only_what_needs_it() {
    assert_eq!(
        command_line(Path::new("/sbin/hastctl"), &["role", "primary", "test"]),
        "/sbin/hastctl role primary test"
    );
    assert_eq!(
        command_line(
            Path::new("/sbin/mount"),
            &["-t", "ufs", "/dev/hast/my disk", "/mnt"]
        ),
        r#"/sbin/mount -t ufs "/dev/hast/my disk" /mnt"#
    );
    assert_eq!(
        command_line(
            Path::new("/bin/echo"),
            &["", "it's", "say \"hi\"", "tab\there", "a\nb"]
        ),
        r#"/bin/echo "" "it's" "say \"hi\"" "tab\there" "a\nb""#
    );
    assert_eq!(
        command_line(Path::new("/usr/bin/true"), &[]),
        "/usr/bin/true"
    );
    assert_eq!(
        command_line(Path::new("/opt/my tools/x"), &["--flag=1"]),
        r#""/opt/my tools/x" --flag=1"#
    );
}
