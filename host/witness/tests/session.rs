//! The witness session against a real etcd on loopback (Debian's etcd-server): the key taken
//! and refused, let go, inherited after a lease runs out, lost when etcd stops answering, and
//! taken back by a restarted havend; a damaged key; and the fleet listing.

use haven_core::{Config, WitnessConfig};
use haven_test_artifacts::etcd::EtcdServer;
use haven_witness::{AcquireError, MemberRecord, WitnessHandle, WitnessNews};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A short lease, keeping the timing rule: 400 + 2 × 600 ≤ 2000.
fn config(endpoint: &str, pair: &str) -> WitnessConfig {
    let text = format!(
        "[witness]\nendpoints = [\"{endpoint}\"]\nprefix = \"/test\"\npair = \"{pair}\"\n\
         ttl-s = 2\nrenew-ms = 400\ntimeout-ms = 600\n"
    );
    Config::parse(&text, Path::new("haven.toml"))
        .expect("a valid config")
        .witness
        .expect("a witness")
}

/// A session for `host`, and the news it gives.
fn session(config: &WitnessConfig, host: &str) -> (WitnessHandle, Arc<Mutex<Vec<WitnessNews>>>) {
    let news = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&news);
    let handle = WitnessHandle::start(
        config,
        host,
        Arc::new(move |item, _| sink.lock().unwrap().push(item)),
    )
    .expect("the session starts");
    (handle, news)
}

fn wait_for(
    news: &Mutex<Vec<WitnessNews>>,
    what: &str,
    matches: impl Fn(&WitnessNews) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if news.lock().unwrap().iter().any(&matches) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no news: {what}; got {:?}",
            news.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn one_host_holds_the_key_and_a_later_holder_has_a_higher_token() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let config = config(&etcd.endpoint, "db1");
    let (a, _) = session(&config, "hasta");
    let (b, b_news) = session(&config, "hastb");
    let first = a
        .acquire(Duration::from_secs(2))
        .expect("hasta takes the free key");
    assert!(a.state().holding);
    // Taking it again is a no-op with the same token.
    assert_eq!(a.acquire(Duration::from_secs(2)), Ok(first));
    match b.acquire(Duration::from_millis(500)) {
        Err(AcquireError::HeldBy(leader)) => {
            assert_eq!((leader.host.as_str(), leader.token), ("hasta", first));
        }
        other => panic!("hastb must be refused while hasta holds the key: {other:?}"),
    }
    a.release();
    let second = b
        .acquire(Duration::from_secs(2))
        .expect("hastb takes the let-go key");
    assert!(second > first, "token {second} after {first}");
    wait_for(
        &b_news,
        "hastb sees itself as leader",
        |news| matches!(news, WitnessNews::Leader(Some(leader)) if leader.host == "hastb"),
    );
}

#[test]
fn a_dead_holder_s_key_passes_on_only_when_its_lease_runs_out() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let config = config(&etcd.endpoint, "db1");
    let (a, _) = session(&config, "hasta");
    let first = a.acquire(Duration::from_secs(2)).unwrap();
    // A havend that stops leaves the key to its lease (it does not stop the service either).
    let stopped = Instant::now();
    a.stop();
    let (b, _) = session(&config, "hastb");
    let second = b
        .acquire(Duration::from_secs(5))
        .expect("the key after the lease");
    let waited = stopped.elapsed();
    assert!(second > first);
    assert!(
        waited >= Duration::from_millis(1500),
        "hastb took the key after {waited:?}, before a 2 s lease could run out"
    );
}

#[test]
fn a_restarted_havend_takes_its_own_key_back_with_the_same_token() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let config = config(&etcd.endpoint, "db1");
    let (a, _) = session(&config, "hasta");
    let token = a.acquire(Duration::from_secs(2)).unwrap();
    a.stop();
    let (again, _) = session(&config, "hasta");
    let started = Instant::now();
    assert_eq!(again.acquire(Duration::from_secs(2)), Ok(token));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "it did not wait for its old lease"
    );
    // And the old lease's expiry does not take the key away from the new one.
    std::thread::sleep(Duration::from_millis(2500));
    let (b, _) = session(&config, "hastb");
    assert!(matches!(
        b.acquire(Duration::from_millis(300)),
        Err(AcquireError::HeldBy(_))
    ));
}

#[test]
fn a_holder_cut_off_from_etcd_loses_the_key_before_its_lease_can_expire() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let config = config(&etcd.endpoint, "db1");
    let (a, news) = session(&config, "hasta");
    a.acquire(Duration::from_secs(2)).unwrap();
    wait_for(&news, "etcd reachable", |n| {
        matches!(n, WitnessNews::Reachable)
    });
    etcd.pause();
    let lost_after = wait_for(&news, "the key lost", |n| {
        matches!(n, WitnessNews::KeyLost { .. })
    });
    assert!(!a.state().holding);
    assert!(
        news.lock()
            .unwrap()
            .iter()
            .any(|n| matches!(n, WitnessNews::Unreachable(_)))
    );
    // renew + timeout = 1000 ms after the last confirmed renewal; never a whole TTL.
    assert!(
        lost_after < Duration::from_millis(2000),
        "the key was declared lost {lost_after:?} after the cut, not within the 2 s TTL"
    );
    etcd.resume();
    wait_for(&news, "etcd reachable again", |n| {
        matches!(n, WitnessNews::Reachable)
    });
}

