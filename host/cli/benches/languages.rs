//! The same policy in Rust, Python and JavaScript, in one run: what each costs the daemon.
//!
//! `cargo bench -p haven-cli --bench languages` (`-- --quick` for fewer decisions). It needs
//! the toolchains `scripts/install-test-tools` installs (componentize-py, ComponentizeJS) and
//! the wasm32 target; a language whose toolchain is missing is left out, and said.
//!
//! Each language's module is `havenctl new --lang L`'s follow-CARP policy, built as its README
//! says. Measured per language, with Rust as the baseline:
//! - module size;
//! - cold compile: admission, compile, link and `describe`, with no artifact cache;
//! - cached load: the same from the artifact cache, as a reload or a restart does it;
//! - decision: one CARP event handed to a fresh instance (as havend does for every event) that
//!   asks one question and answers with a one-step plan; median and p99, for events back to
//!   back (a burst: each decision starts as the one before ends) and paced (one every 5 ms,
//!   as a failover's events come, with its steps run between them). Whether the policy's
//!   instances are made ahead (`haven_runtime::spare`) is shown too;
//! - RSS of a dry-run havend with the policy loaded, against havend with no policy.

use haven_cli::scaffold::Lang;
use haven_core::{Config, Event, Machine};
use haven_runtime::{LoadedPolicy, Runtime, RuntimeOptions};
use haven_test_artifacts::support::Percentiles;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HAVENCTL: &str = env!("CARGO_BIN_EXE_havenctl");
const HAVEND: &str = env!("CARGO_BIN_EXE_havend");
const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Build `lang`'s follow-CARP policy in `root`; `None` (said) when its toolchain is missing.
fn build(root: &Path, lang: &str) -> Option<PathBuf> {
    let run = |dir: &Path, program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let name = format!("follow-{lang}");
    let dir = root.join(&name);
    if !run(
        root,
        HAVENCTL,
        &["new", "--lang", lang, "--sdk", SDK, &name],
    ) {
        println!("{lang}: left out (havenctl new failed: is its toolchain installed?)");
        return None;
    }
    let lang = match lang {
        "rust" => Lang::Rust,
        "python" => Lang::Python,
        _ => Lang::Js,
    };
    let module = dir.join(lang.module(&name.replace('-', "_")));
    let file = module.file_name().unwrap().to_string_lossy().into_owned();
    let command = lang.build_command(lang.entry(), &file);
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let built = run(&dir, &command[0], &args);
    if !built {
        println!("{lang:?}: left out (its build failed: is its toolchain installed?)");
        return None;
    }
    Some(module)
}

