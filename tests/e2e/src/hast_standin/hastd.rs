//! The `hastd` stand-in: one resource on storage both hosts share (see [`super`]).
//!
//! ```text
//! hastd --host <name> --peer <name> --resource <res> --local <device> --shared-dir <dir>
//!       [--peer-address <addr>] [--exec <program>] [--control <socket>] [--dev-dir <dir>]
//!       [--listen <addr>]
//! ```
//!
//! It runs in the foreground, starts in role init (as hastd does), serves the control
//! protocol on `--control` (default `/var/run/hastctl`), and on SIGTERM or SIGINT removes the
//! socket and the provider node and exits. Its workers are processes whose whole command
//! line is `hastd: <res> (<role>)`: this program again, told by [`WORKER_ENV`] to block on
//! its stdin, a pipe hastd holds, so that a worker dies with hastd whatever kills it.
//!
//! Liveness and roles across the hosts live in `--shared-dir`: hastd holds an exclusive
//! `flock` on `<host>.alive` while it runs and writes its role to `<res>.<host>.role`. One
//! thread blocks on the peer's lock (so the peer's death is seen at once) and polls for its
//! return; another polls the peer's role file every [`POLL`]. The secondary's worker runs
//! exactly while the peer is alive and primary; the primary's for as long as it is primary.
//! `role primary` is refused while the peer is alive, reachable and primary: the shared
//! filesystem must never be mounted twice while hastd could know better.
//!
//! **The network, as hastd sees it** (`--listen`): real hastd replicates over TCP, and a
//! partition between the hosts shows only as silence.
//!
//! - The secondary: `hastd_secondary()` (sbin/hastd/secondary.c) sets
//!   `proto_timeout(res->hr_remotein, 2 * HAST_KEEPALIVE)`, 20 s (`HAST_KEEPALIVE` is 10,
//!   sbin/hastd/hast.h). Its `recv_thread` waits for the next request header; when none comes
//!   in time, `secondary_exit()` sends `EVENT_DISCONNECT` (the `disconnect` hook runs on the
//!   secondary) and the worker exits. It had sent `EVENT_CONNECT` after `init_remote()`, so
//!   the secondary runs both hooks, as the stand-in does.
//! - The primary: `remote_send_thread` (primary.c) sends `keepalive_send()` when it has had
//!   nothing to send for `HAST_KEEPALIVE`; the secondary never answers a keepalive
//!   (`recv_thread` frees it). The primary disconnects (`remote_close()`, the `disconnect` hook)
//!   when a send fails or a reply header does not arrive within its connection timeout
//!   (hast.conf `timeout`, 20 s by default). An idle primary whose keepalives still fit in the
//!   socket's buffer can therefore go on counting the peer connected for longer than that:
//!   **the stand-in differs here**, its primary counts the peer gone after the same 20 s of
//!   silence as its secondary. Nothing Haven's tests assert depends on when the primary
//!   notices; a rig with a writing client makes the real one notice within the timeout too.
//! - Nothing in hastd asks whether a silent peer is still primary:
//!   `control_set_role_common()` (control.c) kills the worker, starts the new one and runs the
//!   `role` hook. A secondary cut off that long accepts `role primary`, and both hosts write;
//!   HAST finds the split-brain at the next connect (`init_remote()` in secondary.c compares
//!   the two hosts' counters).
//!
//! With `--listen`, each stand-in sends a datagram to `<peer-address>:8457` every
//! [`HEARTBEAT`] and counts the peer reachable while one arrived within [`REMOTE_TIMEOUT`];
//! replication is connected, and the refusal above applies, only while the peer is reachable
//! too. A disconnected secondary has no worker, so `status` lists no `status`, `dirty` or
//! `keepdirty`, as before. Without `--listen` the network is not modelled (the peer is always
//! reachable).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{Mode, SFlag, mknod};

use super::{EHAST_INVALID, EHAST_NOENTRY, EHAST_UNIMPLEMENTED, Role};

/// Set (to `1`) in a worker's environment: the process is a worker, not hastd.
pub const WORKER_ENV: &str = "HAST_STANDIN_WORKER";

/// How often the peer's role file is read, and the dead peer's lock probed.
pub const POLL: Duration = Duration::from_millis(5);

/// How long the peer may be silent on the network before it counts as disconnected: the
/// secondary's `2 * HAST_KEEPALIVE` (sbin/hastd/secondary.c, hast.h).
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a stand-in with `--listen` tells its peer it is there.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// The port of the heartbeats: hastd's own (`HASTD_LISTEN_TCP4`, hast.h).
const HEARTBEAT_PORT: u16 = 8457;

