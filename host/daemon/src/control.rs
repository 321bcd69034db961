//! The control socket: how `havenctl` and the hooks talk to `havend`.
//!
//! A unix stream socket, `havend.sock`, in a root-only directory (default
//! [`DEFAULT_DIR`]; the directory mode 0700, the socket 0600). Each connection carries exactly
//! one exchange: the client writes one [`Request`] as a JSON line, the server answers with one
//! [`Response`] as a JSON line and closes. Blocking I/O only (`std::os::unix::net`).
//!
//! ```text
//! → {"command":"hast-hook","args":["role","data","secondary","primary"]}
//! ← {"result":"ok","body":{...}}
//! → {"command":"reload"}            (from uid 1000)
//! ← {"result":"error","message":"only root may reload havend's configuration (peer uid 1000, pid 4242)"}
//! ```
//!
//! Guarding the server against its clients:
//!
//! - **Peer credentials** are read from the kernel (`SO_PEERCRED` on Linux, `getpeereid` on
//!   the BSDs) right after `accept`, and [`authorize`] lets only root make a request that
//!   [changes state](Request::changes_state); `status` and `log-tail` are open to any peer that
//!   can reach the socket (the directory keeps everyone else out anyway).
//! - **A request line is bounded** ([`Limits::max_request_bytes`], 64 KiB by default) and the
//!   request and the answer each have a deadline ([`Limits::timeout`]): a client that connects
//!   and sends nothing, trickles bytes, or does not read its answer holds its connection for
//!   at most that long. The daemon serves each connection on a thread of its own (a bounded
//!   number of them), so such a client never delays a hook.
//! - **Malformed requests are answered**, never panicked on: the client gets
//!   `{"result":"error","message":...}` naming the problem, and [`ControlSocket::stats`]
//!   counts it.
//!
//! The hooks (`havenctl hast-hook`, `havenctl hook ucarp`) send their raw arguments
//! ([`Request::HastHook`], [`Request::UcarpHook`]); the daemon parses them with
//! `haven_sources` (ucarp needs the config's vhid map) and queues the event, so two hooks
//! running at once are ordered by the daemon, by arrival.

use haven_core::Event;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the control socket's directory is by default.
pub const DEFAULT_DIR: &str = "/var/run/haven";

/// The socket's file name inside its directory.
pub const SOCKET_NAME: &str = "havend.sock";

/// The default bound on one request line, newline included.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The default deadline for one exchange on the server side.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The most bytes of a response a client reads (log tails can be long, but not this long).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------- protocol

/// What a client asks of the daemon: one JSON line, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The daemon's state, for `havenctl status`.
    Status,
    /// hastd's `exec` hook arguments, raw (argv after the program name).
    HastHook { args: Vec<String> },
    /// ucarp's up/down script arguments, raw: `up|down <iface> <vip> [xparam]`.
    UcarpHook { args: Vec<String> },
    /// An event, as is (for scripts and tests).
    Notify { event: Event },
    /// The journal's last `lines` lines.
    LogTail { lines: u32 },
    /// Re-read the configuration and policies.
    Reload,
    /// An operator's request for the policies (`havenctl switchover`, `maintenance`,
    /// `promote --accept-incomplete`).
    Operator { ask: haven_core::OperatorAsk },
}

impl Request {
    /// The command's name as it is on the wire.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::HastHook { .. } => "hast-hook",
            Request::UcarpHook { .. } => "ucarp-hook",
            Request::Notify { .. } => "notify",
            Request::LogTail { .. } => "log-tail",
            Request::Reload => "reload",
            Request::Operator { .. } => "operator",
        }
    }

    /// Whether the request can change anything (everything but `status` and `log-tail`):
    /// only root may make those.
    pub fn changes_state(&self) -> bool {
        !matches!(self, Request::Status | Request::LogTail { .. })
    }

    /// What the request does, for "only root may ...".
    fn what(&self) -> &'static str {
        match self {
            Request::Status => "read havend's status",
            Request::HastHook { .. } => "report a hastd hook event",
            Request::UcarpHook { .. } => "report a ucarp hook event",
            Request::Notify { .. } => "send events to havend",
            Request::LogTail { .. } => "read havend's journal",
            Request::Reload => "reload havend's configuration",
            Request::Operator { .. } => "operate the pair (switchover, maintenance, promote)",
        }
    }
}

