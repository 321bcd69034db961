//! The Linux executor on real things, as root: an ext4 filesystem on a loop device each test
//! makes for itself (checked, mounted, unmounted, forcibly unmounted from under a busy
//! process), a loop device of zeros that fsck and mount refuse, a real SysV service
//! (lighttpd's init script), and process titles read from `/proc`.
//!
//! Tests that need root print `skipped: needs root` and pass without root. Loop devices and
//! mounts are undone by guards, also when a test panics.

mod common;

use common::{DEADLINE, assert_all_ok, executor_config, read_pid, skipped, timed};
use haven_core::{ExecutorConfig, Machine, Step};
use haven_executor::command::process_gone;
use haven_executor::probe::parse_mountinfo;
use haven_executor::{Executor, Platform, StepOutcome, SystemExecutor};
use haven_test_artifacts::support::{wait_until, write_script};
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root");
        false
    }
}

/// `losetup --find` picks a free device and then attaches it; two at once can pick the same.
static LOSETUP: Mutex<()> = Mutex::new(());

/// Run a setup command that must succeed; its stdout.
fn must(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}; {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A 32 MiB loop device backed by a file in a temporary folder, with an empty folder `mnt`
/// for a mountpoint; `ext4` formats it, else it is all zeros. Dropping it unmounts whatever
/// is mounted on `mnt` and detaches the device.
struct LoopDevice {
    dir: tempfile::TempDir,
    device: String,
}

impl LoopDevice {
    fn new(ext4: bool) -> LoopDevice {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(32 * 1024 * 1024)
            .unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let device = {
            let _one_at_a_time = LOSETUP.lock().unwrap_or_else(|e| e.into_inner());
            must("losetup", &["--find", "--show", image.to_str().unwrap()])
                .trim()
                .to_owned()
        };
        let disk = LoopDevice { dir, device };
        if ext4 {
            must("mkfs.ext4", &["-q", "-F", &disk.device]);
        }
        disk
    }

    fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// `$D` made the device, `$M` the mountpoint, `$T` the folder.
    fn expand(&self, text: &str) -> String {
        text.replace("$D", &self.device)
            .replace("$M", self.mountpoint().to_str().unwrap())
            .replace("$T", self.dir.path().to_str().unwrap())
    }

    fn steps(&self, lines: &[&str]) -> Vec<Step> {
        lines
            .iter()
            .map(|line| self.expand(line).parse().unwrap())
            .collect()
    }

    /// What `/proc/self/mountinfo` says is mounted on the mountpoint: (device, fstype).
    fn mounted(&self) -> Option<(String, String)> {
        mounted_on(&self.mountpoint())
    }
}

fn mounted_on(mountpoint: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mountinfo(&text)
        .unwrap()
        .into_iter()
        .rev()
        .find(|mount| Path::new(&mount.mountpoint) == mountpoint)
        .map(|mount| (mount.device, mount.fstype))
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let mountpoint = self.mountpoint();
        for _ in 0..10 {
            if mounted_on(&mountpoint).is_none() {
                break;
            }
            let unmounted = Command::new("umount")
                .arg(&mountpoint)
                .status()
                .is_ok_and(|status| status.success());
            if !unmounted {
                let _ = Command::new("umount").arg("-l").arg(&mountpoint).status();
            }
        }
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// The Linux executor with the machine's own tools and `config`'s other settings.
fn linux(config: &ExecutorConfig) -> SystemExecutor {
    SystemExecutor::new(Platform::Linux, config).unwrap()
}

/// An ext4 loop device mounted on its mountpoint by the Linux executor with the default
/// settings, and that executor.
fn mounted_ext4() -> (LoopDevice, SystemExecutor) {
    let disk = LoopDevice::new(true);
    let mut executor = linux(&ExecutorConfig::default());
    assert_all_ok(&run_plan(
        &mut executor,
        &disk.steps(&["mount ext4 $D $M timeout=30000"]),
    ));
    (disk, executor)
}

/// A temporary folder with a stand-in script for the tool `tool`, and the Linux executor with
/// `settings` (lines of `[executor]`) and that stand-in for the tool.
fn linux_with_standin(
    tool: &str,
    script: &str,
    settings: &str,
) -> (tempfile::TempDir, SystemExecutor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(tool);
    write_script(&path, script);
    let text = format!(
        "[executor]\n{settings}\n[executor.tools]\n{tool} = \"{}\"\n",
        path.display()
    );
    (dir, linux(&executor_config(&text)))
}

/// Run the steps in order for the policy `test`: the first failure stops the plan.
fn run_plan(executor: &mut SystemExecutor, steps: &[Step]) -> Vec<StepOutcome> {
    common::run_plan(executor, "test", steps)
}

#[test]
fn ext4_is_checked_mounted_and_unmounted_and_a_second_run_runs_nothing() {
    if !is_root() {
        return;
    }
    let disk = LoopDevice::new(true);
    let mut executor = linux(&ExecutorConfig::default());
    let promote = disk.steps(&[
        "wait-device $D timeout=5000",
        "fsck ext4 $D preen timeout=60000",
        "mount ext4 $D $M timeout=30000",
    ]);

    let outcomes = run_plan(&mut executor, &promote);
    assert_eq!(outcomes.len(), 3);
    assert_all_ok(&outcomes);
    assert_eq!(skipped(&outcomes), [true, false, false]);
    assert_eq!(executor.commands_run(), 2);
    assert_eq!(
        disk.mounted(),
        Some((disk.device.clone(), "ext4".to_owned()))
    );
    let fsck = outcomes[1].detail.as_deref().unwrap();
    assert!(
        fsck.contains(&disk.expand("ran `/usr/sbin/fsck -t ext4 -p $D`: exited with status 0")),
        "{fsck}"
    );
    let mount = outcomes[2].detail.as_deref().unwrap();
    assert!(
        mount.contains(&disk.expand("ran `/usr/bin/mount -t ext4 $D $M`: exited with status 0")),
        "{mount}"
    );
    fs::write(disk.mountpoint().join("data"), "kept").unwrap();

    // The same plan again: no command runs, every step was done already.
    let again = run_plan(&mut executor, &promote);
    assert_all_ok(&again);
    assert_eq!(skipped(&again), [true; 3], "{again:#?}");
    assert_eq!(executor.commands_run(), 2);
    // (Reading the mounts on Linux is a file, not a command.)
    assert_eq!(executor.probes_run(), 0);

    let demote = disk.steps(&["unmount $M timeout=30000"]);
    let outcomes = run_plan(&mut executor, &demote);
    assert_all_ok(&outcomes);
    assert_eq!(skipped(&outcomes), [false]);
    assert_eq!(disk.mounted(), None);
    assert!(!disk.mountpoint().join("data").exists());
    let again = run_plan(&mut executor, &demote);
    assert_eq!(skipped(&again), [true]);
    assert_eq!(executor.commands_run(), 3);

    // Mounted again, the data is there: it was a real filesystem.
    assert_all_ok(&run_plan(&mut executor, &promote));
    assert_eq!(
        fs::read_to_string(disk.mountpoint().join("data")).unwrap(),
        "kept"
    );
}

/// A child that is killed and reaped when dropped, if it still runs.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_forced_unmount_kills_what_holds_the_mountpoint() {
    if !is_root() {
        return;
    }
    let (disk, mut executor) = mounted_ext4();
    // One process works in the mountpoint, another holds a file in it open.
    let mut in_dir = Reaped(
        Command::new("sleep")
            .arg("600")
            .current_dir(disk.mountpoint())
            .spawn()
            .unwrap(),
    );
    let held = disk.mountpoint().join("held");
    let mut holding = Reaped(
        Command::new("sh")
            .args(["-c", "exec 3>\"$1\"; exec sleep 600", "sh"])
            .arg(&held)
            .spawn()
            .unwrap(),
    );
    wait_until("the file is held open", || held.exists());

    // Without force: umount fails, with the reason, and nothing is killed.
    let outcomes = run_plan(&mut executor, &disk.steps(&["unmount $M timeout=5000"]));
    let reason = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains(&disk.expand("`/usr/bin/umount $M` exited with status 32"))
            && reason.contains("target is busy"),
        "{reason}"
    );
    // Unmount retries once by default.
    assert!(reason.contains("(attempt 2 of 2)"), "{reason}");
    assert!(in_dir.0.try_wait().unwrap().is_none());
    assert!(holding.0.try_wait().unwrap().is_none());
    assert!(disk.mounted().is_some());

    // With force: the holders are killed, then it unmounts.
    let outcomes = run_plan(
        &mut executor,
        &disk.steps(&["unmount $M force timeout=10000"]),
    );
    assert_all_ok(&outcomes);
    assert_eq!(disk.mounted(), None);
    let detail = outcomes[0].detail.as_deref().unwrap();
    for child in [&in_dir.0, &holding.0] {
        let named = format!("{} (sleep) holding ", child.id());
        assert!(detail.contains(&named), "{named}: {detail}");
    }
    assert!(detail.contains("killed with SIGKILL"), "{detail}");
    for child in [&mut in_dir.0, &mut holding.0] {
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }
}

