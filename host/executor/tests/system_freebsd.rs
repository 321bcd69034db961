//! The FreeBSD executor through stand-ins for FreeBSD's tools (test code only): small shell
//! scripts in a temporary folder that take the arguments the real tools take, print what they
//! print, keep the state they change in files next to them, and append every argv to a log.
//! The executor is built for [`Platform::FreeBsd`] from a config whose `[executor.tools]`
//! names them, so these run on Linux as on FreeBSD.
//!
//! What is checked: the exact argv of every command, idempotence (a second run of a plan runs
//! only checks and every step is already done), `wait-worker-gone` following `ps`, a command
//! that hangs past its timeout killed with its process group, retries, failures that name the
//! command, and bad arguments refused before anything runs.

mod common;

use common::{DEADLINE, assert_all_ok, executor_config, read_pid, skipped, timed};
use haven_core::{
    Action, FsckRequest, HastRole, HastWorker, Machine, MountRequest, ServiceOp, ServiceRequest,
    SetHastRole, Step, UnmountRequest,
};
use haven_executor::command::process_gone;
use haven_executor::{Executor, Platform, StepOutcome, SystemExecutor};
use haven_test_artifacts::support::{hastctl_list, wait_until, write_script};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every stand-in starts with: where it is, the log, and two markers a test may leave:
///   `hang.<tool>`  holding an argument: the stand-in given it as its first argument writes
///                  its pid to `hang.pid`, starts `sleep 600` in its process group, writes
///                  that pid to `sleep.pid` and waits (a tool that hangs);
///   `fail.<tool>`  the command that acts (not the checks) prints the lines after the first on
///                  stderr and exits with the status on the first line; `fail.<tool>.left`,
///                  if present, counts down how many more times.
const COMMON: &str = r#"#!/bin/sh
dir=${0%/*}; dir=${dir%/bin}
tool=${0##*/}
{ printf '%s' "$tool"; for arg in "$@"; do printf ' %s' "$arg"; done; printf '\n'; } >>"$dir/log"
hang_on() {
    if [ -f "$dir/hang.$tool" ] && [ "$(cat "$dir/hang.$tool")" = "$1" ]; then
        echo $$ >"$dir/hang.pid.tmp" && mv "$dir/hang.pid.tmp" "$dir/hang.pid"
        sleep 600 &
        echo $! >"$dir/sleep.pid.tmp" && mv "$dir/sleep.pid.tmp" "$dir/sleep.pid"
        wait
    fi
}
fail_maybe() {
    f="$dir/fail.$tool"
    [ -f "$f" ] || return 0
    if [ -f "$f.left" ]; then
        left=$(cat "$f.left")
        [ "$left" -gt 0 ] || return 0
        echo $((left - 1)) >"$f.left"
    fi
    tail -n +2 "$f" >&2
    exit "$(head -n 1 "$f")"
}
"#;

/// hastctl(8): `list <res>` as `control_list()` prints it (sbin/hastctl/hastctl.c; the role
/// is in the file `hast.role`), `role <role> <res>`, which also does what hastd does: the
/// worker's process title changes and `/dev/hast/<res>` (here a link to the character device
/// /dev/null) appears in role primary only. `@LIST@` stands for the listing: see [`hastctl`].
const HASTCTL: &str = r#"
case "$1" in
list)
    [ $# -eq 2 ] || { echo "usage: hastctl list [-d] [-c config] [all | name ...]" >&2; exit 1; }
    role=$(cat "$dir/hast.role")
    cat <<EOF
@LIST@
EOF
    ;;
role)
    [ $# -eq 3 ] || { echo "usage: hastctl role [-d] [-c config] <init | primary | secondary> all | name ..." >&2; exit 1; }
    hang_on role
    fail_maybe
    echo "$2" >"$dir/hast.role"
    grep -v -F "hastd: $3 (" "$dir/processes" >"$dir/processes.tmp"
    [ "$2" = init ] || echo "hastd: $3 ($2) (hastd)" >>"$dir/processes.tmp"
    mv "$dir/processes.tmp" "$dir/processes"
    if [ "$2" = primary ]; then
        ln -sf /dev/null "$dir/dev/hast/$3"
    else
        rm -f "$dir/dev/hast/$3"
    fi
    ;;
*)
    echo "usage: hastctl create | role | list | status | dump ..." >&2
    exit 1
    ;;
