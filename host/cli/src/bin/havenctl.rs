//! `havenctl`: the operator's and policy author's command line.
//!
//! - `havenctl simulate` replays a timeline through policies (with no files: the bundled seed
//!   recipe over a recorded failover);
//! - `havenctl test` runs scenario files against a policy module on the real runtime;
//! - `havenctl check` says whether a module (and a config's entry for it) will load;
//! - `havenctl new` scaffolds a policy crate.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use haven_cli::{check, demo, scaffold, scenario, simulate};
use haven_core::Config;
use haven_runtime::{LoadedPolicy, Runtime, RuntimeError, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "havenctl",
    version,
    about = "Check, test and simulate Haven failover policies"
)]
struct Cli {
    /// Where compiled policies are cached (default: $HAVEN_CACHE_DIR, else ~/.cache/haven).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Compile every module afresh, without the artifact cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Log what the runtime does (to stderr); repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay events through policies and print the timeline of decisions and plans.
    /// Without --config and --events: the seed policy over a recorded two-host failover.
    Simulate {
        /// The config naming the policies (haven.toml).
        #[arg(long, requires = "events")]
        config: Option<PathBuf>,
        /// The timeline of events (TOML).
        #[arg(long, requires = "config")]
        events: Option<PathBuf>,
    },
    /// Run scenario files against a policy module; exits non-zero if any case fails.
    Test {
        /// The policy module (.wasm, core module or component).
        module: PathBuf,
        /// Scenario files.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Check that a module is a policy this host runs, and optionally a config's entry for it.
    Check {
        /// The policy module (.wasm).
        module: PathBuf,
        /// A config whose entry for this module (settings, grants) to check too.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which config entry, when the module's file name does not tell.
        #[arg(long, requires = "config")]
        policy: Option<String>,
    },
    /// Create a new policy crate in DIR, with a unit test and a scenario that pass.
    New {
        /// The folder to create; its name is the policy's name.
        dir: PathBuf,
        /// Haven's SDK folder (default: the one this havenctl was built from).
        #[arg(long, default_value = scaffold::BUILT_SDK_PATH)]
        sdk: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("havenctl: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(verbose: u8) {
    // The commands print every decision, refusal and alert themselves; the log is for
    // looking under the hood.
    let level = match verbose {
        0 => "off",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAVEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::New { dir, sdk } = &cli.command {
        let written = scaffold::create(dir, sdk)?;
        for path in written {
            println!("created {}", path.display());
        }
        println!(
            "\nnext:\n  cd {}\n  cargo test\n  cargo build --release --target wasm32-unknown-unknown\n  \
             havenctl test target/wasm32-unknown-unknown/release/{}.wasm scenarios/*.toml",
            dir.display(),
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .replace('-', "_")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = Arc::new(runtime(cache_dir(&cli))?);
    match cli.command {
        Command::Simulate { config, events } => simulate_command(&runtime, config, events),
        Command::Test { module, scenarios } => test_command(&runtime, &module, &scenarios),
        Command::Check {
            module,
            config,
            policy,
        } => {
            let report = check::check(&runtime, &module, config.as_deref(), policy.as_deref());
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::New { .. } => unreachable!("handled above"),
    }
}

/// The runtime; an unusable cache folder costs only speed, so havenctl warns and goes on.
fn runtime(cache_dir: Option<PathBuf>) -> Result<Runtime> {
    let options = RuntimeOptions {
        cache_dir,
        ..RuntimeOptions::default()
    };
    match Runtime::new(options.clone()) {
        Err(error @ RuntimeError::Cache { .. }) => {
            eprintln!("havenctl: {error}; going on without the cache");
            Ok(Runtime::new(RuntimeOptions {
                cache_dir: None,
                ..options
            })?)
        }
        other => Ok(other?),
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    if cli.no_cache {
        return None;
    }
    cli.cache_dir
        .clone()
        .or_else(|| std::env::var_os("HAVEN_CACHE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("haven")))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/haven")))
}

fn simulate_command(
    runtime: &Arc<Runtime>,
    config: Option<PathBuf>,
    events: Option<PathBuf>,
) -> Result<ExitCode> {
    let (config, timeline_text, bundled) = match (config, events) {
        (Some(config), Some(events)) => {
            let text = std::fs::read_to_string(&events)
                .with_context(|| format!("reading {}", events.display()))?;
            (Config::from_file(&config)?, text, false)
        }
        _ => {
            println!(
                "(no --config/--events: the seed policy, carp-hast-switch, over a recorded failover)\n"
            );
            (
                Config::parse(demo::CONFIG, Path::new(demo::CONFIG_PATH))?,
                demo::TIMELINE.to_owned(),
                true,
            )
        }
    };
    let timeline = simulate::Timeline::parse(&timeline_text)?;
    let policies = load_policies(runtime, &config, bundled)?;
    print!("{}", simulate::run(runtime, &policies, &timeline));
    Ok(ExitCode::SUCCESS)
}

/// Load every configured policy; the demo's come from the bundled module instead of files.
fn load_policies(runtime: &Runtime, config: &Config, bundled: bool) -> Result<Vec<LoadedPolicy>> {
    config
        .policies
        .iter()
        .map(|entry| {
            let loaded = if bundled {
                runtime
                    .compile(haven_bundled_policies::CARP_HAST_SWITCH)
                    .and_then(|compiled| runtime.configure(compiled, entry))
            } else {
                runtime.load(entry)
            };
            loaded.with_context(|| format!("policy `{}` ({})", entry.name, entry.module.display()))
        })
        .collect()
}

fn test_command(runtime: &Arc<Runtime>, module: &Path, scenarios: &[PathBuf]) -> Result<ExitCode> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let compiled = match runtime.compile(&bytes) {
        Ok(compiled) => compiled,
        Err(error) => bail!("{}: {error}", module.display()),
    };
    println!(
        "{} {} (module {}) from {}\n",
        compiled.info.name,
        compiled.info.version,
        haven_runtime::pipeline::short_hash(&compiled.module_hash),
        module.display()
    );
    let (mut passed, mut failed) = (0, 0);
    for path in scenarios {
        let report = scenario::run_file(runtime, &compiled, path);
        print!("{}", report.render());
        let (p, f) = report.counts();
        passed += p;
        failed += f;
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