#[test]
fn a_failing_fsck_or_mount_fails_the_step_with_the_reason() {
    if !is_root() {
        return;
    }
    let zeros = LoopDevice::new(false);
    let mut executor = linux(&ExecutorConfig::default());

    // fsck of a device with no filesystem: status 8, explained, and the plan stops there.
    let plan = zeros.steps(&[
        "fsck ext4 $D preen timeout=60000",
        "mount ext4 $D $M timeout=30000",
    ]);
    let outcomes = run_plan(&mut executor, &plan);
    assert_eq!(outcomes.len(), 1);
    let reason = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        reason.starts_with(&zeros.expand(
            "`/usr/sbin/fsck -t ext4 -p $D` exited with status 8 (operational error) after "
        )),
        "{reason}"
    );
    assert!(
        reason.contains("Bad magic number in super-block"),
        "{reason}"
    );
    assert_eq!(executor.commands_run(), 1);

    // mount of it: mount(8)'s status and message.
    let outcomes = run_plan(
        &mut executor,
        &zeros.steps(&["mount ext4 $D $M timeout=30000"]),
    );
    let reason = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains(&zeros.expand("`/usr/bin/mount -t ext4 $D $M` exited with status 32"))
            && reason.contains("wrong fs type"),
        "{reason}"
    );
    assert_eq!(zeros.mounted(), None);

    // A mountpoint that is not there: named, and nothing runs.
    let commands = executor.commands_run();
    let outcomes = run_plan(
        &mut executor,
        &zeros.steps(&["mount ext4 $D $T/missing timeout=30000"]),
    );
    let reason = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains(&zeros.expand("the mountpoint directory $T/missing is missing")),
        "{reason}"
    );
    assert_eq!(executor.commands_run(), commands);
    assert!(!Path::new(&zeros.expand("$T/missing")).exists());

    // A regular file is not a device to wait for.
    let outcomes = run_plan(
        &mut executor,
        &zeros.steps(&["wait-device $T/disk.img timeout=100"]),
    );
    let reason = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains("exists but is not a block or character device"),
        "{reason}"
    );
}

