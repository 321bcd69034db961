//! Issue 3: the whole daemon loop, from a line written on devd's socket to a decided plan.
//!
//! ```text
//! cargo bench -p haven-daemon --bench event_loop              # full run, ~1.5 minutes
//! cargo bench -p haven-daemon --bench event_loop -- --quick   # smoke run, ~30 s
//! HAVEN_BENCH_QUICK=1 cargo bench -p haven-daemon --bench event_loop
//! TMPDIR=/dev/shm cargo bench -p haven-daemon --bench event_loop   # state folder on tmpfs
//! ```
//!
//! (15 s of either run wait for the hold-down's settle timer, 5 s three times.)
//!
//! Like `haven-runtime`'s `decision` bench, the binary does the full run only when cargo
//! passes `--bench` (under `cargo bench`); run any other way (`cargo test --benches`, or
//! directly) it does the quick run. Other arguments are ignored.
//!
//! The bench starts the real daemon in-process (`Daemon::start`, dry-run executor, the seed
//! policy configured from `examples/seed/haven.toml`, state and control folders in a temporary
//! folder) and is itself devd: it binds a `SOCK_SEQPACKET` unix socket, accepts the daemon's
//! connection and writes real devd lines, one per packet. It also stands in for `hastctl`
//! (a script that prints `hastctl list` for the resource `test`, secondary and complete), so
//! that the model knows the resource and a promotion can be planned on this Linux machine.
//! It learns that the daemon decided from the status board's decision counter and its
//! condition variable (`wait_for_decisions`), never by polling; queue counters come from the
//! control socket's `status`, and what each measured event was decided from the journal.
//!
//! Measured:
//! 1. Latency, one line at a time, `MASTER`/`BACKUP` alternating on vhid 1: the time from
//!    just before the line is written until the decision counter has grown (this includes the
//!    bench thread's own wake-up). Two ways: back to back (the next line as soon as the
//!    decision is seen, so the loop may still be syncing the journal for the previous event),
//!    and isolated (a pause after each decision, long enough for that sync to end). With the
//!    seed's 5 s hold-down, after the first edge every decision is the one-step plan that
//!    re-arms the settle timer; a second daemon with `hold-down-ms = 0` makes every line a
//!    full promotion or demotion plan.
//! 2. Throughput: (a) non-coalescing devd events (`!system=IFNET subsystem=em0 ...`, which
//!    the seed policy decides to ignore), written as fast as the loop takes them but never more
//!    than half the queue ahead of it; (b) CARP flap storms written back to back (vhid 1 only,
//!    and vhids 1..=255 round robin): lines/s until the queue is drained, and how many were
//!    coalesced; (c) a burst of non-coalescing lines with no flow control, beyond the queue's
//!    capacity: how many the queue drops.
//! 3. Baselines in the same run: the same events through the pipeline and the dry-run executor
//!    without the loop (`Runner::deliver`, no journal, socket, inbox or threads), of which the
//!    policy call; an `fsync` of the journal on the state folder's disk; a thread wake-up.
//! 4. Per phase, each thread's CPU time, time waiting for a CPU and sleeps per line (Linux's
//!    `/proc/self/task/*/schedstat`), to show where the CPU goes on a machine with few cores.
//!
//! Then a summary against the issue's targets, printed as met or missed, never asserted: the
//! machine this runs on may be shared and noisy.

#[cfg(not(unix))]
fn main() {
    println!("the daemon loop benchmark needs a Unix system (devd's SOCK_SEQPACKET socket)");
}

#[cfg(unix)]
fn main() {
    bench::main();
}

#[cfg(unix)]
mod bench {
    use haven_core::{Config, Event, Machine};
    use haven_daemon::control::{self, Request, Response};
    use haven_daemon::reconcile::Reconciler;
    use haven_daemon::status::Status;
    use haven_daemon::{Daemon, DecisionOutcome, Entry, Journal, Record};
    use haven_executor::{Delivery, DryRun, Observer, Runner};
    use haven_runtime::{Decision, Outcome, Pipeline, Runtime, RuntimeOptions};
    use rustix::net::sockopt::{Timeout, set_socket_timeout};
    use rustix::net::{
        AddressFamily, SendFlags, SocketAddrUnix, SocketType, accept, bind, listen, send, socket,
    };
    use std::collections::{BTreeMap, HashMap};
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// Sample counts for one run.
    #[derive(Debug, Clone, Copy)]
    struct Counts {
        warmup: usize,
        latency: usize,
        throughput: usize,
        storm: usize,
        burst: usize,
        baseline: usize,
        fsync: usize,
    }

    const FULL: Counts = Counts {
        warmup: 200,
        latency: 2_000,
        throughput: 20_000,
        storm: 20_000,
        burst: 5_000,
        baseline: 5_000,
        fsync: 500,
    };

    const QUICK: Counts = Counts {
        warmup: 20,
        latency: 200,
        throughput: 2_000,
        storm: 2_000,
        burst: 2_000,
        baseline: 200,
        fsync: 20,
    };

    /// The issue's targets.
    const TARGET_EVENTS_PER_SEC: f64 = 20_000.0;
    const TARGET_P99: Duration = Duration::from_micros(200);

