//! Issue 5: hot reload, from a policy module's final rename to the new version in force.
//!
//! ```text
//! cargo bench -p haven-daemon --bench reload              # full run, ~1 minute
//! cargo bench -p haven-daemon --bench reload -- --quick   # smoke run (20 samples each)
//! HAVEN_BENCH_QUICK=1 cargo bench -p haven-daemon --bench reload
//! ```
//!
//! Like the other benches, the full run needs cargo's `--bench` argument (`cargo bench`);
//! run any other way (`cargo test --benches`, or directly) it does the quick run.
//!
//! The bench starts the real daemon in-process (`Daemon::start`, dry-run executor, the seed
//! policy configured as in `examples/seed/haven.toml`, no event sources, state and control
//! folders in a temporary folder) on a module file of its own, and replaces that file the way
//! an operator's deployment does: the new module written to a temporary name in the same
//! folder, then renamed over it. It measures from just before the rename until:
//!
//! - **swapped**: the event loop has swapped the new version in (the status board's reload
//!   counter and its condition variable, `wait_for_reloads`, never polling);
//! - **decided**: the new version has decided its first event (the startup event the loop
//!   hands a changed policy right after the swap; `wait_for_decisions`).
//!
//! Each new version is the seed's module with a custom section appended (id 0, a name and a
//! payload: valid WebAssembly that admission accepts, the same code, another module hash):
//!
//! - **cold**: a module never seen (a fresh payload each time): admission, componentization,
//!   compilation (by `haven_runtime::COMPILER`: Winch on x86-64), the artifact cache
//!   written, then `init`;
//! - **cached**: alternating between two modules already compiled once: the artifact cache
//!   read back (`Component::deserialize_file`), then `init`.
//!
//! Each sample is checked: the reload must be `loaded` and the status must show the new
//! module hash. A third kind, **pre-compiled**, is a new module compiled into the daemon's
//! artifact cache by another runtime before the rename (what `havenctl --cache-dir
//! <state-dir>/cache check new.wasm` does): a deployment that keeps the compile off the
//! reload. The same is measured through SIGHUP's path (`Daemon::reload`, with the module
//! behind a symlink replaced in a folder the watcher does not watch), which leaves the file
//! watcher out; and, without a daemon, the pieces: the watcher's own latency (rename to the
//! `notify` event), reading the file, `Runtime::compile` cold (and admission's share of it:
//! the import checks and turning the core module into a component) and cached, and
//! `Runtime::configure` (the `init` call). Then the targets (≤ 100 ms cold, ≤ 10 ms cached),
//! printed as met or missed, never asserted.
//!
//! With `HAVEN_BENCH_HAVEND=<path to havend>`, cold reloads are measured once more as havend
//! makes them, with each module compiled by a process of its own
//! (`haven_runtime::compiler_process`).

#[cfg(not(unix))]
fn main() {
    println!("the reload benchmark needs a Unix system");
}

#[cfg(unix)]
fn main() {
    bench::main();
}

#[cfg(unix)]
mod bench {
    use haven_core::Config;
    use haven_daemon::Daemon;
    use haven_daemon::control::{self, Request, Response};
    use haven_daemon::reload::{ReloadOutcome, SETTLE};
    use haven_daemon::status::Status;
    use haven_runtime::{CompilerProcess, Runtime, RuntimeOptions};
    use notify::Watcher;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Samples per measurement.
    #[derive(Debug, Clone, Copy)]
    struct Counts {
        cold: usize,
        cached: usize,
        pieces: usize,
    }

    const FULL: Counts = Counts {
        cold: 40,
        cached: 100,
        pieces: 40,
    };

    const QUICK: Counts = Counts {
        cold: 20,
        cached: 20,
        pieces: 20,
    };

    /// The issue's targets.
    const TARGET_COLD: Duration = Duration::from_millis(100);
    const TARGET_CACHED: Duration = Duration::from_millis(10);

