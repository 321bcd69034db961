//! This host's session with etcd: a lease kept alive, the leader key taken and let go on
//! request, this host's member record, and news for the daemon when any of it changes.
//!
//! It runs on a thread of its own, with a single-threaded tokio runtime (etcd's client is
//! asynchronous; the daemon is not). The daemon talks to it through a [`WitnessHandle`]:
//! [`WitnessHandle::acquire`] blocks its caller for a bounded time; everything else only
//! leaves a command. News goes to a sink, which the daemon turns into events.
//!
//! **Timing** (`haven_core::config` checks `renew + 2 × timeout ≤ ttl`): the lease is renewed
//! every `renew-ms`, each exchange bounded by `timeout-ms`. A renewal is *confirmed* when etcd
//! answers it with a live TTL; the lease then lives at etcd until at least the moment the
//! request was sent plus the TTL. While this host holds the key, the session declares the key
//! lost ([`WitnessNews::KeyLost`]) as soon as `renew + timeout` has passed since the last
//! confirmed renewal: that leaves at least `timeout` to demote before etcd can let the peer
//! in.

use crate::connect::{Connector, WitnessError, bounded};
use crate::records::{self, LeaderRecord, MemberRecord, PairKeys};
use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use haven_core::{WitnessConfig, WitnessLeader, WitnessState};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a waiting [`WitnessHandle::acquire`] asks again, and how soon a failed renewal is
/// tried again.
const RETRY: Duration = Duration::from_millis(200);

/// What the session tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessNews {
    /// etcd answered after not answering (or for the first time).
    Reachable,
    /// etcd stopped answering: why.
    Unreachable(String),
    /// The leader key changed hands, or nobody holds it now.
    Leader(Option<WitnessLeader>),
    /// This host held the key and can no longer count on it: demote now.
    KeyLost { token: u64, why: String },
    /// A value under this pair's keys is not Haven's (damaged or foreign): what and where.
    BadRecord(String),
}

/// Where news goes, with the session's view right after it.
pub type Sink = Arc<dyn Fn(WitnessNews, WitnessState) + Send + Sync>;

/// Why the key was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    #[error(
        "the leader key is held by {} (fencing token {}) and was not let go in time",
        haven_core::text::escape(&.0.host),
        .0.token
    )]
    HeldBy(WitnessLeader),
    #[error("the leader key holds a value that is not Haven's ({0}); fix or delete it in etcd")]
    Unreadable(String),
    #[error("etcd did not answer: {0}")]
    Unreachable(String),
    #[error("the witness session has stopped")]
    Stopped,
}

enum Command {
    Acquire {
        wait: Duration,
        reply: std::sync::mpsc::SyncSender<Result<u64, AcquireError>>,
    },
    Release,
    Publish(MemberRecord),
}

/// The daemon's side of the session.
#[derive(Debug)]
pub struct WitnessHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<Mutex<WitnessState>>,
    thread: Option<JoinHandle<()>>,
}

impl WitnessHandle {
    /// Start the session for `host` (this host's name in the keys); news goes to `sink`.
    /// Reading the credentials can fail here; etcd being down cannot (the session keeps
    /// trying, and says so through the sink).
    pub fn start(
        config: &WitnessConfig,
        host: &str,
        sink: Sink,
    ) -> Result<WitnessHandle, WitnessError> {
        let connector = Connector::new(config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| WitnessError::Etcd(format!("cannot start a runtime: {error}")))?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(WitnessState {
            isolated_serve_ms: config.isolated_serve_ms,
            ..WitnessState::default()
        }));
        let session = Session {
            connector,
            keys: PairKeys::of(config),
            host: host.to_owned(),
            ttl: Duration::from_secs(u64::from(config.ttl_s)),
            renew: Duration::from_millis(u64::from(config.renew_ms)),
            client: None,
            lease: None,
            holding: None,
            member: None,
            member_written: None,
            reachable: None,
            leader: None,
            last_bad: None,
            sink,
            shared: Arc::clone(&state),
            next_round: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("witness".to_owned())
            .spawn(move || runtime.block_on(session.run(receiver)))
            .map_err(|error| WitnessError::Etcd(format!("cannot start a thread: {error}")))?;
        Ok(WitnessHandle {
            commands,
            state,
            thread: Some(thread),
        })
    }