/// hastd's default extent size (`HAST_EXTENTSIZE`, 2 MiB) and `keepdirty` (64).
const EXTENTSIZE: u64 = 2 * 1024 * 1024;
const KEEPDIRTY: u64 = 64;

/// How long hastd tries to take its own liveness lock (the peer's probes hold it for an
/// instant; a second hastd for the same host holds it for good).
const OWN_LOCK_PATIENCE: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: hastd --host <name> --peer <name> --resource <res> --local <device> \
--shared-dir <dir> [--peer-address <addr>] [--exec <program>] [--control <socket>] [--dev-dir <dir>] \
[--listen <addr>]";

/// hastd's command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// This host's name (`hasta`).
    pub host: String,
    /// The other host's name (`hastb`).
    pub peer: String,
    /// Shown as `remoteaddr`.
    pub peer_address: String,
    /// The one resource (`test`).
    pub resource: String,
    /// The local device (`/dev/loop3`), shown as `localpath`; `/dev/hast/<res>` gets its
    /// device number.
    pub local: PathBuf,
    /// The folder both hosts share for liveness locks and role files.
    pub shared_dir: PathBuf,
    /// hast.conf's `exec`.
    pub exec: Option<PathBuf>,
    /// The control socket.
    pub control: PathBuf,
    /// Where the provider node appears (`/dev/hast`).
    pub dev_dir: PathBuf,
    /// hast.conf's `listen` address (an IP, port 8457): with it, the network between the
    /// hosts is modelled (see the module's comment).
    pub listen: Option<std::net::IpAddr>,
}

impl Config {
    /// Read the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Config, String> {
        let mut values: HashMap<&'static str, OsString> = HashMap::new();
        let options = [
            "--host",
            "--peer",
            "--peer-address",
            "--resource",
            "--local",
            "--shared-dir",
            "--exec",
            "--control",
            "--dev-dir",
            "--listen",
        ];
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let text = arg.to_string_lossy();
            if text == "-h" || text == "--help" {
                return Err(USAGE.to_owned());
            }
            let option = options
                .iter()
                .find(|o| **o == text)
                .ok_or_else(|| format!("unknown argument {text:?}\n{USAGE}"))?;
            let value = args
                .next()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{option} needs a value\n{USAGE}"))?;
            if values.insert(option, value).is_some() {
                return Err(format!("{option} given twice\n{USAGE}"));
            }
        }
        let mut take = |option: &str| values.remove(option);
        let mut required = |option: &'static str| {
            take(option).ok_or_else(|| format!("{option} is required\n{USAGE}"))
        };
        let string = |option: &str, value: OsString| {
            value
                .into_string()
                .map_err(|v| format!("{option} {v:?} is not UTF-8"))
        };
        let host = string("--host", required("--host")?)?;
        let peer = string("--peer", required("--peer")?)?;
        let resource = string("--resource", required("--resource")?)?;
        let local = PathBuf::from(required("--local")?);
        let shared_dir = PathBuf::from(required("--shared-dir")?);
        let peer_address = match take("--peer-address") {
            Some(value) => string("--peer-address", value)?,
            None => peer.clone(),
        };
        let listen = match take("--listen") {
            Some(value) => Some(
                string("--listen", value)?
                    .parse()
                    .map_err(|_| format!("--listen wants an IP address\n{USAGE}"))?,
            ),
            None => None,
        };
        let config = Config {
            listen,
            exec: take("--exec").map(PathBuf::from),
            control: take("--control").map_or_else(|| super::DEFAULT_CONTROL.into(), PathBuf::from),
            dev_dir: take("--dev-dir").map_or_else(|| "/dev/hast".into(), PathBuf::from),
            host,
            peer,
            peer_address,
            resource,
            local,
            shared_dir,
        };
        for (what, name) in [
            ("host", &config.host),
            ("peer", &config.peer),
            ("resource", &config.resource),
        ] {
            check_name(what, name)?;
        }
        if config.host == config.peer {
            return Err(format!("--host and --peer are both {:?}", config.host));
        }
        Ok(config)
    }

    fn alive_path(&self, host: &str) -> PathBuf {
        self.shared_dir.join(format!("{host}.alive"))
    }

    fn role_path(&self, host: &str) -> PathBuf {
        self.shared_dir
            .join(format!("{}.{host}.role", self.resource))
    }

    /// Serialises role changes of both hosts, so two `role primary` cannot both pass.
    fn transition_path(&self) -> PathBuf {
        self.shared_dir
            .join(format!("{}.transition", self.resource))
    }

    fn provider(&self) -> PathBuf {
        self.dev_dir.join(&self.resource)
    }
}

