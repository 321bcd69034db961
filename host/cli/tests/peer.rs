//! Two real havends on loopback, linked by `[peer]` with keys from `havenctl peer-keys`:
//! hasta (HAST primary, as its hastctl says) and hastb (secondary). What only hasta's hastd
//! can say about hastb's copy reaches hastb's seed policy, is kept on disk through a restart,
//! and stops a promotion; strangers on the link are refused and counted.

mod common;

use common::{HAVENCTL, Havend, Setup, monitor_config, poll_until, toml_path};
use haven_core::{Event, HastHook, PeerEvent, PeerLink};
use haven_daemon::journal::{Entry, Journal, Record};
use haven_test_artifacts::support::{free_port, hastctl_list};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

const POLL_FAST: Duration = Duration::from_millis(20);

/// One host: its folder, config and daemon.
struct Host {
    setup: Setup,
    name: &'static str,
}

impl Host {
    fn new(
        name: &'static str,
        role: &str,
        dirty: &str,
        listen: SocketAddr,
        peer: SocketAddr,
    ) -> Host {
        let setup = Setup::in_tmp(&format!("peer-{name}-"));
        setup.install_hastctl(&hastctl_list("test", role, "complete", dirty));
        let peer_table = format!(
            "[peer]\naddress = \"{peer}\"\nlisten = \"{listen}\"\nkey-file = {keys}\nheartbeat-ms = 200\n",
            keys = toml_path(&setup.path(&format!("{name}.key"))),
        );
        let config = monitor_config(&setup, &peer_table);
        std::fs::write(setup.config(), config).unwrap();
        Host { setup, name }
    }

    fn start(&self) -> Havend {
        let mut daemon = Havend::launch(
            &self.setup,
            &[],
            self.setup.path("havend.stderr"),
            POLL_FAST,
            Some(60),
        );
        daemon.wait_ready();
        daemon
    }

    fn records(&self) -> Vec<Record> {
        Journal::read_all(self.setup.state_dir())
            .map(|contents| contents.records)
            .unwrap_or_default()
    }

    fn wait_journal<T>(
        &self,
        daemon: &Havend,
        what: &str,
        probe: impl Fn(&[Record]) -> Option<T>,
    ) -> T {
        poll_until(POLL_FAST, || probe(&self.records())).unwrap_or_else(|| {
            panic!(
                "{}: timed out waiting for {what}\n{}",
                self.name,
                daemon.diagnostics()
            )
        })
    }
}

