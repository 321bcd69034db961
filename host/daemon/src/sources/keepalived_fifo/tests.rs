use super::*;
use crate::sources::source_thread::assert_joined;
use haven_core::{CarpChange, CarpState};
use nix::sys::stat::Mode as NixMode;
use nix::unistd::mkfifo;
use rustix::io::write;
use std::sync::mpsc;
use std::time::Instant;

/// Generous bound for anything that should happen "soon".
const DEADLINE: Duration = Duration::from_secs(5);

fn mapping() -> BTreeMap<String, (u8, String)> {
    BTreeMap::from([
        ("VI_1".to_owned(), (1, "eth0".to_owned())),
        ("G1".to_owned(), (7, "bond0".to_owned())),
    ])
}

fn fast() -> FifoOptions {
    FifoOptions {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
    }
}

fn fifo_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("keepalived.fifo")
}

fn make_fifo(path: &Path) {
    mkfifo(path, NixMode::from_bits_truncate(0o600)).unwrap();
}

fn start(path: &Path, options: FifoOptions) -> (KeepalivedFifo, Receiver<FifoMessage>) {
    let (tx, rx) = mpsc::channel();
    let reader = KeepalivedFifo::spawn_with(path.to_owned(), mapping(), options, move |message| {
        let _ = tx.send(message);
    });
    (reader, rx)
}

fn next(rx: &Receiver<FifoMessage>) -> FifoMessage {
    rx.recv_timeout(DEADLINE)
        .expect("no message from the keepalived FIFO reader in time")
}