esac
"#;

/// [`HASTCTL`] with its listing: the resource named by the argument, in the role the file
/// says, complete and clean.
fn hastctl() -> String {
    HASTCTL.replace(
        "@LIST@\n",
        &hastctl_list("$2", "$role", "complete", "0 (0B)"),
    )
}

/// A line of `mount -p` as mount(8)'s `putfsent()` pads it (sbin/mount/mount.c).
const PUTFSENT: &str = r#"
pad() {
    l=${#1}
    printf '%s' "$1"
    [ "$l" -lt 8 ] && printf '\t'
    [ "$l" -lt 16 ] && printf '\t'
    if [ "$l" -lt 24 ]; then printf '\t'; else printf ' '; fi
}
putfsent() { # device mountpoint fstype options
    pad "$1"; pad "$2"; printf '%s\t' "$3"
    if [ ${#4} -lt 8 ]; then printf '%s\t' "$4"; else printf '%s ' "$4"; fi
    printf '\t0 0\n'
}
"#;

/// mount(8): `-p` prints the file `mounts`; `-t <type> <special> <node>` appends to it.
const MOUNT: &str = r#"
case "$1" in
-p)
    cat "$dir/mounts"
    ;;
-t)
    [ $# -eq 4 ] || { echo "usage: mount [-dfpruvw] [-o options] [-t ufs | external_type] special node" >&2; exit 1; }
    hang_on -t
    fail_maybe
    [ -d "$4" ] || { echo "mount: $4: No such file or directory" >&2; exit 1; }
    putfsent "$3" "$4" "$2" rw >>"$dir/mounts"
    ;;
*)
    echo "usage: mount [-adflpruvw] [-F fstab] [-o options] [-t ufs | external_type]" >&2
    exit 1
    ;;
esac
"#;

/// umount(8): `[-f] <node>` removes the node's line from `mounts`.
const UMOUNT: &str = r#"
[ "$1" = -f ] && shift
[ $# -eq 1 ] || { echo "usage: umount [-fNnv] special ... | node ... | fsid ..." >&2; exit 1; }
hang_on "$1"
fail_maybe
awk -v node="$1" '$2 != node' "$dir/mounts" >"$dir/mounts.tmp"
if cmp -s "$dir/mounts" "$dir/mounts.tmp"; then
    rm -f "$dir/mounts.tmp"
    echo "umount: $1: not a file system root directory" >&2
    exit 1
fi
mv "$dir/mounts.tmp" "$dir/mounts"
"#;

/// fsck(8) in preen mode, as fsck_ffs prints a clean UFS.
const FSCK: &str = r#"
dev=; for arg in "$@"; do dev=$arg; done
hang_on "$1"
fail_maybe
echo "$dev: FILE SYSTEM CLEAN; SKIPPING CHECKS"
echo "$dev: clean, 2030427 free (19 frags, 253801 blocks, 0.0% fragmentation)"
"#;

/// service(8) with an rc.d script named like the ports' MySQL (`name=mysql`): `onestatus`
/// exits 0 or 1 with rc.subr's messages; whether it runs is the file `running.<service>`.
const SERVICE: &str = r#"
[ $# -eq 2 ] || { echo "usage: service [-j <jail name or id>] <rc.d script> start|stop|etc. ..." >&2; exit 1; }
name=${1%-server}
case "$2" in
onestatus)
    if [ -f "$dir/running.$1" ]; then echo "$name is running as pid 123."; else echo "$name is not running."; exit 1; fi
    ;;
onestart)
    hang_on "$1"
    fail_maybe
    if [ -f "$dir/running.$1" ]; then echo "$name already running? (pid=123)." >&2; exit 1; fi
    echo "Starting $name."
    touch "$dir/running.$1"
    ;;
onestop)
    hang_on "$1"
    fail_maybe
    if [ ! -f "$dir/running.$1" ]; then echo "$name not running? (check /var/db/mysql/hasta.pid)." >&2; exit 1; fi
    echo "Stopping $name."
    echo "Waiting for PIDS: 123."
    rm -f "$dir/running.$1"
    ;;