/// Keys for both, written by `havenctl peer-keys` as an operator would.
fn make_keys(a: &Host, b: &Host) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(HAVENCTL)
        .args(["peer-keys", "hasta", "hastb", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("[peer]"), "{stdout}");
    for host in [a, b] {
        let from = dir.path().join(format!("{}.key", host.name));
        std::fs::copy(&from, host.setup.path(&format!("{}.key", host.name))).unwrap();
    }
    // A second run refuses to overwrite the keys it made.
    let again = Command::new(HAVENCTL)
        .args(["peer-keys", "hasta", "hastb", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
}

fn peer_events(records: &[Record]) -> Vec<PeerEvent> {
    records
        .iter()
        .filter_map(|record| match &record.entry {
            Entry::Event {
                event: Event::Peer(event),
                ..
            } => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn alerts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match &record.entry {
            Entry::Alert { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_primarys_syncintr_reaches_the_secondary_survives_its_restart_and_stops_a_promotion() {
    let (a_addr, b_addr) = (free_port(), free_port());
    let a = Host::new("hasta", "primary", "2097152 (2.0MB)", a_addr, b_addr);
    let b = Host::new("hastb", "secondary", "0 (0B)", b_addr, a_addr);
    make_keys(&a, &b);
    let hasta = a.start();
    let hastb = b.start();

    // hastb hears hasta: up, and its facts (primary, 2 MiB dirty).
    let status = poll_until(POLL_FAST, || {
        let status = hastb.status();
        let peer = status.peer.clone()?;
        (peer.state.link == PeerLink::Up && peer.state.facts.is_some()).then_some(peer)
    })
    .unwrap_or_else(|| panic!("hastb never heard hasta\n{}", hastb.diagnostics()));
    let facts = status.state.facts.unwrap();
    assert_eq!(facts.host, "hasta");
    assert_eq!(facts.hast[0].dirty_bytes, Some(2_097_152));
    let text = String::from_utf8_lossy(&hastb.havenctl(&["status"]).stdout).into_owned();
    eprintln!("{text}");
    // The pair side by side: both names, the link, and the primary's dirty count on the
    // secondary's side too (its own hastd never reports it).
    for part in [
        "hastb (this host)",
        "hasta (peer)",
        "(primary's dirty 2097152)",
        "primary complete dirty 2097152",
    ] {
        assert!(text.contains(part), "{part:?} missing from\n{text}");
    }
    let link = text.lines().find(|line| line.starts_with("peer link"));
    assert!(link.is_some_and(|line| line.contains(" up for ")), "{text}");

    // hasta's hastd runs syncintr: hastb's policy records it, on disk.
    let hook = hasta.havenctl(&["hast-hook", "syncintr", "test"]);
    assert!(hook.status.success(), "{hook:?}");
    b.wait_journal(&hastb, "the relayed syncintr", |records| {
        peer_events(records)
            .contains(&PeerEvent::HastHook(HastHook::SyncInterrupted(
                "test".into(),
            )))
            .then_some(())
    });
    let kv = b.setup.state_dir().join("kv/mysql.json");
    poll_until(POLL_FAST, || {
        std::fs::read_to_string(&kv)
            .ok()
            .filter(|text| text.contains("\"sync:test\":\"interrupted\""))
    })
    .unwrap_or_else(|| panic!("the record never reached the disk\n{}", hastb.diagnostics()));

    // hastb restarts: the record and the peer's facts are read back.
    drop(hastb);
    let hastb = b.start();
    let state = hastb.status().peer.expect("a peer").state;
    assert!(state.facts.is_some(), "the peer's facts were not kept");

    // hasta dies; CARP makes hastb master: it refuses, naming the fact and where it came from.
    drop(hasta);
    let master = r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#;
    assert!(hastb.havenctl(&["notify", master]).status.success());
    let refusal = b.wait_journal(&hastb, "a refusal", |records| {
        alerts(records)
            .into_iter()
            .find(|message| message.contains("refusing to promote"))
    });
    assert!(
        refusal.contains("peer hasta's hastd ran `syncintr` as primary") && refusal.contains("UTC"),
        "{refusal}"
    );
}

/// A recorder between hasta and hastb: forwards hasta's bytes to hastb and keeps them.
fn recording_proxy(to: SocketAddr) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let recorder = std::thread::spawn(move || {
        let (mut from, _) = listener.accept().unwrap();
        let mut onward = TcpStream::connect(to).unwrap();
        let (mut back, mut from_back) = (onward.try_clone().unwrap(), from.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut back, &mut from_back));
        let mut recorded = Vec::new();
        let mut buffer = [0u8; 4096];
        // The handshake and a few messages are enough to replay.
        while recorded.len() < 2048 {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buffer[..n]);
                    if onward.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        recorded
    });
    (address, recorder)
}

#[test]
fn strangers_garbage_oversized_frames_and_replays_are_refused_counted_and_journaled() {
    use std::io::Write as _;
    let (a_addr, b_addr) = (free_port(), free_port());
    // hasta reaches hastb through a recorder, so that its session can be replayed.
    let (proxy, recorder) = recording_proxy(b_addr);
    let a = Host::new("hasta", "primary", "0 (0B)", a_addr, proxy);
    let b = Host::new("hastb", "secondary", "0 (0B)", b_addr, a_addr);
    make_keys(&a, &b);
    let hastb = b.start();

    // Not Haven at all, then a frame that claims 16 MiB.
    let mut stream = TcpStream::connect(b_addr).unwrap();
    let _ = stream.write_all(b"\0\0\0\x05hello");
    let mut stream = TcpStream::connect(b_addr).unwrap();
    let _ = stream.write_all(&(16u32 << 20).to_be_bytes());
    // A stranger: its own keys, claiming to be hasta.
    let (stranger, _) = haven_peer::PeerKeys::generate_pair("hasta", "hastb").unwrap();
    let stranger = haven_peer::PeerKeys {
        peer_public_key: haven_peer::PeerKeys::load(&b.setup.path("hastb.key"))
            .unwrap()
            .public_key()
            .unwrap(),
        ..stranger
    };
    assert!(
        haven_peer::wire::Session::initiate(TcpStream::connect(b_addr).unwrap(), &stranger)
            .is_err()
    );
    let counters = poll_until(POLL_FAST, || {
        let counters = hastb.status().peer?.counters;
        (counters.refused.get("handshake").copied().unwrap_or(0) >= 2
            && counters.refused.contains_key("oversized"))
        .then_some(counters)
    })
    .unwrap_or_else(|| panic!("no refusal counted\n{}", hastb.diagnostics()));
    assert_eq!(counters.sessions_in, 0, "{counters:?}");

    // The right peer: the link comes up, through the recorder.
    let hasta = a.start();
    poll_until(POLL_FAST, || {
        (hastb.status().peer?.state.link == PeerLink::Up).then_some(())
    })
    .unwrap_or_else(|| panic!("the real peer was not heard\n{}", hastb.diagnostics()));
    drop(hasta);
    let recorded = recorder.join().unwrap();
    // Its session, replayed: the first handshake message is accepted again (Noise allows
    // that), but nothing after it authenticates in the new session.
    let mut replay = TcpStream::connect(b_addr).unwrap();
    let _ = replay.write_all(&recorded);
    poll_until(POLL_FAST, || {
        hastb
            .status()
            .peer?
            .counters
            .refused
            .contains_key("unauthentic")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the replay was not refused\n{}", hastb.diagnostics()));
    b.wait_journal(&hastb, "bad input from the peer source", |records| {
        let kinds: Vec<&str> = records
            .iter()
            .filter_map(|record| match &record.entry {
                Entry::BadInput { source, reason, .. } if source == "peer" => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        ["oversized", "handshake", "unauthentic"]
            .iter()
            .all(|kind| kinds.iter().any(|reason| reason.contains(kind)))
            .then_some(())
    });
    // Each kind was journaled once, however many times it happened.
    let handshakes = b
        .records()
        .iter()
        .filter(|record| {
            matches!(&record.entry, Entry::BadInput { reason, .. } if reason.contains("handshake"))
        })
        .count();
    assert_eq!(handshakes, 1);
    assert!(hastb.status().peer.unwrap().counters.received > 0);
}

/// A policy store that cannot be read back is never silently emptied: it is moved aside, a
/// critical alert says so, and the policy's startup event says its state was lost (the seed
/// policy then counts its copy as unknown, and refuses to promote it on that alone).
#[test]
fn a_damaged_policy_store_is_an_alert_and_the_policy_is_told() {
    let (a_addr, b_addr) = (free_port(), free_port());
    let a = Host::new("hasta", "primary", "0 (0B)", a_addr, b_addr);
    let b = Host::new("hastb", "secondary", "0 (0B)", b_addr, a_addr);
    make_keys(&a, &b);
    let kv_dir = b.setup.state_dir().join("kv");
    std::fs::create_dir_all(&kv_dir).unwrap();
    std::fs::write(
        kv_dir.join("mysql.json"),
        "{\"format\":\"haven-kv 1\",\"entr",
    )
    .unwrap();
    let hastb = b.start();
    let alert = b.wait_journal(&hastb, "the alert", |records| {
        alerts(records)
            .into_iter()
            .find(|message| message.contains("could not be read back"))
    });
    assert!(
        alert.contains("mysql") && alert.contains("damaged"),
        "{alert}"
    );
    b.wait_journal(&hastb, "the startup event saying so", |records| {
        records
            .iter()
            .any(|record| {
                matches!(&record.entry, Entry::Event { event: Event::Startup(state), .. }
                    if state.state_lost.is_some())
            })
            .then_some(())
    });
    assert!(
        kv_dir.join("mysql.json.damaged").exists(),
        "the damaged file was not kept"
    );
    poll_until(POLL_FAST, || {
        std::fs::read_to_string(kv_dir.join("mysql.json"))
            .ok()
            .filter(|text| text.contains("\"sync:test\":\"unknown\""))
    })
    .unwrap_or_else(|| {
        panic!(
            "the policy did not record an unknown copy\n{}",
            hastb.diagnostics()
        )
    });
    let master = r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#;
    assert!(hastb.havenctl(&["notify", master]).status.success());
    b.wait_journal(&hastb, "a refusal", |records| {
        alerts(records)
            .into_iter()
            .find(|message| message.contains("refusing to promote") && message.contains("lost"))
    });
}
