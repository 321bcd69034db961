//! A rig machine: a set of Linux namespaces that behaves like a separate host.
//!
//! Each [`Machine`] has its own pid, mount, UTS (host name) and network namespaces, made by
//! `unshare` around [`haven-rig-init`](../bin/haven-rig-init.rs) as process 1. Everything the
//! rig runs on the machine enters those namespaces with `nsenter`. So a machine's mounts are
//! invisible to the others, `/run` is its own, `killall` and `/proc` see only its processes,
//! and [`Machine::power_off`] is a real power cut: killing process 1 of a pid namespace makes
//! the kernel kill every process in it; with the last one gone, its mounts and its network
//! interfaces vanish.
//!
//! Nothing outlives the rig: `unshare` runs under `setpriv --pdeathsig KILL` and with
//! `--kill-child`, so if the process that built the rig dies (a panic that aborts, Ctrl-C, a
//! kill), the machine's init and with it the whole machine die too.

use crate::{RigError, bins, command_output};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a machine may take to come up or to go down.
const SETTLE: Duration = Duration::from_secs(10);

/// A host of the rig.
#[derive(Debug)]
pub struct Machine {
    name: String,
    /// `setpriv … unshare …`: our child; its child is the machine's process 1.
    unshare: Option<Child>,
    /// The machine's process 1, as a pid of the rig's own pid namespace.
    init_pid: i32,
    /// The processes the rig started on it (`nsenter`, our children), reaped on power-off.
    processes: Vec<Child>,
}

impl Machine {
    /// Start a machine named `name` (also its host name), with an empty network namespace
    /// (only `lo`, brought up).
    pub fn start(name: &str) -> Result<Machine, RigError> {
        let init = bins::rig_binary("haven-rig-init")?;
        let unshare = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "unshare"])
            .args(["--kill-child=SIGKILL", "--fork", "--pid", "--mount-proc"])
            .args([
                "--mount",
                "--propagation",
                "private",
                "--uts",
                "--net",
                "--",
            ])
            .arg(&init)
            .arg(name)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|error| RigError::new(format!("cannot run setpriv/unshare: {error}")))?;
        let unshare_pid = unshare.id() as i32;
        let mut machine = Machine {
            name: name.to_owned(),
            unshare: Some(unshare),
            init_pid: 0,
            processes: Vec::new(),
        };
        // unshare forks process 1; it shows as unshare's child once it has exec'd the init.
        let started = Instant::now();
        machine.init_pid = loop {
            let children =
                std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .unwrap_or_default();
            let found = children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<i32>().ok())
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "haven-rig-init")
                });
            if let Some(pid) = found {
                break pid;
            }
            if started.elapsed() > SETTLE {
                return Err(RigError::new(format!("machine {name} did not start")));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        machine.run("ip", &["link", "set", "lo", "up"])?;
        Ok(machine)
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine's process 1, as seen from the rig (for `ip link … netns <pid>`).
    pub fn pid(&self) -> i32 {
        self.init_pid
    }

    /// Whether the machine is up.
    pub fn is_up(&self) -> bool {
        self.unshare.is_some()
    }

    /// `program args…` to run inside the machine: all its namespaces entered.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.init_pid))
            .args(["--pid", "--mount", "--uts", "--net", "--"])
            .arg(program)
            .stdin(Stdio::null());
        command
    }

    /// `program args…` in the machine's network only. `nsenter` then execs the program itself
    /// (no fork, as entering a pid namespace needs), so killing the child kills the program:
    /// what the client's bounded calls rely on.
    pub fn net_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        Machine::net_command_of(self.init_pid, program)
    }

    /// [`Machine::net_command`] for the machine whose process 1 is `pid`.
    pub fn net_command_of(pid: i32, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={pid}"))
            .args(["--net", "--"])
            .arg(program)
            .stdin(Stdio::null());
        command
    }

    /// Run `program args…` inside the machine and wait for it: its stdout, or an error with
    /// its status and stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, RigError> {
        let mut command = self.command(program);
        command.args(args);
        command_output(&mut command).map_err(|error| error.context(&self.name))
    }

    /// Start `command` (from [`Machine::command`]) in the background; the machine keeps it
    /// and its output goes to `log` as `<machine>/<label>`.
    pub fn spawn(
        &mut self,
        mut command: Command,
        label: &str,
        log: &std::sync::Arc<crate::log::Log>,
    ) -> Result<(), RigError> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                RigError::new(format!("{}: cannot start {label}: {error}", self.name))
            })?;
        let source = format!("{}/{label}", self.name);
        if let Some(stdout) = child.stdout.take() {
            log.follow(source.clone(), stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            log.follow(source, stderr);
        }
        self.processes.push(child);
        Ok(())
    }

    /// A path inside the machine's mount namespace, reachable from the rig.
    pub fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.init_pid)).join(inside.trim_start_matches('/'))
    }

    /// The machine's mount table (`/proc/<pid>/mountinfo`); empty once it is off.
    pub fn mountinfo(&self) -> String {
        if !self.is_up() {
            return String::new();
        }
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.init_pid)).unwrap_or_default()
    }

    /// Whether `mountpoint` is mounted on the machine.
    pub fn has_mounted(&self, mountpoint: &str) -> bool {
        self.mountinfo()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(mountpoint))
    }

    /// Cut the power: kill process 1, and so every process of the machine, and wait until
    /// they are all gone. Its mounts and network interfaces go with them.
    pub fn power_off(&mut self) {
        let Some(mut unshare) = self.unshare.take() else {
            return;
        };
        let _ = unshare.kill();
        let _ = unshare.wait();
        // unshare's death kills process 1 (--kill-child); each nsenter then sees its child
        // die and exits. They are our children, so reap them.
        for mut process in self.processes.drain(..) {
            let deadline = Instant::now() + SETTLE;
            while matches!(process.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
        // Process 1 is not our child: wait until it is gone.
        let deadline = Instant::now() + SETTLE;
        while Path::new(&format!("/proc/{}", self.init_pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.power_off();
    }
}