/// The daemon's answer: one JSON line, tagged by `result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    /// Done; `body` is command-specific (`null` when there is nothing to say).
    Ok { body: serde_json::Value },
    /// Refused or failed; `message` says why, for a human.
    Error { message: String },
}

impl Response {
    /// `ok` with a body.
    pub fn ok(body: serde_json::Value) -> Response {
        Response::Ok { body }
    }

    /// `error` with a message.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
        }
    }
}

/// The process at the other end of a connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id, where the platform reports it (Linux does; `getpeereid` does not).
    pub pid: Option<i32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer uid {}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, ", pid {pid}")?;
        }
        Ok(())
    }
}

/// May `peer` make `request`? `Err` holds the message to answer with.
pub fn authorize(peer: &Peer, request: &Request) -> Result<(), String> {
    if request.changes_state() && peer.uid != 0 {
        return Err(format!("only root may {} ({peer})", request.what()));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------ errors

/// What can go wrong with the control socket, on either side; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket's directory is not safe to use.
    #[error("control socket directory {}: {problem}", path.display())]
    UnsafeDir { path: PathBuf, problem: String },
    /// Something other than a socket is where the socket should be.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    /// Another daemon answers on the socket.
    #[error("{} is in use: another havend is listening on it", path.display())]
    InUse { path: PathBuf },
    /// A file system or socket operation failed.
    #[error("control socket: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The client could not reach the daemon.
    #[error("is havend running? cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon did not answer in time.
    #[error("havend did not answer on {} within {timeout:?}", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    /// The daemon's answer is not a response.
    #[error("havend's answer on {} is not a valid response: {problem}", path.display())]
    BadResponse { path: PathBuf, problem: String },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

// ------------------------------------------------------------------------------------ server

/// The server's bounds on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line accepted, newline included.
    pub max_request_bytes: usize,
    /// How long one exchange (reading the request, writing the answer) may take.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Counts of what became of connections, since the socket was bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlStats {
    /// Requests handed to the handler.
    pub handled: u64,
    /// State changes refused to a non-root peer.
    pub unauthorized: u64,
    /// Request lines that were not a request (bad JSON, unknown command, too long, empty).
    pub malformed: u64,
    /// Clients that did not send a full line before the deadline.
    pub timed_out: u64,
    /// Connections lost to I/O errors (including failing to read peer credentials).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    unauthorized: AtomicU64,
    malformed: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
}

/// What became of one connection, for the daemon's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler answered (`ok` or `error`, its choice).
    Handled { command: &'static str },
    /// A state change from a non-root peer was refused.
    Unauthorized { command: &'static str },
    /// The line was not a request; it was answered with an error naming `problem`.
    Malformed { problem: String },
    /// No full line before the deadline; the connection was closed without an answer.
    TimedOut,
    /// An I/O error; `problem` says which.
    Failed { problem: String },
}

/// One served connection: who it was (if the kernel said) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub peer: Option<Peer>,
    pub outcome: Outcome,
}

/// The daemon's end: a bound, listening control socket. The socket file is removed on drop.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    limits: Limits,
    counters: Counters,
    /// The socket file's (device, inode), so that drop removes only our own.
    inode: (u64, u64),
}

impl ControlSocket {
    /// Bind `dir/havend.sock` with the default [`Limits`].
    ///
    /// `dir` is created with mode 0700 if missing (its parent must exist). An existing `dir`
    /// must be a directory (not a symbolic link), owned by the effective uid, with no group or
    /// other permissions. A leftover socket file from a previous run is removed, unless a
    /// daemon still answers on it; anything else at that path is refused. The socket is made
    /// mode 0600.
    pub fn bind(dir: &Path) -> Result<ControlSocket, ControlError> {
        ControlSocket::bind_with(dir, Limits::default())
    }

