//! The link's threads: a sender that dials the peer and publishes this host's facts and
//! hooks, a listener that accepts the peer's connection and a receiver per connection, and a
//! watchdog that notices silence.
//!
//! What arrives becomes [`PeerNews`] for the daemon's queue; what goes wrong is counted per
//! kind ([`LinkCounters`]) and reported as [`PeerNews::Trouble`] the first time, then at most
//! once a minute per kind, so a hostile peer cannot flood the journal.

use crate::keys::PeerKeys;
use crate::wire::{Message, Session, WireError};
use haven_core::{HastHook, PeerFacts};
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections being handshaken or received at once; more are closed at accept and counted.
pub const MAX_INBOUND: usize = 4;
/// Hooks kept for the peer while the link is down; older ones are dropped and counted.
pub const MAX_PENDING_HOOKS: usize = 64;
/// How long dialing may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(1);
/// Deadline of each write once connected.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Backoff between dial attempts: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// How often the listener looks for a stop request while no one connects.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// The same trouble is reported again at most this often (it is always counted).
const TROUBLE_REPEAT: Duration = Duration::from_secs(60);

/// The link's settings (from `[peer]`).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The peer's `host:port`.
    pub address: String,
    /// Where to accept the peer's connection.
    pub listen: SocketAddr,
    /// Facts are sent at least this often.
    pub heartbeat: Duration,
    /// Silence after which the link is down.
    pub timeout: Duration,
}

/// What the link tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerNews {
    /// An authenticated message arrived after silence (or for the first time).
    Up,
    /// No authenticated message for the timeout.
    Down,
    /// The peer's facts differ from the last ones it sent.
    Facts(PeerFacts),
    /// The peer's hastd ran its hook.
    Hook(HastHook),
    /// The peer's facts were heard again, unchanged (a heartbeat).
    Heard,
    /// Something was refused or failed; `kind` names the counter.
    Trouble { kind: &'static str, message: String },
}

/// Where news goes (the daemon's queue).
pub type Sink = Arc<dyn Fn(PeerNews) + Send + Sync>;

/// The link's counters, for status and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LinkCounters {
    /// Authenticated sessions from the peer.
    pub sessions_in: u64,
    /// Sessions this host opened to the peer.
    pub sessions_out: u64,
    /// Messages received and authenticated.
    pub received: u64,
    /// Messages sent.
    pub sent: u64,
    /// Hooks dropped while the link was down too long.
    pub hooks_dropped: u64,
    /// Connections closed at accept: [`MAX_INBOUND`] were already open.
    pub over_limit: u64,
    /// Refusals and failures by kind (`handshake`, `unauthentic`, `oversized`, ...), inbound
    /// and outbound.
    pub refused: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Counters {
    sessions_in: AtomicU64,
    sessions_out: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    hooks_dropped: AtomicU64,
    over_limit: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, Trouble>>,
}

/// One kind of trouble: how often it happened, when it was last reported, and how many times
/// since then it was only counted.
#[derive(Default)]
struct Trouble {
    count: u64,
    reported: Option<Instant>,
    unreported: u64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the sender has to send.
#[derive(Default)]
struct Outbox {
    facts: Option<PeerFacts>,
    /// Whether `facts` changed since last sent.
    facts_changed: bool,
    hooks: VecDeque<HastHook>,
    stop: bool,
}

/// State the threads share.
struct Shared {
    keys: PeerKeys,
    config: LinkConfig,
    sink: Sink,
    counters: Counters,
    outbox: Mutex<Outbox>,
    wake: Condvar,
    /// When an authenticated message last arrived; `None` while the link is down.
    heard: Mutex<Option<Instant>>,
    heard_changed: Condvar,
    /// The last facts the peer sent, to tell a change from a heartbeat.
    last_facts: Mutex<Option<PeerFacts>>,
    inbound: AtomicUsize,
    stop: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking link thread leaves plain data behind; carry on with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Count a refusal or failure and report it, unless the same kind was reported less than
    /// [`TROUBLE_REPEAT`] ago.
    fn trouble(&self, error: &WireError, direction: &str) {
        let kind = error.kind();
        let report = {
            let mut refused = lock(&self.counters.refused);
            let trouble = refused.entry(kind).or_default();
            trouble.count += 1;
            let due = trouble
                .reported
                .is_none_or(|at| at.elapsed() >= TROUBLE_REPEAT);
            if due {
                trouble.reported = Some(Instant::now());
                Some(std::mem::take(&mut trouble.unreported))
            } else {
                trouble.unreported += 1;
                None
            }
        };
        if let Some(more) = report {
            let also = if more > 0 {
                format!(" ({more} more of this kind since the last report)")
            } else {
                String::new()
            };
            (self.sink)(PeerNews::Trouble {
                kind,
                message: format!("{direction}: {error}{also}"),
            });
        }
    }