#[test]
fn a_mounted_filesystem_is_never_checked() {
    if !is_root() {
        return;
    }
    let (disk, mut executor) = mounted_ext4();
    let commands = executor.commands_run();
    let outcomes = run_plan(&mut executor, &disk.steps(&["fsck ext4 $D timeout=60000"]));
    assert!(
        outcomes[0].ok() && outcomes[0].skipped_as_done,
        "{outcomes:#?}"
    );
    let detail = outcomes[0].detail.as_deref().unwrap();
    assert!(
        detail.contains(&disk.expand("$D is mounted on $M: not checked")),
        "{detail}"
    );
    assert_eq!(executor.commands_run(), commands);
}

/// Stops lighttpd when dropped.
struct StopsLighttpd;

impl Drop for StopsLighttpd {
    fn drop(&mut self) {
        let _ = Command::new("service")
            .args(["lighttpd", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

fn lighttpd_runs() -> bool {
    Command::new("service")
        .args(["lighttpd", "status"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_real_service_is_started_and_stopped_once() {
    if !is_root() {
        return;
    }
    if !Path::new("/etc/init.d/lighttpd").exists() {
        println!("skipped: lighttpd is not installed (apt-get install lighttpd)");
        return;
    }
    let mut executor = linux(&executor_config("[executor]\nservice-manager = \"sysv\"\n"));
    // The service is the machine's: one test process at a time may start and stop it.
    let lock = fs::File::create("/run/lock/haven-test-lighttpd.lock").unwrap();
    let _one_at_a_time = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .unwrap();
    let _stop = StopsLighttpd;
    must("service", &["lighttpd", "stop"]);
    assert!(!lighttpd_runs());

    let start: Step = "service start lighttpd timeout=30000".parse().unwrap();
    let stop: Step = "service stop lighttpd timeout=30000".parse().unwrap();
    let started = Instant::now();
    let outcome = executor.run_step("web", &start, &Machine::default());
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    // The init script's daemon detaches: the step does not wait for it.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(lighttpd_runs());
    let detail = outcome.detail.unwrap();
    assert!(
        detail.contains("checked `/usr/sbin/service lighttpd status`: exited with status 3")
            && detail.contains("ran `/usr/sbin/service lighttpd start`: exited with status 0"),
        "{detail}"
    );
    let commands = executor.commands_run();
    let again = executor.run_step("web", &start, &Machine::default());
    assert!(again.ok() && again.skipped_as_done, "{again:#?}");
    assert_eq!(executor.commands_run(), commands);

    let outcome = executor.run_step("web", &stop, &Machine::default());
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    assert!(!lighttpd_runs());
    let again = executor.run_step("web", &stop, &Machine::default());
    assert!(again.ok() && again.skipped_as_done, "{again:#?}");
    assert_eq!(executor.commands_run(), commands + 1);
}

/// A stand-in service(8) that hangs: writes its pid and its `sleep`'s pid, then waits.
const HANGING_SERVICE: &str = r#"#!/bin/sh
dir=${0%/*}
echo $$ >"$dir/shell.pid.tmp" && mv "$dir/shell.pid.tmp" "$dir/shell.pid"
sleep 600 &
echo $! >"$dir/sleep.pid.tmp" && mv "$dir/sleep.pid.tmp" "$dir/sleep.pid"
wait
"#;

#[test]
fn a_command_that_hangs_past_its_timeout_is_killed_with_its_group() {
    let (dir, mut executor) =
        linux_with_standin("service", HANGING_SERVICE, "service-manager = \"sysv\"");
    let service = dir.path().join("service");

    let step: Step = "service restart db timeout=300".parse().unwrap();
    let (took, outcomes) = timed(|| run_plan(&mut executor, &[step.clone(), step]));
    assert_eq!(outcomes.len(), 1, "the plan stops at the failure");
    let reason = outcomes[0].result.as_ref().unwrap_err();
    let expected = format!(
        "`{} db restart` timed out: the step's timeout of 300 ms ran out after it had run ",
        service.display()
    );
    assert!(
        reason.starts_with(&expected) && reason.ends_with("; it was killed with its process group"),
        "{reason}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < DEADLINE,
        "{took:?}"
    );
    for name in ["shell.pid", "sleep.pid"] {
        let pid = read_pid(&dir.path().join(name));
        wait_until(&format!("{name} {pid} is gone"), || process_gone(pid));
    }
}

/// A stand-in service(8) whose `start` is like Debian's `/etc/init.d/mariadb start`:
/// `mysqld_safe "${@:2}" 2>&1 >/dev/null | $ERR_LOGGER &`. The "daemon" (a `sleep`) writes to
/// /dev/null and its stderr goes to the "logger" (a `cat`), which keeps the script's stdout and
/// stderr open for as long as the daemon runs. Both write their pids; `status` says whether
/// the daemon's pid file is there.
const MARIADB_LIKE_SERVICE: &str = r#"#!/bin/sh
dir=${0%/*}
case "$2" in
status)
    [ -e "$dir/daemon.pid" ] && exit 0
    exit 3 ;;
start)
    sh -c 'echo $$ >"$1/daemon.pid.tmp" && mv "$1/daemon.pid.tmp" "$1/daemon.pid"; exec sleep 600' sh "$dir" 2>&1 >/dev/null |
        sh -c 'echo $$ >"$1/logger.pid.tmp" && mv "$1/logger.pid.tmp" "$1/logger.pid"; exec cat' sh "$dir" &
    echo "Starting $1 database server"
    exit 0 ;;
esac
exit 1
"#;

/// Kills the processes in these pid files (those written) when dropped.
struct KillsPidFiles(Vec<PathBuf>);

impl Drop for KillsPidFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Ok(text) = fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[test]
fn a_service_start_whose_logger_keeps_the_output_open_returns_and_leaves_it_running() {
    let (dir, mut executor) = linux_with_standin(
        "service",
        MARIADB_LIKE_SERVICE,
        "service-manager = \"sysv\"",
    );
    let pid_files = ["daemon.pid", "logger.pid"].map(|name| dir.path().join(name));
    let kill = KillsPidFiles(pid_files.to_vec());

    let step: Step = "service start db timeout=300000".parse().unwrap();
    let (took, outcome) = timed(|| executor.run_step("db", &step, &Machine::default()));
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    // Not held until the 5-minute timeout by the logger.
    assert!(took < DEADLINE, "{took:?}");
    let detail = outcome.detail.unwrap();
    assert!(
        detail.contains("db start`: exited with status 0"),
        "{detail}"
    );

    // The daemon and its logger were left running.
    for path in &pid_files {
        wait_until(&format!("{} is written", path.display()), || path.exists());
        let pid = read_pid(path);
        assert!(!process_gone(pid), "{} {pid} was killed", path.display());
    }
    let logger = read_pid(&pid_files[1]);
    let stdout = fs::read_link(format!("/proc/{logger}/fd/1")).unwrap();
    assert!(
        stdout.to_string_lossy().contains("memfd:haven-stdout"),
        "the logger does not hold the run's stdout: {}",
        stdout.display()
    );

    drop(kill);
    for path in &pid_files {
        let pid = read_pid(path);
        wait_until(&format!("{} {pid} is gone", path.display()), || {
            process_gone(pid)
        });
    }
}

#[test]
fn wait_worker_gone_reads_process_titles_from_proc() {
    let resource = format!("test{}", std::process::id());
    let title = format!("hastd: {resource} (secondary)");
    let mut executor = linux(&ExecutorConfig::default());
    let step: Step = format!("wait-worker-gone {resource} secondary timeout=10000")
        .parse()
        .unwrap();

    // Nobody has the title: done at once.
    let outcome = executor.run_step("test", &step, &Machine::default());
    assert!(outcome.ok() && outcome.skipped_as_done, "{outcome:#?}");

    // A process titled like hastd's worker (`cat` waiting on its stdin, with that argv[0]):
    // the step waits until it is gone.
    let worker = Command::new("cat")
        .arg0(&title)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let cmdline = format!("/proc/{}/cmdline", worker.id());
    wait_until("the title shows", || {
        fs::read(&cmdline).unwrap_or_default() == format!("{title}\0").into_bytes()
    });
    // Another role's worker, or a longer command line, is not it.
    let other = format!("wait-worker-gone {resource} primary timeout=1000");
    let outcome = executor.run_step("test", &other.parse().unwrap(), &Machine::default());
    assert!(outcome.skipped_as_done, "{outcome:#?}");

    let ender = std::thread::spawn(move || {
        let mut worker = Reaped(worker);
        std::thread::sleep(Duration::from_millis(300));
        worker.0.kill().unwrap();
        worker.0.wait().unwrap();
    });
    let (took, outcome) = timed(|| executor.run_step("test", &step, &Machine::default()));
    ender.join().unwrap();
    assert!(outcome.ok() && !outcome.skipped_as_done, "{outcome:#?}");
    assert!(
        took >= Duration::from_millis(250) && took < DEADLINE,
        "{took:?}"
    );
    assert_eq!(executor.commands_run() + executor.probes_run(), 0);
}

/// A stand-in drbdadm(8) (test code only): `role <res>` prints the role kept in the file
/// `role` (`Secondary`, DRBD 9's form), `primary|secondary <res>` sets it; argv is logged.
const DRBDADM: &str = r#"#!/bin/sh
dir=${0%/*}
echo "$*" >>"$dir/log"
case "$1" in
role) cat "$dir/role" ;;
primary) echo Primary >"$dir/role" ;;
secondary) echo Secondary >"$dir/role" ;;
*) echo "drbdadm: Unknown command '$1'" >&2; exit 20 ;;
esac
"#;

#[test]
fn drbd_roles_go_through_drbdadm() {
    let (dir, mut executor) = linux_with_standin("drbdadm", DRBDADM, "storage = \"drbd\"");
    fs::write(dir.path().join("role"), "Secondary\n").unwrap();
    let log = || fs::read_to_string(dir.path().join("log")).unwrap_or_default();

    let plan: Vec<Step> = ["hast-role r0 primary", "hast-role r0 primary"]
        .iter()
        .map(|line| line.parse().unwrap())
        .collect();
    let outcomes = run_plan(&mut executor, &plan);
    assert_all_ok(&outcomes);
    assert_eq!(skipped(&outcomes), [false, true]);
    assert_eq!(log(), "role r0\nprimary r0\nrole r0\n");

    // DRBD 8.4 prints local/peer.
    fs::write(dir.path().join("role"), "Secondary/Primary\n").unwrap();
    let outcome = executor.run_step(
        "test",
        &"hast-role r0 secondary".parse().unwrap(),
        &Machine::default(),
    );
    assert!(outcome.skipped_as_done, "{outcome:#?}");

    // HAST's init role has no DRBD equivalent.
    let outcome = executor.run_step(
        "test",
        &"hast-role r0 init".parse().unwrap(),
        &Machine::default(),
    );
    let reason = outcome.result.unwrap_err();
    assert!(
        reason.contains("role init has no DRBD equivalent"),
        "{reason}"
    );
    assert_eq!(log(), "role r0\nprimary r0\nrole r0\nrole r0\n");
    assert_eq!(executor.commands_run(), 1);
}