    /// [`ControlSocket::bind`] with explicit limits.
    pub fn bind_with(dir: &Path, limits: Limits) -> Result<ControlSocket, ControlError> {
        prepare_dir(dir)?;
        let path = dir.join(SOCKET_NAME);
        remove_stale_socket(&path)?;
        let listener = UnixListener::bind(&path).map_err(io_error("bind", &path))?;
        // Close the window before anyone but us could be let in: the directory is 0700 already.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(io_error("set the mode of", &path))?;
        let meta = fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?;
        Ok(ControlSocket {
            listener,
            path,
            limits,
            counters: Counters::default(),
            inode: (meta.dev(), meta.ino()),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What became of connections so far.
    pub fn stats(&self) -> ControlStats {
        let c = &self.counters;
        ControlStats {
            handled: c.handled.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Wait for one connection, read its request, check it is allowed, and answer it with
    /// `handler`'s response (the handler sees only well-formed, authorized requests).
    ///
    /// Blocks until a client connects, then for at most [`Limits::timeout`]. Problems with
    /// the connection are reported in the [`Served`] and counted, not returned: only a failure
    /// of `accept` itself is an error.
    pub fn accept_one(
        &self,
        handler: impl FnOnce(&Peer, Request) -> Response,
    ) -> Result<Served, ControlError> {
        let stream = self.accept()?;
        Ok(self.serve_connection(stream, handler))
    }

    /// Wait for one connection (for a server that serves each on a thread of its own).
    pub fn accept(&self) -> Result<UnixStream, ControlError> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(io_error("accept a connection on", &self.path))?;
        Ok(stream)
    }

    /// Turn a connection away at once, saying why (the server has too many in hand).
    pub fn refuse_busy(&self, mut stream: UnixStream, in_hand: usize) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        let problem = format!("havend is busy: {in_hand} control connections in hand; try again");
        tracing::warn!(in_hand, "control connection turned away");
        let deadline = Instant::now() + Duration::from_millis(100);
        let _ = write_response(&mut stream, &Response::error(problem), deadline);
    }

    /// Read a connection's request, check it is allowed, and answer it with `handler`'s
    /// response; counted and logged like [`ControlSocket::accept_one`].
    pub fn serve_connection(
        &self,
        stream: UnixStream,
        handler: impl FnOnce(&Peer, Request) -> Response,
    ) -> Served {
        let served = self.serve(stream, handler);
        let counter = match &served.outcome {
            Outcome::Handled { .. } => &self.counters.handled,
            Outcome::Unauthorized { .. } => &self.counters.unauthorized,
            Outcome::Malformed { .. } => &self.counters.malformed,
            Outcome::TimedOut => &self.counters.timed_out,
            Outcome::Failed { .. } => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match &served.outcome {
            Outcome::Handled { .. } => {
                tracing::debug!(peer = ?served.peer, outcome = ?served.outcome, "control request")
            }
            _ => tracing::warn!(peer = ?served.peer, outcome = ?served.outcome, "control request"),
        }
        served
    }

    fn serve(
        &self,
        mut stream: UnixStream,
        handler: impl FnOnce(&Peer, Request) -> Response,
    ) -> Served {
        let deadline = Instant::now() + self.limits.timeout;
        let peer = match peer_credentials(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                let problem = format!("cannot read the peer's credentials: {e}");
                // Best effort: the client deserves to know why.
                let _ = write_response(&mut stream, &Response::error(&problem), deadline);
                return Served {
                    peer: None,
                    outcome: Outcome::Failed { problem },
                };
            }
        };
        let served = |outcome| Served {
            peer: Some(peer),
            outcome,
        };
        let line = match read_line(&mut stream, self.limits.max_request_bytes, deadline) {
            Ok(line) => line,
            Err(ReadLineError::TimedOut) => return served(Outcome::TimedOut),
            Err(ReadLineError::Io(e)) => {
                return served(Outcome::Failed {
                    problem: format!("cannot read the request: {e}"),
                });
            }
            Err(ReadLineError::TooLong) => {
                let problem = format!(
                    "request line longer than {} bytes",
                    self.limits.max_request_bytes
                );
                return self.malformed(&mut stream, deadline, peer, problem);
            }
        };
        let request = match parse_request(&line) {
            Ok(request) => request,
            Err(problem) => {
                return self.malformed(&mut stream, deadline, peer, problem);
            }
        };
        let command = request.command();
        if let Err(message) = authorize(&peer, &request) {
            let response = Response::error(message);
            return self.reply(&mut stream, deadline, peer, &response, || {
                Outcome::Unauthorized { command }
            });
        }
        let response = handler(&peer, request);
        // The handler may take its time (a reload compiles); the answer gets its own deadline.
        let deadline = Instant::now() + self.limits.timeout;
        self.reply(&mut stream, deadline, peer, &response, || {
            Outcome::Handled { command }
        })
    }

    /// Answer a malformed request with its problem.
    fn malformed(
        &self,
        stream: &mut UnixStream,
        deadline: Instant,
        peer: Peer,
        problem: String,
    ) -> Served {
        let response = Response::error(format!("malformed request: {problem}"));
        self.reply(stream, deadline, peer, &response, || Outcome::Malformed {
            problem,
        })
    }

    fn reply(
        &self,
        stream: &mut UnixStream,
        deadline: Instant,
        peer: Peer,
        response: &Response,
        outcome: impl FnOnce() -> Outcome,
    ) -> Served {
        let outcome = match write_response(stream, response, deadline) {
            Ok(()) => outcome(),
            Err(e) => Outcome::Failed {
                problem: format!("cannot write the response: {e}"),
            },
        };
        Served {
            peer: Some(peer),
            outcome,
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Only our own socket: if the file was replaced since, leave it alone.
        if let Ok(now) = fs::symlink_metadata(&self.path)
            && now.file_type().is_socket()
            && (now.dev(), now.ino()) == self.inode
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Parse one request line (without its newline) into a request, or say what is wrong.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("empty request line".to_owned());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn prepare_dir(dir: &Path) -> Result<(), ControlError> {
    let unsafe_dir = |problem: String| ControlError::UnsafeDir {
        path: dir.to_owned(),
        problem,
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create the directory", dir))?;
            fs::symlink_metadata(dir).map_err(io_error("inspect", dir))?
        }
        Err(e) => return Err(io_error("inspect", dir)(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("is a symbolic link".to_owned()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".to_owned()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not by uid {euid} (this process)",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "has mode {mode:04o}: group and others must have no access (chmod 0700)"
        )));
    }
    Ok(())
}

fn remove_stale_socket(path: &Path) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket {
            path: path.to_owned(),
        });
    }
    match connect(path, Duration::from_secs(1)) {
        Ok(_) => {
            return Err(ControlError::InUse {
                path: path.to_owned(),
            });
        }
        // Refused: nobody listens; it is a leftover. Anything else (a timeout: a listener too
        // busy to take the connection) is not proof that nobody is there.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => return Err(io_error("check whether a daemon listens on", path)(e)),
    }
    fs::remove_file(path).map_err(io_error("remove the stale socket", path))
}

// -------------------------------------------------------------------------- peer credentials

/// The credentials of the process at the other end of `stream`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_credentials(stream: &UnixStream) -> io::Result<Peer> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let creds = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok(Peer {
        uid: creds.uid(),
        gid: creds.gid(),
        pid: Some(creds.pid()),
    })
}