    /// An authenticated message arrived.
    fn heard(&self, message: Message) {
        bump(&self.counters.received);
        let was_down = lock(&self.heard).replace(Instant::now()).is_none();
        self.heard_changed.notify_all();
        if was_down {
            (self.sink)(PeerNews::Up);
        }
        match message {
            Message::Facts(facts) => {
                let mut last = lock(&self.last_facts);
                if last.as_ref() == Some(&facts) {
                    drop(last);
                    (self.sink)(PeerNews::Heard);
                } else {
                    *last = Some(facts.clone());
                    drop(last);
                    (self.sink)(PeerNews::Facts(facts));
                }
            }
            Message::Hook(hook) => (self.sink)(PeerNews::Hook(hook)),
        }
    }
}

/// The running link. Dropping it stops its threads.
pub struct PeerLinkHandle {
    shared: Arc<Shared>,
    local: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PeerLinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLinkHandle")
            .field("listen", &self.local)
            .field("peer", &self.shared.config.address)
            .finish_non_exhaustive()
    }
}

impl PeerLinkHandle {
    /// Bind the listener and start the threads.
    pub fn start(config: LinkConfig, keys: PeerKeys, sink: Sink) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keys,
            config,
            sink,
            counters: Counters::default(),
            outbox: Mutex::new(Outbox::default()),
            wake: Condvar::new(),
            heard: Mutex::new(None),
            heard_changed: Condvar::new(),
            last_facts: Mutex::new(None),
            inbound: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(body)
        };
        let threads = vec![
            spawn("haven-peer-accept", {
                let shared = shared.clone();
                Box::new(move || accept_loop(&shared, &listener))
            })?,
            spawn("haven-peer-send", {
                let shared = shared.clone();
                Box::new(move || send_loop(&shared))
            })?,
            spawn("haven-peer-watch", {
                let shared = shared.clone();
                Box::new(move || watch_loop(&shared))
            })?,
        ];
        Ok(PeerLinkHandle {
            shared,
            local,
            threads,
        })
    }

    /// Where the listener listens (the port, when `listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This host's facts now; sent at once if they changed, else with the next heartbeat.
    pub fn publish_facts(&self, facts: PeerFacts) {
        let mut outbox = lock(&self.shared.outbox);
        if outbox.facts.as_ref() != Some(&facts) {
            outbox.facts = Some(facts);
            outbox.facts_changed = true;
            drop(outbox);
            self.shared.wake.notify_all();
        }
    }

    /// This host's hastd ran its hook: send it, in order with the facts.
    pub fn publish_hook(&self, hook: HastHook) {
        let mut outbox = lock(&self.shared.outbox);
        if outbox.hooks.len() >= MAX_PENDING_HOOKS {
            outbox.hooks.pop_front();
            bump(&self.shared.counters.hooks_dropped);
        }
        outbox.hooks.push_back(hook);
        drop(outbox);
        self.shared.wake.notify_all();
    }

    /// The counters so far.
    pub fn counters(&self) -> LinkCounters {
        let counters = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkCounters {
            sessions_in: load(&counters.sessions_in),
            sessions_out: load(&counters.sessions_out),
            received: load(&counters.received),
            sent: load(&counters.sent),
            hooks_dropped: load(&counters.hooks_dropped),
            over_limit: load(&counters.over_limit),
            refused: lock(&counters.refused)
                .iter()
                .map(|(kind, trouble)| ((*kind).to_owned(), trouble.count))
                .collect(),
        }
    }
}

impl Drop for PeerLinkHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        lock(&self.shared.outbox).stop = true;
        self.shared.wake.notify_all();
        self.shared.heard_changed.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Accept the peer's connections; each is received on a thread of its own, at most