/// A config with `module` as policy `follow`, dry run, its folders under `dir`.
fn config(dir: &Path, module: Option<&Path>) -> PathBuf {
    let state = dir.join("state");
    let control = dir.join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::set_permissions(
        &control,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let policy = module.map_or(String::new(), |module| {
        format!(
            "[[policy]]\nname = \"follow\"\nmodule = {module:?}\n[policy.grants]\nservices = \
             [\"nginx\"]\n[policy.settings]\nvhid = 1\nservice = \"nginx\"\n\n"
        )
    });
    let text = format!(
        "{policy}[daemon]\nexecutor = \"dry-run\"\nstate-dir = {state:?}\ncontrol-dir = \
         {control:?}\n"
    );
    let path = dir.join("haven.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The resident set of a dry-run havend on `config` once it answers, in KiB.
fn havend_rss_kib(config: &Path, control: &Path) -> u64 {
    let mut child = Command::new(HAVEND)
        .arg("--config")
        .arg(config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answered = haven_daemon::control::send(
            control,
            &haven_daemon::control::Request::Status,
            Duration::from_secs(2),
        )
        .is_ok();
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "havend did not answer");
        // Polling the daemon until it answers, with a deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    rss
}

struct Figures {
    lang: &'static str,
    size: usize,
    cold: Duration,
    cached: Duration,
    decision: Percentiles,
    paced: Percentiles,
    unspared: Percentiles,
    unspared_paced: Percentiles,
    spared: bool,
    rss_kib: u64,
}

fn measure(lang: &'static str, module: &Path, dir: &Path, decisions: usize) -> Figures {
    let config_path = config(dir, Some(module));
    let config = Config::from_file(&config_path).unwrap();
    let entry = &config.policies[0];
    let size = std::fs::metadata(module).unwrap().len() as usize;

    let fresh = Runtime::new(RuntimeOptions::default()).unwrap();
    let started = Instant::now();
    let policy = fresh.load(entry).unwrap();
    let cold = started.elapsed();

    let cache = dir.join("cache");
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..RuntimeOptions::default()
    })
    .unwrap()
    .load(entry)
    .unwrap();
    let mut loads = Vec::new();
    for _ in 0..5 {
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(cache.clone()),
            ..RuntimeOptions::default()
        })
        .unwrap();
        let started = Instant::now();
        let loaded = runtime.load(entry).unwrap();
        loads.push(started.elapsed());
        assert!(loaded.compiled.from_cache);
    }
    let cached = Percentiles::of(loads).median;

    let machine: Machine = serde_json::from_str(
        r#"{"carp": [{"vhid": 1, "interface": "em0", "state": "backup"}],
            "services": {"nginx": false}}"#,
    )
    .unwrap();
    let machine = Arc::new(machine);
    let master: Event =
        serde_json::from_str(r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#)
            .unwrap();
    let decide = |runtime: &Runtime, policy: &LoadedPolicy, rounds: usize, pause: Duration| {
        let mut samples = Vec::with_capacity(rounds);
        for round in 0..rounds + 20 {
            // Paced: the gap between events, as a failover's steps make it (a benchmark's
            // pacing, not a synchronisation).
            std::thread::sleep(pause);
            let started = Instant::now();
            let call = runtime.call(policy, &master, Arc::clone(&machine), Arc::default());
            let elapsed = started.elapsed();
            let plan = call.result.expect("the policy decides");
            assert_eq!(plan.steps.len(), 1, "{lang}: start the service");
            if round >= 20 {
                samples.push(elapsed);
            }
        }
        Percentiles::of(samples)
    };
    let decision = decide(&fresh, &policy, decisions, Duration::ZERO);
    let paced = decide(&fresh, &policy, decisions / 4, Duration::from_millis(5));
    // The baseline for spare instances: the same decisions, each instantiating its own.
    let unspared_runtime = Runtime::new(RuntimeOptions {
        spares: None,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let unspared_policy = unspared_runtime.load(entry).unwrap();
    let unspared = decide(
        &unspared_runtime,
        &unspared_policy,
        decisions,
        Duration::ZERO,
    );
    let unspared_paced = decide(
        &unspared_runtime,
        &unspared_policy,
        decisions / 4,
        Duration::from_millis(5),
    );
    let rss_kib = havend_rss_kib(&config_path, &dir.join("control"));
    Figures {
        lang,
        size,
        cold,
        cached,
        decision,
        paced,
        unspared,
        unspared_paced,
        spared: policy.spared(),
        rss_kib,
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let decisions = if quick { 200 } else { 2000 };
    let root = tempfile::tempdir().unwrap();
    let baseline_dir = root.path().join("none");
    std::fs::create_dir_all(&baseline_dir).unwrap();
    let bare = config(&baseline_dir, None);
    let bare_rss = havend_rss_kib(&bare, &baseline_dir.join("control"));

    let mut figures = Vec::new();
    for lang in ["rust", "python", "js"] {
        let Some(module) = build(root.path(), lang) else {
            continue;
        };
        let dir = root.path().join(format!("measure-{lang}"));
        std::fs::create_dir_all(&dir).unwrap();
        figures.push(measure(lang, &module, &dir, decisions));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\nthe follow-CARP policy, {decisions} decisions each (a fresh instance per decision); \
         havend with no policy: {} MiB RSS",
        bare_rss / 1024
    );
    println!(
        "  {:<7} {:>9} {:>9} {:>9} {:>19} {:>19} {:>6} {:>8}",
        "lang", "size", "cold", "cached", "burst p50 / p99", "paced p50 / p99", "ahead", "RSS"
    );
    for f in &figures {
        println!(
            "  {:<7} {:>6} KB {:>6.0} ms {:>6.1} ms {:>7.3} / {:>5.3} ms {:>7.3} / {:>5.3} ms {:>6} {:>4} MiB",
            f.lang,
            f.size / 1024,
            ms(f.cold),
            ms(f.cached),
            ms(f.decision.median),
            ms(f.decision.p99),
            ms(f.paced.median),
            ms(f.paced.p99),
            if f.spared { "yes" } else { "no" },
            f.rss_kib / 1024
        );
    }
    for f in figures.iter().filter(|f| f.spared) {
        for (how, ahead, own) in [
            ("burst", &f.decision, &f.unspared),
            ("paced", &f.paced, &f.unspared_paced),
        ] {
            println!(
                "  {} {how}: instances made ahead p50 / p99 {:.3} / {:.3} ms; each call making \
                 its own {:.3} / {:.3} ms ({:.2}x / {:.2}x)",
                f.lang,
                ms(ahead.median),
                ms(ahead.p99),
                ms(own.median),
                ms(own.p99),
                ms(own.median) / ms(ahead.median),
                ms(own.p99) / ms(ahead.p99),
            );
        }
    }
    if let Some(rust) = figures.iter().find(|f| f.lang == "rust") {
        for f in figures.iter().filter(|f| f.lang != "rust") {
            let verdict = |met: bool| if met { "met" } else { "MISSED" };
            println!(
                "  {} against rust: burst p50 {:.1}x, p99 {:.1}x; paced p50 {:.1}x, p99 {:.1}x; \
                 cached load {:.1}x; RSS +{} MiB; goals: p99 under 2 ms {} in a burst, {} paced; \
                 cached load under 100 ms {}",
                f.lang,
                ms(f.decision.median) / ms(rust.decision.median),
                ms(f.decision.p99) / ms(rust.decision.p99),
                ms(f.paced.median) / ms(rust.paced.median),
                ms(f.paced.p99) / ms(rust.paced.p99),
                ms(f.cached) / ms(rust.cached),
                f.rss_kib.saturating_sub(rust.rss_kib) / 1024,
                verdict(ms(f.decision.p99) < 2.0),
                verdict(ms(f.paced.p99) < 2.0),
                verdict(ms(f.cached) < 100.0),
            );
        }
    }
}
