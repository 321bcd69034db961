//! The devd client: reads devd's seqpacket socket on a thread of its own.
//!
//! devd serves `/var/run/devd.seqpacket.pipe` (`AF_UNIX`, `SOCK_SEQPACKET`, one event per
//! packet, each a line ending in `\n`) and drops clients that do not read fast enough. So this
//! client does nothing but read: a dedicated std thread connects, receives packets into a
//! 64 KiB buffer, splits them into lines, parses each with
//! [`haven_sources::devd_line_to_event`] and hands the outcome to a sink (in the daemon, the
//! sending half of a channel its event loop reads). Nothing here depends on tokio.
//!
//! - **Malformed lines are reported, not fatal**: [`DevdMessage::BadInput`] carries the text and
//!   the parser's reason, and reading goes on.
//! - **The socket going away is expected** (devd restarts, or drops us): the client reports
//!   [`DevdMessage::Disconnected`] and reconnects with a backoff that doubles from
//!   [`DevdOptions::min_backoff`] to [`DevdOptions::max_backoff`] on consecutive failures and
//!   resets after a successful connection.
//! - **Missed events are never silent**: [`DevdMessage::Connected`] says `reconnect: true`
//!   whenever events may have been missed since the client was spawned (an earlier connection
//!   ended, or an earlier attempt failed), and the daemon must then re-read the machine's
//!   current state (CARP via `ifconfig`, HAST via `hastctl`).
//! - **Stopping is prompt and bounded**: the socket has a 100 ms receive timeout and backoff
//!   waits are interruptible, so [`DevdClient::stop`] (or dropping the client) ends the thread
//!   within about 100 ms; it waits at most [`STOP_TIMEOUT`] for it and then gives up on it
//!   (only possible if the sink itself blocks).

use crate::sources::source_thread::{Backoff, SourceThread};
use haven_core::Event;
use haven_sources::devd_line_to_event;
use rustix::io::Errno;
use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{
    AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType, connect, recv, socket_with,
};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// The `source` Haven records for events read from devd.
pub const SOURCE: &str = "devd";

/// devd's seqpacket socket on FreeBSD.
pub const DEFAULT_PATH: &str = "/var/run/devd.seqpacket.pipe";

/// The receive buffer: far more than any devd line (devd's own lines are at most a few KiB).
pub const RECV_BUFFER: usize = 64 * 1024;

/// How often the reading thread looks for a stop request while the socket is idle.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long `connect` may block (Linux blocks on a full listen backlog; FreeBSD refuses).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub use crate::sources::source_thread::STOP_TIMEOUT;

/// Reconnection backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevdOptions {
    /// The first wait after a failure or a disconnection (at least 1 ms is used).
    pub min_backoff: Duration,
    /// The longest wait; the wait doubles from `min_backoff` up to this (at least
    /// `min_backoff` is used).
    pub max_backoff: Duration,
}