    /// The seed config, whose policy entry (settings, grants, limits) the daemon runs.
    const SEED_CONFIG: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/haven.toml"
    );

    /// Longest wait for anything the daemon should do at once.
    const TIMEOUT: Duration = Duration::from_secs(10);
    /// How long without a new decision counts as "the loop is done" after a storm.
    const QUIET: Duration = Duration::from_millis(200);
    /// The longest a control socket path may be (sun_path is 104 bytes on FreeBSD, and the
    /// daemon's own check is stricter).
    const MAX_SOCKET_PATH: usize = 90;
    /// Non-coalescing events written ahead of the loop, at most, in the throughput run: half
    /// the default queue (1024), so that none is dropped.
    const WINDOW: u64 = 512;

    /// `hastctl list` as the stand-in prints it: the seed's resource, secondary and in sync.
    const FAKE_HASTCTL: &str = "#!/bin/sh\n\
        printf 'test:\\n  role: secondary\\n  provname: test\\n  localpath: /dev/vdb\\n  \
        extentsize: 2097152 (2.0MB)\\n  keepdirty: 64\\n  remoteaddr: 192.168.1.52\\n  \
        replication: memsync\\n  status: complete\\n  dirty: 0 (0B)\\n'\n";

    fn carp_line(vhid: u8, master: bool) -> String {
        let state = if master { "MASTER" } else { "BACKUP" };
        format!("!system=CARP subsystem={vhid}@em0 type={state}\n")
    }

    fn ifnet_line(up: bool) -> &'static str {
        if up {
            "!system=IFNET subsystem=em0 type=LINK_UP\n"
        } else {
            "!system=IFNET subsystem=em0 type=LINK_DOWN\n"
        }
    }

    // ------------------------------------------------------------------------------ statistics
    use haven_test_artifacts::support::Percentiles as Stats;

    fn micros(duration: Duration) -> String {
        format!("{:.1} µs", duration.as_secs_f64() * 1e6)
    }

    fn us(duration: Duration) -> f64 {
        duration.as_secs_f64() * 1e6
    }

    const ROW_HEADER: [&str; 5] = ["samples", "median", "p99", "max", "per s"];

    fn print_header(title: &str) {
        println!(
            "{title:<52} {:>8} {:>10} {:>10} {:>10} {:>8}",
            ROW_HEADER[0], ROW_HEADER[1], ROW_HEADER[2], ROW_HEADER[3], ROW_HEADER[4]
        );
    }

    /// One row; `per_second` is samples over the wall time of the run that took them.
    fn print_row(name: &str, stats: &Stats, per_second: Option<f64>) {
        let rate = per_second.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"));
        println!(
            "{name:<52} {:>8} {:>10} {:>10} {:>10} {rate:>8}",
            stats.samples,
            micros(stats.median),
            micros(stats.p99),
            micros(stats.max),
        );
    }

    // ------------------------------------------------------------------------------ machine

    /// `YYYY-MM-DD HH:MM UTC` (Howard Hinnant's days-to-civil).
    fn utc_now() -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let days = (secs / 86_400) as i64;
        let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
    }

    fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split(':').nth(1))
                    .map(|model| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned())
    }

    fn kernel() -> String {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| format!("Linux {}", release.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned())
    }

    /// The file system type of `path`, as far as this bench knows the magic numbers.
    #[cfg(target_os = "linux")]
    fn filesystem(path: &Path) -> String {
        match rustix::fs::statfs(path) {
            Ok(stat) => match stat.f_type as u64 {
                0xEF53 => "ext4".to_owned(),
                0x0102_1994 => "tmpfs".to_owned(),
                0x5846_5342 => "xfs".to_owned(),
                0x9123_683E => "btrfs".to_owned(),
                0x794C_7630 => "overlayfs".to_owned(),
                0x2FC1_2FC1 => "zfs".to_owned(),
                other => format!("f_type {other:#x}"),
            },
            Err(error) => format!("unknown ({error})"),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn filesystem(_path: &Path) -> String {
        "unknown".to_owned()
    }

    // ------------------------------------------------------------------------------ threads

    /// What the kernel counted for the process's threads of one name (Linux's
    /// `/proc/self/task/*/schedstat` and `status`; empty elsewhere).
    #[derive(Debug, Default, Clone, Copy)]
    struct ThreadTimes {
        /// Time on a CPU.
        on_cpu: Duration,
        /// Time runnable but waiting for a CPU.
        waiting: Duration,
        /// Voluntary context switches: the thread blocked (a condvar, a socket, an fsync).
        sleeps: u64,
    }

    /// The threads, by name; this thread is `bench`.
    fn threads() -> BTreeMap<String, ThreadTimes> {
        let mut threads: BTreeMap<String, ThreadTimes> = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return threads;
        };
        let me = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|link| link.file_name().map(ToOwned::to_owned));
        for task in tasks.flatten() {
            let dir = task.path();
            let name = if Some(task.file_name()) == me {
                "bench".to_owned()
            } else {
                std::fs::read_to_string(dir.join("comm"))
                    .map(|comm| comm.trim().to_owned())
                    .unwrap_or_default()
            };
            let schedstat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            let mut fields = schedstat
                .split_whitespace()
                .map(|field| field.parse::<u64>().unwrap_or(0));
            let (on_cpu, waiting) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
            let sleeps = std::fs::read_to_string(dir.join("status"))
                .unwrap_or_default()
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            let entry = threads.entry(name).or_default();
            entry.on_cpu += Duration::from_nanos(on_cpu);
            entry.waiting += Duration::from_nanos(waiting);
            entry.sleeps += sleeps;
        }
        threads
    }

    /// Per event, between two snapshots: each busy thread's CPU time, wait for a CPU, sleeps.
    fn print_threads(
        before: &BTreeMap<String, ThreadTimes>,
        after: &BTreeMap<String, ThreadTimes>,
        per: u64,
        what: &str,
    ) {
        if after.is_empty() || per == 0 {
            return;
        }
        let mut parts = Vec::new();
        for (name, now) in after {
            let then = before.get(name).copied().unwrap_or_default();
            let on_cpu = now.on_cpu.saturating_sub(then.on_cpu) / per as u32;
            let waiting = now.waiting.saturating_sub(then.waiting) / per as u32;
            let sleeps = now.sleeps.saturating_sub(then.sleeps) as f64 / per as f64;
            if on_cpu < Duration::from_nanos(500) && waiting < Duration::from_nanos(500) {
                continue;
            }
            parts.push(format!(
                "{name} {:.1} (+{:.1} runnable, {sleeps:.2} sleeps)",
                us(on_cpu),
                us(waiting)
            ));
        }
        println!("    CPU µs per {what}: {}", parts.join("; "));
    }

    // ------------------------------------------------------------------------------ devd

    /// The bench's devd: a listening seqpacket socket.
    struct DevdServer {
        listener: OwnedFd,
    }

    impl DevdServer {
        fn bind(path: &Path) -> DevdServer {
            let listener = socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
                .expect("a SOCK_SEQPACKET socket");
            bind(
                &listener,
                &SocketAddrUnix::new(path).expect("a socket path"),
            )
            .expect("binding the devd socket");
            listen(&listener, 4).expect("listening on the devd socket");
            // Bounds accept(): the bench fails instead of hanging.
            set_socket_timeout(&listener, Timeout::Recv, Some(TIMEOUT)).expect("a timeout");
            DevdServer { listener }
        }

        fn accept(&self) -> OwnedFd {
            accept(&self.listener).expect("the daemon did not connect to devd in time")
        }
    }

    /// One line, one packet, as devd writes them.
    fn write_line(conn: &OwnedFd, line: &str) {
        let sent = send(conn, line.as_bytes(), SendFlags::empty()).expect("writing a devd line");
        assert_eq!(sent, line.len(), "a devd line was cut");
    }

    // ------------------------------------------------------------------------------ daemon

    /// A running daemon with its devd connection and its folder.
    struct Harness {
        daemon: Daemon,
        conn: OwnedFd,
        _devd: DevdServer,
        state_dir: PathBuf,
        config: Config,
        dir: tempfile::TempDir,
    }

    /// A temporary folder whose control socket path is short enough.
    fn temp_dir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("haven-loop-")
            .tempdir()
            .expect("a temporary folder");
        let socket = dir.path().join("control").join(control::SOCKET_NAME);
        if socket.as_os_str().len() <= MAX_SOCKET_PATH {
            return dir;
        }
        tempfile::Builder::new()
            .prefix("haven-loop-")
            .tempdir_in("/tmp")
            .expect("a temporary folder in /tmp")
    }

    /// The config text: the seed's `[limits]` and `[[policy]]` as they are (the module is the
    /// seed policy built by `haven-test-artifacts`; `hold_down_ms` overrides the setting), and
    /// a `[daemon]` and sources of the bench's own.
    fn config_text(dir: &Path, hold_down_ms: Option<u32>) -> String {
        let seed = std::fs::read_to_string(SEED_CONFIG).expect("reading examples/seed/haven.toml");
        let mut table: toml::Table = seed.parse().expect("the seed config is TOML");
        table.remove("daemon");
        table.remove("sources");
        table.remove("carp");
        let policies = table
            .get_mut("policy")
            .and_then(toml::Value::as_array_mut)
            .expect("the seed config has [[policy]]");
        assert_eq!(policies.len(), 1, "the seed config has one policy");
        let policy = policies[0].as_table_mut().expect("a policy table");
        policy.insert(
            "module".into(),
            haven_test_artifacts::CARP_HAST_SWITCH.into(),
        );
        if let Some(hold_down_ms) = hold_down_ms {
            policy
                .get_mut("settings")
                .and_then(toml::Value::as_table_mut)
                .expect("the seed policy has settings")
                .insert("hold-down-ms".into(), i64::from(hold_down_ms).into());
        }
        let policy_part = toml::to_string(&table).expect("writing TOML");
        let path = |name: &str| {
            let path = dir.join(name);
            toml::Value::from(path.to_str().expect("a UTF-8 temporary path")).to_string()
        };
        format!(
            "{policy_part}\n\
             [daemon]\n\
             state-dir = {}\n\
             control-dir = {}\n\
             executor = \"dry-run\"\n\
             \n\
             [sources.devd]\n\
             socket = {}\n\
             \n\
             [sources.hastctl]\n\
             program = {}\n\
             interval-ms = 2000\n\
             timeout-ms = 10000\n",
            path("state"),
            path("control"),
            path("devd.pipe"),
            path("hastctl"),
        )
    }

    impl Harness {
        fn start(hold_down_ms: Option<u32>) -> Harness {
            let dir = temp_dir();
            let hastctl = dir.path().join("hastctl");
            std::fs::write(&hastctl, FAKE_HASTCTL).expect("writing the hastctl stand-in");
            std::fs::set_permissions(&hastctl, std::fs::Permissions::from_mode(0o755))
                .expect("making the hastctl stand-in executable");
            let text = config_text(dir.path(), hold_down_ms);
            let config_path = dir.path().join("haven.toml");
            std::fs::write(&config_path, &text).expect("writing haven.toml");
            let config = Config::parse(&text, &config_path).expect("the bench config parses");
            let state_dir = config.daemon.state_dir.clone();

            // devd is there before the daemon: its first connection succeeds, no resync.
            let devd = DevdServer::bind(&config.sources.devd.as_ref().expect("devd").socket);
            let started = Instant::now();
            let daemon = Daemon::start(config.clone(), &config_path).expect("the daemon starts");
            let conn = devd.accept();
            // The startup decision: the daemon is ready for events.
            let board = daemon.status_board();
            let count = board.wait_for_decisions(1, Instant::now() + TIMEOUT);
            assert!(count >= 1, "no startup decision");
            println!(
                "  daemon started and decided its startup event in {:.0} ms (policy compiled cold)",
                started.elapsed().as_secs_f64() * 1e3
            );
            Harness {
                daemon,
                conn,
                _devd: devd,
                state_dir,
                config,
                dir,
            }
        }

        fn decisions(&self) -> u64 {
            self.daemon.status_board().decisions_total()
        }

        /// The status, from the control socket, as `havenctl status` gets it.
        fn status(&self) -> Status {
            let response = control::send(
                self.daemon.control_path(),
                &Request::Status,
                Duration::from_secs(5),
            )
            .expect("asking the daemon for its status");
            match response {
                Response::Ok { body } => serde_json::from_value(body).expect("a status"),
                Response::Error { message } => panic!("status refused: {message}"),
            }
        }

        /// Write one line and wait for the decision count to grow: the time from just before
        /// the write.
        fn one_line(&self, line: &str) -> Duration {
            let board = self.daemon.status_board();
            let before = board.decisions_total();
            let started = Instant::now();
            write_line(&self.conn, line);
            let after = board.wait_for_decisions(before + 1, started + TIMEOUT);
            let elapsed = started.elapsed();
            assert!(
                after > before,
                "no decision within {TIMEOUT:?} of a devd line"
            );
            elapsed
        }

        /// Wait until no decision came for [`QUIET`]: the count then, and when the last one
        /// was seen (`since` if none came).
        fn wait_quiet(&self, since: Instant) -> (u64, Instant) {
            let board = self.daemon.status_board();
            let mut count = board.decisions_total();
            let mut last = since;
            let limit = Instant::now() + Duration::from_secs(120);
            loop {
                let now = board.wait_for_decisions(count + 1, Instant::now() + QUIET);
                if now > count {
                    count = now;
                    last = Instant::now();
                } else {
                    break;
                }
                assert!(Instant::now() < limit, "the daemon never went quiet");
            }
            (count, last)
        }

        /// Wait for the settle timer the hold-down armed (one more decision, within `limit`).
        fn wait_settle(&self, limit: Duration) -> Option<Duration> {
            let before = self.decisions();
            let started = Instant::now();
            let after = self
                .daemon
                .status_board()
                .wait_for_decisions(before + 1, started + limit);
            (after > before).then(|| started.elapsed())
        }

        /// The journal once the loop has written what it decided: it writes each event's
        /// lines after the decisions are signalled, so read until the journal stops growing
        /// (bounded).
        fn journal(&self) -> Vec<Record> {
            let read = || {
                Journal::read_all(&self.state_dir)
                    .expect("reading the journal")
                    .records
            };
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut records = read();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                let again = read();
                if again.len() == records.len() || Instant::now() >= deadline {
                    return again;
                }
                records = again;
            }
        }

        fn stop(self) {
            let Harness { daemon, dir, .. } = self;
            let stopped = Instant::now();
            daemon.stop();
            println!(
                "  daemon stopped in {:.0} ms",
                stopped.elapsed().as_secs_f64() * 1e3
            );
            let path = dir.path().to_owned();
            dir.close().expect("removing the temporary folder");
            assert!(!path.exists());
        }
    }

    // ------------------------------------------------------------------------------ journal

    /// What the journal says about a run of devd events: outcomes, plan shapes, call times.
    #[derive(Debug, Default)]
    struct Decided {
        events: usize,
        coalesced: u64,
        outcomes: BTreeMap<&'static str, usize>,
        /// Plans by their steps' kinds.
        shapes: BTreeMap<String, usize>,
        /// The policy call's own time, as the loop journaled it.
        call: Vec<Duration>,
    }

    /// The devd events in the journal, in order, with their decisions.
    fn devd_decisions(records: &[Record]) -> Vec<(u64, u32, Vec<&Entry>)> {
        let mut order = Vec::new();
        let mut decisions: HashMap<u64, Vec<&Entry>> = HashMap::new();
        for record in records {
            match &record.entry {
                Entry::Event {
                    event_id,
                    source,
                    coalesced,
                    ..
                } if source == "devd" => order.push((*event_id, *coalesced)),
                entry @ Entry::Decision { event_id, .. } => {
                    decisions.entry(*event_id).or_default().push(entry)
                }
                _ => {}
            }
        }
        order
            .into_iter()
            .map(|(id, coalesced)| (id, coalesced, decisions.remove(&id).unwrap_or_default()))
            .collect()
    }

    fn summarize(events: &[(u64, u32, Vec<&Entry>)]) -> Decided {
        let mut decided = Decided::default();
        for (_, coalesced, decisions) in events {
            decided.events += 1;
            decided.coalesced += u64::from(*coalesced);
            for entry in decisions {
                let Entry::Decision {
                    outcome,
                    plan,
                    elapsed_us,
                    ..
                } = entry
                else {
                    continue;
                };
                let name = match outcome {
                    DecisionOutcome::NoAction => "no-action",
                    DecisionOutcome::Plan => "plan",
                    DecisionOutcome::Refused => "refused",
                    DecisionOutcome::Failed => "failed",
                };
                *decided.outcomes.entry(name).or_default() += 1;
                if let Some(plan) = plan {
                    let shape = plan
                        .steps
                        .iter()
                        .map(|step| step.action.kind())
                        .collect::<Vec<_>>()
                        .join(", ");
                    *decided.shapes.entry(shape).or_default() += 1;
                }
                decided.call.push(Duration::from_micros(*elapsed_us));
            }
        }
        decided
    }

    fn print_decided(decided: &Decided) {
        let outcomes = decided
            .outcomes
            .iter()
            .map(|(outcome, count)| format!("{count} {outcome}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "    journal: {} events ({} coalesced into them), decided: {outcomes}",
            decided.events, decided.coalesced
        );
        for (shape, count) in &decided.shapes {
            println!("      {count:>6} plan(s) of [{shape}]");
        }
    }

    /// The highest event id in the journal so far (of any source: ids are shared). Not the
    /// last one journaled: an event coalesced into a waiting one takes the newer id but keeps
    /// the older place.
    fn last_event_id(records: &[Record]) -> u64 {
        records
            .iter()
            .filter_map(|record| match &record.entry {
                Entry::Event { event_id, .. } => Some(*event_id),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The devd events journaled after `after_id`.
    fn devd_since(records: &[Record], after_id: u64) -> Vec<(u64, u32, Vec<&Entry>)> {
        devd_decisions(records)
            .into_iter()
            .filter(|(id, _, _)| *id > after_id)
            .collect()
    }

    // ------------------------------------------------------------------------------ latency

    struct Latency {
        name: String,
        through_loop: Stats,
    }

    /// Under a header, [`latency`] back to back, then isolated (`pause` after each decision).
    fn latencies(harness: &Harness, counts: Counts, pause: Duration) -> (Latency, Latency) {
        print_header("latency: devd line written → decision seen");
        let mut master = false;
        let back_to_back = latency(
            harness,
            "CARP vhid 1, back to back",
            counts,
            Duration::ZERO,
            &mut master,
        );
        let isolated = latency(
            harness,
            &format!("CARP vhid 1, isolated ({} ms pause)", pause.as_millis()),
            counts,
            pause,
            &mut master,
        );
        (back_to_back, isolated)
    }

    /// `counts.latency` lines alternating MASTER/BACKUP on vhid 1, one at a time, after
    /// `counts.warmup`, with `pause` after each decision.
    fn latency(
        harness: &Harness,
        name: &str,
        counts: Counts,
        pause: Duration,
        master: &mut bool,
    ) -> Latency {
        let before = last_event_id(&harness.journal());
        let mut next_line = || {
            *master = !*master;
            carp_line(1, *master)
        };
        let mut samples = Vec::with_capacity(counts.latency);
        let mut started = Instant::now();
        let mut cpu = BTreeMap::new();
        for index in 0..counts.warmup + counts.latency {
            if index == counts.warmup {
                started = Instant::now();
                cpu = threads();
            }
            let sample = harness.one_line(&next_line());
            if index >= counts.warmup {
                samples.push(sample);
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        let wall = started.elapsed();
        let cpu_after = threads();
        let records = harness.journal();
        let events = devd_since(&records, before);
        assert_eq!(
            events.len(),
            counts.warmup + counts.latency,
            "one journaled event per line"
        );
        let decided = summarize(&events[counts.warmup..]);
        assert_eq!(decided.call.len(), samples.len(), "one decision per line");
        let overhead: Vec<Duration> = samples
            .iter()
            .zip(&decided.call)
            .map(|(through_loop, call)| through_loop.saturating_sub(*call))
            .collect();
        let through_loop = Stats::of(samples);
        let rate = pause
            .is_zero()
            .then(|| through_loop.samples as f64 / wall.as_secs_f64());
        print_row(name, &through_loop, rate);
        print_threads(&cpu, &cpu_after, counts.latency as u64, "line");
        print_decided(&decided);
        print_row(
            "    of which the policy call (journaled)",
            &Stats::of(decided.call),
            None,
        );
        print_row(
            "    the rest: loop minus call, per line",
            &Stats::of(overhead),
            None,
        );
        Latency {
            name: name.to_owned(),
            through_loop,
        }
    }

    // ------------------------------------------------------------------------------ throughput

    /// Queue and policy counters between two statuses.
    fn print_counters(before: &Status, after: &Status) {
        let (q0, q1) = (&before.queue, &after.queue);
        let devd = |status: &Status| status.sources.get("devd").map_or(0, |s| s.events);
        let policy = |status: &Status| {
            status
                .policies
                .first()
                .map_or((0, 0), |policy| (policy.events, policy.plans))
        };
        let ((e0, p0), (e1, p1)) = (policy(before), policy(after));
        println!(
            "    queue: {} received from devd, {} coalesced, {} dropped, depth now {}, max depth \
             so far {} of {}; policy: {} events, {} plans; {} reports dropped, {} journal errors",
            devd(after) - devd(before),
            q1.coalesced - q0.coalesced,
            q1.dropped - q0.dropped,
            q1.depth,
            q1.max_depth,
            q1.capacity,
            e1 - e0,
            p1 - p0,
            after.reports_dropped - before.reports_dropped,
            after.journal_errors,
        );
    }

    /// (a) `n` non-coalescing devd lines, at most [`WINDOW`] ahead of the loop: events/s.
    fn throughput(harness: &Harness, n: u64) -> f64 {
        let board = harness.daemon.status_board();
        let before = harness.status();
        let base = harness.decisions();
        let cpu = threads();
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < n {
            let chunk = (WINDOW / 2).min(n - sent);
            let need = (sent + chunk).saturating_sub(WINDOW);
            if need > 0 {
                let got = board.wait_for_decisions(base + need, Instant::now() + TIMEOUT);
                assert!(got >= base + need, "the loop stalled");
            }
            for index in sent..sent + chunk {
                write_line(&harness.conn, ifnet_line(index.is_multiple_of(2)));
            }
            sent += chunk;
        }
        let written = started.elapsed();
        let got = board.wait_for_decisions(base + n, Instant::now() + TIMEOUT);
        let elapsed = started.elapsed();
        assert!(got >= base + n, "{} of {n} decided", got - base);
        let rate = n as f64 / elapsed.as_secs_f64();
        let cpu = (cpu, threads());
        let (count, _) = harness.wait_quiet(Instant::now());
        let after = harness.status();
        println!(
            "{:<52} {n:>8} lines in {:.1} ms (written in {:.1} ms): {rate:.0} events/s, \
             {:.1} µs per event",
            "(a) non-coalescing devd events (IFNET em0)",
            elapsed.as_secs_f64() * 1e3,
            written.as_secs_f64() * 1e3,
            us(elapsed) / n as f64,
        );
        if count != base + n {
            println!("    {} decision(s) more than lines", count - base - n);
        }
        print_threads(&cpu.0, &cpu.1, n, "event");
        print_counters(&before, &after);
        rate
    }

    /// (b), (c): `lines` written back to back with no flow control; lines/s until the loop
    /// has gone quiet (the queue drained).
    fn storm(harness: &Harness, name: &str, lines: &[String]) -> f64 {
        let n = lines.len() as u64;
        let before_status = harness.status();
        let before_id = last_event_id(&harness.journal());
        let base = harness.decisions();
        let cpu = threads();
        let started = Instant::now();
        for line in lines {
            write_line(&harness.conn, line);
        }
        let written = started.elapsed();
        let (count, last) = harness.wait_quiet(started);
        let drained = last.duration_since(started);
        let cpu = (cpu, threads());
        let after = harness.status();
        assert_eq!(after.queue.depth, 0, "the queue drained");
        let rate = n as f64 / drained.as_secs_f64();
        println!(
            "{name:<52} {n:>8} lines, drained in {:.1} ms (written in {:.1} ms): {rate:.0} \
             lines/s, {} decisions",
            drained.as_secs_f64() * 1e3,
            written.as_secs_f64() * 1e3,
            count - base,
        );
        print_threads(&cpu.0, &cpu.1, n, "line");
        print_counters(&before_status, &after);
        let records = harness.journal();
        print_decided(&summarize(&devd_since(&records, before_id)));
        rate
    }

    /// After CARP lines: the settle timer the hold-down armed fires, and the policy converges.
    fn settle(harness: &Harness, hold_down: Duration) {
        let before_id = last_event_id(&harness.journal());
        match harness.wait_settle(hold_down + TIMEOUT) {
            Some(after) => {
                let records = harness.journal();
                let plan = records.iter().find_map(|record| match &record.entry {
                    Entry::Decision {
                        event_id,
                        outcome,
                        plan,
                        ..
                    } if *event_id > before_id => Some((*outcome, plan.clone())),
                    _ => None,
                });
                let steps = match plan {
                    Some((_, Some(plan))) => plan
                        .steps
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                    Some((outcome, None)) => format!("{outcome:?}"),
                    None => "?".to_owned(),
                };
                println!(
                    "  the settle timer fired ({:.2} s into this wait; the hold-down runs from \
                     the last CARP decision): {steps}",
                    after.as_secs_f64()
                );
            }
            None => println!("  no settle timer fired"),
        }
    }

    // ------------------------------------------------------------------------------ baselines

    /// Records the last decision's call time and outcome.
    #[derive(Default)]
    struct LastDecision {
        elapsed: Duration,
        outcome: &'static str,
    }

    impl Observer for LastDecision {
        fn decision(&mut self, _event_id: u64, decision: &Decision) {
            self.elapsed = decision.elapsed;
            self.outcome = match decision.outcome {
                Outcome::NoAction => "no-action",
                Outcome::Plan { .. } => "plan",
                Outcome::Refused(_) => "refused",
                Outcome::Failed(_) => "failed",
            };
        }
    }

    /// Under a header, the [`baseline`] of the CARP lines [`latencies`] writes: `hot` (as
    /// back to back), then `paused` (as isolated).
    fn carp_baselines(
        config: &Config,
        hot: (usize, usize, Duration),
        paused: (usize, usize, Duration),
    ) -> (Stats, Stats) {
        print_header("baseline: the same events, no loop");
        let carp = |index: usize| carp_line(1, index.is_multiple_of(2));
        let hot = baseline(config, "CARP vhid 1", hot, carp);
        let paused = baseline(
            config,
            &format!("CARP vhid 1, {} ms pause", paused.2.as_millis()),
            paused,
            carp,
        );
        (hot, paused)
    }

    /// The same events through the pipeline and the dry-run executor, without the loop:
    /// the whole `Runner::deliver` and, of it, the policy call; `samples` after `warmup`, with
    /// `pause` before each (as the isolated lines through the loop have).
    fn baseline(
        config: &Config,
        name: &str,
        (warmup, samples, pause): (usize, usize, Duration),
        mut line: impl FnMut(usize) -> String,
    ) -> Stats {
        let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).expect("a runtime"));
        let policy = runtime
            .load(&config.policies[0])
            .expect("the seed policy loads");
        let policies = vec![policy];
        let machine = Reconciler::new(config)
            .read(&Machine::default(), &policies)
            .0;
        let mut runner = Runner::new(Pipeline::new(runtime, policies, machine), DryRun::new());
        let mut next_id = 0u64;
        let mut ids = move || {
            next_id += 1;
            next_id
        };
        let mut observer = LastDecision::default();
        let clock = Instant::now();
        runner.startup(None, &mut ids, &mut observer);
        let mut whole = Vec::with_capacity(samples);
        let mut call = Vec::with_capacity(samples);
        let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for index in 0..warmup + samples {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let text = line(index);
            let mut event =
                haven_sources::devd_line_to_event(text.trim_end()).expect("a devd line");
            // As the loop does: the model's clock, and the previous CARP state.
            let now = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            let machine = runner.pipeline.machine_mut();
            machine.now_ms = machine.now_ms.max(now);
            if let Event::CarpChanged(change) = &mut event {
                change.previous = runner.pipeline.machine().carp_state(change.vhid);
            }
            let id = ids();
            let started = Instant::now();
            runner.deliver(
                Delivery::broadcast(id, "devd", event),
                &mut ids,
                &mut observer,
            );
            let elapsed = started.elapsed();
            if index >= warmup {
                whole.push(elapsed);
                call.push(observer.elapsed);
                *outcomes.entry(observer.outcome).or_default() += 1;
            }
        }
        let whole = Stats::of(whole);
        let outcomes = outcomes
            .iter()
            .map(|(outcome, count)| format!("{count} {outcome}"))
            .collect::<Vec<_>>()
            .join(", ");
        print_row(&format!("{name}: Runner::deliver"), &whole, None);
        print_row(
            &format!("{name}:   of which the call"),
            &Stats::of(call),
            None,
        );
        println!("    decided: {outcomes}");
        whole
    }

    /// Appending a journal line (a `write`) and syncing it (`fdatasync`), in a journal next to
    /// the daemons' state folders.
    fn fsync_cost(dir: &Path, counts: Counts) -> (Stats, Stats) {
        let mut journal = Journal::open(dir.join("fsync"), 8 * 1024 * 1024, 1).expect("a journal");
        let entry = Entry::Note {
            message: "x".repeat(200),
        };
        let mut write = Vec::with_capacity(counts.fsync);
        let mut sync = Vec::with_capacity(counts.fsync);
        for index in 0..counts.fsync + 10 {
            let started = Instant::now();
            journal.append_buffered(&entry).expect("appending");
            let written = started.elapsed();
            let started = Instant::now();
            journal.sync().expect("syncing");
            let synced = started.elapsed();
            if index >= 10 {
                write.push(written);
                sync.push(synced);
            }
        }
        (Stats::of(write), Stats::of(sync))
    }

    /// One thread waking another through a mutex and condition variable (half a round trip),
    /// as the devd client wakes the loop and the loop wakes the bench; `rounds` after
    /// `warmup`, with `pause` before each.
    fn wake_up((warmup, rounds, pause): (usize, usize, Duration)) -> Stats {
        let shared = Arc::new((Mutex::new((0u64, 0u64)), Condvar::new(), Condvar::new()));
        let other = Arc::clone(&shared);
        let echo = std::thread::spawn(move || {
            let (lock, ping, pong) = &*other;
            let mut state = lock.lock().unwrap();
            loop {
                while state.0 == state.1 {
                    state = ping.wait(state).unwrap();
                }
                if state.0 == u64::MAX {
                    break;
                }
                state.1 = state.0;
                pong.notify_one();
            }
        });
        let (lock, ping, pong) = &*shared;
        let mut samples = Vec::with_capacity(rounds);
        for round in 1..=(rounds + warmup) as u64 {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let started = Instant::now();
            let mut state = lock.lock().unwrap();
            state.0 = round;
            ping.notify_one();
            while state.1 != round {
                state = pong.wait(state).unwrap();
            }
            drop(state);
            if round > warmup as u64 {
                samples.push(started.elapsed() / 2);
            }
        }
        lock.lock().unwrap().0 = u64::MAX;
        ping.notify_one();
        echo.join().unwrap();
        Stats::of(samples)
    }

    // ------------------------------------------------------------------------------ main

    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|load| {
                let fields: Vec<&str> = load.split_whitespace().take(3).collect();
                format!("load average {}", fields.join(" "))
            })
            .unwrap_or_else(|_| "load average unknown".to_owned())
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|arg| arg == "--quick")
            || std::env::var("HAVEN_BENCH_QUICK").is_ok_and(|value| value == "1")
            || !args.iter().any(|arg| arg == "--bench");
        let counts = if quick { QUICK } else { FULL };

        println!(
            "Issue 3: the daemon loop, devd socket → inbox → policy → dry-run executor → journal"
        );
        let scratch = temp_dir();
        println!(
            "machine: {} CPUs ({}), {}; {}; {}; temporary folders on {} ({})",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model(),
            kernel(),
            utc_now(),
            load_average(),
            filesystem(scratch.path()),
            scratch.path().parent().unwrap_or(scratch.path()).display(),
        );
        if quick {
            println!("QUICK MODE: {counts:?}: figures are indicative only");
        }
        println!();

        // Baselines that need no daemon.
        print_header("baselines");
        let (write, sync) = fsync_cost(scratch.path(), counts);
        print_row("journal line appended (write)", &write, None);
        print_row("journal synced after one line (fdatasync)", &sync, None);
        drop(scratch);
        // After a decision the idle loop syncs the journal; an isolated line waits that out.
        let pause = (sync.p99 * 2).clamp(Duration::from_millis(1), Duration::from_millis(20));
        let paused_samples = counts.latency / 2;
        let wake = wake_up((counts.warmup, counts.latency, Duration::ZERO));
        print_row("thread wake-up through a condvar (one way)", &wake, None);
        let cold_wake = wake_up((counts.warmup / 4, paused_samples, pause));
        print_row(
            &format!("  the same after {} ms idle", pause.as_millis()),
            &cold_wake,
            None,
        );
        println!();

        // 1. The seed config.
        println!(
            "Daemon 1: the seed config (examples/seed/haven.toml's policy, hold-down-ms = 5000), \
             dry-run executor"
        );
        let seed = Harness::start(None);
        let hold_down = Duration::from_millis(5000);
        let (seed_b2b, seed_isolated) = latencies(&seed, counts, pause);
        settle(&seed, hold_down);
        println!();

        let carp = |index: usize| carp_line(1, index.is_multiple_of(2));
        let ifnet = |index: usize| ifnet_line(index.is_multiple_of(2)).to_owned();
        let hot = (counts.warmup * 5, counts.baseline, Duration::ZERO);
        let paused = (counts.warmup / 4, paused_samples, pause);
        let (seed_hot, seed_paused) = carp_baselines(&seed.config, hot, paused);
        let ifnet_hot = baseline(&seed.config, "IFNET em0", hot, ifnet);
        println!();

        println!("throughput");
        let rate = throughput(&seed, counts.throughput as u64);
        let flaps: Vec<String> = (0..counts.storm).map(carp).collect();
        storm(&seed, "(b) CARP flap storm, vhid 1", &flaps);
        settle(&seed, hold_down);
        let round_robin: Vec<String> = (0..counts.storm)
            .map(|i| carp_line((i % 255 + 1) as u8, (i / 255).is_multiple_of(2)))
            .collect();
        storm(&seed, "(b) CARP flap storm, vhids 1..=255", &round_robin);
        settle(&seed, hold_down);
        let burst: Vec<String> = (0..counts.burst).map(ifnet).collect();
        storm(&seed, "(c) non-coalescing burst, no flow control", &burst);
        seed.stop();
        println!();

        // 2. No hold-down: every line a promotion or a demotion.
        println!(
            "Daemon 2: the same with hold-down-ms = 0: every CARP line is a promotion or \
             demotion plan"
        );
        let eager = Harness::start(Some(0));
        let (eager_b2b, eager_isolated) = latencies(&eager, counts, pause);
        println!();
        let (eager_hot, eager_paused) = carp_baselines(&eager.config, hot, paused);
        eager.stop();
        println!();

        // Summary.
        println!(
            "The loop's own cost (medians): through the loop minus Runner::deliver without it"
        );
        for (config, run, base) in [
            ("seed", &seed_b2b, &seed_hot),
            ("seed", &seed_isolated, &seed_paused),
            ("hold-down 0", &eager_b2b, &eager_hot),
            ("hold-down 0", &eager_isolated, &eager_paused),
        ] {
            println!(
                "  {config:<12} {:<38} {:>9} − {:>9} = {:>9}",
                run.name,
                micros(run.through_loop.median),
                micros(base.median),
                micros(run.through_loop.median.saturating_sub(base.median)),
            );
        }
        println!(
            "  {:<12} {:<38} {:>9} − {:>9} = {:>9}",
            "seed",
            "IFNET em0 at full rate (per event)",
            micros(Duration::from_secs_f64(1.0 / rate)),
            micros(ifnet_hot.median),
            micros(Duration::from_secs_f64(1.0 / rate).saturating_sub(ifnet_hot.median)),
        );
        println!();

        println!("Summary against the issue's targets ({})", load_average());
        let p99 = |label: &str, latency: &Latency| {
            (
                format!("p99 latency, {label}"),
                format!("<= {}", micros(TARGET_P99)),
                micros(latency.through_loop.p99),
                latency.through_loop.p99 <= TARGET_P99,
            )
        };
        let rows = [
            (
                "events/s, non-coalescing devd events".to_owned(),
                format!(">= {TARGET_EVENTS_PER_SEC:.0}"),
                format!("{rate:.0}"),
                rate >= TARGET_EVENTS_PER_SEC,
            ),
            p99("seed, isolated lines", &seed_isolated),
            p99("seed, back to back", &seed_b2b),
            p99("hold-down 0, isolated lines", &eager_isolated),
            p99("hold-down 0, back to back", &eager_b2b),
        ];
        println!("{:<44} {:>12} {:>12}  result", "", "target", "measured");
        for (what, target, measured, met) in rows {
            let result = if met { "met" } else { "missed" };
            println!("{what:<44} {target:>12} {measured:>12}  {result}");
        }
        println!(
            "(medians: seed {} isolated, {} back to back; hold-down 0 {} isolated, {} back to \
             back)",
            micros(seed_isolated.through_loop.median),
            micros(seed_b2b.through_loop.median),
            micros(eager_isolated.through_loop.median),
            micros(eager_b2b.through_loop.median),
        );
        if quick {
            println!("(quick mode: too few samples to judge the targets)");
        }
    }
}