onerestart)
    fail_maybe
    [ -f "$dir/running.$1" ] && { echo "Stopping $name."; echo "Waiting for PIDS: 123."; }
    echo "Starting $name."
    touch "$dir/running.$1"
    ;;
*)
    echo "/usr/local/etc/rc.d/$1: unknown directive '$2'." >&2
    exit 1
    ;;
esac
"#;

/// ps(1): only `-axww -o command=`, printing the file `processes` (the command column, as
/// bin/ps/fmt.c shows it: a title set with setproctitle is followed by ` (<command>)`).
const PS: &str = r#"
[ "$*" = "-axww -o command=" ] || { echo "ps: unexpected arguments: $*" >&2; exit 1; }
cat "$dir/processes"
"#;

/// What `ps -axww -o command=` lists on a FreeBSD HAST node besides hastd's workers.
const PROCESSES: &str = "[kernel]
/sbin/init
[geom]
/sbin/devd
/usr/sbin/syslogd -s
/sbin/hastd
/usr/sbin/cron -s
/usr/sbin/sshd
-sh (sh)
";

/// The stand-ins, their state and log, in a temporary folder (`$T` in expected lines).
struct Standins {
    dir: tempfile::TempDir,
}

impl Standins {
    /// A cold backup: role secondary (without a worker: the primary went away), nothing of
    /// it mounted, MySQL stopped.
    fn new() -> Standins {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("dev/hast")).unwrap();
        fs::create_dir_all(root.join("hast/test")).unwrap();
        for (tool, body) in [
            ("hastctl", hastctl()),
            ("mount", PUTFSENT.to_owned() + MOUNT),
            ("umount", UMOUNT.to_owned()),
            ("fsck", FSCK.to_owned()),
            ("service", SERVICE.to_owned()),
            ("ps", PS.to_owned()),
        ] {
            write_script(&root.join("bin").join(tool), &(COMMON.to_owned() + &body));
        }
        let standins = Standins { dir };
        standins.write("hast.role", "secondary\n");
        standins.write("processes", PROCESSES);
        standins.write(
            "mounts",
            "/dev/ada0p2\t\t/\t\t\tufs\trw\t\t1 1\ndevfs\t\t\t/dev\t\t\tdevfs\trw,multilabel\t0 0\n",
        );
        standins
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `$T` in a text made the folder's path.
    fn expand(&self, text: &str) -> String {
        text.replace("$T", self.root().to_str().unwrap())
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.root().join(name);
        let tmp = path.with_extension("tmp-write");
        fs::write(&tmp, self.expand(text)).unwrap();
        fs::rename(tmp, path).unwrap();
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.root().join(name)).unwrap_or_default()
    }

    /// The config a FreeBSD deployment would have, its tools pointing at the stand-ins.
    fn config_text(&self, extra: &str) -> String {
        self.expand(&format!(
            r#"
[executor]
storage = "hast"
service-manager = "rc"
[executor.tools]
hastctl = "$T/bin/hastctl"
mount = "$T/bin/mount"
umount = "$T/bin/umount"
fsck = "$T/bin/fsck"
service = "$T/bin/service"
ps = "$T/bin/ps"
{extra}"#
        ))
    }

    fn executor_with(&self, extra: &str) -> SystemExecutor {
        let config = executor_config(&self.config_text(extra));
        let executor = SystemExecutor::new(Platform::FreeBsd, &config).unwrap();
        assert_eq!(executor.missing_tools(), Vec::new());
        executor
    }

    fn executor(&self) -> SystemExecutor {
        self.executor_with("")
    }

    /// The argv of every stand-in run since the last call, the folder's path as `$T`.
    fn take_log(&self) -> Vec<String> {
        let path = self.root().join("log");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let _ = fs::remove_file(&path);
        let root = self.root().to_str().unwrap();
        text.lines().map(|line| line.replace(root, "$T")).collect()
    }

    fn step(&self, line: &str) -> Step {
        self.expand(line).parse().unwrap()
    }

    fn steps(&self, lines: &[&str]) -> Vec<Step> {
        lines.iter().map(|line| self.step(line)).collect()
    }
}

