//! Two links on loopback, as the two havends of a pair run them, and an adversary beside them:
//! a stranger's key, garbage, an oversized frame, a replayed session and a flood of
//! connections are each refused and counted, and the pair's link goes on working.

use haven_core::{HastHook, HastReplication, HastRole, HastStatus, PeerFacts};
use haven_peer::wire::{Message, Session};
use haven_peer::{LinkConfig, PeerKeys, PeerLinkHandle, PeerNews};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// A port free now on loopback.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

fn facts(host: &str, dirty: u64) -> PeerFacts {
    PeerFacts {
        host: host.into(),
        version: "test".into(),
        hast: vec![HastStatus {
            resource: "test".into(),
            role: HastRole::Primary,
            replication: HastReplication::Complete,
            dirty_bytes: Some(dirty),
        }],
        ..PeerFacts::default()
    }
}

/// One end: the link and what it told its daemon.
struct End {
    link: PeerLinkHandle,
    news: Receiver<PeerNews>,
    keys: PeerKeys,
}

impl End {
    fn start(keys: PeerKeys, listen: SocketAddr, peer: SocketAddr, timeout: Duration) -> End {
        let (sender, news) = channel();
        let sender = Mutex::new(sender);
        let config = LinkConfig {
            address: peer.to_string(),
            listen,
            heartbeat: Duration::from_millis(100),
            timeout,
        };
        let sink = Arc::new(move |news: PeerNews| {
            let _ = sender.lock().unwrap().send(news);
        });
        let link = PeerLinkHandle::start(config, keys.clone(), sink).expect("the link starts");
        End { link, news, keys }
    }