    /// Take the leader key, waiting up to `wait` for another holder's lease to run out: the
    /// fencing token, or why not. Blocks the caller for at most `wait` plus one request.
    pub fn acquire(&self, wait: Duration) -> Result<u64, AcquireError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.commands
            .send(Command::Acquire { wait, reply })
            .map_err(|_| AcquireError::Stopped)?;
        // The session bounds its own work; this only guards against a wedged session.
        answer
            .recv_timeout(wait + Duration::from_secs(30))
            .map_err(|_| AcquireError::Stopped)?
    }

    /// Let the key go, if this host holds it (after a demotion).
    pub fn release(&self) {
        let _ = self.commands.send(Command::Release);
    }

    /// This host's member record, written when it changes.
    pub fn publish(&self, member: MemberRecord) {
        let _ = self.commands.send(Command::Publish(member));
    }

    /// The session's view now.
    pub fn state(&self) -> WitnessState {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stop the session. The key and the lease are left to expire: a havend that stops does
    /// not stop the service it started, so it must not hand the key over either.
    pub fn stop(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.commands = closed;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the witness thread panicked");
        }
    }
}

impl Drop for WitnessHandle {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A lease this session granted, and its keep-alive stream while it works.
struct Lease {
    id: i64,
    /// When the last renewal that etcd confirmed was sent (or the grant was asked).
    confirmed: Instant,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

struct Session {
    connector: Connector,
    keys: PairKeys,
    host: String,
    ttl: Duration,
    renew: Duration,
    client: Option<Client>,
    lease: Option<Lease>,
    /// The fencing token while this host holds the key.
    holding: Option<u64>,
    member: Option<MemberRecord>,
    /// The lease the member record was last written with.
    member_written: Option<i64>,
    /// `None` until the first exchange.
    reachable: Option<bool>,
    leader: Option<Option<WitnessLeader>>,
    /// The last damaged record reported.
    last_bad: Option<String>,
    sink: Sink,
    shared: Arc<Mutex<WitnessState>>,
    next_round: Instant,
}

impl Session {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let wake = self.wake_at();
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Acquire { wait, reply }) => {
                        let _ = reply.send(self.acquire(wait).await);
                    }
                    Some(Command::Release) => self.release().await,
                    Some(Command::Publish(member)) => {
                        if self.member.as_ref() != Some(&member) {
                            self.member = Some(member);
                            self.member_written = None;
                            self.next_round = Instant::now();
                        }
                    }
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            if Instant::now() >= self.next_round {
                self.round().await;
            }
            self.check_hold();
        }
    }

    /// The next moment something is due: a round, or the hold's deadline.
    fn wake_at(&self) -> Instant {
        match self.hold_deadline() {
            Some(deadline) => deadline.min(self.next_round),
            None => self.next_round,
        }
    }

    /// While holding: when the key counts as lost if no renewal is confirmed before.
    fn hold_deadline(&self) -> Option<Instant> {
        self.holding?;
        Some(match &self.lease {
            Some(lease) => lease.confirmed + self.renew + self.connector.timeout(),
            None => Instant::now(),
        })
    }

    /// Lose the key if its deadline passed.
    fn check_hold(&mut self) {
        if let Some(deadline) = self.hold_deadline()
            && Instant::now() >= deadline
        {
            let why = match &self.lease {
                Some(lease) => format!(
                    "no renewal of the lease was confirmed for {} ms",
                    lease.confirmed.elapsed().as_millis()
                ),
                None => "the lease is gone".to_owned(),
            };
            self.lose_key(why);
        }
    }

    fn lose_key(&mut self, why: String) {
        if let Some(token) = self.holding.take() {
            tracing::error!(token, %why, "the leader key is lost");
            self.share(|state| state.holding = false);
            self.tell(WitnessNews::KeyLost { token, why });
        }
    }

    /// One renewal round: lease, member record, leader key; the whole bounded by the timeout.
    async fn round(&mut self) {
        let timeout = self.connector.timeout();
        let outcome = match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(WitnessError::Timeout(timeout.as_millis() as u64)),
        };
        match outcome {
            Ok(leader) => {
                self.next_round = Instant::now() + self.renew;
                self.set_reachable(None);
                let free_or_ours = leader.as_ref().is_none_or(|l| l.host == self.host);
                self.set_leader(leader);
                // A host that serves without the key (it kept serving through an outage, or
                // havend restarted under a running service) takes it back when it can.
                let serving = self.member.as_ref().is_some_and(|member| member.serving);
                if serving && self.holding.is_none() && free_or_ours {
                    let timeout = self.connector.timeout();
                    if let Ok(Ok(token)) = tokio::time::timeout(timeout, self.try_acquire()).await {
                        tracing::info!(token, "the leader key is taken back by a serving host");
                    }
                }
            }
            Err(error) => {
                self.next_round = Instant::now() + RETRY.min(self.renew);
                self.set_reachable(Some(error.to_string()));
            }
        }
    }

    async fn exchange(&mut self) -> Result<Option<WitnessLeader>, WitnessError> {
        let mut client = self.client().await?;
        self.keep_lease(&mut client).await?;
        let lease = self.lease.as_ref().map(|lease| lease.id);
        if let (Some(member), Some(lease)) = (&self.member, lease)
            && self.member_written != Some(lease)
        {
            let value = serde_json::to_vec(member).unwrap_or_default();
            client
                .put(
                    self.keys.member(&self.host),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await?;
            self.member_written = Some(lease);
        }
        let response = client.get(self.keys.leader(), None).await?;
        let leader = match response.kvs().first() {
            None => None,
            Some(kv) => match self.leader_of(kv) {
                Ok(leader) => Some(leader),
                Err(why) => {
                    // Once per distinct problem, not once per round.
                    if self.last_bad.as_ref() != Some(&why) {
                        self.last_bad = Some(why.clone());
                        self.tell(WitnessNews::BadRecord(why.clone()));
                    }
                    return Err(WitnessError::Etcd(why));
                }
            },
        };
        self.last_bad = None;
        if let Some(token) = self.holding {
            let ours = leader
                .as_ref()
                .is_some_and(|leader| leader.host == self.host && leader.token == token);
            if !ours {
                self.lose_key(format!(
                    "the leader key is now {}",
                    describe_holder(leader.as_ref())
                ));
            }
        }
        Ok(leader)
    }

    async fn client(&mut self) -> Result<Client, WitnessError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = self.connector.connect().await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Grant a lease if there is none; renew it otherwise.
    async fn keep_lease(&mut self, client: &mut Client) -> Result<(), WitnessError> {
        if self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.confirmed.elapsed() >= self.ttl)
        {
            // Unconfirmed for a whole TTL: etcd has let it go.
            self.lease = None;
        }
        let Some(lease) = &mut self.lease else {
            let sent = Instant::now();
            let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
            let granted = client.lease_grant(ttl, None).await?;
            tracing::debug!(lease = granted.id(), ttl, "witness lease granted");
            self.lease = Some(Lease {
                id: granted.id(),
                confirmed: sent,
                stream: None,
            });
            return Ok(());
        };
        let sent = Instant::now();
        let (keeper, stream) = match &mut lease.stream {
            Some(stream) => stream,
            None => lease
                .stream
                .insert(client.lease_keep_alive(lease.id).await?),
        };
        let renewed = async {
            keeper.keep_alive().await?;
            stream.message().await
        }
        .await;
        match renewed {
            Ok(Some(answer)) if answer.ttl() > 0 => {
                lease.confirmed = sent;
                Ok(())
            }
            Ok(Some(_)) => {
                self.lease = None;
                Err(WitnessError::Etcd("the lease expired at etcd".to_owned()))
            }
            Ok(None) => {
                lease.stream = None;
                Err(WitnessError::Etcd("the keep-alive stream ended".to_owned()))
            }
            Err(error) => {
                lease.stream = None;
                Err(error.into())
            }
        }
    }

    /// The leader key's value as a holder, or why it is not believed.
    fn leader_of(&self, kv: &etcd_client::KeyValue) -> Result<WitnessLeader, String> {
        let record: LeaderRecord =
            records::parse(&self.keys.leader(), kv.value()).map_err(|error| error.to_string())?;
        Ok(WitnessLeader {
            host: record.host,
            token: u64::try_from(kv.create_revision()).unwrap_or(0),
            since_unix_ms: record.since_unix_ms,
        })
    }

    /// Take the key, trying again until `wait` has passed.
    async fn acquire(&mut self, wait: Duration) -> Result<u64, AcquireError> {
        let deadline = Instant::now() + wait;
        loop {
            let timeout = self.connector.timeout();
            let attempt = match tokio::time::timeout(timeout, self.try_acquire()).await {
                Ok(attempt) => attempt,
                Err(_) => Err(AcquireError::Unreachable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
            };
            match attempt {
                Ok(token) => {
                    self.set_reachable(None);
                    return Ok(token);
                }
                Err(AcquireError::Unreachable(why)) => {
                    self.set_reachable(Some(why.clone()));
                    if Instant::now() + RETRY >= deadline {
                        return Err(AcquireError::Unreachable(why));
                    }
                }
                Err(other) => {
                    self.set_reachable(None);
                    if Instant::now() + RETRY >= deadline {
                        return Err(other);
                    }
                }
            }
            // Waiting for the other holder's lease must not let this host's own lapse.
            if Instant::now() >= self.next_round {
                self.round().await;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn try_acquire(&mut self) -> Result<u64, AcquireError> {
        let unreachable = |error: WitnessError| AcquireError::Unreachable(error.to_string());
        let mut client = self.client().await.map_err(unreachable)?;
        if self.lease.is_none() {
            self.keep_lease(&mut client).await.map_err(unreachable)?;
        }
        let lease = self.lease.as_ref().map(|lease| lease.id).unwrap_or(0);
        let key = self.keys.leader();
        let since_unix_ms = unix_ms();
        let record = LeaderRecord {
            host: self.host.clone(),
            since_unix_ms,
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = client
            .txn(txn)
            .await
            .map_err(|error| unreachable(error.into()))?;
        if response.succeeded() {
            let token = response
                .header()
                .map(|header| u64::try_from(header.revision()).unwrap_or(0))
                .unwrap_or(0);
            self.hold(token, since_unix_ms);
            return Ok(token);
        }
        let current = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        let Some(kv) = current else {
            // Deleted between the compare and the get: try again.
            return Err(AcquireError::Unreachable(
                "the leader key changed while it was read".to_owned(),
            ));
        };
        let leader = self.leader_of(&kv).map_err(AcquireError::Unreadable)?;
        if leader.host != self.host {
            self.set_leader(Some(leader.clone()));
            return Err(AcquireError::HeldBy(leader));
        }
        if kv.lease() != lease {
            // This host's earlier havend took it (a restart): move it to this lease, keeping
            // the token, as long as nobody changed it meanwhile.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(
                    key,
                    kv.value().to_vec(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let moved = client
                .txn(txn)
                .await
                .map_err(|error| unreachable(error.into()))?;
            if !moved.succeeded() {
                return Err(AcquireError::Unreachable(
                    "the leader key changed while it was taken over".to_owned(),
                ));
            }
        }
        self.hold(leader.token, leader.since_unix_ms);
        Ok(leader.token)
    }

    fn hold(&mut self, token: u64, since_unix_ms: u64) {
        tracing::info!(token, "the leader key is held");
        self.holding = Some(token);
        self.share(|state| state.holding = true);
        self.set_leader(Some(WitnessLeader {
            host: self.host.clone(),
            token,
            since_unix_ms,
        }));
    }

    /// Delete the key if it is on this host's lease. This host no longer serves: it must not
    /// take the key back before the daemon says otherwise.
    async fn release(&mut self) {
        if let Some(member) = &mut self.member {
            member.serving = false;
            self.member_written = None;
        }
        let Some(token) = self.holding.take() else {
            return;
        };
        self.share(|state| state.holding = false);
        let Some(lease) = self.lease.as_ref().map(|lease| lease.id) else {
            return;
        };
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::delete(key, None)]);
        let timeout = self.connector.timeout();
        let released = match self.client().await {
            Ok(mut client) => bounded(timeout, client.txn(txn)).await.map(drop),
            Err(error) => Err(error),
        };
        match released {
            Ok(()) => {
                tracing::info!(token, "the leader key is let go");
                self.set_leader(None);
            }
            // It expires with the lease, which is renewed only while something holds it.
            Err(error) => tracing::warn!(token, %error, "the leader key could not be let go"),
        }
    }

    fn set_reachable(&mut self, problem: Option<String>) {
        let reachable = problem.is_none();
        if self.reachable == Some(reachable) {
            return;
        }
        self.reachable = Some(reachable);
        self.share(|state| state.reachable = reachable);
        match problem {
            None => {
                tracing::info!("etcd answers");
                self.tell(WitnessNews::Reachable);
            }
            Some(why) => {
                tracing::warn!(%why, "etcd does not answer");
                self.tell(WitnessNews::Unreachable(why));
            }
        }
    }

    fn set_leader(&mut self, leader: Option<WitnessLeader>) {
        if self.leader.as_ref() == Some(&leader) {
            return;
        }
        self.leader = Some(leader.clone());
        self.share(|state| state.leader = leader.clone());
        self.tell(WitnessNews::Leader(leader));
    }

    /// Hand `news` to the sink with the view after it.
    fn tell(&self, news: WitnessNews) {
        let state = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        (self.sink)(news, state);
    }

    fn share(&self, change: impl FnOnce(&mut WitnessState)) {
        change(
            &mut self
                .shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }
}

/// `hastb (token 7)`, or `free`.
fn describe_holder(leader: Option<&WitnessLeader>) -> String {
    match leader {
        Some(leader) => format!(
            "{}'s (token {})",
            haven_core::text::escape(&leader.host),
            leader.token
        ),
        None => "free".to_owned(),
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