/// Run the steps in order for the policy `mysql`: the first failure stops the plan.
fn run_plan(executor: &mut SystemExecutor, steps: &[Step]) -> Vec<StepOutcome> {
    common::run_plan(executor, "mysql", steps)
}

/// The seed's promotion, as the policy plans it.
const PROMOTION: [&str; 6] = [
    "wait-worker-gone test secondary timeout=10000",
    "hast-role test primary timeout=30000",
    "wait-device $T/dev/hast/test timeout=30000",
    "fsck ufs $T/dev/hast/test preen timeout=600000",
    "mount ufs $T/dev/hast/test $T/hast/test timeout=60000",
    "service start mysql-server timeout=120000",
];

/// The seed's demotion.
const DEMOTION: [&str; 3] = [
    "service stop mysql-server",
    "unmount $T/hast/test force",
    "hast-role test secondary",
];

#[test]
fn the_promotion_runs_freebsds_commands_and_a_second_run_runs_none() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    let plan = standins.steps(&PROMOTION);

    let outcomes = run_plan(&mut executor, &plan);
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    assert_all_ok(&outcomes);
    // No secondary worker ran and the device appeared with the role: those were done already.
    assert_eq!(skipped(&outcomes), [true, false, true, false, false, false]);
    assert_eq!(
        standins.take_log(),
        [
            "ps -axww -o command=",
            "hastctl list test",
            "hastctl role primary test",
            "mount -p",
            "fsck -p -y -t ufs $T/dev/hast/test",
            "mount -p",
            "mount -t ufs $T/dev/hast/test $T/hast/test",
            "service mysql-server onestatus",
            "service mysql-server onestart",
        ]
    );
    assert_eq!(executor.commands_run(), 4);
    assert_eq!(standins.read("hast.role"), "primary\n");
    assert!(
        standins
            .read("processes")
            .contains("hastd: test (primary) (hastd)\n")
    );
    assert!(
        standins
            .read("mounts")
            .contains(&standins.expand("$T/hast/test ufs\trw\t\t0 0"))
    );

    // The journal's detail names what ran.
    let detail = outcomes[1].detail.as_deref().unwrap();
    let ran = standins.expand("ran `$T/bin/hastctl role primary test`: exited with status 0");
    assert!(detail.contains(&ran), "{detail}");
    assert!(detail.contains("checked `"), "{detail}");
    assert!(
        outcomes[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("no process is titled `hastd: test (secondary)`"),
        "{:?}",
        outcomes[0].detail
    );

    // Again: only checks run, and every step says it was done already.
    let commands = executor.commands_run();
    let again = run_plan(&mut executor, &plan);
    assert_eq!(again.len(), 6);
    assert_all_ok(&again);
    assert_eq!(skipped(&again), [true; 6], "{again:#?}");
    assert_eq!(executor.commands_run(), commands);
    assert_eq!(
        standins.take_log(),
        [
            "ps -axww -o command=",
            "hastctl list test",
            "mount -p",
            "mount -p",
            "service mysql-server onestatus",
        ]
    );
    let fsck = again[3].detail.as_deref().unwrap();
    assert!(
        fsck.contains("is mounted on") && fsck.contains("never checked"),
        "{fsck}"
    );
}

