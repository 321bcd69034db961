//! MariaDB in the rig: each host's configuration, and the client side of the scenarios.
//!
//! The server is Debian's `mariadb-server`, started and stopped only by Haven through
//! `service mariadb start|stop` (Debian's SysV script). Each host sees its own `/etc/mysql`
//! (a bind mount in its mount namespace), which puts the datadir on the shared disk and binds
//! the server to the shared address, so the database answers only where CARP's address is.
//!
//! The client runs on the rig's client machine: [`Writer`] inserts rows with autocommit, one
//! `mariadb` call each, and keeps the ids whose insert was acknowledged; [`answers`] asks the
//! server for its greeting over TCP, which is how the scenarios tell that the database serves.

use crate::RigError;
use crate::ns::Machine;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The server's port on the shared address.
pub const PORT: u16 = 3306;
/// The scenarios' database, table and user.
const DATABASE: &str = "haven";
const USER: &str = "haven";
const PASSWORD: &str = "haven-e2e";
/// The longest one client call may take before the writer gives up on it (its row then
/// counts as not acknowledged).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Write a host's `/etc/mysql` into `dir`: `my.cnf` (datadir on the shared disk at
/// `datadir`, bound to `address`), `debian.cnf` (what Debian's init script pings and stops
/// the server with) and `debian-start` (Debian's post-start table check, a no-op here: the
/// rig's datadir is fresh, and the check would only add seconds to every failover).
pub fn write_config(dir: &Path, datadir: &str, address: &str) -> Result<(), RigError> {
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .map_err(|error| RigError::new(format!("cannot write {name}: {error}")))
    };
    std::fs::create_dir_all(dir)
        .map_err(|error| RigError::new(format!("cannot create {}: {error}", dir.display())))?;
    write(
        "my.cnf",
        format!(
            "[mysqld]\n\
             user = mysql\n\
             datadir = {datadir}\n\
             socket = /run/mysqld/mysqld.sock\n\
             pid-file = /run/mysqld/mysqld.pid\n\
             log-error = /run/mysqld/error.log\n\
             bind-address = {address}\n\
             port = {PORT}\n\
             skip-name-resolve\n\
             performance_schema = OFF\n\
             innodb_buffer_pool_size = 32M\n\
             innodb_log_file_size = 16M\n\
             innodb_flush_log_at_trx_commit = 1\n\
             \n\
             [client]\n\
             socket = /run/mysqld/mysqld.sock\n"
        ),
    )?;
    write(
        "debian.cnf",
        "[client]\nhost = localhost\nuser = root\nsocket = /run/mysqld/mysqld.sock\n".to_owned(),
    )?;
    write("debian-start", "#!/bin/sh\nexit 0\n".to_owned())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("debian-start"),
        std::fs::Permissions::from_mode(0o755),
    )
    .map_err(|error| RigError::new(format!("cannot make debian-start executable: {error}")))
}

/// Create the scenarios' database, table and user, through the server's socket on `host`
/// (root by unix socket authentication). Idempotent.
pub fn create_schema(host: &Machine) -> Result<(), RigError> {
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS {DATABASE};\
         CREATE TABLE IF NOT EXISTS {DATABASE}.acked (id BIGINT PRIMARY KEY) ENGINE=InnoDB;\
         CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\
         GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';"
    );
    host.run(
        "mariadb",
        &[
            "--no-defaults",
            "--user=root",
            "--socket=/run/mysqld/mysqld.sock",
            "-e",
            &sql,
        ],
    )
    .map(drop)
}

/// `mariadb … -e <sql>` on the machine whose process 1 is `pid` (the client), to the server
/// on `address`, as the scenarios' user.
fn client(pid: i32, address: &str, sql: &str) -> Command {
    let mut command = Machine::net_command_of(pid, "mariadb");
    command.args([
        "--no-defaults",
        &format!("--host={address}"),
        &format!("--port={PORT}"),
        &format!("--user={USER}"),
        &format!("--password={PASSWORD}"),
        "--connect-timeout=1",
        "--batch",
        "--skip-column-names",
        DATABASE,
        "-e",
        sql,
    ]);
    command
}

/// Run `sql` on the server at `address` from the client machine: its output, or why not.
pub fn query(machine: &Machine, address: &str, sql: &str) -> Result<String, RigError> {
    run_bounded(client(machine.pid(), address, sql), CALL_TIMEOUT)
}