#[test]
fn a_damaged_leader_key_is_reported_and_never_believed() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let config = config(&etcd.endpoint, "db1");
    put(&etcd, "/test/db1/leader", "\u{1b}[2Jnot json");
    let (b, news) = session(&config, "hastb");
    match b.acquire(Duration::from_millis(300)) {
        Err(AcquireError::Unreadable(why)) => {
            assert!(why.contains("/test/db1/leader"), "{why}");
            assert!(!why.contains('\u{1b}'), "{why}");
        }
        other => panic!("a damaged key must not be taken or believed: {other:?}"),
    }
    wait_for(&news, "the damaged record reported", |n| {
        matches!(n, WitnessNews::BadRecord(_))
    });
}

#[test]
fn the_fleet_lists_every_pair_with_its_leader_token_lease_and_members() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let db1 = config(&etcd.endpoint, "db1");
    let db2 = config(&etcd.endpoint, "db2");
    let (a, _) = session(&db1, "hasta");
    let (c, _) = session(&db2, "hastc");
    let member = |host: &str, serving| MemberRecord {
        host: host.to_owned(),
        serving,
        maintenance: host == "hastc",
        version: "test".to_owned(),
    };
    a.publish(member("hasta", true));
    c.publish(member("hastc", false));
    let token = a.acquire(Duration::from_secs(2)).unwrap();
    put(&etcd, "/test/stray", "x");
    let started = Instant::now();
    let fleet = loop {
        let fleet = haven_witness::fleet::list(&db1).expect("the listing");
        if fleet.pairs.iter().map(|p| p.members.len()).sum::<usize>() == 2 {
            break fleet;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{fleet:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let names: Vec<_> = fleet.pairs.iter().map(|p| p.pair.as_str()).collect();
    assert_eq!(names, ["db1", "db2"]);
    let leader = fleet.pairs[0].leader.as_ref().expect("db1's leader");
    assert_eq!((leader.host.as_str(), leader.token), ("hasta", token));
    assert_eq!(leader.lease_ttl_s, Some(2));
    assert!(leader.lease_left_s.is_some_and(|left| left <= 2));
    assert!(fleet.pairs[1].leader.is_none());
    assert!(fleet.pairs[1].members[0].maintenance);
    assert_eq!(fleet.problems.len(), 1, "{:?}", fleet.problems);
    assert!(fleet.problems[0].contains("/test/stray"));
}

/// Write a key as etcdctl would (another client of the same cluster).
fn put(etcd: &EtcdServer, key: &str, value: &str) {
    let status = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint, "put", key, value])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("etcdctl runs");
    assert!(status.success());
}

/// With etcd's authentication on, the session logs in with `user` and `password-file`; a
/// wrong password is refused by etcd and said, and the key is never taken.
#[test]
fn credentials_from_the_password_file_are_used_and_a_wrong_one_is_said() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "haven"],
        &[
            "role",
            "grant-permission",
            "haven",
            "--prefix=true",
            "readwrite",
            "/test/",
        ],
        &["user", "add", "haven:secret"],
        &["user", "grant-role", "haven", "haven"],
        &["auth", "enable"],
    ] {
        let status = std::process::Command::new("etcdctl")
            .args(["--endpoints", &etcd.endpoint, "--user", "root:rootpw"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("etcdctl runs");
        assert!(status.success(), "etcdctl {args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let with_password = |password: &str| {
        let file = dir.path().join(format!("{password}.password"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let text = format!(
            "[witness]\nendpoints = [\"{}\"]\nprefix = \"/test\"\npair = \"db1\"\nttl-s = 2\n\
             renew-ms = 400\ntimeout-ms = 600\nuser = \"haven\"\npassword-file = \"{}\"\n",
            etcd.endpoint,
            file.display()
        );
        Config::parse(&text, Path::new("haven.toml"))
            .unwrap()
            .witness
            .unwrap()
    };
    let (good, _) = session(&with_password("secret"), "hasta");
    let token = good
        .acquire(Duration::from_secs(2))
        .expect("the key, logged in");
    assert!(token > 0);

    let (bad, news) = session(&with_password("wrong"), "hastb");
    match bad.acquire(Duration::from_millis(500)) {
        Err(AcquireError::Unreachable(why)) => {
            assert!(why.contains("authentication failed"), "{why}")
        }
        other => panic!("a wrong password must not take or see the key: {other:?}"),
    }
    wait_for(
        &news,
        "etcd refusing the login, said",
        |n| matches!(n, WitnessNews::Unreachable(why) if why.contains("authentication failed")),
    );
}

/// `[witness.tls]` in a havend built without the `tls` feature: the session does not start,
/// and says why (havend then refuses every promotion with that reason).
#[cfg(not(feature = "tls"))]
#[test]
fn tls_without_the_feature_is_refused_naming_the_feature() {
    let text = "[witness]\nendpoints = [\"https://127.0.0.1:2379\"]\npair = \"db1\"\n\
                [witness.tls]\nca = \"/nonexistent/ca.pem\"\n";
    let config = Config::parse(text, Path::new("haven.toml"))
        .unwrap()
        .witness
        .unwrap();
    let error = WitnessHandle::start(&config, "hasta", Arc::new(|_, _| {})).unwrap_err();
    assert!(error.to_string().contains("cargo feature `tls`"), "{error}");
}