#[test]
fn the_demotion_runs_freebsds_commands_and_a_second_run_runs_none() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    run_plan(&mut executor, &standins.steps(&PROMOTION));
    standins.take_log();
    let commands = executor.commands_run();

    let plan = standins.steps(&DEMOTION);
    let outcomes = run_plan(&mut executor, &plan);
    assert_all_ok(&outcomes);
    assert_eq!(skipped(&outcomes), [false; 3]);
    assert_eq!(
        standins.take_log(),
        [
            "service mysql-server onestatus",
            "service mysql-server onestop",
            "mount -p",
            "umount -f $T/hast/test",
            "hastctl list test",
            "hastctl role secondary test",
        ]
    );
    assert_eq!(executor.commands_run(), commands + 3);
    assert_eq!(standins.read("hast.role"), "secondary\n");
    assert!(!standins.read("mounts").contains("hast/test"));
    assert!(!Path::new(&standins.expand("$T/dev/hast/test")).exists());

    let commands = executor.commands_run();
    let again = run_plan(&mut executor, &plan);
    assert_all_ok(&again);
    assert_eq!(skipped(&again), [true; 3]);
    assert_eq!(executor.commands_run(), commands);
    assert_eq!(
        standins.take_log(),
        [
            "service mysql-server onestatus",
            "mount -p",
            "hastctl list test",
        ]
    );

    // Without force, umount is run without -f; a restart always runs. (The secondary worker
    // exits when the peer is gone, before the next promotion.)
    assert!(
        standins
            .read("processes")
            .contains("hastd: test (secondary) (hastd)\n")
    );
    standins.write("processes", PROCESSES);
    assert_all_ok(&run_plan(&mut executor, &standins.steps(&PROMOTION)));
    standins.take_log();
    let outcomes = run_plan(
        &mut executor,
        &standins.steps(&["unmount $T/hast/test", "service restart mysql-server"]),
    );
    assert_all_ok(&outcomes);
    assert_eq!(
        standins.take_log(),
        [
            "mount -p",
            "umount $T/hast/test",
            "service mysql-server onerestart"
        ]
    );
}

#[test]
fn wait_worker_gone_ends_when_ps_stops_listing_the_worker() {
    let standins = Standins::new();
    standins.write(
        "processes",
        &(PROCESSES.to_owned()
            + "hastd: test (secondary) (hastd)\nhastd: other (secondary) (hastd)\n"),
    );
    let mut executor = standins.executor();
    let step = standins.step("wait-worker-gone test secondary timeout=10000");

    let remover = {
        let path = standins.root().to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let tmp = path.join("processes.new");
            fs::write(
                &tmp,
                PROCESSES.to_owned() + "hastd: other (secondary) (hastd)\n",
            )
            .unwrap();
            fs::rename(tmp, path.join("processes")).unwrap();
        })
    };
    let (took, outcome) = timed(|| executor.run_step("mysql", &step, &Machine::default()));
    remover.join().unwrap();
    assert!(outcome.ok(), "{outcome:#?}");
    assert!(!outcome.skipped_as_done);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < DEADLINE, "{took:?}");
    let log = standins.take_log();
    assert!(log.len() >= 2, "{log:?}");
    assert!(
        log.iter().all(|line| line == "ps -axww -o command="),
        "{log:?}"
    );
    assert_eq!(executor.commands_run(), 0);
    assert!(executor.probes_run() >= 2);

    // A worker that stays: the step fails when its timeout runs out, naming the process.
    standins.write(
        "processes",
        &(PROCESSES.to_owned() + "hastd: test (secondary) (hastd)\n"),
    );
    let step = standins.step("wait-worker-gone test secondary timeout=200");
    let (took, outcome) = timed(|| executor.run_step("mysql", &step, &Machine::default()));
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains("`hastd: test (secondary)` still runs (`hastd: test (secondary) (hastd)`)")
            && reason.contains("timeout of 200 ms ran out"),
        "{reason}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < DEADLINE,
        "{took:?}"
    );
}