/// Run `command`, killing it after `timeout`; its stdout if it exits 0.
fn run_bounded(mut command: Command, timeout: Duration) -> Result<String, RigError> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| RigError::new(format!("cannot run the client: {error}")))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RigError::new(format!(
                    "the client did not finish within {timeout:?}"
                )));
            }
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| RigError::new(format!("cannot read the client's output: {error}")))?;
    crate::stdout_of("client", output)
}

/// Whether a MariaDB server greets a TCP connection on `address` within `timeout`. Runs on a
/// thread that entered the client machine's network namespace (see [`Prober`]).
fn greets(address: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    // The server speaks first: a packet header (4 bytes), then protocol version 10 (its
    // greeting), or 0xff (an error packet: before the scenarios' user exists, no account
    // matches the client's address). Either is mariadbd answering on the address.
    let mut first = [0u8; 5];
    stream.read_exact(&mut first).is_ok() && (first[4] == 10 || first[4] == 0xff)
}

/// Move the calling thread (only it: setns with CLONE_NEWNET is per thread) into the network
/// namespace `netns`.
#[cfg(target_os = "linux")]
fn enter_network(netns: &std::fs::File) -> Result<(), String> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|error| error.to_string())
}

#[cfg(not(target_os = "linux"))]
fn enter_network(_: &std::fs::File) -> Result<(), String> {
    Err("network namespaces are Linux's".to_owned())
}

/// Asks the database for its greeting from inside the client machine's network, fast (a
/// connection attempt every few milliseconds), to time when service comes back.
#[derive(Debug)]
pub struct Prober {
    requests: std::sync::mpsc::Sender<(Duration, std::sync::mpsc::Sender<bool>)>,
}

impl Prober {
    /// A prober thread in `machine`'s network namespace, asking `address`.
    pub fn new(machine: &Machine, address: &str) -> Result<Prober, RigError> {
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", machine.pid()))
            .map_err(|error| RigError::new(format!("cannot open the client's netns: {error}")))?;
        let target: SocketAddr = format!("{address}:{PORT}")
            .parse()
            .map_err(|error| RigError::new(format!("bad address {address}: {error}")))?;
        let (requests, incoming) =
            std::sync::mpsc::channel::<(Duration, std::sync::mpsc::Sender<bool>)>();
        let (ready, entered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = ready.send(enter_network(&netns));
            for (timeout, reply) in incoming {
                let _ = reply.send(greets(target, timeout));
            }
        });
        entered
            .recv()
            .map_err(|_| RigError::new("the prober thread died"))?
            .map_err(|error| RigError::new(format!("cannot enter the client's netns: {error}")))?;
        Ok(Prober { requests })
    }

    /// Whether the database greets within `timeout`.
    pub fn answers(&self, timeout: Duration) -> bool {
        let (reply, answer) = std::sync::mpsc::channel();
        self.requests.send((timeout, reply)).is_ok() && answer.recv().unwrap_or(false)
    }

    /// Wait until the database answers, trying every few ms, for at most `timeout`; whether
    /// it did.
    pub fn wait_answering(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.answers(Duration::from_millis(100)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

/// Inserts rows 1, 2, 3… through the shared address with autocommit, one client call each,
/// until stopped; keeps the ids the server acknowledged.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    /// Start writing from `machine` to `address`.
    pub fn start(machine: &Machine, address: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let pid = machine.pid();
        let address = address.to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let insert = format!("INSERT INTO acked (id) VALUES ({id})");
                    if run_bounded(client(pid, &address, &insert), CALL_TIMEOUT).is_ok() {
                        acked
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(id);
                    }
                }
                id
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// How many rows were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stop, and return the acknowledged ids and how many inserts were tried.
    pub fn finish(mut self) -> (Vec<u64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let tried = self
            .thread
            .take()
            .map(|thread| thread.join().unwrap_or(0))
            .unwrap_or(0);
        let acked = std::mem::take(&mut *self.acked.lock().unwrap_or_else(PoisonError::into_inner));
        (acked, tried)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which of the `acked` ids the table lacks, read from the client machine.
pub fn missing(machine: &Machine, address: &str, acked: &[u64]) -> Result<Vec<u64>, RigError> {
    let stored = stored_ids(machine, address)?;
    Ok(acked
        .iter()
        .filter(|id| stored.binary_search(id).is_err())
        .copied()
        .collect())
}

/// The ids in the table (sorted), read from the client machine.
pub fn stored_ids(machine: &Machine, address: &str) -> Result<Vec<u64>, RigError> {
    let text = query(machine, address, "SELECT id FROM acked ORDER BY id")?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect())
}