fn next_event(rx: &Receiver<FifoMessage>) -> Event {
    match next(rx) {
        FifoMessage::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn next_bad(rx: &Receiver<FifoMessage>) -> (String, String) {
    match next(rx) {
        FifoMessage::BadInput { text, reason } => (text, reason),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

fn carp(vhid: u8, interface: &str, state: CarpState) -> Event {
    Event::CarpChanged(CarpChange {
        vhid,
        interface: interface.into(),
        state,
        previous: None,
    })
}

/// A writer as keepalived opens one: write-only (non-blocking, so a test cannot hang on it;
/// there is always a reader by the time it is opened).
fn writer(path: &Path) -> OwnedFd {
    open(
        path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("opening the FIFO for writing")
}

fn send(fd: &OwnedFd, data: &[u8]) {
    let deadline = Instant::now() + DEADLINE;
    let mut rest = data;
    while !rest.is_empty() {
        match write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::AGAIN | Errno::INTR) => {
                assert!(Instant::now() < deadline, "the FIFO stayed full");
                std::thread::yield_now();
            }
            Err(error) => panic!("writing to the FIFO: {error}"),
        }
    }
}

/// Bounded wait for a condition on the counters.
fn wait_stats(reader: &KeepalivedFifo, what: &str, done: impl Fn(&FifoStats) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = reader.stats();
        if done(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A reader on a fresh FIFO, its first `Opened` received, and a writer.
fn opened() -> (
    tempfile::TempDir,
    PathBuf,
    KeepalivedFifo,
    Receiver<FifoMessage>,
    OwnedFd,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_path(&dir);
    make_fifo(&path);
    let (reader, rx) = start(&path, fast());
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: false });
    let fd = writer(&path);
    (dir, path, reader, rx, fd)
}

// -------------------------------------------------------------------------- pure helpers

fn split(buffer: &mut LineBuffer, data: &[u8]) -> Vec<Result<Vec<u8>, usize>> {
    let mut out = Vec::new();
    buffer.push(data, &mut |line| {
        out.push(match line {
            Line::Complete(line) => Ok(line.to_vec()),
            Line::TooLong(prefix) => Err(prefix.len()),
        })
    });
    out
}

#[test]
fn line_buffer_assembles_and_splits() {
    let mut buffer = LineBuffer::default();
    assert_eq!(split(&mut buffer, b"ab"), []);
    assert_eq!(
        split(&mut buffer, b"c\n\nde\nf"),
        [Ok(b"abc".to_vec()), Ok(b"de".to_vec())]
    );
    assert_eq!(split(&mut buffer, b"\n"), [Ok(b"f".to_vec())]);
    assert_eq!(split(&mut buffer, b"g"), []);
    assert_eq!(buffer.take_partial(), Some(b"g".to_vec()));
    assert_eq!(buffer.take_partial(), None);
}

#[test]
fn line_buffer_caps_long_lines() {
    let mut buffer = LineBuffer::default();
    // Exactly MAX_LINE is accepted, assembled from two pieces.
    let exact = vec![b'a'; MAX_LINE];
    assert_eq!(split(&mut buffer, &exact[..10]), []);
    let mut rest = exact[10..].to_vec();
    rest.push(b'\n');
    assert_eq!(split(&mut buffer, &rest), [Ok(exact.clone())]);

    // One more byte is too long: reported once, discarded up to the newline across pushes.
    let long = vec![b'b'; MAX_LINE + 1];
    assert_eq!(split(&mut buffer, &long), [Err(MAX_LINE)]);
    assert_eq!(split(&mut buffer, &long), []);
    assert_eq!(split(&mut buffer, b"bbb\nok\n"), [Ok(b"ok".to_vec())]);

    // Too long within one push, followed by a good line.
    let mut both = vec![b'c'; MAX_LINE + 5];
    both.extend_from_slice(b"\nfine\n");
    assert_eq!(
        split(&mut buffer, &both),
        [Err(MAX_LINE), Ok(b"fine".to_vec())]
    );
    assert_eq!(buffer.take_partial(), None);
}

// -------------------------------------------------------------------------- real FIFOs

#[test]
fn ordered_transitions_become_carp_changed_in_order() {
    let (_dir, _path, reader, rx, fd) = opened();
    for line in [
        "INSTANCE \"VI_1\" MASTER 100\n",
        "INSTANCE \"VI_1\" BACKUP 100\n",
        "INSTANCE \"VI_1\" FAULT 0\n",
        "GROUP \"G1\" MASTER 0\n",
    ] {
        send(&fd, line.as_bytes());
    }
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Backup));
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Init));
    assert_eq!(next_event(&rx), carp(7, "bond0", CarpState::Master));
    let stats = reader.stats();
    assert_eq!(
        (stats.lines, stats.events, stats.bad_lines, stats.reopens),
        (4, 4, 0, 0),
        "{stats:?}"
    );
    reader.stop();
    // The sink went with the thread: nothing else was sent.
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn garbage_and_unmapped_names_are_bad_input_and_reading_goes_on() {
    let (_dir, _path, reader, rx, fd) = opened();
    send(&fd, b"garbage\n");
    send(&fd, b"INSTANCE \"VI_9\" MASTER 100\n");
    send(&fd, b"INSTANCE \"VI\xff\" MASTER 100\n");
    send(&fd, b"XS \"[10.0.0.1]:tcp:80\" UP 0\n");
    // Known lines that are not transitions (and the NUL keepalived leaves before the next
    // line on a shared FIFO) are counted, not reported.
    send(&fd, b"VS [10.0.0.1]:tcp:80 UP\n");
    send(&fd, b"\0INSTANCE \"VI_1\" MASTER_PRIORITY 110\n");
    send(&fd, b"\0INSTANCE \"VI_1\" MASTER 100\n");

    let (text, reason) = next_bad(&rx);
    assert_eq!(text, "garbage");
    assert!(reason.contains("is not `<INSTANCE|GROUP>"), "{reason}");
    let (text, reason) = next_bad(&rx);
    assert_eq!(text, "INSTANCE \"VI_9\" MASTER 100");
    assert!(reason.contains("not mapped"), "{reason}");
    let (text, reason) = next_bad(&rx);
    assert_eq!(text, "INSTANCE \"VI\u{fffd}\" MASTER 100");
    assert!(reason.contains("not valid UTF-8"), "{reason}");
    let (_, reason) = next_bad(&rx);
    assert!(reason.contains("not INSTANCE or GROUP"), "{reason}");
    for what in ["a checker line", "a priority change"] {
        assert!(
            matches!(next(&rx), FifoMessage::Skipped { what: said, .. } if said == what),
            "{what}"
        );
    }
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));

    let stats = reader.stats();
    assert_eq!(
        (stats.lines, stats.events, stats.bad_lines, stats.skipped),
        (7, 1, 4, 2),
        "{stats:?}"
    );
    reader.stop();
}

#[test]
fn a_line_split_across_two_writes_is_assembled() {
    let (_dir, _path, reader, rx, fd) = opened();
    let first = b"INSTANCE \"VI_1\" MAS";
    send(&fd, first);
    // The reader has consumed the first half before the second is written.
    wait_stats(&reader, "first half not read", |s| {
        s.bytes == first.len() as u64
    });
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    send(&fd, b"TER 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    assert_eq!(reader.stats().lines, 1);
    reader.stop();
}

#[test]
fn several_lines_in_one_write_and_blank_lines() {
    let (_dir, _path, reader, rx, fd) = opened();
    send(
        &fd,
        b"INSTANCE \"VI_1\" BACKUP 90\n\nINSTANCE \"VI_1\" MASTER 90\nGROUP \"G1\" STOP 0\n",
    );
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Backup));
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    assert_eq!(next_event(&rx), carp(7, "bond0", CarpState::Init));
    let stats = reader.stats();
    assert_eq!((stats.lines, stats.events), (3, 3), "{stats:?}");
    reader.stop();
}