#[test]
fn wait_device_waits_for_a_character_device() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    let device = standins.expand("$T/dev/hast/test");

    // It appears after a while: done, not already done.
    let link = PathBuf::from(&device);
    let maker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        std::os::unix::fs::symlink("/dev/null", link).unwrap();
    });
    let step = standins.step("wait-device $T/dev/hast/test timeout=10000");
    let (took, outcome) = timed(|| executor.run_step("mysql", &step, &Machine::default()));
    maker.join().unwrap();
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    assert!(took >= Duration::from_millis(150), "{took:?}");
    let again = executor.run_step("mysql", &step, &Machine::default());
    assert!(again.ok() && again.skipped_as_done, "{again:#?}");

    // A regular file is not a device node; nothing at all is not either.
    fs::remove_file(&device).unwrap();
    fs::write(&device, "not a device").unwrap();
    let step = standins.step("wait-device $T/dev/hast/test timeout=100");
    let reason = executor
        .run_step("mysql", &step, &Machine::default())
        .result
        .unwrap_err();
    assert!(
        reason.contains("exists but is not a character device"),
        "{reason}"
    );
    let step = standins.step("wait-device $T/dev/hast/other timeout=100");
    let reason = executor
        .run_step("mysql", &step, &Machine::default())
        .result
        .unwrap_err();
    assert!(
        reason.contains("/dev/hast/other is not there") && reason.contains("100 ms ran out"),
        "{reason}"
    );
    assert!(standins.take_log().is_empty());
}

#[test]
fn a_command_that_hangs_is_killed_at_the_steps_timeout_and_not_retried() {
    let standins = Standins::new();
    standins.write("hang.hastctl", "role");
    let mut executor = standins.executor();
    let step = standins.step("hast-role test primary timeout=1000");
    let (took, outcome) = timed(|| executor.run_step("mysql", &step, &Machine::default()));
    let reason = outcome.result.clone().unwrap_err();
    let line = standins.expand(
        "`$T/bin/hastctl role primary test` timed out: the step's timeout of 1000 ms ran out",
    );
    assert!(reason.starts_with(&line), "{reason}");
    assert!(
        reason.ends_with("killed with its process group"),
        "{reason}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < DEADLINE,
        "{took:?}"
    );
    // The shell and the sleep it started are both gone.
    let shell = read_pid(&standins.root().join("hang.pid"));
    let sleep = read_pid(&standins.root().join("sleep.pid"));
    wait_until(&format!("{shell} and {sleep} are gone"), || {
        process_gone(shell) && process_gone(sleep)
    });
    // A timeout is not retried, although hast-role has a retry by default.
    assert_eq!(
        standins.take_log(),
        ["hastctl list test", "hastctl role primary test"]
    );
    assert_eq!(executor.commands_run(), 1);
    assert!(outcome.detail.unwrap().contains(&line));
}

#[test]
fn a_failing_command_is_retried_where_safe_and_its_failure_names_it() {
    let standins = Standins::new();
    standins.write(
        "fail.hastctl",
        "1\nhastctl: Unable to change role to primary.\n",
    );
    standins.write("fail.hastctl.left", "1\n");
    let mut executor = standins.executor();
    let step = standins.step("hast-role test primary");
    let outcome = executor.run_step("mysql", &step, &Machine::default());
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    assert_eq!(
        standins.take_log(),
        [
            "hastctl list test",
            "hastctl role primary test",
            "hastctl list test",
            "hastctl role primary test",
        ]
    );
    assert_eq!(executor.commands_run(), 2);

    // Without retries, the first failure is the step's, with the command, status and stderr.
    standins.write("hast.role", "secondary\n");
    standins.write("fail.hastctl.left", "5\n");
    let mut executor = standins.executor_with("[executor.retries]\nhast-role = 0\n");
    let outcome = executor.run_step("mysql", &step, &Machine::default());
    let reason = outcome.result.unwrap_err();
    let expected =
        standins.expand("`$T/bin/hastctl role primary test` exited with status 1 after ");
    assert!(reason.starts_with(&expected), "{reason}");
    assert!(
        reason.ends_with("; stderr: \"hastctl: Unable to change role to primary.\""),
        "{reason}"
    );
    assert_eq!(
        standins.take_log(),
        ["hastctl list test", "hastctl role primary test"]
    );

    // With three retries and a command that keeps failing: four attempts, then the failure.
    let mut executor = standins.executor_with("[executor.retries]\nhast-role = 3\n");
    let outcome = executor.run_step("mysql", &step, &Machine::default());
    let reason = outcome.result.unwrap_err();
    assert!(reason.contains("(attempt 4 of 4)"), "{reason}");
    assert_eq!(
        standins
            .take_log()
            .iter()
            .filter(|line| *line == "hastctl role primary test")
            .count(),
        4
    );

    // fsck is never retried, and its status is explained.
    standins.write(
        "fail.fsck",
        "8\n** $T/dev/hast/test\nUNEXPECTED SOFT UPDATE INCONSISTENCY\n",
    );
    let mut executor = standins.executor();
    let outcome = executor.run_step(
        "mysql",
        &standins.step("fsck ufs $T/dev/hast/test preen"),
        &Machine::default(),
    );
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains("exited with status 8 (unexpected inconsistency: run fsck by hand) after"),
        "{reason}"
    );
    assert!(
        reason.contains("UNEXPECTED SOFT UPDATE INCONSISTENCY"),
        "{reason}"
    );
    assert_eq!(
        standins.take_log(),
        ["mount -p", "fsck -p -y -t ufs $T/dev/hast/test"]
    );
}