/// Names end up in file names and hook arguments: `[A-Za-z0-9_.-]`, not starting with `-`.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not a name ([A-Za-z0-9_.-], not starting with - or .)"
        ))
    }
}

/// The program's entry: a worker when [`WORKER_ENV`] says so, else hastd. Returns the exit
/// status.
pub fn main() -> i32 {
    if std::env::var_os(WORKER_ENV).is_some() {
        return worker();
    }
    let config = match Config::parse(std::env::args_os().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("hastd: {message}");
            return 64; // EX_USAGE
        }
    };
    match run(config) {
        Ok(()) => 0,
        Err(message) => {
            log("ERROR", &message);
            1
        }
    }
}

/// What hastd writes to a worker's pipe to make it fail as on a local disk error.
const DISK_ERROR: &[u8] = b"disk-error\n";

/// `EX_IOERR` (sysexits.h): how a worker that cannot use its local disk exits.
const EX_IOERR: i32 = 74;
/// `EX_TEMPFAIL`: a worker exiting with it is restarted, as after a signal.
const EX_TEMPFAIL: i32 = 75;

/// A worker: block until hastd closes the pipe (or dies), or fail when told to.
fn worker() -> i32 {
    let mut line = Vec::new();
    let _ = BufReader::new(std::io::stdin().lock()).read_until(b'\n', &mut line);
    if line == DISK_ERROR { EX_IOERR } else { 0 }
}

/// Log to stderr the way hastd's pjdlog does in the foreground.
fn log(level: &str, message: &str) {
    eprintln!("[{level}] {message}");
}