impl Default for DevdOptions {
    fn default() -> Self {
        DevdOptions {
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What the client tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevdMessage {
    /// A line parsed into an event (`carp-changed`, `carp-link` or `devd`).
    Event(Event),
    /// A line that could not be parsed; the client keeps reading.
    BadInput {
        /// The line, without its `\n` (invalid UTF-8 replaced by U+FFFD).
        text: String,
        /// Why it was refused.
        reason: String,
    },
    /// Connected to devd. `reconnect: true` means events may have been missed since the client
    /// was spawned (an earlier connection ended or an earlier attempt failed): re-read the
    /// machine's state. `false` only for a first attempt that succeeded.
    Connected { reconnect: bool },
    /// An established connection ended (devd closed it, or reading failed).
    Disconnected { reason: String },
}

/// A snapshot of the client's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DevdStats {
    /// Successful connections.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Established connections that ended.
    pub disconnects: u64,
    /// Lines passed on as events.
    pub events: u64,
    /// Lines passed on as [`DevdMessage::BadInput`].
    pub bad_lines: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    events: AtomicU64,
    bad_lines: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DevdStats {
        DevdStats {
            connects: self.connects.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bad_lines: self.bad_lines.load(Ordering::Relaxed),
        }
    }
}

/// A running devd client. Dropping it stops it, like [`DevdClient::stop`].
#[derive(Debug)]
pub struct DevdClient {
    counters: Arc<Counters>,
    thread: SourceThread,
}

impl DevdClient {
    /// Start reading `path` on a new thread, handing every message to `sink`.
    pub fn spawn(
        path: PathBuf,
        options: DevdOptions,
        sink: impl FnMut(DevdMessage) + Send + 'static,
    ) -> DevdClient {
        let counters = Arc::new(Counters::default());
        let worker_counters = Arc::clone(&counters);
        let thread = SourceThread::spawn("devd-client", move |stop| {
            Worker {
                path,
                backoff: Backoff::new(options.min_backoff, options.max_backoff),
                counters: worker_counters,
                stop,
                sink,
            }
            .run()
        });
        DevdClient { counters, thread }
    }

    /// The counters so far.
    pub fn stats(&self) -> DevdStats {
        self.counters.snapshot()
    }

    /// Stop the thread and join it, waiting at most [`STOP_TIMEOUT`].
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

struct Worker<F> {
    path: PathBuf,
    backoff: Backoff,
    counters: Arc<Counters>,
    stop: Receiver<()>,
    sink: F,
}

/// How a connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

impl<F: FnMut(DevdMessage)> Worker<F> {
    fn run(mut self) {
        let span = tracing::info_span!("devd_client", source = SOURCE, path = %self.path.display());
        let _entered = span.enter();
        tracing::debug!("devd client started");
        // Whether events may have been missed since we were spawned.
        let mut missed = false;
        let mut failures_in_a_row = 0u64;
        loop {
            if self.stop_requested() {
                break;
            }
            match connect_seqpacket(&self.path) {
                Ok(fd) => {
                    Counters::bump(&self.counters.connects);
                    self.backoff.reset();
                    failures_in_a_row = 0;
                    tracing::info!(reconnect = missed, "connected to devd");
                    (self.sink)(DevdMessage::Connected { reconnect: missed });
                    missed = true;
                    match self.read(&fd) {
                        Ended::Stopped => break,
                        Ended::Lost(reason) => {
                            Counters::bump(&self.counters.disconnects);
                            tracing::warn!(%reason, "lost the devd connection");
                            (self.sink)(DevdMessage::Disconnected { reason });
                        }
                    }
                }
                Err(error) => {
                    Counters::bump(&self.counters.connect_failures);
                    missed = true;
                    failures_in_a_row += 1;
                    if failures_in_a_row == 1 {
                        tracing::warn!(%error, "cannot connect to devd; retrying with backoff");
                    } else {
                        tracing::debug!(%error, attempt = failures_in_a_row, "cannot connect to devd");
                    }
                }
            }
            let wait = self.backoff.take();
            if self.wait_or_stop(wait) {
                break;
            }
        }
        tracing::debug!("devd client stopped");
    }

    /// Read packets until the connection ends or a stop is requested.
    fn read(&mut self, fd: &OwnedFd) -> Ended {
        let mut buffer = vec![0u8; RECV_BUFFER];
        loop {
            if self.stop_requested() {
                return Ended::Stopped;
            }
            match recv(fd, &mut buffer[..], RecvFlags::empty()) {
                Ok((0, _)) => return Ended::Lost("devd closed the connection".into()),
                Ok((n, _)) => {
                    if n == buffer.len() {
                        tracing::warn!(
                            bytes = n,
                            "a devd packet filled the whole buffer and may have been truncated"
                        );
                    }
                    for message in packet_messages(&buffer[..n]) {
                        match &message {
                            DevdMessage::Event(event) => {
                                Counters::bump(&self.counters.events);
                                tracing::debug!(kind = event.kind(), "devd event");
                            }
                            DevdMessage::BadInput { text, reason } => {
                                Counters::bump(&self.counters.bad_lines);
                                tracing::warn!(%text, %reason, "malformed devd line");
                            }
                            _ => {}
                        }
                        (self.sink)(message);
                    }
                }
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(error) => return Ended::Lost(format!("reading from devd failed: {error}")),
            }
        }
    }

    fn stop_requested(&self) -> bool {
        !matches!(self.stop.try_recv(), Err(TryRecvError::Empty))
    }

    /// Wait `wait`, or less if a stop is requested; true if it was.
    fn wait_or_stop(&self, wait: Duration) -> bool {
        !matches!(self.stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }
}

/// A connected seqpacket socket to `path`, with the receive timeout set.
fn connect_seqpacket(path: &Path) -> Result<OwnedFd, String> {
    let address = SocketAddrUnix::new(path).map_err(|e| format!("bad socket path: {e}"))?;
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    set_socket_timeout(&fd, Timeout::Send, Some(CONNECT_TIMEOUT))
        .map_err(|e| format!("setting the send timeout: {e}"))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(POLL_INTERVAL))
        .map_err(|e| format!("setting the receive timeout: {e}"))?;
    connect(&fd, &address).map_err(|e| format!("connect: {e}"))?;
    Ok(fd)
}

/// The messages for one packet: one per non-empty `\n`-separated line, in order.
fn packet_messages(packet: &[u8]) -> impl Iterator<Item = DevdMessage> + '_ {
    packet
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(line_message)
}

/// The message for one line (without its `\n`).
fn line_message(line: &[u8]) -> DevdMessage {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) => {
            return DevdMessage::BadInput {
                text: String::from_utf8_lossy(line).into_owned(),
                reason: format!("devd line is not valid UTF-8: {error}"),
            };
        }
    };
    match devd_line_to_event(text) {
        Ok(event) => DevdMessage::Event(event),
        Err(error) => DevdMessage::BadInput {
            text: text.to_owned(),
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::source_thread::assert_joined;
    use haven_core::{CarpChange, CarpLink, CarpState, DevdKind};
    use rustix::net::{SendFlags, accept, bind, listen, send, socket};
    use std::sync::mpsc;
    use std::time::Instant;

    /// Generous bound for anything that should happen "soon".
    const DEADLINE: Duration = Duration::from_secs(5);

    const CARP_MASTER: &str = "!system=CARP subsystem=1@em0 type=MASTER\n";
    const CARP0_UP: &str = "!system=IFNET subsystem=carp0 type=LINK_UP\n";
    const ATTACH: &str = "+umass0 at bus=0 sernum=\"A \\\"B\\\"\" on uhub1\n";

    /// A devd stand-in: a listening seqpacket socket in a temporary directory.
    struct Server {
        listener: OwnedFd,
        path: PathBuf,
    }

    impl Server {
        fn bind(path: &Path) -> Server {
            let listener = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
            bind(&listener, &SocketAddrUnix::new(path).unwrap()).unwrap();
            listen(&listener, 4).unwrap();
            // Bounds accept(): a test fails instead of hanging.
            set_socket_timeout(&listener, Timeout::Recv, Some(DEADLINE)).unwrap();
            Server {
                listener,
                path: path.to_owned(),
            }
        }

        fn accept(&self) -> OwnedFd {
            accept(&self.listener).expect("the client did not connect in time")
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn send_packet(conn: &OwnedFd, packet: &str) {
        assert_eq!(
            send(conn, packet.as_bytes(), SendFlags::empty()).unwrap(),
            packet.len()
        );
    }

    fn fast() -> DevdOptions {
        DevdOptions {
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
        }
    }

    fn start(path: &Path, options: DevdOptions) -> (DevdClient, Receiver<DevdMessage>) {
        let (tx, rx) = mpsc::channel();
        let client = DevdClient::spawn(path.to_owned(), options, move |message| {
            let _ = tx.send(message);
        });
        (client, rx)
    }

    fn next(rx: &Receiver<DevdMessage>) -> DevdMessage {
        rx.recv_timeout(DEADLINE)
            .expect("no message from the devd client in time")
    }

    fn next_event(rx: &Receiver<DevdMessage>) -> Event {
        match next(rx) {
            DevdMessage::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("devd.seqpacket.pipe")
    }

    /// A client connected to a fresh test server, its first `Connected` already received.
    fn connected() -> (
        tempfile::TempDir,
        PathBuf,
        Server,
        OwnedFd,
        DevdClient,
        Receiver<DevdMessage>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir);
        let server = Server::bind(&path);
        let (client, rx) = start(&path, fast());
        let conn = server.accept();
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: false });
        (dir, path, server, conn, client, rx)
    }

    // ---------------------------------------------------------------------- pure helpers

    #[test]
    fn packets_split_into_lines() {
        let messages: Vec<_> =
            packet_messages(b"\n!system=A subsystem=B type=C\n\n?at  on pci0").collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages.iter().all(|m| matches!(m, DevdMessage::Event(_))));

        match line_message(b"+dev\xff0 at  on uhub1") {
            DevdMessage::BadInput { text, reason } => {
                assert_eq!(text, "+dev\u{fffd}0 at  on uhub1");
                assert!(
                    reason.starts_with("devd line is not valid UTF-8"),
                    "{reason}"
                );
            }
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    // ---------------------------------------------------------------------- real sockets

    #[test]
    fn real_lines_arrive_as_events_in_order() {
        let (_dir, _path, _server, conn, client, rx) = connected();

        for line in [CARP_MASTER, CARP0_UP, ATTACH] {
            send_packet(&conn, line);
        }
        assert_eq!(
            next_event(&rx),
            Event::CarpChanged(CarpChange {
                vhid: 1,
                interface: "em0".into(),
                state: CarpState::Master,
                previous: None,
            })
        );
        assert_eq!(
            next_event(&rx),
            Event::CarpLink(CarpLink {
                interface: "carp0".into(),
                up: true,
            })
        );
        let Event::Devd(attach) = next_event(&rx) else {
            panic!("the attach line is not a devd event");
        };
        assert_eq!(attach.kind, DevdKind::Attach);
        assert_eq!(attach.device.as_deref(), Some("umass0"));
        assert_eq!(attach.parent.as_deref(), Some("uhub1"));
        let sernum = attach.attributes.iter().find(|a| a.key == "sernum");
        assert_eq!(sernum.map(|a| a.value.as_str()), Some("A \"B\""));

        let stats = client.stats();
        assert_eq!(
            (stats.connects, stats.events, stats.bad_lines),
            (1, 3, 0),
            "{stats:?}"
        );
        client.stop();
    }

    #[test]
    fn malformed_line_is_reported_and_reading_goes_on() {
        let (_dir, _path, _server, conn, client, rx) = connected();

        send_packet(&conn, "*garbage\n");
        send_packet(&conn, "!system=CARP subsystem=300@em0 type=MASTER\n");
        send_packet(&conn, CARP0_UP);
        match next(&rx) {
            DevdMessage::BadInput { text, reason } => {
                assert_eq!(text, "*garbage");
                assert!(reason.contains("not one of"), "{reason}");
            }
            other => panic!("expected BadInput, got {other:?}"),
        }
        match next(&rx) {
            DevdMessage::BadInput { text, reason } => {
                assert_eq!(text, "!system=CARP subsystem=300@em0 type=MASTER");
                assert!(reason.contains("vhid \"300\""), "{reason}");
            }
            other => panic!("expected BadInput, got {other:?}"),
        }
        assert!(matches!(next_event(&rx), Event::CarpLink(_)));
        let stats = client.stats();
        assert_eq!((stats.events, stats.bad_lines), (1, 2), "{stats:?}");
        client.stop();
    }

    #[test]
    fn several_lines_in_one_packet_and_no_trailing_newline() {
        let (_dir, _path, _server, conn, client, rx) = connected();

        send_packet(&conn, &format!("{CARP_MASTER}\n{CARP0_UP}"));
        send_packet(&conn, ATTACH.trim_end_matches('\n'));
        assert!(matches!(next_event(&rx), Event::CarpChanged(_)));
        assert!(matches!(next_event(&rx), Event::CarpLink(_)));
        assert!(matches!(next_event(&rx), Event::Devd(_)));
        assert_eq!(client.stats().events, 3);
        client.stop();
        // The sink (and its sender) went with the thread: nothing else was sent.
        assert_eq!(
            rx.recv_timeout(DEADLINE),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn server_closing_gives_disconnected_then_reconnect() {
        let (_dir, path, server, conn, client, rx) = connected();
        send_packet(&conn, CARP_MASTER);
        assert!(matches!(next_event(&rx), Event::CarpChanged(_)));

        drop(conn);
        match next(&rx) {
            DevdMessage::Disconnected { reason } => {
                assert!(reason.contains("closed"), "{reason}")
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
        let conn = server.accept();
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: true });
        send_packet(&conn, CARP0_UP);
        assert!(matches!(next_event(&rx), Event::CarpLink(_)));

        // devd restarting: the socket file goes away and comes back. The listener goes first,
        // so the client cannot reconnect to it before it is gone.
        drop(server);
        drop(conn);
        assert!(matches!(next(&rx), DevdMessage::Disconnected { .. }));
        let server = Server::bind(&path);
        let conn = server.accept();
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: true });
        send_packet(&conn, ATTACH);
        assert!(matches!(next_event(&rx), Event::Devd(_)));

        let stats = client.stats();
        assert_eq!(
            (stats.connects, stats.disconnects, stats.events),
            (3, 2, 3),
            "{stats:?}"
        );
        client.stop();
    }

    #[test]
    fn no_server_at_start_retries_then_connects() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir);
        let (client, rx) = start(&path, fast());

        // Bounded poll of the counters: several attempts fail while there is no socket.
        let deadline = Instant::now() + DEADLINE;
        while client.stats().connect_failures < 3 {
            assert!(
                Instant::now() < deadline,
                "no retries: {:?}",
                client.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(client.stats().connects, 0);
        assert!(
            matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)),
            "failed attempts send nothing"
        );

        let server = Server::bind(&path);
        let conn = server.accept();
        // Events may have been missed while devd was unreachable.
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: true });
        send_packet(&conn, CARP_MASTER);
        assert!(matches!(next_event(&rx), Event::CarpChanged(_)));
        client.stop();
    }

    #[test]
    fn stop_is_prompt_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir);
        // A long backoff: the thread is asleep in it when stop() comes.
        let slow = DevdOptions {
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
        };
        let (client, rx) = start(&path, slow);
        let deadline = Instant::now() + DEADLINE;
        while client.stats().connect_failures < 1 {
            assert!(
                Instant::now() < deadline,
                "no attempt: {:?}",
                client.stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        client.stop();
        assert_joined(&rx);
    }

    #[test]
    fn stop_and_drop_are_prompt_with_an_idle_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir);
        let server = Server::bind(&path);

        let (client, rx) = start(&path, fast());
        let _conn = server.accept();
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: false });
        client.stop();
        assert_joined(&rx);
        // Stopping is not a disconnection to report.
        assert_eq!(
            rx.recv_timeout(DEADLINE),
            Err(RecvTimeoutError::Disconnected)
        );

        let (client, rx) = start(&path, fast());
        let _conn = server.accept();
        assert_eq!(next(&rx), DevdMessage::Connected { reconnect: false });
        drop(client);
        assert_joined(&rx);
        assert_eq!(
            rx.recv_timeout(DEADLINE),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