/// The credentials of the process at the other end of `stream`.
#[cfg(any(
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_vendor = "apple"
))]
pub fn peer_credentials(stream: &UnixStream) -> io::Result<Peer> {
    let (uid, gid) = nix::unistd::getpeereid(stream).map_err(io::Error::from)?;
    Ok(Peer {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        pid: None,
    })
}

/// The credentials of the process at the other end of `stream`.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_vendor = "apple"
)))]
pub fn peer_credentials(_stream: &UnixStream) -> io::Result<Peer> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "peer credentials are not supported on this platform",
    ))
}

// ---------------------------------------------------------------------------------- line I/O

#[derive(Debug)]
enum ReadLineError {
    TimedOut,
    TooLong,
    Io(io::Error),
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Read up to the first newline (returned without it) or end of stream, within `limit` bytes
/// (newline included) and before `deadline`. Bytes after the newline are ignored.
fn read_line(
    stream: &mut UnixStream,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ReadLineError> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = remaining(deadline).ok_or(ReadLineError::TimedOut)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(ReadLineError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(ReadLineError::TimedOut),
            Err(e) => return Err(ReadLineError::Io(e)),
        };
        if n == 0 {
            return Ok(line);
        }
        let got = &chunk[..n];
        if let Some(end) = got.iter().position(|&b| b == b'\n') {
            if line.len() + end + 1 > limit {
                return Err(ReadLineError::TooLong);
            }
            line.extend_from_slice(&got[..end]);
            return Ok(line);
        }
        line.extend_from_slice(got);
        if line.len() >= limit {
            // Even a newline next would make it limit + 1 bytes.
            return Err(ReadLineError::TooLong);
        }
    }
}