    /// The seed config, whose policy entry (settings, grants, limits) the daemon runs.
    const SEED_CONFIG: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/haven.toml"
    );

    /// Longest wait for a reload.
    const TIMEOUT: Duration = Duration::from_secs(30);
    /// Pause between samples, so that what a reload leaves behind (the rename's second
    /// watcher event, the journal sync, the cache clean-up) is over before the next one.
    const PAUSE: Duration = Duration::from_millis(100);
    /// The longest a control socket path may be.
    const MAX_SOCKET_PATH: usize = 90;

    // -------------------------------------------------------------------------- statistics
    use haven_test_artifacts::support::Percentiles as Stats;

    fn ms(duration: Duration) -> String {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    }

    fn print_header(title: &str) {
        println!(
            "{title:<56} {:>8} {:>11} {:>11} {:>11}",
            "samples", "median", "p90", "max"
        );
    }

    fn print_row(name: &str, stats: &Stats) {
        println!(
            "{name:<56} {:>8} {:>11} {:>11} {:>11}",
            stats.samples,
            ms(stats.median),
            ms(stats.p90),
            ms(stats.max)
        );
    }

    // ----------------------------------------------------------------------------- modules

    /// A version of the seed module no run of this bench has made before.
    fn version(seed: &[u8], tag: &str) -> Vec<u8> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let payload = format!("{tag} {} {nonce}", std::process::id());
        haven_test_artifacts::support::with_custom_section(
            seed,
            "haven-bench-version",
            payload.as_bytes(),
        )
    }

    // ----------------------------------------------------------------------------- setup

    /// A temporary folder whose control socket path is short enough.
    fn temp_dir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("haven-reload-")
            .tempdir()
            .expect("a temporary folder");
        let socket = dir.path().join("control").join(control::SOCKET_NAME);
        if socket.as_os_str().len() <= MAX_SOCKET_PATH {
            return dir;
        }
        tempfile::Builder::new()
            .prefix("haven-reload-")
            .tempdir_in("/tmp")
            .expect("a temporary folder in /tmp")
    }

    /// The seed's `[limits]` and `[[policy]]` with `module`, and a `[daemon]` of the bench's
    /// own; no sources: nothing but the reloads makes the policy decide.
    fn config_text(dir: &Path, module: &Path) -> String {
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
            module.to_str().expect("a UTF-8 path").into(),
        );
        let policy_part = toml::to_string(&table).expect("writing TOML");
        let path = |name: &str| {
            let path = dir.join(name);
            toml::Value::from(path.to_str().expect("a UTF-8 temporary path")).to_string()
        };
        format!(
            "{policy_part}\n[daemon]\nstate-dir = {}\ncontrol-dir = {}\nexecutor = \"dry-run\"\n",
            path("state"),
            path("control"),
        )
    }

    /// Replace `path` by rename, the new bytes written first under a temporary name in
    /// `staging` (the same file system); the instant just before the rename.
    fn replace(path: &Path, staging: &Path, bytes: &[u8]) -> Instant {
        let temporary = staging.join(".policy.wasm.partial");
        std::fs::write(&temporary, bytes).expect("writing the new module");
        let before = Instant::now();
        std::fs::rename(&temporary, path).expect("renaming the new module into place");
        before
    }

    /// How a sample asks for the reload.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Trigger {
        /// The file watcher sees the rename.
        Watcher,
        /// The module is behind a symlink, replaced in an unwatched folder; `Daemon::reload`
        /// (what SIGHUP calls) asks for the reload.
        Sighup,
    }

    /// A running daemon on a module file of its own.
    struct Harness {
        daemon: Daemon,
        /// The file the config names.
        module: PathBuf,
        /// The file replaced for each sample, and the folder its temporary copy is written to.
        target: PathBuf,
        staging: PathBuf,
        trigger: Trigger,
        /// The daemon's artifact cache (`<state-dir>/cache`).
        cache_dir: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn start(seed: &[u8], trigger: Trigger, compiler: Option<CompilerProcess>) -> Harness {
            let dir = temp_dir();
            let module = dir.path().join("policy.wasm");
            let (target, staging) = match trigger {
                Trigger::Watcher => {
                    std::fs::write(&module, version(seed, "initial")).unwrap();
                    (module.clone(), dir.path().to_owned())
                }
                Trigger::Sighup => {
                    let store = dir.path().join("store");
                    std::fs::create_dir(&store).unwrap();
                    let target = store.join("current.wasm");
                    std::fs::write(&target, version(seed, "initial")).unwrap();
                    std::os::unix::fs::symlink(&target, &module).unwrap();
                    (target, store)
                }
            };
            let text = config_text(dir.path(), &module);
            let config_path = dir.path().join("haven.toml");
            std::fs::write(&config_path, &text).expect("writing haven.toml");
            let config = Config::parse(&text, &config_path).expect("the bench config parses");
            let started = Instant::now();
            let daemon =
                Daemon::start_with(config, &config_path, compiler).expect("the daemon starts");
            let board = daemon.status_board();
            let count = board.wait_for_decisions(1, Instant::now() + TIMEOUT);
            assert!(count >= 1, "no startup decision");
            println!(
                "  daemon ({trigger:?}) started and decided its startup event in {:.0} ms \
                 (the module compiled cold)",
                started.elapsed().as_secs_f64() * 1e3
            );
            Harness {
                daemon,
                module,
                target,
                staging,
                trigger,
                cache_dir: dir.path().join("state").join("cache"),
                _dir: dir,
            }
        }

        /// The module hash in force, once the loop has pinned its policies on the board.
        fn module_hash(&self) -> String {
            let started = Instant::now();
            loop {
                if let Some(policy) = self.status().policies.first() {
                    return policy.module_hash.clone();
                }
                assert!(started.elapsed() < TIMEOUT, "no policy on the status board");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

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

        /// Replace the module with `bytes`; the time until the new version is swapped in,
        /// and until it has decided its first event. Checks that it was loaded.
        fn reload(&self, bytes: &[u8]) -> (Duration, Duration) {
            let board = self.daemon.status_board();
            let generation = board.reload_generation();
            let decisions = board.decisions_total();
            let before = replace(&self.target, &self.staging, bytes);
            if self.trigger == Trigger::Sighup {
                self.daemon.reload("SIGHUP (bench)");
            }
            let deadline = before + TIMEOUT;
            let reached = board.wait_for_reloads(generation + 1, deadline);
            let swapped = before.elapsed();
            assert!(reached > generation, "no reload outcome within {TIMEOUT:?}");
            let decided_count = board.wait_for_decisions(decisions + 1, deadline);
            let decided = before.elapsed();
            assert!(decided_count > decisions, "no decision after the reload");

            let status = self.status();
            let last = status.last_reload.expect("a reload outcome");
            assert!(
                matches!(last.outcome, ReloadOutcome::Loaded { .. }),
                "{:?} ({})",
                last.outcome,
                self.module.display()
            );
            assert_eq!(status.policies.len(), 1, "{:?}", status.policies);
            (swapped, decided)
        }

        fn stop(self) {
            self.daemon.stop();
        }
    }

    /// `samples` reloads through `harness`, each with the module `next(n)` gives; checks
    /// that each sample put a new module hash in force.
    fn measure(
        harness: &Harness,
        samples: usize,
        mut next: impl FnMut(usize) -> Vec<u8>,
    ) -> (Stats, Stats) {
        let mut swapped = Vec::with_capacity(samples);
        let mut decided = Vec::with_capacity(samples);
        let mut previous = harness.module_hash();
        for n in 0..samples {
            std::thread::sleep(PAUSE);
            let (swap, decide) = harness.reload(&next(n));
            let now = harness.module_hash();
            assert_ne!(now, previous, "sample {n}: the module hash did not change");
            previous = now;
            swapped.push(swap);
            decided.push(decide);
        }
        (Stats::of(swapped), Stats::of(decided))
    }

    // ------------------------------------------------------------------------------ pieces

    /// The file watcher alone: from just before a rename into a watched folder until
    /// `notify` reports it.
    fn watcher_latency(samples: usize, module: &[u8]) -> Stats {
        let dir = temp_dir();
        let (events, received) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(event);
        })
        .expect("a watcher");
        watcher
            .watch(dir.path(), notify::RecursiveMode::NonRecursive)
            .expect("watching a folder");
        let target = dir.path().join("policy.wasm");
        let temporary = dir.path().join(".policy.wasm.partial");
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            std::fs::write(&temporary, module).unwrap();
            // Everything the write caused, up to its close, is taken off the channel first.
            loop {
                let event: notify::Event = received
                    .recv_timeout(TIMEOUT)
                    .expect("the watcher reports the write")
                    .expect("a watcher event");
                if matches!(
                    event.kind,
                    notify::EventKind::Access(notify::event::AccessKind::Close(_))
                ) || !cfg!(target_os = "linux")
                {
                    break;
                }
            }
            while received.try_recv().is_ok() {}
            let before = Instant::now();
            std::fs::rename(&temporary, &target).unwrap();
            loop {
                let event: notify::Event = received
                    .recv_timeout(TIMEOUT)
                    .expect("the watcher reports the rename")
                    .expect("a watcher event");
                if event.paths.contains(&target) {
                    latencies.push(before.elapsed());
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
            while received.try_recv().is_ok() {}
        }
        Stats::of(latencies)
    }

    /// Reading the module, `Runtime::compile` cold and cached and `Runtime::configure` (its
    /// `init`), without a daemon, on a runtime with an artifact cache like the daemon's.
    fn runtime_pieces(samples: usize, seed: &[u8]) -> [Stats; 5] {
        let dir = temp_dir();
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(dir.path().join("cache")),
            ..RuntimeOptions::default()
        })
        .expect("a runtime");
        let module = dir.path().join("policy.wasm");
        let text = config_text(dir.path(), &module);
        let config = Config::parse(&text, &dir.path().join("haven.toml")).expect("a config");
        let policy = &config.policies[0];
        let (mut read, mut admit, mut cold, mut cached, mut init) =
            (vec![], vec![], vec![], vec![], vec![]);
        for n in 0..samples {
            let bytes = version(seed, &format!("piece {n}"));
            std::fs::write(&module, &bytes).unwrap();
            let started = Instant::now();
            let bytes = std::fs::read(&module).unwrap();
            read.push(started.elapsed());

            let started = Instant::now();
            haven_runtime::admission::componentize(&bytes).expect("admitted");
            admit.push(started.elapsed());

            let started = Instant::now();
            let compiled = runtime
                .compile(&bytes, &Default::default())
                .expect("the module compiles");
            cold.push(started.elapsed());
            assert!(!compiled.from_cache);

            let started = Instant::now();
            let again = runtime
                .compile(&bytes, &Default::default())
                .expect("the module compiles");
            cached.push(started.elapsed());
            assert!(again.from_cache);

            let started = Instant::now();
            runtime
                .configure(again, policy)
                .expect("init accepts the seed's settings");
            init.push(started.elapsed());
        }
        [
            Stats::of(read),
            Stats::of(admit),
            Stats::of(cold),
            Stats::of(cached),
            Stats::of(init),
        ]
    }

    // ------------------------------------------------------------------------------ report

    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| {
                text.split(' ')
                    .next()
                    .map(|one| format!("load average {one}"))
            })
            .unwrap_or_else(|| "load average unknown".to_owned())
    }

    fn verdict(name: &str, stats: &Stats, target: Duration) {
        let met = if stats.median <= target {
            "MET"
        } else {
            "MISSED"
        };
        println!(
            "{name:<44} median {} (p90 {}, max {}) vs target {}: {met}",
            ms(stats.median),
            ms(stats.p90),
            ms(stats.max),
            ms(target)
        );
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|arg| arg == "--quick")
            || std::env::var("HAVEN_BENCH_QUICK").is_ok_and(|value| value == "1")
            || !args.iter().any(|arg| arg == "--bench");
        let counts = if quick { QUICK } else { FULL };
        let seed = std::fs::read(haven_test_artifacts::CARP_HAST_SWITCH)
            .expect("reading the seed policy module");

        println!("Issue 5: hot reload, module renamed into place → new version in force");
        println!(
            "machine: {} CPUs; {}; seed module {} bytes; reload settle wait {} ms",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average(),
            seed.len(),
            SETTLE.as_millis()
        );
        if quick {
            println!("QUICK MODE: {counts:?}: figures are indicative only");
        }
        println!();

        print_header("pieces, without a daemon");
        let watcher = watcher_latency(counts.pieces, &seed);
        print_row("file watcher: rename → notify event", &watcher);
        let [read, admit, cold, cached, init] = runtime_pieces(counts.pieces, &seed);
        print_row("read the module file", &read);
        print_row("Runtime::compile, cold (compile + cache write)", &cold);
        print_row("  of which admission (imports, componentize)", &admit);
        print_row("Runtime::compile, cached (cache read)", &cached);
        print_row("Runtime::configure (init with the settings)", &init);
        println!();

        let mut results = Vec::new();
        for trigger in [Trigger::Watcher, Trigger::Sighup] {
            let harness = Harness::start(&seed, trigger, None);
            let label = match trigger {
                Trigger::Watcher => "rename seen by the watcher",
                Trigger::Sighup => "SIGHUP path, no watcher",
            };
            print_header(&format!("daemon, {label}"));
            let (cold_swap, cold_decided) = measure(&harness, counts.cold, |n| {
                version(&seed, &format!("cold {trigger:?} {n}"))
            });
            print_row("cold: rename → swapped in", &cold_swap);
            print_row("cold: rename → first decision by it", &cold_decided);
            // Two versions, each compiled once (not measured), then alternated.
            let pair = [
                version(&seed, &format!("cached {trigger:?} x")),
                version(&seed, &format!("cached {trigger:?} y")),
            ];
            measure(&harness, 2, |n| pair[n % 2].clone());
            let (cached_swap, cached_decided) =
                measure(&harness, counts.cached, |n| pair[n % 2].clone());
            print_row("cached: rename → swapped in", &cached_swap);
            print_row("cached: rename → first decision by it", &cached_decided);
            if trigger == Trigger::Watcher {
                // Compiled into the daemon's cache before the rename, by a runtime of its own
                // (what `havenctl --cache-dir <state-dir>/cache check new.wasm` does).
                let compiler = Runtime::new(RuntimeOptions {
                    cache_dir: Some(harness.cache_dir.clone()),
                    ..RuntimeOptions::default()
                })
                .expect("a runtime on the daemon's cache");
                let mut precompile = Vec::with_capacity(counts.cold);
                let (swap, _) = measure(&harness, counts.cold, |n| {
                    let bytes = version(&seed, &format!("precompiled {n}"));
                    let started = Instant::now();
                    let compiled = compiler
                        .compile(&bytes, &Default::default())
                        .expect("the module compiles");
                    assert!(!compiled.from_cache);
                    precompile.push(started.elapsed());
                    bytes
                });
                print_row(
                    "  (its compilation beforehand, not timed above)",
                    &Stats::of(precompile),
                );
                print_row("pre-compiled: rename → swapped in", &swap);
            }
            println!();
            results.push((
                trigger,
                cold_swap,
                cached_swap,
                cold_decided,
                cached_decided,
            ));
            harness.stop();
        }

        // As havend runs: each module compiled by a process of its own (havend
        // --compile-worker), when the bench is told where a havend binary is.
        let isolated = std::env::var_os("HAVEN_BENCH_HAVEND").map(|program| {
            let harness = Harness::start(
                &seed,
                Trigger::Watcher,
                Some(CompilerProcess {
                    program: program.into(),
                    args: Vec::new(),
                    memory_mib: 2048,
                    timeout: TIMEOUT,
                }),
            );
            print_header("daemon, rename seen by the watcher, compiling in a process of its own");
            let (_, cold) = measure(&harness, counts.cold, |n| {
                version(&seed, &format!("cold isolated {n}"))
            });
            print_row("cold: rename → first decision by it", &cold);
            println!();
            harness.stop();
            cold
        });
        if isolated.is_none() {
            println!(
                "(set HAVEN_BENCH_HAVEND to a havend binary to measure compiling in a process \
                 of its own, as havend does)\n"
            );
        }

        println!("against the targets (file watcher path):");
        let (_, cold_swap, cached_swap, cold_decided, cached_decided) = results[0];
        verdict("cold: rename → swapped in", &cold_swap, TARGET_COLD);
        verdict("cold: rename → first decision", &cold_decided, TARGET_COLD);
        verdict("cached: rename → swapped in", &cached_swap, TARGET_CACHED);
        verdict(
            "cached: rename → first decision",
            &cached_decided,
            TARGET_CACHED,
        );
        if let Some(cold) = isolated {
            verdict(
                "cold, compiler process: rename → first decision",
                &cold,
                TARGET_COLD,
            );
        }
        println!("{}", load_average());
    }
}