    /// Wait for news matching `wanted`, skipping heartbeats and other news; what was skipped.
    fn wait_for(&self, what: &str, wanted: impl Fn(&PeerNews) -> bool) -> Vec<PeerNews> {
        let deadline = Instant::now() + DEADLINE;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.news.recv_timeout(left) {
                Ok(news) if wanted(&news) => return skipped,
                Ok(news) => skipped.push(news),
                Err(_) => panic!("no {what} within {DEADLINE:?}; got {skipped:?}"),
            }
        }
    }

    fn wait_counted(&self, kind: &str) {
        self.wait_counted_at_least(kind, 1);
    }

    /// Wait until `kind` was counted `at_least` times (connections are served by threads of
    /// their own, so two refusals may be counted in either order).
    fn wait_counted_at_least(&self, kind: &str, at_least: u64) {
        let deadline = Instant::now() + DEADLINE;
        while self.link.counters().refused.get(kind).copied().unwrap_or(0) < at_least {
            assert!(
                Instant::now() < deadline,
                "no `{kind}` counted: {:?}",
                self.link.counters()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A pair of ends, hasta and hastb, dialing each other.
fn pair(timeout: Duration) -> (End, End) {
    let (a_keys, b_keys) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
    let (a_addr, b_addr) = (free_port(), free_port());
    let a = End::start(a_keys, a_addr, b_addr, timeout);
    let b = End::start(b_keys, b_addr, a_addr, timeout);
    (a, b)
}

/// hastb hears hasta's facts and hooks, in order.
fn assert_relays(a: &End, b: &End, dirty: u64) {
    a.link.publish_facts(facts("hasta", dirty));
    b.wait_for(
        "hasta's facts",
        |news| matches!(news, PeerNews::Facts(f) if f.hast[0].dirty_bytes == Some(dirty)),
    );
    a.link
        .publish_hook(HastHook::SyncInterrupted("test".into()));
    a.link.publish_hook(HastHook::SyncDone("test".into()));
    b.wait_for("syncintr", |news| {
        *news == PeerNews::Hook(HastHook::SyncInterrupted("test".into()))
    });
    let between = b.wait_for("syncdone", |news| {
        *news == PeerNews::Hook(HastHook::SyncDone("test".into()))
    });
    assert!(
        between
            .iter()
            .all(|news| !matches!(news, PeerNews::Hook(_))),
        "hooks out of order: {between:?}"
    );
}

#[test]
fn facts_and_hooks_travel_in_order_both_ways() {
    let (a, b) = pair(Duration::from_secs(5));
    a.link.publish_facts(facts("hasta", 0));
    b.wait_for("the link up", |news| *news == PeerNews::Up);
    assert_relays(&a, &b, 2_097_152);
    b.link.publish_facts(facts("hastb", 0));
    a.wait_for(
        "hastb's facts",
        |news| matches!(news, PeerNews::Facts(f) if f.host == "hastb"),
    );
    // The same facts again are a heartbeat, not news.
    b.wait_for("a heartbeat", |news| *news == PeerNews::Heard);
    assert!(a.link.counters().sent >= 3);
}

#[test]
fn silence_takes_the_link_down_and_a_return_brings_it_up() {
    let (a, b) = pair(Duration::from_millis(500));
    a.link.publish_facts(facts("hasta", 0));
    b.wait_for("the link up", |news| *news == PeerNews::Up);
    drop(a);
    b.wait_for("the link down", |news| *news == PeerNews::Down);
}

#[test]
fn a_stranger_garbage_and_an_oversized_frame_are_refused_and_counted() {
    let (a, b) = pair(Duration::from_secs(5));
    let b_listen = b.link.local_addr();

    // A stranger: keys of its own, claiming to be hasta.
    let (stranger, _) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
    let stranger = PeerKeys {
        peer_public_key: a.keys.peer_public_key,
        ..stranger
    };
    let stream = TcpStream::connect(b_listen).unwrap();
    assert!(Session::initiate(stream, &stranger).is_err());
    b.wait_counted("handshake");

    // Garbage, then a frame that declares 1 MiB.
    let mut stream = TcpStream::connect(b_listen).unwrap();
    stream
        .write_all(b"\0\0\0\x10GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut stream = TcpStream::connect(b_listen).unwrap();
    stream.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    b.wait_counted("oversized");
    // The garbage fails the handshake, on its own thread: counted too, in either order.
    b.wait_counted_at_least("handshake", 2);

    // The pair's own link goes on.
    assert_relays(&a, &b, 4096);
}

/// A recorded session, replayed whole on a new connection: the first handshake message is
/// accepted again (Noise allows that), but hastb answers with a new ephemeral key, so every
/// transport frame of the recording fails to authenticate.
#[test]
fn a_replayed_session_is_refused_and_counted() {
    let (a_keys, b_keys) = PeerKeys::generate_pair("hasta", "hastb").unwrap();
    let b_addr = free_port();
    let b = End::start(b_keys, b_addr, free_port(), Duration::from_secs(5));

    // hasta's side, by hand, through a recorder.
    let recorded;
    {
        let recorder = TcpListener::bind("127.0.0.1:0").unwrap();
        let recorder_addr = recorder.local_addr().unwrap();
        let forward = std::thread::spawn(move || {
            let (mut from_a, _) = recorder.accept().unwrap();
            let mut to_b = TcpStream::connect(b_addr).unwrap();
            let mut back = to_b.try_clone().unwrap();
            let mut a_back = from_a.try_clone().unwrap();
            let answers = std::thread::spawn(move || {
                let _ = std::io::copy(&mut back, &mut a_back);
            });
            let mut bytes = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = from_a.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buffer[..n]);
                to_b.write_all(&buffer[..n]).unwrap();
            }
            let _ = to_b.shutdown(std::net::Shutdown::Both);
            let _ = answers.join();
            bytes
        });
        let stream = TcpStream::connect(recorder_addr).unwrap();
        let mut session = Session::initiate(stream, &a_keys).unwrap();
        session.send(&Message::Facts(facts("hasta", 1))).unwrap();
        session
            .send(&Message::Hook(HastHook::SyncInterrupted("test".into())))
            .unwrap();
        b.wait_for("the recorded hook", |news| {
            matches!(news, PeerNews::Hook(_))
        });
        drop(session);
        recorded = forward.join().unwrap();
    }
    assert!(!recorded.is_empty());

    let mut replay = TcpStream::connect(b_addr).unwrap();
    replay.write_all(&recorded).unwrap();
    b.wait_counted("unauthentic");
    let skipped = b.wait_for_nothing(Duration::from_millis(300));
    assert!(
        skipped
            .iter()
            .all(|news| !matches!(news, PeerNews::Hook(_) | PeerNews::Facts(_))),
        "a replay was believed: {skipped:?}"
    );
}

/// More connections than the limit: the extra ones are closed at once and counted.
#[test]
fn a_connection_flood_costs_a_counter() {
    let (a, b) = pair(Duration::from_secs(5));
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(b.link.local_addr()).unwrap())
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while b.link.counters().over_limit == 0 {
        assert!(Instant::now() < deadline, "{:?}", b.link.counters());
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closed, they end their handshakes at once; the pair's link works throughout.
    drop(idle);
    assert_relays(&a, &b, 8);
}

impl End {
    /// Everything that arrives within `window`.
    fn wait_for_nothing(&self, window: Duration) -> Vec<PeerNews> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(news) = self
            .news
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            got.push(news);
        }
        got
    }
}

/// Facts too long for one frame are counted and skipped; the session stays up and the next
/// facts that fit get through.
#[test]
fn facts_too_long_to_send_are_skipped_not_fatal() {
    let (a, b) = pair(Duration::from_secs(5));
    a.link.publish_facts(facts("hasta", 1));
    b.wait_for("the first facts", |news| matches!(news, PeerNews::Facts(_)));
    let huge = PeerFacts {
        version: "v".repeat(70_000),
        ..facts("hasta", 2)
    };
    a.link.publish_facts(huge);
    a.wait_counted("too-long");
    a.link.publish_facts(facts("hasta", 3));
    b.wait_for(
        "the facts after",
        |news| matches!(news, PeerNews::Facts(f) if f.hast[0].dirty_bytes == Some(3)),
    );
    assert_eq!(a.link.counters().sessions_out, 1, "the session was dropped");
}
