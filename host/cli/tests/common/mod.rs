//! The harness `havend.rs` and `reload.rs` share: a private temporary directory, the real
//! `havend` behind a guard that stops and reaps it, a devd stand-in, bounded waits, and
//! failure diagnostics. Each test binary compiles this module on its own and adds its own
//! methods to [`Setup`] and [`Havend`] (inherent impls in the same crate), so what one of
//! them does not use is not dead code in the other.

#![allow(dead_code)]

use haven_daemon::journal::{JOURNAL_FILE, Journal, Record};
use haven_daemon::status::Status;
use haven_test_artifacts::support::{run_once, write_script};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{
    AddressFamily, SendFlags, SocketAddrUnix, SocketType, accept, bind, listen, send, socket,
};
use std::cell::RefCell;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The bound on any wait for something that should happen soon. Generous: tests run in
/// parallel, and each havend compiles its policies afresh at start.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const HAVEND: &str = env!("CARGO_BIN_EXE_havend");
pub const HAVENCTL: &str = env!("CARGO_BIN_EXE_havenctl");

/// Poll `probe` every `poll` until it gives `Some`, for at most [`DEADLINE`].
pub fn poll_until<T>(poll: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if started.elapsed() > DEADLINE {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Wait for `child` to exit, for at most `bound`.
pub fn wait_exit(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if started.elapsed() > bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `max` characters of `text`.
pub fn tail(text: &str, max: usize) -> &str {
    let skip = text.chars().count().saturating_sub(max);
    match text.char_indices().nth(skip) {
        Some((at, _)) => &text[at..],
        None => text,
    }
}

pub fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ------------------------------------------------------------------------------- the setup

/// A test's private directory: config, state, control socket, stand-ins.
#[derive(Debug)]
pub struct Setup {
    pub dir: tempfile::TempDir,
}

/// A TOML string holding `path`.
pub fn toml_path(path: &Path) -> String {
    let text = path.to_str().expect("temporary paths are UTF-8");
    assert!(
        !text.contains(['"', '\\']) && !text.chars().any(char::is_control),
        "{text}"
    );
    format!("\"{text}\"")
}

impl Setup {
    /// An empty setup in a fresh directory named `prefix…`.
    pub fn in_tmp(prefix: &str) -> Setup {
        // Under /tmp, not $TMPDIR: socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("creating a temporary directory");
        Setup { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("haven.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn control_dir(&self) -> PathBuf {
        self.path("ctl")
    }

    pub fn devd_socket(&self) -> PathBuf {
        self.path("devd.pipe")
    }

    pub fn hastctl(&self) -> PathBuf {
        self.path("hastctl")
    }

    /// Replace a file atomically: a reader sees the old text or the new, never half.
    pub fn replace(&self, name: &str, text: &str) {
        let temporary = self.path(&format!("{name}.tmp"));
        fs::write(&temporary, text).unwrap();
        fs::rename(&temporary, self.path(name)).unwrap();
    }

    // ---- the hastctl stand-in

    /// Install the `hastctl` stand-in, answering `list` with `output`.
    pub fn install_hastctl(&self, output: &str) {
        self.set_hastctl_output(output);
        let program = self.hastctl();
        write_script(&program, HASTCTL_STANDIN);
        // Run once, before havend may: see `run_once`.
        let output = run_once(&program);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
    }

    /// What the stand-in's next `hastctl list` prints.
    pub fn set_hastctl_output(&self, output: &str) {
        self.replace("hastctl.out", output);
    }
}

/// A stand-in for FreeBSD's hastctl(8), test code only: havend runs it by absolute path with a
/// cleared environment, as it runs the real one. `hastctl list` prints the file `hastctl.out`
/// next to it (which tests replace atomically) and logs the run in `hastctl.calls`; while a
/// file `hastctl.hold` exists, it waits before answering, like a hastd slow to answer.
const HASTCTL_STANDIN: &str = r#"#!/bin/sh
dir=${0%/*}
if [ "$1" != list ]; then
    echo "hastctl: unknown command: $1" >&2
    exit 1
fi
echo list >>"$dir/hastctl.calls"
while [ -e "$dir/hastctl.hold" ]; do
    sleep 0.02
done
exec cat "$dir/hastctl.out"
"#;

// --------------------------------------------------------------------------- devd stand-in

/// devd's side of `/var/run/devd.seqpacket.pipe`: a listening SOCK_SEQPACKET socket.
#[derive(Debug)]
pub struct DevdServer {
    listener: OwnedFd,
}

impl DevdServer {
    pub fn bind(path: &Path) -> DevdServer {
        let listener = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        bind(&listener, &SocketAddrUnix::new(path).unwrap()).unwrap();
        listen(&listener, 4).unwrap();
        // Bounds accept(): a test fails instead of hanging.
        set_socket_timeout(&listener, Timeout::Recv, Some(DEADLINE)).unwrap();
        DevdServer { listener }
    }

    /// The daemon's next connection. A signal to the test process (another test's child
    /// exiting) interrupts `accept`: that is retried; the deadline (SO_RCVTIMEO) is not.
    pub fn accept(&self) -> OwnedFd {
        let started = Instant::now();
        loop {
            match accept(&self.listener) {
                Ok(connection) => return connection,
                Err(errno)
                    if (errno == rustix::io::Errno::INTR
                        || errno == rustix::io::Errno::CONNABORTED)
                        && started.elapsed() < DEADLINE => {}
                Err(errno) => {
                    panic!("havend did not connect to the devd socket in time: {errno}")
                }
            }
        }
    }
}

/// One devd line, in a packet of its own, as devd sends them.
pub fn send_line(connection: &OwnedFd, line: &str) {
    assert_eq!(
        send(connection, line.as_bytes(), SendFlags::empty()).unwrap(),
        line.len()
    );
}

// ------------------------------------------------------------------------ reading journals

/// Reads the journal incrementally: only what was appended since the last look is parsed.
/// The tests' configs make the journal large enough never to rotate (checked).
#[derive(Debug)]
pub struct JournalTail {
    dir: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    pub records: Vec<Record>,
}

impl JournalTail {
    pub fn new(dir: PathBuf) -> JournalTail {
        JournalTail {
            dir,
            offset: 0,
            partial: Vec::new(),
            records: Vec::new(),
        }
    }

    pub fn refresh(&mut self) {
        assert!(
            !self.dir.join(format!("{JOURNAL_FILE}.1")).exists(),
            "the journal was rotated; these tests read only {JOURNAL_FILE}"
        );
        let mut file = match fs::File::open(self.dir.join(JOURNAL_FILE)) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => panic!("opening the journal: {error}"),
        };
        file.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut appended = Vec::new();
        file.read_to_end(&mut appended).unwrap();
        self.offset += appended.len() as u64;
        self.partial.extend_from_slice(&appended);
        // Only whole lines: the one being written is read next time.
        while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let record: Record = serde_json::from_slice(&line[..end]).unwrap_or_else(|error| {
                panic!(
                    "a journal line that does not parse ({error}): {}",
                    String::from_utf8_lossy(&line)
                )
            });
            if let Some(last) = self.records.last() {
                assert_eq!(record.seq, last.seq + 1, "journal seq not consecutive");
            }
            self.records.push(record);
        }
    }
}

// ---------------------------------------------------------------------------- the daemon

/// A running `havend`, stopped (SIGTERM, then SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Havend {
    pub child: Child,
    pub state_dir: PathBuf,
    pub control_dir: PathBuf,
    pub stderr: PathBuf,
    /// How often [`Havend::wait_ready`] looks again.
    pub poll: Duration,
    /// How many of the last journal records [`Havend::diagnostics`] shows (all if `None`).
    pub shown_records: Option<usize>,
    /// The journal read incrementally, for the tests that read it so.
    pub journal: RefCell<JournalTail>,
}

impl Havend {
    /// Start havend on the setup's config with `args` added, its stderr to `stderr`, without
    /// waiting for it.
    pub fn launch(
        setup: &Setup,
        args: &[&str],
        stderr: PathBuf,
        poll: Duration,
        shown_records: Option<usize>,
    ) -> Havend {
        let child = Command::new(HAVEND)
            .arg("--config")
            .arg(setup.config())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting havend");
        Havend {
            child,
            state_dir: setup.state_dir(),
            control_dir: setup.control_dir(),
            stderr,
            poll,
            shown_records,
            journal: RefCell::new(JournalTail::new(setup.state_dir())),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    pub fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "havend exited at start with {status}\n{}",
                    self.diagnostics()
                );
            }
            if self.havenctl(&["status", "--json"]).status.success() {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "havend did not answer status in time\n{}",
                self.diagnostics()
            );
            std::thread::sleep(self.poll);
        }
    }

    /// Run havenctl against this daemon's control socket.
    pub fn havenctl(&self, args: &[&str]) -> Output {
        Command::new(HAVENCTL)
            .arg("--control-dir")
            .arg(&self.control_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running havenctl")
    }

    /// `havenctl status --json`, checked to have succeeded.
    fn status_output(&self) -> Output {
        let output = self.havenctl(&["status", "--json"]);
        assert!(
            output.status.success(),
            "havenctl status: {output:?}\n{}",
            self.diagnostics()
        );
        output
    }

    /// `havenctl status --json`, parsed.
    pub fn status(&self) -> Status {
        serde_json::from_slice(&self.status_output().stdout)
            .expect("havenctl status --json prints a Status")
    }

    /// `havenctl status --json`, as JSON.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.status_output().stdout)
            .expect("havenctl status --json prints JSON")
    }

    /// The journal and the end of havend's stderr, for failure messages.
    pub fn diagnostics(&self) -> String {
        let journal = match Journal::read_all(&self.state_dir) {
            Ok(contents) => {
                let skip = self
                    .shown_records
                    .map_or(0, |shown| contents.records.len().saturating_sub(shown));
                contents.records[skip..]
                    .iter()
                    .map(|record| serde_json::to_string(record).unwrap())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(error) => format!("(cannot read the journal: {error})"),
        };
        let heading = if self.shown_records.is_some() {
            "journal (end)"
        } else {
            "journal"
        };
        let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
        format!(
            "--- {heading} ---\n{}\n--- havend stderr (end) ---\n{}",
            tail(&journal, 12_000),
            tail(&stderr, 6_000)
        )
    }
}

impl Drop for Havend {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        if wait_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A config for `setup`: the seed policy (no hold-down) in monitor mode (dry run), reading
/// `hastctl` every 50 ms, then `tables` (e.g. `[peer]` or `[witness]`).
pub fn monitor_config(setup: &Setup, tables: &str) -> String {
    format!(
        "{policy}[daemon]\nexecutor = \"dry-run\"\nstate-dir = {state}\ncontrol-dir = {control}\n\n\
         [executor.tools]\nhastctl = {hastctl}\n\n\
         [sources.hastctl]\nprogram = {hastctl}\ninterval-ms = 50\ntimeout-ms = 20000\n\n{tables}",
        policy = seed(
            "mysql",
            Path::new(haven_test_artifacts::CARP_HAST_SWITCH),
            0
        ),
        state = toml_path(&setup.state_dir()),
        control = toml_path(&setup.control_dir()),
        hastctl = toml_path(&setup.hastctl()),
    )
}

/// The seed recipe's `[[policy]]` (as in examples/seed/haven.toml) on `module`, with
/// `hold_down_ms`.
pub fn seed(name: &str, module: &Path, hold_down_ms: u64) -> String {
    format!(
        r#"[[policy]]
name = "{name}"
module = {module}
on-failure = "alert"

[policy.grants]
hast-resources = ["test"]
services = ["mysql-server"]
timers = 1
mounts = [{{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }}]

[policy.settings]
vhid = 1
services = ["mysql-server"]
hold-down-ms = {hold_down_ms}

[[policy.settings.resources]]
name = "test"
mountpoint = "/hast/test"
fstype = "ufs"

"#,
        module = toml_path(module),
    )
}