/// [`MAX_INBOUND`] at once.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(error) => {
                shared.trouble(&WireError::Io(error), "accepting");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if shared.inbound.fetch_add(1, Ordering::AcqRel) >= MAX_INBOUND {
            shared.inbound.fetch_sub(1, Ordering::AcqRel);
            bump(&shared.counters.over_limit);
            continue;
        }
        let receiver = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("haven-peer-receive".to_owned())
            .spawn(move || {
                receive(&receiver, stream);
                receiver.inbound.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.inbound.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One inbound connection: authenticate, then hand on every message until it ends.
fn receive(shared: &Shared, stream: TcpStream) {
    let from = stream
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_owned(), |a| a.to_string());
    let direction = format!("from {from}");
    let _ = stream.set_nonblocking(false);
    let mut session = match Session::respond(stream, &shared.keys) {
        Ok(session) => session,
        Err(error) => return shared.trouble(&error, &direction),
    };
    bump(&shared.counters.sessions_in);
    if let Err(error) = session.set_deadlines(shared.config.timeout, WRITE_DEADLINE) {
        return shared.trouble(&error, &direction);
    }
    while !shared.stop.load(Ordering::Relaxed) {
        match session.receive() {
            Ok(message) => shared.heard(message),
            // Silence is the watchdog's business; the peer dials again when it is back.
            Err(WireError::TimedOut | WireError::Closed) => return,
            Err(error) => return shared.trouble(&error, &direction),
        }
    }
}

/// Dial the peer and send: the latest facts first, then hooks and changed facts as they come,
/// and the facts again on every heartbeat.
fn send_loop(shared: &Shared) {
    let mut backoff = BACKOFF.0;
    loop {
        if lock(&shared.outbox).stop {
            return;
        }
        match dial(shared) {
            Ok(mut session) => {
                bump(&shared.counters.sessions_out);
                backoff = BACKOFF.0;
                if let Err(error) = send_session(shared, &mut session) {
                    shared.trouble(&error, "to the peer");
                }
            }
            Err(error) => {
                // A peer that is down refuses connections: that is not news worth a report
                // each time, only a count.
                if matches!(
                    error,
                    WireError::Io(_) | WireError::TimedOut | WireError::Closed
                ) {
                    let mut refused = lock(&shared.counters.refused);
                    refused.entry("connect").or_default().count += 1;
                } else {
                    shared.trouble(&error, "to the peer");
                }
            }
        }
        let outbox = lock(&shared.outbox);
        if outbox.stop {
            return;
        }
        let _ = shared.wake.wait_timeout(outbox, backoff);
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

fn dial(shared: &Shared) -> Result<Session, WireError> {
    let address = shared
        .config
        .address
        .to_socket_addrs()
        .map_err(WireError::Io)?
        .next()
        .ok_or(WireError::Closed)?;
    let stream = TcpStream::connect_timeout(&address, CONNECT_DEADLINE).map_err(WireError::Io)?;
    let session = Session::initiate(stream, &shared.keys)?;
    session.set_deadlines(shared.config.timeout, WRITE_DEADLINE)?;
    Ok(session)
}

/// Send until the connection fails or the link stops.
fn send_session(shared: &Shared, session: &mut Session) -> Result<(), WireError> {
    let mut last_sent: Option<Instant> = None;
    let mut outbox = lock(&shared.outbox);
    // A new session starts with the facts, changed or not.
    outbox.facts_changed = outbox.facts.is_some();
    loop {
        if outbox.stop {
            return Ok(());
        }
        let heartbeat_due = last_sent.is_none_or(|at| at.elapsed() >= shared.config.heartbeat);
        let hook = outbox.hooks.pop_front();
        let facts = if hook.is_none() && (outbox.facts_changed || heartbeat_due) {
            outbox.facts_changed = false;
            outbox.facts.clone()
        } else {
            None
        };
        let message = match (hook, facts) {
            (Some(hook), _) => Some(Message::Hook(hook)),
            (None, Some(facts)) => Some(Message::Facts(facts)),
            (None, None) => None,
        };
        match message {
            Some(message) => {
                drop(outbox);
                match session.send(&message) {
                    Ok(()) => {
                        bump(&shared.counters.sent);
                        last_sent = Some(Instant::now());
                    }
                    // Too long to send at all: counted and skipped (until the next heartbeat,
                    // so it does not spin); the session is sound.
                    Err(error @ WireError::TooLong(_)) => {
                        shared.trouble(&error, "to the peer");
                        last_sent = Some(Instant::now());
                    }
                    Err(error) => {
                        if let Message::Hook(hook) = message {
                            // Not delivered: it goes first on the next session.
                            lock(&shared.outbox).hooks.push_front(hook);
                        }
                        return Err(error);
                    }
                }
                outbox = lock(&shared.outbox);
            }
            None => {
                let wait = last_sent.map_or(shared.config.heartbeat, |at| {
                    shared.config.heartbeat.saturating_sub(at.elapsed())
                });
                outbox = shared
                    .wake
                    .wait_timeout(outbox, wait.max(Duration::from_millis(1)))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        }
    }
}

/// Declare the link down after the timeout's silence.
fn watch_loop(shared: &Shared) {
    let mut heard = lock(&shared.heard);
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = match *heard {
            Some(at) if at.elapsed() >= shared.config.timeout => {
                *heard = None;
                drop(heard);
                (shared.sink)(PeerNews::Down);
                heard = lock(&shared.heard);
                continue;
            }
            Some(at) => shared.config.timeout - at.elapsed(),
            None => shared.config.timeout,
        };
        heard = shared
            .heard_changed
            .wait_timeout(heard, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}
