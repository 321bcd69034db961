use super::*;
use haven_core::{CarpChange, CarpState};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::thread;

/// Long enough for any exchange in these tests; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Answers with the request itself and the peer, so a client can check both arrived intact.
fn echo(peer: &Peer, request: Request) -> Response {
    Response::ok(serde_json::json!({
        "request": request,
        "uid": peer.uid,
        "gid": peer.gid,
        "pid": peer.pid,
    }))
}

/// Serve `n` connections with `handler` on a thread; join to get what became of them.
fn serve_n(
    socket: ControlSocket,
    n: usize,
    handler: fn(&Peer, Request) -> Response,
) -> thread::JoinHandle<(ControlSocket, Vec<Served>)> {
    thread::spawn(move || {
        let served = (0..n)
            .map(|_| socket.accept_one(handler).unwrap())
            .collect();
        (socket, served)
    })
}

/// Send a raw line (or any bytes) and read the raw answer.
fn raw(path: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    // The server may answer and close before reading everything (oversize lines).
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Read until EOF or an error: a server that closes with our bytes unread makes the
    // kernel report a reset after the answer.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(answer).unwrap()
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::HastHook {
            args: vec![
                "role".into(),
                "data".into(),
                "secondary".into(),
                "primary".into(),
            ],
        },
        Request::UcarpHook {
            args: vec!["up".into(), "eth0".into(), "10.0.0.5".into()],
        },
        Request::Notify {
            event: Event::CarpChanged(CarpChange {
                vhid: 7,
                interface: "em0".into(),
                state: CarpState::Master,
                previous: Some(CarpState::Backup),
            }),
        },
        Request::LogTail { lines: 50 },
        Request::Reload,
        Request::Operator {
            ask: haven_core::OperatorAsk::Switchover(Some("hastb".into())),
        },
        Request::Operator {
            ask: haven_core::OperatorAsk::Maintenance(true),
        },
        Request::Operator {
            ask: haven_core::OperatorAsk::AcceptIncomplete("test".into()),
        },
    ]
}

// ---------------------------------------------------------------------------------- protocol