/// Run hastd until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), String> {
    // Before any thread exists, so that every thread inherits the mask and only the waiter
    // below receives them (children get an empty mask from std's spawn).
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block SIGTERM and SIGINT: {e}"))?;

    fs::create_dir_all(&config.shared_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.shared_dir.display()))?;
    let alive = hold_own_lock(&config.alive_path(&config.host))?;
    write_role(&config, Role::Init)?;
    // A node left by a hastd that was killed.
    remove_provider(&config)?;

    // Real hastd unlinks a stale socket before binding too.
    match fs::remove_file(&config.control) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", config.control.display())),
    }
    let listener = UnixListener::bind(&config.control)
        .map_err(|e| format!("cannot listen on {}: {e}", config.control.display()))?;

    let daemon = Arc::new(Daemon {
        state: Mutex::new(State {
            role: Role::Init,
            peer_alive: false,
            peer_reachable: config.listen.is_none(),
            peer_role: Role::Init,
            connected: false,
            worker: None,
            dirty: 0,
        }),
        config,
    });
    log(
        "INFO",
        &format!(
            "[{}] hastd stand-in of {} started (peer {}, control {}).",
            daemon.config.resource,
            daemon.config.host,
            daemon.config.peer,
            daemon.config.control.display()
        ),
    );
    spawn_thread("peer-lock", {
        let daemon = Arc::clone(&daemon);
        move || watch_peer_lock(&daemon)
    })?;
    spawn_thread("peer-role", {
        let daemon = Arc::clone(&daemon);
        move || watch_peer_role(&daemon)
    })?;
    if let Some(listen) = daemon.config.listen {
        let socket = std::net::UdpSocket::bind((listen, HEARTBEAT_PORT))
            .map_err(|e| format!("cannot listen on {listen}:{HEARTBEAT_PORT}: {e}"))?;
        let heard = Arc::new(Mutex::new(None::<Instant>));
        let receiver = socket
            .try_clone()
            .map_err(|e| format!("cannot share the heartbeat socket: {e}"))?;
        spawn_thread("heartbeat-in", {
            let daemon = Arc::clone(&daemon);
            let heard = Arc::clone(&heard);
            move || receive_heartbeats(&daemon, &receiver, &heard)
        })?;
        spawn_thread("heartbeat-out", {
            let daemon = Arc::clone(&daemon);
            move || send_heartbeats(&daemon, &socket, &heard)
        })?;
    }
    spawn_thread("control", {
        let daemon = Arc::clone(&daemon);
        move || serve(&daemon, &listener)
    })?;

    let signal = signals
        .wait()
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    log("INFO", &format!("Received {signal}; exiting."));
    let _ = fs::remove_file(&daemon.config.control);
    {
        let mut state = daemon.lock();
        if let Some(worker) = state.worker.take() {
            worker.stop();
        }
    }
    let _ = remove_provider(&daemon.config);
    drop(alive);
    // The control and watcher threads are blocked in syscalls: leave them to the exit.
    std::process::exit(0)
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Record each datagram from the peer (`<host>` of the peer, nothing else counts).
fn receive_heartbeats(
    daemon: &Daemon,
    socket: &std::net::UdpSocket,
    heard: &Mutex<Option<Instant>>,
) {
    let mut buffer = [0u8; 64];
    loop {
        match socket.recv_from(&mut buffer) {
            Ok((length, _)) if buffer[..length] == *daemon.config.peer.as_bytes() => {
                *heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            Ok(_) => {}
            Err(e) => {
                log("ERROR", &format!("heartbeats: {e}"));
                return;
            }
        }
    }
}

/// Every [`HEARTBEAT`]: tell the peer this host is here, and judge whether it was heard.
fn send_heartbeats(daemon: &Daemon, socket: &std::net::UdpSocket, heard: &Mutex<Option<Instant>>) {
    let peer = format!("{}:{HEARTBEAT_PORT}", daemon.config.peer_address);
    loop {
        // Unreachable networks are what this models: a failed send is silence, not an error.
        let _ = socket.send_to(daemon.config.host.as_bytes(), &peer);
        let last = *heard.lock().unwrap_or_else(|p| p.into_inner());
        daemon.observe_reachable(last.is_some_and(|at| at.elapsed() < REMOTE_TIMEOUT));
        std::thread::sleep(HEARTBEAT);
    }
}

/// Open (creating) a lock file; close-on-exec, as std opens every file, so that workers and
/// hooks never hold it.
fn open_lock_file(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Take this host's liveness lock, retrying while the peer's probe holds it for an instant.
fn hold_own_lock(path: &Path) -> Result<Flock<File>, String> {
    let started = Instant::now();
    let mut file = open_lock_file(path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK)) if started.elapsed() < OWN_LOCK_PATIENCE => {
                file = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(format!(
                    "{} stays locked: another hastd runs for this host",
                    path.display()
                ));
            }
            Err((_, errno)) => return Err(format!("cannot lock {}: {errno}", path.display())),
        }
    }
}

/// Whether the host holding `path`'s lock is alive: a non-blocking shared lock fails.
fn probe_alive(path: &Path) -> Result<bool, String> {
    let file = open_lock_file(path)?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(lock) => {
            drop(lock);
            Ok(false)
        }
        Err((_, Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, errno)) => Err(format!("cannot probe {}: {errno}", path.display())),
    }
}

/// Block until the host holding `path`'s lock is gone (then let go at once, so that it can
/// come back).
fn wait_dead(path: &Path) -> Result<(), String> {
    let file = open_lock_file(path)?;
    let lock = Flock::lock(file, FlockArg::LockShared)
        .map_err(|(_, errno)| format!("cannot lock {}: {errno}", path.display()))?;
    drop(lock);
    Ok(())
}