/// Write `value` as one JSON line before `deadline`.
fn write_line(
    stream: &mut UnixStream,
    value: &impl Serialize,
    deadline: Instant,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let left = remaining(deadline).ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_response(
    stream: &mut UnixStream,
    response: &Response,
    deadline: Instant,
) -> io::Result<()> {
    write_line(stream, response, deadline)
}

// ------------------------------------------------------------------------------------ client

/// The socket path for `dir_or_socket`: a directory means its `havend.sock`.
pub fn socket_path(dir_or_socket: &Path) -> PathBuf {
    if dir_or_socket.is_dir() {
        dir_or_socket.join(SOCKET_NAME)
    } else {
        dir_or_socket.to_owned()
    }
}

/// Connect with a bound on the wait (a daemon whose backlog is full makes a plain `connect`
/// block on Linux).
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use rustix::net::{
        AddressFamily, SocketAddrUnix, SocketFlags, SocketType, sockopt::Timeout,
        sockopt::set_socket_timeout,
    };
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    set_socket_timeout(&fd, Timeout::Send, Some(timeout))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => {}
        // EAGAIN from a connect that hit SO_SNDTIMEO.
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INPROGRESS => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(UnixStream::from(fd))
}

/// Send one request to the daemon at `dir_or_socket` (its directory, or the socket itself)
/// and wait for its answer, all within `timeout`.
pub fn send(
    dir_or_socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let path = socket_path(dir_or_socket);
    let deadline = Instant::now() + timeout;
    let timed_out = || ControlError::Timeout {
        path: path.clone(),
        timeout,
    };
    let mut stream = connect(&path, timeout).map_err(|source| ControlError::Connect {
        path: path.clone(),
        source,
    })?;
    match write_line(&mut stream, request, deadline) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out()),
        // The daemon hung up before reading everything: it may have answered anyway (it
        // answers an oversize request, or a peer it cannot identify, without reading on).
        Err(e) if is_hang_up(&e) => {}
        Err(e) => return Err(io_error("send the request to", &path)(e)),
    }
    // Tell the server the request is complete; it answers either way.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let line = match read_line(&mut stream, MAX_RESPONSE_BYTES, deadline) {
        Ok(line) => line,
        Err(ReadLineError::TimedOut) => return Err(timed_out()),
        Err(ReadLineError::Io(e)) if is_hang_up(&e) => Vec::new(),
        Err(ReadLineError::Io(e)) => return Err(io_error("read the answer from", &path)(e)),
        Err(ReadLineError::TooLong) => {
            return Err(ControlError::BadResponse {
                path,
                problem: format!("longer than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
    };
    if line.is_empty() {
        return Err(ControlError::BadResponse {
            path,
            problem: "the connection closed without an answer".to_owned(),
        });
    }
    serde_json::from_slice(&line).map_err(|e| ControlError::BadResponse {
        path,
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