#[test]
fn wire_format_is_kebab_case_tagged_by_command() {
    let json = |r: &Request| serde_json::to_string(r).unwrap();
    assert_eq!(json(&Request::Status), r#"{"command":"status"}"#);
    assert_eq!(json(&Request::Reload), r#"{"command":"reload"}"#);
    assert_eq!(
        json(&Request::Operator {
            ask: haven_core::OperatorAsk::Maintenance(false)
        }),
        r#"{"command":"operator","ask":{"maintenance":false}}"#
    );
    assert_eq!(
        json(&Request::LogTail { lines: 3 }),
        r#"{"command":"log-tail","lines":3}"#
    );
    assert_eq!(
        json(&Request::HastHook {
            args: vec!["connect".into(), "data".into()]
        }),
        r#"{"command":"hast-hook","args":["connect","data"]}"#
    );
    assert_eq!(
        json(&Request::Notify {
            event: Event::TimerFired("t".into())
        }),
        r#"{"command":"notify","event":{"timer-fired":"t"}}"#
    );
    assert_eq!(
        serde_json::to_string(&Response::ok(serde_json::json!({"a": 1}))).unwrap(),
        r#"{"result":"ok","body":{"a":1}}"#
    );
    assert_eq!(
        serde_json::to_string(&Response::error("no")).unwrap(),
        r#"{"result":"error","message":"no"}"#
    );
    for request in all_requests() {
        let text = json(&request);
        assert_eq!(parse_request(text.as_bytes()).unwrap(), request, "{text}");
        assert!(text.contains(&format!(r#""command":"{}""#, request.command())));
    }
}

#[test]
fn parse_request_names_the_problem() {
    assert!(parse_request(b"").unwrap_err().contains("empty"));
    assert!(parse_request(b"  ").unwrap_err().contains("empty"));
    assert!(parse_request(b"\xff\xfe").unwrap_err().contains("UTF-8"));
    let unknown = parse_request(br#"{"command":"format-disk"}"#).unwrap_err();
    assert!(unknown.contains("format-disk"), "{unknown}");
    let missing = parse_request(br#"{"command":"log-tail"}"#).unwrap_err();
    assert!(missing.contains("lines"), "{missing}");
    let extra = parse_request(br#"{"command":"log-tail","lines":1,"follow":true}"#).unwrap_err();
    assert!(extra.contains("follow"), "{extra}");
    let untagged = parse_request(br#"{"lines":1}"#).unwrap_err();
    assert!(untagged.contains("command"), "{untagged}");
}

#[test]
fn only_root_may_change_state() {
    let root = Peer {
        uid: 0,
        gid: 0,
        pid: Some(1),
    };
    let user = Peer {
        uid: 1000,
        gid: 1000,
        pid: Some(4242),
    };
    for request in all_requests() {
        assert_eq!(authorize(&root, &request), Ok(()), "{request:?}");
        let read_only = matches!(request, Request::Status | Request::LogTail { .. });
        assert_eq!(request.changes_state(), !read_only, "{request:?}");
        match authorize(&user, &request) {
            Ok(()) => assert!(read_only, "{request:?} allowed to a non-root peer"),
            Err(message) => {
                assert!(!read_only, "{request:?} refused: {message}");
                assert!(message.starts_with("only root may "), "{message}");
                assert!(message.contains("uid 1000, pid 4242"), "{message}");
            }
        }
    }
}

// ------------------------------------------------------------------------- directory, socket

#[test]
fn bind_creates_a_root_only_directory_and_socket() {
    let tmp = temp();
    let dir = tmp.path().join("haven");
    let socket = ControlSocket::bind(&dir).unwrap();
    assert_eq!(socket.path(), dir.join(SOCKET_NAME));
    assert_eq!(mode(&dir), 0o700);
    assert!(fs::metadata(&dir).unwrap().is_dir());
    let meta = fs::symlink_metadata(socket.path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(socket.path()), 0o600);
    assert_eq!(meta.uid(), euid());
    let path = socket.path().to_owned();
    drop(socket);
    assert!(!path.exists(), "the socket file is removed on drop");
}

#[test]
fn an_accessible_directory_is_refused() {
    let tmp = temp();
    for bad in [0o777, 0o755, 0o750, 0o701, 0o710] {
        let dir = tmp.path().join(format!("d{bad:o}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(bad)).unwrap();
        let error = ControlSocket::bind(&dir).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, ControlError::UnsafeDir { .. }),
            "{bad:o}: {text}"
        );
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(&format!("{bad:04o}")), "{text}");
        assert!(!dir.join(SOCKET_NAME).exists());
    }
    // A file, and a symbolic link to a good directory.
    let file = tmp.path().join("file");
    fs::write(&file, "").unwrap();
    let error = ControlSocket::bind(&file).unwrap_err().to_string();
    assert!(error.contains("is not a directory"), "{error}");
    let good = tmp.path().join("good");
    fs::create_dir(&good).unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let error = ControlSocket::bind(&link).unwrap_err().to_string();
    assert!(error.contains("symbolic link"), "{error}");
    // A missing parent is an error naming the path, not a panic.
    let error = ControlSocket::bind(&tmp.path().join("no/such"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("no/such"), "{error}");
}

#[test]
fn a_directory_owned_by_someone_else_is_refused() {
    if euid() != 0 {
        // Only root can give a directory away; as a user, an existing 0700 dir of ours is fine.
        return;
    }
    let tmp = temp();
    let dir = tmp.path().join("theirs");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    let error = ControlSocket::bind(&dir).unwrap_err().to_string();
    assert!(error.contains("owned by uid 65534"), "{error}");
}

#[test]
fn a_stale_socket_is_replaced_but_nothing_else_is() {
    let tmp = temp();
    let dir = tmp.path().join("haven");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join(SOCKET_NAME);

    // A socket nobody listens on any more: the daemon crashed.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let socket = ControlSocket::bind(&dir).unwrap();
    assert_eq!(mode(&path), 0o600);

    // While it listens, a second daemon is refused and leaves the socket alone.
    let error = ControlSocket::bind(&dir).unwrap_err();
    assert!(matches!(error, ControlError::InUse { .. }), "{error}");
    // The refused bind's probe connection is waiting in the backlog, closed: serve it off
    // (an empty request, whose answer cannot be delivered).
    let served = socket.accept_one(echo).unwrap();
    assert!(
        matches!(
            served.outcome,
            Outcome::Malformed { .. } | Outcome::Failed { .. }
        ),
        "{served:?}"
    );
    let server = serve_n(socket, 1, echo);
    let answer = send(&dir, &Request::Status, WAIT).unwrap();
    assert!(matches!(answer, Response::Ok { .. }), "{answer:?}");
    drop(server.join().unwrap());

    // A regular file in its place is not ours to delete.
    fs::write(&path, "precious").unwrap();
    let error = ControlSocket::bind(&dir).unwrap_err();
    assert!(matches!(error, ControlError::NotASocket { .. }), "{error}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

// -------------------------------------------------------------------------------- exchanges

#[test]
fn every_request_kind_round_trips() {
    let tmp = temp();
    let dir = tmp.path().join("haven");
    let socket = ControlSocket::bind(&dir).unwrap();
    let requests = all_requests();
    let server = serve_n(socket, requests.len(), echo);
    for request in &requests {
        // Both ways of naming the socket.
        let target = if request.changes_state() {
            dir.clone()
        } else {
            dir.join(SOCKET_NAME)
        };
        match send(&target, request, WAIT).unwrap() {
            Response::Ok { body } => {
                let back: Request = serde_json::from_value(body["request"].clone()).unwrap();
                assert_eq!(&back, request);
            }
            Response::Error { message } => panic!("{request:?}: {message}"),
        }
    }
    let (socket, served) = server.join().unwrap();
    for (request, served) in requests.iter().zip(&served) {
        assert_eq!(
            served.outcome,
            Outcome::Handled {
                command: request.command()
            }
        );
    }
    assert_eq!(
        socket.stats(),
        ControlStats {
            handled: requests.len() as u64,
            ..ControlStats::default()
        }
    );
}

#[test]
fn peer_credentials_are_our_own() {
    let tmp = temp();
    let socket = ControlSocket::bind(&tmp.path().join("haven")).unwrap();
    let path = socket.path().to_owned();
    let server = serve_n(socket, 1, echo);
    let Response::Ok { body } = send(&path, &Request::Status, WAIT).unwrap() else {
        panic!("status refused");
    };
    let (_, served) = server.join().unwrap();
    let peer = served[0].peer.expect("peer credentials");
    assert_eq!(peer.uid, euid());
    assert_eq!(peer.gid, nix::unistd::getegid().as_raw());
    assert_eq!(body["uid"], euid());
    #[cfg(any(target_os = "linux", target_os = "android"))]
    assert_eq!(peer.pid, Some(std::process::id() as i32));
}

#[test]
fn malformed_and_oversize_lines_are_answered_and_counted() {
    let tmp = temp();
    let socket = ControlSocket::bind(&tmp.path().join("haven")).unwrap();
    let path = socket.path().to_owned();
    let oversize = {
        let mut line = br#"{"command":"hast-hook","args":[""#.to_vec();
        line.resize(DEFAULT_MAX_REQUEST_BYTES + 100, b'a');
        line.extend_from_slice(b"\"]}\n");
        line
    };
    let cases: Vec<(&[u8], &str)> = vec![
        (b"this is not json\n", "line 1 column 2"),
        (b"{\"command\":\"self-destruct\"}\n", "self-destruct"),
        (
            b"{\"command\":\"log-tail\",\"lines\":-1}\n",
            "invalid value",
        ),
        (b"\n", "empty request line"),
        (b"", "empty request line"),
        (&oversize, "longer than 65536 bytes"),
    ];
    let server = serve_n(socket, cases.len() + 1, echo);
    for (bytes, expect) in &cases {
        let answer = raw(&path, bytes);
        assert!(answer.ends_with('\n'), "{answer:?}");
        let response: Response = serde_json::from_str(&answer).unwrap();
        let Response::Error { message } = response else {
            panic!("accepted: {answer}");
        };
        assert!(message.starts_with("malformed request: "), "{message}");
        assert!(message.contains(expect), "{message} lacks {expect:?}");
    }
    // Through the client too: the server answers without reading the rest, and the client
    // still gets the answer.
    let big = Request::HastHook {
        args: vec!["a".repeat(DEFAULT_MAX_REQUEST_BYTES)],
    };
    let answer = send(&path, &big, WAIT).unwrap();
    assert_eq!(
        answer,
        Response::error("malformed request: request line longer than 65536 bytes")
    );
    let (socket, served) = server.join().unwrap();
    assert!(
        served
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Malformed { .. }))
    );
    assert_eq!(socket.stats().malformed, cases.len() as u64 + 1);
    assert_eq!(socket.stats().handled, 0);
}

#[test]
fn the_line_limit_counts_the_newline() {
    let tmp = temp();
    let limits = Limits {
        max_request_bytes: 40,
        timeout: WAIT,
    };
    let socket = ControlSocket::bind_with(&tmp.path().join("haven"), limits).unwrap();
    let path = socket.path().to_owned();
    let server = serve_n(socket, 2, echo);
    // 39 bytes + newline = 40: accepted.
    let fits = format!("{{\"command\":\"log-tail\",\"lines\":{:<8}}}\n", 12);
    assert_eq!(fits.len(), 40);
    let answer: Response = serde_json::from_str(&raw(&path, fits.as_bytes())).unwrap();
    assert!(matches!(answer, Response::Ok { .. }), "{answer:?}");
    // One more byte: refused.
    let over = format!("{{\"command\":\"log-tail\",\"lines\":{:<9}}}\n", 12);
    let answer: Response = serde_json::from_str(&raw(&path, over.as_bytes())).unwrap();
    assert_eq!(
        answer,
        Response::error("malformed request: request line longer than 40 bytes")
    );
    let (socket, _) = server.join().unwrap();
    assert_eq!(socket.stats().handled, 1);
    assert_eq!(socket.stats().malformed, 1);
}

#[test]
fn a_silent_client_holds_the_server_no_longer_than_the_timeout() {
    let tmp = temp();
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let socket = ControlSocket::bind_with(&tmp.path().join("haven"), limits).unwrap();
    let path = socket.path().to_owned();
    let server = serve_n(socket, 2, echo);
    // Connects and says nothing, and stays connected until the server has moved on.
    let silent = UnixStream::connect(&path).unwrap();
    let started = Instant::now();
    // Queued behind the silent client, this one is served once the server gives up on it.
    let answer = send(&path, &Request::Status, WAIT).unwrap();
    let waited = started.elapsed();
    assert!(matches!(answer, Response::Ok { .. }), "{answer:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let (socket, served) = server.join().unwrap();
    drop(silent);
    assert_eq!(served[0].outcome, Outcome::TimedOut);
    assert_eq!(served[1].outcome, Outcome::Handled { command: "status" });
    assert_eq!(socket.stats().timed_out, 1);
}

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline() {
    let tmp = temp();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let socket = ControlSocket::bind_with(&tmp.path().join("haven"), limits).unwrap();
    let path = socket.path().to_owned();
    let server = serve_n(socket, 1, echo);
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // One byte at a time, each well within a per-read timeout, until the server hangs up.
    // The answer comes back as EOF (or a reset) without any response.
    let started = Instant::now();
    let mut hung_up = false;
    while started.elapsed() < WAIT {
        if stream.write_all(b" ").is_err() {
            hung_up = true;
            break;
        }
        // Wait for the server's side rather than sleep: a read returns when it closes.
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 1];
        match stream.read(&mut buf) {
            Ok(0) => {
                hung_up = true;
                break;
            }
            Ok(_) => panic!("unexpected answer"),
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                hung_up = true;
                break;
            }
        }
    }
    assert!(hung_up);
    let (socket, served) = server.join().unwrap();
    assert_eq!(served[0].outcome, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(socket.stats().timed_out, 1);
}

// ------------------------------------------------------------------------------------ client

#[test]
fn client_errors_name_the_socket() {
    let tmp = temp();
    let missing = tmp.path().join("nothing-here");
    let error = send(&missing, &Request::Status, WAIT).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ControlError::Connect { .. }), "{text}");
    assert!(
        text.starts_with("is havend running? cannot connect to "),
        "{text}"
    );
    assert!(text.contains("nothing-here"), "{text}");

    // A listener that takes the request and says nothing: a timeout, not a hang.
    let path = tmp.path().join("mute.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mute = thread::spawn(move || {
        let (mut held, _) = listener.accept().unwrap();
        held.set_read_timeout(Some(WAIT)).unwrap();
        // The request, up to the client's shutdown of its side; then no answer.
        let mut sink = Vec::new();
        let _ = held.read_to_end(&mut sink);
        // The second client: hang up without an answer. `held` stays open until then, so
        // the first client can only time out.
        let (hung_up, _) = listener.accept().unwrap();
        drop(hung_up);
        drop(held);
        sink
    });
    let error = send(&path, &Request::Status, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(error, ControlError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("mute.sock"), "{error}");
    let error = send(&path, &Request::Status, WAIT).unwrap_err();
    assert!(matches!(error, ControlError::BadResponse { .. }), "{error}");
    assert!(error.to_string().contains("without an answer"), "{error}");
    let sink = mute.join().unwrap();
    assert_eq!(sink, b"{\"command\":\"status\"}\n");
}

// -------------------------------------------------------------------------- non-root peers

/// Set to a socket path, the child test below acts as a non-root client.
const CHILD_ENV: &str = "HAVEN_CONTROL_TEST_SOCKET";

#[test]
fn a_non_root_peer_is_refused_state_changes() {
    let tmp = temp();
    let dir = tmp.path().join("haven");
    let socket = ControlSocket::bind(&dir).unwrap();
    let path = socket.path().to_owned();
    if euid() != 0 {
        // We are the non-root peer.
        let server = serve_n(socket, 2, echo);
        let refused = send(&path, &Request::Reload, WAIT).unwrap();
        let Response::Error { message } = refused else {
            panic!("reload allowed: {refused:?}");
        };
        assert!(message.starts_with("only root may reload"), "{message}");
        assert!(matches!(
            send(&path, &Request::Status, WAIT).unwrap(),
            Response::Ok { .. }
        ));
        let (socket, _) = server.join().unwrap();
        assert_eq!(socket.stats().unauthorized, 1);
        return;
    }
    // As root: run this test binary's child test as nobody. Open the way to the socket for
    // it (only in this test: the daemon's directory stays 0700).
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    // Serve until our own (root's) status request says the child is done.
    let server = thread::spawn(move || {
        let mut served = Vec::new();
        loop {
            let one = socket.accept_one(echo).unwrap();
            let done = one.peer.is_some_and(|p| p.uid == 0);
            served.push(one);
            if done {
                return (socket, served);
            }
        }
    });
    // A copy of this test binary inside the test's own directory: wherever the checkout is
    // (under /root, say), nobody can reach and run it there.
    let binary = tmp.path().join("control-test-child");
    fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let child = std::process::Command::new(&binary)
        .args([
            "--exact",
            "control::tests::non_root_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .uid(65534)
        .gid(65534)
        .output();
    // Stop the server whatever became of the child.
    let stop = send(&path, &Request::Status, WAIT);
    let (socket, served) = server.join().unwrap();
    stop.unwrap();
    let child = child.expect("run the test binary as uid 65534");
    assert!(
        child.status.success(),
        "child as uid 65534 failed: {}\n{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    let from_child: Vec<_> = served
        .iter()
        .filter(|s| s.peer.is_some_and(|p| p.uid == 65534))
        .map(|s| s.outcome.clone())
        .collect();
    assert_eq!(
        from_child,
        [
            Outcome::Unauthorized { command: "reload" },
            Outcome::Unauthorized {
                command: "hast-hook"
            },
            Outcome::Handled { command: "status" },
        ]
    );
    assert_eq!(socket.stats().unauthorized, 2);
}

/// The non-root client of [`a_non_root_peer_is_refused_state_changes`]; does nothing unless
/// started by it.
#[test]
#[ignore = "run by a_non_root_peer_is_refused_state_changes as another user"]
fn non_root_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    assert_ne!(euid(), 0);
    for request in [
        Request::Reload,
        Request::HastHook {
            args: vec!["connect".into(), "data".into()],
        },
    ] {
        match send(&path, &request, WAIT).unwrap() {
            Response::Error { message } => {
                assert!(message.starts_with("only root may "), "{message}");
                assert!(message.contains("uid 65534"), "{message}");
            }
            ok => panic!("{request:?} allowed to uid {}: {ok:?}", euid()),
        }
    }
    assert!(matches!(
        send(&path, &Request::Status, WAIT).unwrap(),
        Response::Ok { .. }
    ));
}