/// The role a host published; a missing file is init (that hastd never ran).
fn read_role(path: &Path) -> Result<Role, String> {
    match fs::read_to_string(path) {
        Ok(text) => Role::parse(text.trim())
            .ok_or_else(|| format!("{} holds {text:?}, not a role", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Role::Init),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Publish this host's role: write a temporary file and rename it over the old one.
fn write_role(config: &Config, role: Role) -> Result<(), String> {
    let path = config.role_path(&config.host);
    let temporary = path.with_extension("role.tmp");
    fs::write(&temporary, format!("{role}\n"))
        .and_then(|()| fs::rename(&temporary, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Create `/dev/hast/<res>`: a block device node with the local device's number, mode 0600.
fn create_provider(config: &Config) -> Result<(), String> {
    let local = fs::metadata(&config.local)
        .map_err(|e| format!("cannot stat {}: {e}", config.local.display()))?;
    if !local.file_type().is_block_device() {
        return Err(format!("{} is not a block device", config.local.display()));
    }
    remove_provider(config)?;
    let path = config.provider();
    mknod(
        &path,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        local.rdev() as nix::libc::dev_t,
    )
    .map_err(|errno| format!("cannot create {}: {errno}", path.display()))
}

fn remove_provider(config: &Config) -> Result<(), String> {
    let path = config.provider();
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// A worker process `hastd: <res> (<role>)`.
#[derive(Debug)]
struct Worker {
    role: Role,
    child: Child,
}

impl Worker {
    fn start(config: &Config, role: Role) -> Result<Worker, String> {
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find hastd's program: {e}"))?;
        let title = format!("hastd: {} ({role})", config.resource);
        let child = Command::new(&program)
            .arg0(&title)
            .env(WORKER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start worker {title:?}: {e}"))?;
        Ok(Worker { role, child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Make the worker fail as on a local disk error.
    fn fail(&mut self) -> Result<(), String> {
        let pipe = self
            .child
            .stdin
            .as_mut()
            .ok_or("the worker's pipe is closed")?;
        pipe.write_all(DISK_ERROR)
            .map_err(|e| format!("cannot write to the worker: {e}"))
    }

    /// How the worker ended, if it has.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Close its pipe, kill it, reap it: it is gone when this returns.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What hastd knows, behind [`Daemon::lock`].
#[derive(Debug)]
struct State {
    role: Role,
    peer_alive: bool,
    /// Whether the peer was heard on the network within [`REMOTE_TIMEOUT`] (always, without
    /// `--listen`).
    peer_reachable: bool,
    /// The role the peer published (it counts only while the peer is alive).
    peer_role: Role,
    /// Whether replication would be connected: the peer is alive in the complementary role.
    connected: bool,
    worker: Option<Worker>,
    /// Bytes the local copy is behind (`sync-interrupted`).
    dirty: u64,
}

#[derive(Debug)]
struct Daemon {
    config: Config,
    state: Mutex<State>,
}

impl Daemon {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking thread takes hastd down anyway (the threads are not caught).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run the `exec` program with `args`, not waiting for it; a thread reaps it.
    fn hook(&self, args: &[&str]) {
        let Some(program) = &self.config.exec else {
            return;
        };
        match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                let reaper = std::thread::Builder::new()
                    .name("hook-reaper".to_owned())
                    .spawn(move || {
                        let _ = child.wait();
                    });
                if let Err(e) = reaper {
                    log(
                        "WARNING",
                        &format!("cannot start a thread to reap a hook: {e}"),
                    );
                }
            }
            Err(e) => log(
                "ERROR",
                &format!(
                    "[{}] cannot run {} {args:?}: {e}",
                    self.config.resource,
                    program.display()
                ),
            ),
        }
    }

    /// Bring the worker and the connection in line with the roles and the peer's liveness.
    fn reconcile(&self, state: &mut State) {
        let resource = self.config.resource.as_str();
        let peer = (state.peer_alive && state.peer_reachable).then_some(state.peer_role);
        let connected = match state.role {
            Role::Primary => peer == Some(Role::Secondary),
            Role::Secondary => peer == Some(Role::Primary),
            Role::Init => false,
        };
        let wanted = match state.role {
            Role::Primary => Some(Role::Primary),
            Role::Secondary if connected => Some(Role::Secondary),
            _ => None,
        };
        if state.worker.as_ref().map(|w| w.role) != wanted {
            if let Some(worker) = state.worker.take() {
                worker.stop();
            }
            if let Some(role) = wanted {
                match Worker::start(&self.config, role) {
                    Ok(worker) => state.worker = Some(worker),
                    Err(message) => log("ERROR", &format!("[{resource}] {message}")),
                }
            }
        }
        if connected != state.connected {
            state.connected = connected;
            let event = if connected { "connect" } else { "disconnect" };
            let change = if connected { "established" } else { "lost" };
            log(
                "INFO",
                &format!(
                    "[{resource}] ({}) Connection with {} {change}.",
                    state.role, self.config.peer
                ),
            );
            self.hook(&[event, resource]);
        }
    }

    /// The peer was seen alive or dead.
    fn observe_liveness(&self, alive: bool) {
        let mut state = self.lock();
        if state.peer_alive != alive {
            state.peer_alive = alive;
            self.reconcile(&mut state);
        }
    }

    /// The peer was heard on the network, or has been silent too long.
    fn observe_reachable(&self, reachable: bool) {
        let mut state = self.lock();
        if state.peer_reachable != reachable {
            state.peer_reachable = reachable;
            log(
                "INFO",
                &format!(
                    "[{}] {} {} on the network.",
                    self.config.resource,
                    self.config.peer,
                    if reachable { "is heard" } else { "went silent" }
                ),
            );
            self.reconcile(&mut state);
        }
    }

    /// The peer's role file was read.
    fn observe_role(&self, role: Role) {
        let mut state = self.lock();
        if state.peer_role != role {
            state.peer_role = role;
            self.reconcile(&mut state);
        }
    }

    /// `role <new> <res>`: `Ok(previous role)`, or the error code and why.
    fn set_role(&self, new: Role) -> Result<Role, (i32, String)> {
        let config = &self.config;
        let mut state = self.lock();
        let old = state.role;
        if old == new {
            return Ok(old);
        }
        let invalid = |why: String| (EHAST_INVALID, why);
        // Held while checking the peer and publishing the new role, so that two hosts asked
        // for primary at once cannot both pass the check.
        let transition = Flock::lock(
            open_lock_file(&config.transition_path()).map_err(invalid)?,
            FlockArg::LockExclusive,
        )
        .map_err(|(_, errno)| {
            invalid(format!(
                "cannot lock {}: {errno}",
                config.transition_path().display()
            ))
        })?;
        if new == Role::Primary {
            let peer_alive = probe_alive(&config.alive_path(&config.peer)).map_err(invalid)?;
            let peer_role = read_role(&config.role_path(&config.peer)).map_err(invalid)?;
            if peer_alive && state.peer_reachable && peer_role == Role::Primary {
                return Err(invalid(format!(
                    "peer {} is alive and primary; the stand-in's storage is shared and must \
                     not be primary on both hosts",
                    config.peer
                )));
            }
            state.peer_alive = peer_alive;
            state.peer_role = peer_role;
        }
        if new == Role::Primary {
            create_provider(config).map_err(invalid)?;
        }
        if let Some(worker) = state.worker.take() {
            worker.stop();
        }
        if old == Role::Primary
            && let Err(message) = remove_provider(config)
        {
            log("WARNING", &format!("[{}] {message}", config.resource));
        }
        state.role = new;
        let published = write_role(config, new);
        drop(transition);
        log(
            "INFO",
            &format!("[{}] ({old}) Role changed to {new}.", config.resource),
        );
        self.hook(&["role", &config.resource, old.as_str(), new.as_str()]);
        self.reconcile(&mut state);
        // The role changed here; the peer cannot see it, which the caller must know.
        published.map_err(invalid)?;
        Ok(old)
    }

    /// One request line → the reply's text.
    fn handle(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut reply = String::new();
        let outcome = match words.as_slice() {
            ["role", role, resources @ ..] if !resources.is_empty() => match Role::parse(role) {
                Some(role) => {
                    self.each_resource(resources, &mut reply, |out| {
                        self.set_role(role)
                            .map(|old| out.push(("previous", old.to_string())))
                    });
                    Ok(())
                }
                None => Err((EHAST_INVALID, format!("invalid role {role:?}"))),
            },
            ["status", resources @ ..] if !resources.is_empty() => {
                self.each_resource(resources, &mut reply, |out| {
                    self.status(out);
                    Ok(())
                });
                Ok(())
            }
            ["create", resources @ ..] if !resources.is_empty() => {
                self.each_resource(resources, &mut reply, |_| self.create());
                Ok(())
            }
            ["sync-start", resource] => self.sync_event(resource, "syncstart", Some(EXTENTSIZE)),
            ["sync-start", resource, bytes] => match bytes.parse::<u64>() {
                Ok(bytes) if bytes > 0 => self.sync_event(resource, "syncstart", Some(bytes)),
                _ => Err((
                    EHAST_INVALID,
                    format!("dirty bytes {bytes:?} is not a positive number"),
                )),
            },
            ["sync-interrupted", resource] => {
                self.sync_event(resource, "syncintr", Some(EXTENTSIZE))
            }
            ["sync-interrupted", resource, bytes] => match bytes.parse::<u64>() {
                Ok(bytes) if bytes > 0 => self.sync_event(resource, "syncintr", Some(bytes)),
                _ => Err((
                    EHAST_INVALID,
                    format!("dirty bytes {bytes:?} is not a positive number"),
                )),
            },
            ["sync-done", resource] => self.sync_event(resource, "syncdone", Some(0)),
            ["split-brain", resource] => self.split_brain(resource),
            ["disk-error", resource] => self.disk_error(resource),
            _ => Err((EHAST_UNIMPLEMENTED, format!("unknown request {line:?}"))),
        };
        match outcome {
            Ok(()) => reply.push_str("ok\n"),
            Err((code, reason)) => reply = format!("fail {code} {}\n", one_line(&reason)),
        }
        reply
    }

    /// Run `each` for every named resource (`all` is this one), writing a block per name.
    fn each_resource(
        &self,
        names: &[&str],
        reply: &mut String,
        each: impl Fn(&mut Vec<(&'static str, String)>) -> Result<(), (i32, String)>,
    ) {
        let resource = self.config.resource.as_str();
        let names: Vec<&str> = if names == ["all"] {
            vec![resource]
        } else {
            names.to_vec()
        };
        for name in names {
            reply.push_str(&format!("resource {}\n", one_line(name)));
            let mut fields = Vec::new();
            let outcome = if name == resource {
                each(&mut fields)
            } else {
                Err((EHAST_NOENTRY, format!("no resource {name:?}")))
            };
            for (key, value) in fields {
                reply.push_str(&format!("{key} {}\n", one_line(&value)));
            }
            if let Err((code, reason)) = outcome {
                log(
                    "WARNING",
                    &format!("[{name}] Refused (error {code}): {reason}."),
                );
                reply.push_str(&format!("error {code} {}\n", one_line(&reason)));
            }
        }
    }

    /// The fields of a `status` block, as `control_status()` and the worker's `ctrl_thread()`
    /// (sbin/hastd/control.c) fill them: `status`, `extentsize`, `keepdirty` and `dirty` come
    /// from the worker, so they are absent while none runs (hastctl prints 0 for them); a
    /// secondary's worker always reports `keepdirty` 0 and `dirty` 0, whatever its copy holds.
    fn status(&self, out: &mut Vec<(&'static str, String)>) {
        let config = &self.config;
        let state = self.lock();
        out.push(("role", state.role.to_string()));
        out.push(("provname", config.resource.clone()));
        out.push(("localpath", config.local.display().to_string()));
        out.push(("remoteaddr", config.peer_address.clone()));
        out.push(("replication", "memsync".to_owned()));
        let Some(worker) = &state.worker else {
            return;
        };
        let status = if state.connected {
            "complete"
        } else {
            "degraded"
        };
        out.push(("status", status.to_owned()));
        out.push(("workerpid", worker.pid().to_string()));
        out.push(("extentsize", EXTENTSIZE.to_string()));
        let (keepdirty, dirty) = if state.role == Role::Primary {
            (KEEPDIRTY, state.dirty)
        } else {
            (0, 0)
        };
        out.push(("keepdirty", keepdirty.to_string()));
        out.push(("dirty", dirty.to_string()));
    }

    /// `create`: like `hastctl create`, possible only while hastd does not use the device.
    fn create(&self) -> Result<(), (i32, String)> {
        let mut state = self.lock();
        if state.role != Role::Init {
            return Err((
                EHAST_INVALID,
                format!(
                    "Unable to open {}: Device busy (hastd uses it in role {})",
                    self.config.local.display(),
                    state.role
                ),
            ));
        }
        state.dirty = 0;
        Ok(())
    }

    /// A rig-requested sync event: set `dirty` if given, then run the hook. hastd runs
    /// `syncstart`, `syncdone` and `syncintr` from the primary's sync thread only
    /// (sbin/hastd/primary.c; secondary.c sends none of them), so they are refused elsewhere.
    fn sync_event(&self, name: &str, event: &str, dirty: Option<u64>) -> Result<(), (i32, String)> {
        self.known(name)?;
        {
            let mut state = self.lock();
            if state.role != Role::Primary || state.worker.is_none() {
                return Err((
                    EHAST_INVALID,
                    format!(
                        "{event} runs on the primary only, and this host is {}",
                        state.role
                    ),
                ));
            }
            if let Some(dirty) = dirty {
                state.dirty = dirty;
            }
        }
        log("INFO", &format!("[{name}] {event} (requested)."));
        self.hook(&[event, name]);
        Ok(())
    }

    /// `split-brain`: the hook on either side (secondary.c sends it before its worker exits
    /// with `EX_CONFIG`; primary.c when the secondary refuses it with "Split-brain
    /// condition!"). Only the hook is run: the stand-in keeps its workers and connection as
    /// they were, where hastd's secondary worker would be gone and every reconnect refused
    /// until the recovery (`role init`, `create`, `role secondary`). No scenario relies on
    /// what follows a split-brain; one that does needs that modelled first.
    fn split_brain(&self, name: &str) -> Result<(), (i32, String)> {
        self.known(name)?;
        log(
            "ERROR",
            &format!("[{name}] Split-brain detected (requested)."),
        );
        self.hook(&["split-brain", name]);
        Ok(())
    }

    /// `disk-error`: the worker fails as on a local I/O error; [`Daemon::check_worker`] sees
    /// it exit.
    fn disk_error(&self, name: &str) -> Result<(), (i32, String)> {
        self.known(name)?;
        let mut state = self.lock();
        let worker = state
            .worker
            .as_mut()
            .ok_or((EHAST_INVALID, "no worker runs".to_owned()))?;
        worker.fail().map_err(|why| (EHAST_INVALID, why))
    }

    fn known(&self, name: &str) -> Result<(), (i32, String)> {
        if name == self.config.resource {
            Ok(())
        } else {
            Err((EHAST_NOENTRY, format!("no resource {name:?}")))
        }
    }

    /// hastd.c `child_exit()`: a primary's worker killed by a signal or exiting with
    /// `EX_TEMPFAIL` is restarted after a second; any other exit puts the role back to init,
    /// and no hook runs (not even `disconnect`: only a worker sends that). A secondary's worker
    /// that exits is simply gone.
    fn check_worker(&self) {
        let mut state = self.lock();
        let Some(status) = state.worker.as_mut().and_then(Worker::exited) else {
            return;
        };
        let resource = self.config.resource.as_str();
        let role = state.role;
        state.worker = None;
        log(
            "ERROR",
            &format!("[{resource}] ({role}) Worker process exited ungracefully ({status})."),
        );
        if role != Role::Primary {
            self.reconcile(&mut state);
            return;
        }
        let temporary = status.signal().is_some() || status.code() == Some(EX_TEMPFAIL);
        if temporary {
            drop(state);
            std::thread::sleep(Duration::from_secs(1));
            log(
                "INFO",
                &format!("[{resource}] ({role}) Restarting worker process."),
            );
            let mut state = self.lock();
            self.reconcile(&mut state);
            return;
        }
        // The parent only notes the exit: the worker that would have said `disconnect` is gone.
        state.role = Role::Init;
        state.connected = false;
        if let Err(message) = remove_provider(&self.config) {
            log("WARNING", &format!("[{resource}] {message}"));
        }
        if let Err(message) = write_role(&self.config, Role::Init) {
            log("WARNING", &format!("[{resource}] {message}"));
        }
        log(
            "INFO",
            &format!("[{resource}] ({role}) Changing resource role back to init."),
        );
        self.reconcile(&mut state);
    }
}

/// Reply values stay on their line.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Follow the peer's liveness: block on its lock while it lives, poll while it is dead.
fn watch_peer_lock(daemon: &Daemon) {
    let path = daemon.config.alive_path(&daemon.config.peer);
    let result = (|| -> Result<(), String> {
        loop {
            let alive = probe_alive(&path)?;
            daemon.observe_liveness(alive);
            if alive {
                wait_dead(&path)?;
            } else {
                std::thread::sleep(POLL);
            }
        }
    })();
    if let Err(message) = result {
        log(
            "ERROR",
            &format!("watching the peer's liveness: {message}; exiting."),
        );
        std::process::exit(1);
    }
}

/// Follow the role the peer publishes.
fn watch_peer_role(daemon: &Daemon) {
    let path = daemon.config.role_path(&daemon.config.peer);
    loop {
        match read_role(&path) {
            Ok(role) => daemon.observe_role(role),
            Err(message) => log("WARNING", &message),
        }
        daemon.check_worker();
        std::thread::sleep(POLL);
    }
}

/// Serve control connections one at a time, as hastd does.
fn serve(daemon: &Daemon, listener: &UnixListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(daemon, stream) {
                    log("WARNING", &format!("control connection: {e}"));
                }
            }
            Err(e) => log(
                "ERROR",
                &format!("Unable to accept control connection: {e}"),
            ),
        }
    }
}

fn answer(daemon: &Daemon, stream: UnixStream) -> std::io::Result<()> {
    let timeout = Some(Duration::from_secs(5));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut line = String::new();
    BufReader::new(&stream).take(4096).read_line(&mut line)?;
    let reply = daemon.handle(line.trim_end_matches(['\n', '\r']));
    (&stream).write_all(reply.as_bytes())
}