#[test]
fn a_plan_stops_at_its_first_failure() {
    let standins = Standins::new();
    standins.write(
        "fail.mount",
        "1\nmount: /dev/hast/test: Operation not permitted\n",
    );
    let mut executor = standins.executor();
    let outcomes = run_plan(&mut executor, &standins.steps(&PROMOTION));
    assert_eq!(outcomes.len(), 5);
    let reason = outcomes[4].result.as_ref().unwrap_err();
    assert!(reason.contains("Operation not permitted"), "{reason}");
    let log = standins.take_log();
    assert_eq!(
        log.last().unwrap(),
        "mount -t ufs $T/dev/hast/test $T/hast/test"
    );
    assert!(
        !log.iter().any(|line| line.starts_with("service")),
        "{log:?}"
    );
}

#[test]
fn mounts_that_would_clash_are_refused_without_running_anything() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    fs::create_dir_all(standins.root().join("other")).unwrap();

    // Something else is mounted on the mountpoint.
    let mut mounts = standins.read("mounts");
    mounts.push_str(&standins.expand("/dev/ada2p1 $T/hast/test ufs\trw\t\t0 0\n"));
    standins.write("mounts", &mounts);
    let outcome = executor.run_step(
        "mysql",
        &standins.step("mount ufs $T/dev/hast/test $T/hast/test"),
        &Machine::default(),
    );
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains(&standins.expand("/dev/ada2p1 (ufs) is mounted on $T/hast/test")),
        "{reason}"
    );

    // The device is mounted elsewhere: mounting it again is refused, fsck does not run.
    let mut mounts = standins.read("mounts");
    mounts.push_str(&standins.expand("$T/dev/hast/test $T/other ufs\trw\t\t0 0\n"));
    standins.write("mounts", &mounts);
    let outcome = executor.run_step(
        "mysql",
        &standins.step("mount ufs $T/dev/hast/test $T/hast/other"),
        &Machine::default(),
    );
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains(&standins.expand("it is mounted on $T/other")),
        "{reason}"
    );
    let outcome = executor.run_step(
        "mysql",
        &standins.step("fsck ufs $T/dev/hast/test preen"),
        &Machine::default(),
    );
    assert!(outcome.ok() && outcome.skipped_as_done, "{outcome:#?}");

    // A missing mountpoint is named; Haven creates nothing.
    let outcome = executor.run_step(
        "mysql",
        &standins.step("mount ufs $T/dev/hast/new $T/hast/new"),
        &Machine::default(),
    );
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains(&standins.expand("the mountpoint directory $T/hast/new is missing")),
        "{reason}"
    );
    assert!(!standins.root().join("hast/new").exists());

    assert!(standins.take_log().iter().all(|line| line == "mount -p"));
    assert_eq!(executor.commands_run(), 0);
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    let step = |action: Action| Step {
        action,
        timeout_ms: Some(1000),
    };
    let mount = |device: &str, mountpoint: &str, fstype: &str| {
        step(Action::Mount(MountRequest {
            device: device.into(),
            mountpoint: mountpoint.into(),
            fstype: fstype.into(),
        }))
    };
    let bad = [
        (
            step(Action::SetHastRole(SetHastRole {
                resource: "-rf".into(),
                role: HastRole::Primary,
            })),
            "HAST resource `-rf` starts with `-`, which hastctl would read as an option",
        ),
        (
            step(Action::SetHastRole(SetHastRole {
                resource: "test;reboot".into(),
                role: HastRole::Primary,
            })),
            "HAST resource `test;reboot` is not a HAST resource name",
        ),
        (
            step(Action::WaitHastWorkerGone(HastWorker {
                resource: "$(id)".into(),
                role: HastRole::Secondary,
            })),
            "is not a HAST resource name",
        ),
        (
            step(Action::WaitForDevice("dev/hast/test".into())),
            "device `dev/hast/test` is not an absolute path",
        ),
        (
            step(Action::Fsck(FsckRequest {
                device: "/dev/hast/../ada0".into(),
                fstype: "ufs".into(),
                preen: true,
            })),
            "has an empty, `.` or `..` component",
        ),
        (
            step(Action::Fsck(FsckRequest {
                device: "/dev/hast/test".into(),
                fstype: "ufs -f".into(),
                preen: true,
            })),
            "fstype `ufs -f` is not a filesystem type",
        ),
        (
            mount("/dev/hast/test", "/hast/test x", "ufs"),
            "contains white space",
        ),
        (
            mount("/dev/hast/test", "/", "ufs"),
            "mountpoint `/` is the root directory",
        ),
        (mount("-o", "/hast/test", "ufs"), "is not an absolute path"),
        (
            mount("/dev/hast/test", "/hast/test", "UFS"),
            "fstype `UFS` is not a filesystem type",
        ),
        (
            step(Action::Unmount(UnmountRequest {
                mountpoint: "/".into(),
                force: true,
            })),
            "the root directory",
        ),
        (
            step(Action::Unmount(UnmountRequest {
                mountpoint: "/hast/test/".into(),
                force: true,
            })),
            "has an empty",
        ),
        (
            step(Action::Service(ServiceRequest {
                name: "mysql-server; rm -rf /".into(),
                op: ServiceOp::Start,
            })),
            "service `mysql-server; rm -rf /` is not a valid name",
        ),
        (
            step(Action::Service(ServiceRequest {
                name: "--help".into(),
                op: ServiceOp::Stop,
            })),
            "is not a valid name",
        ),
    ];
    for (step, expected) in bad {
        let outcome = executor.run_step("mysql", &step, &Machine::default());
        let reason = outcome.result.unwrap_err();
        assert!(
            reason.starts_with("refused before running anything: ") && reason.contains(expected),
            "{step}: {reason}"
        );
        assert_eq!(outcome.detail, None);
    }
    let zero = standins.step("hast-role test primary timeout=0");
    let reason = executor
        .run_step("mysql", &zero, &Machine::default())
        .result
        .unwrap_err();
    assert!(reason.contains("timeout of 0 ms"), "{reason}");

    assert!(standins.take_log().is_empty());
    assert_eq!(executor.commands_run(), 0);
    assert_eq!(executor.probes_run(), 0);
}

#[test]
fn timers_and_alerts_run_nothing() {
    let standins = Standins::new();
    let mut executor = standins.executor();
    let outcomes = run_plan(
        &mut executor,
        &standins.steps(&[
            "set-timer settle 500",
            "cancel-timer settle",
            "alert warning test is degraded",
        ]),
    );
    assert_eq!(outcomes, vec![StepOutcome::done(None); 3]);
    assert!(standins.take_log().is_empty());
}

#[test]
fn the_executor_says_what_it_is() {
    let standins = Standins::new();
    let executor = standins.executor();
    assert_eq!(executor.name(), "freebsd");
    assert!(executor.acts_on_system());
    assert_eq!(executor.platform(), Platform::FreeBsd);
    assert_eq!(
        executor.tools().hastctl,
        standins.root().join("bin/hastctl")
    );
    // A tool that is not there is reported at once.
    let config = executor_config(&standins.config_text("").replace("bin/ps", "bin/nope"));
    let executor = SystemExecutor::new(Platform::FreeBsd, &config).unwrap();
    assert_eq!(
        executor.missing_tools(),
        [("ps", standins.root().join("bin/nope"))]
    );
}