#[test]
fn an_over_long_line_is_reported_and_discarded() {
    let (_dir, _path, reader, rx, fd) = opened();
    let mut data = vec![b'x'; MAX_LINE * 2];
    data.extend_from_slice(b"\nINSTANCE \"VI_1\" MASTER 100\n");
    send(&fd, &data);
    let (text, reason) = next_bad(&rx);
    assert!(text.starts_with("xxxx") && text.len() < 300, "{text}");
    assert!(reason.contains("longer than 4096 bytes"), "{reason}");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    reader.stop();
}

#[test]
fn writers_closing_and_reopening_do_not_end_reading_or_spin() {
    let (_dir, path, reader, rx, fd) = opened();
    send(&fd, b"INSTANCE \"VI_1\" MASTER 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    drop(fd);

    // With no writer left, nothing is reported (no EOF, no reopen) ...
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
    // ... and the reader is not woken up over and over (an EOF spin would wake it thousands
    // of times in 300 ms).
    let wakeups = reader.stats().wakeups;
    assert!(wakeups <= 3, "{:?}", reader.stats());

    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" BACKUP 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Backup));
    drop(fd);
    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" FAULT 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Init));

    let stats = reader.stats();
    assert_eq!((stats.events, stats.reopens), (3, 0), "{stats:?}");
    assert!(stats.wakeups <= 10, "{stats:?}");
    reader.stop();
}

#[test]
fn missing_fifo_is_unavailable_then_events_flow_once_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_path(&dir);
    let (reader, rx) = start(&path, fast());
    match next(&rx) {
        FifoMessage::Unavailable { reason } => {
            assert!(reason.contains("keepalived.fifo"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Several more attempts fail, reported only once.
    wait_stats(&reader, "no retries", |s| s.open_failures >= 3);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    make_fifo(&path);
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: true });
    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" MASTER 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    // The first successful open is not counted as a reopen, though `Opened` says transitions
    // may have been missed.
    assert_eq!(reader.stats().reopens, 0);
    reader.stop();
}

#[test]
fn a_regular_file_is_unavailable_until_replaced_by_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_path(&dir);
    std::fs::write(&path, "INSTANCE \"VI_1\" MASTER 100\n").unwrap();
    let (reader, rx) = start(&path, fast());
    match next(&rx) {
        FifoMessage::Unavailable { reason } => {
            assert!(
                reason.contains("is not a FIFO (it is a regular file)"),
                "{reason}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    wait_stats(&reader, "no retries", |s| s.open_failures >= 2);

    // A directory is a different reason, so it is reported again.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    match next(&rx) {
        FifoMessage::Unavailable { reason } => {
            assert!(reason.contains("(it is a directory)"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    std::fs::remove_dir(&path).unwrap();
    make_fifo(&path);
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: true });
    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" BACKUP 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Backup));
    reader.stop();
}

#[test]
fn a_recreated_fifo_is_reopened_after_draining_the_old_one() {
    let (dir, path, reader, rx, old) = opened();
    // keepalived restarting: the FIFO is replaced by a new one at the same path, with a line
    // and a partial line still unread in the old one (or read just before; either way they
    // come first).
    send(&old, b"INSTANCE \"VI_1\" MASTER 100\nINSTANCE \"VI");
    let new = dir.path().join("new.fifo");
    make_fifo(&new);
    std::fs::rename(&new, &path).unwrap();

    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));
    let (text, reason) = next_bad(&rx);
    assert_eq!(text, "INSTANCE \"VI");
    assert!(reason.contains("incomplete"), "{reason}");
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: true });
    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" BACKUP 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Backup));

    // keepalived exiting: the FIFO is removed. That is reported, then it comes back.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(next(&rx), FifoMessage::Unavailable { .. }));
    make_fifo(&path);
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: true });
    let fd = writer(&path);
    send(&fd, b"INSTANCE \"VI_1\" MASTER 100\n");
    assert_eq!(next_event(&rx), carp(1, "eth0", CarpState::Master));

    assert_eq!(reader.stats().reopens, 2);
    reader.stop();
}

#[test]
fn stop_and_drop_are_prompt_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_path(&dir);
    make_fifo(&path);

    // Idle on an open FIFO, through the default spawn.
    let (tx, rx) = mpsc::channel();
    let reader = KeepalivedFifo::spawn(path.clone(), mapping(), move |message| {
        let _ = tx.send(message);
    });
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: false });
    let _writer = writer(&path);
    reader.stop();
    assert_joined(&rx);
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );

    let (reader, rx) = start(&path, fast());
    assert_eq!(next(&rx), FifoMessage::Opened { reopen: false });
    drop(reader);
    assert_joined(&rx);

    // Asleep in a long backoff while the FIFO is missing.
    let missing = dir.path().join("missing.fifo");
    let slow = FifoOptions {
        min_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(60),
    };
    let (reader, rx) = start(&missing, slow);
    assert!(matches!(next(&rx), FifoMessage::Unavailable { .. }));
    reader.stop();
    assert_joined(&rx);
}
