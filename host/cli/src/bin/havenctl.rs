//! `havenctl`: the operator's and policy author's command line.
//!
//! - `havenctl simulate` replays a timeline through policies (with no files: the bundled seed
//!   recipe over a recorded failover);
//! - `havenctl test` runs scenario files against a policy module on the real runtime;
//! - `havenctl check` says whether a module (and a config's entry for it) will load;
//! - `havenctl new` scaffolds a policy crate;
//! - `havenctl status`, `log`, `notify`, `reload` talk to a running `havend`;
//! - `havenctl hast-hook` and `havenctl hook ucarp` are what hastd and ucarp run: they hand
//!   the event to `havend` and exit at once.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use haven_cli::daemon_view;
use haven_cli::{check, demo, scaffold, scenario, simulate};
use haven_core::{Config, OperatorAsk};
use haven_daemon::control::{self, Request, Response};
use haven_daemon::journal::Journal;
use haven_daemon::reload::ReloadOutcome;
use haven_daemon::status::Status;
use haven_runtime::{LoadedPolicy, Runtime, RuntimeError, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `print!` to stdout, except that a reader that went away (`havenctl log | head`) ends
/// havenctl quietly with status 0, as a closed pipe ends a shell tool, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*), false) };
}

/// `println!` with [`out!`]'s handling of a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*), true) };
}

fn write_stdout(text: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(text)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("havenctl: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

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
    /// havend's control socket directory (or the socket itself).
    #[arg(long, global = true, env = "HAVEN_CONTROL_DIR", default_value = haven_daemon::control::DEFAULT_DIR)]
    control_dir: PathBuf,
    /// Log what the runtime does (to stderr); repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay events through policies and print the timeline of decisions and plans.
    /// Without --config: the seed policy (bundled) with the seed's config; without --events
    /// either: over a recorded two-host failover.
    Simulate {
        /// The config naming the policies (haven.toml).
        #[arg(long, requires = "events")]
        config: Option<PathBuf>,
        /// The timeline of events (TOML).
        #[arg(long)]
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
    /// Show the running daemon's state: CARP, HAST, mounts, services, policies, queue, sources,
    /// last decisions and alerts.
    Status {
        /// Print havend's answer as JSON, for scripts (the peer's facts are in `peer.facts`).
        #[arg(long)]
        json: bool,
        /// Redraw the status in place every second until interrupted (for an incident).
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Show the daemon's journal (read from its state directory).
    Log {
        /// The state directory (default: the config's, else the platform's).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The config whose state directory to read.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Show only the last N records.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
        /// Keep printing records as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Print the journal's JSON lines as they are.
        #[arg(long)]
        json: bool,
    },
    /// Send an event (JSON, as in the journal) to the daemon.
    Notify {
        /// The event, e.g. '{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}'.
        event: String,
    },
    /// Ask the daemon to reload its configuration and policies.
    Reload,
    /// Move the service to the peer on purpose, losing nothing: stop the services here,
    /// unmount, HAST secondary, hand CARP over; then wait until the peer serves. Refused, with
    /// the reason, when the peer could not take over.
    Switchover {
        /// The peer's host name, as a check that you are on the host you mean.
        #[arg(long)]
        to: Option<String>,
        /// How long to wait for the peer to serve, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Turn this host's maintenance on (it never serves, its CARP stays demoted; a serving host
    /// hands over first) or off. Kept across restarts and reboots.
    Maintenance {
        #[arg(value_enum)]
        state: OnOff,
        /// How long to wait for the outcome, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Promote this host once although the local copy of a HAST resource is not known to be
    /// complete (after a refused promotion), on your word: journaled with your uid.
    Promote {
        /// The HAST resource whose copy you accept as it is.
        #[arg(long, value_name = "RESOURCE")]
        accept_incomplete: String,
        /// How long to wait for the outcome, in seconds.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// For hast.conf's `exec`: hand hastd's event to the daemon and exit at once.
    HastHook {
        /// hastd's arguments: `role <res> <old> <new>`, `connect <res>`, ...
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// For other programs' hook scripts: hand their event to the daemon and exit at once.
    Hook {
        #[command(subcommand)]
        hook: Hook,
    },
    /// List every pair the witness (etcd) knows under the config's `[witness] prefix`: its
    /// leader, fencing token, lease, and each host's member record (serving, maintenance).
    Fleet {
        /// The config whose `[witness]` to use.
        #[arg(short, long, default_value = haven_cli::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the listing as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script for havenctl: `havenctl completions bash >
    /// /usr/local/share/bash-completion/completions/havenctl` (zsh, fish, elvish, powershell
    /// too).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Make the peer link's keys for both hosts of a pair: DIR/<host-a>.key and
    /// DIR/<host-b>.key (mode 0600). Copy each to its host and name it in `[peer] key-file`.
    PeerKeys {
        /// This pair's first host name (as you will call it in logs and status).
        host_a: String,
        /// The second host name.
        host_b: String,
        /// Where to write the two key files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Decide the journal's recorded events again with a candidate module, and print every
    /// decision it makes differently, as a diff of plans. Exits 1 when any differs.
    Replay {
        /// The candidate module (.wasm).
        candidate: PathBuf,
        /// The config entry whose grants, limits and settings the candidate runs under, and
        /// whose recorded decisions it replays (needed when the config has several).
        #[arg(long)]
        policy: Option<String>,
        /// The config.
        #[arg(short, long, default_value = haven_cli::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The state directory whose journal to read (default: the config's).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Only decisions journaled since then: an RFC 3339 time (2026-12-05T10:00:00Z) or a
        /// duration back from now (2h, 30min).
        #[arg(long)]
        since: Option<String>,
    },
    /// Deploy a new version of a policy: check it, compile it into the daemon's cache, replay
    /// the journal and show what would decide differently (asking to confirm), rename it into
    /// place atomically, and wait for havend's reload. Nothing changes on a refusal.
    Deploy {
        /// The policy's name in the config.
        name: String,
        /// The candidate module (.wasm).
        candidate: PathBuf,
        /// The config.
        #[arg(short, long, default_value = haven_cli::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Deploy even if recorded decisions would differ, without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Create a new policy in DIR, with a unit test and a scenario that pass: a Rust crate on
    /// haven-sdk, or a Python policy (componentize-py) with Haven's helper library.
    New {
        /// The folder to create; its name is the policy's name.
        dir: PathBuf,
        /// The policy's language.
        #[arg(long, value_enum, default_value_t = scaffold::Lang::Rust)]
        lang: scaffold::Lang,
        /// Haven's SDK folder (default: the one this havenctl was built from).
        #[arg(long, default_value = scaffold::BUILT_SDK_PATH)]
        sdk: PathBuf,
    },
}

#[derive(Subcommand)]
enum Hook {
    /// ucarp's up/down scripts: `havenctl hook ucarp up|down <interface> <vip>`.
    Ucarp {
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
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

/// `havenctl replay`: the candidate under the config entry's grants and settings, against the
/// journal.
fn replay_command(
    runtime: &Runtime,
    candidate: &Path,
    policy: Option<&str>,
    config_path: &Path,
    state_dir: Option<PathBuf>,
    since: Option<&str>,
) -> Result<ExitCode> {
    let config = Config::from_file(config_path)?;
    let entry = match policy {
        Some(name) => config.policies.iter().find(|entry| entry.name == name),
        None if config.policies.len() == 1 => config.policies.first(),
        None => bail!(
            "{} has {} policies: name one with --policy",
            config_path.display(),
            config.policies.len()
        ),
    }
    .with_context(|| format!("{} has no such policy", config_path.display()))?;
    let since_unix_ms = since.map(parse_since).transpose()?;
    let mut entry = entry.clone();
    entry.module = candidate.to_owned();
    let loaded = runtime
        .load(&entry)
        .with_context(|| format!("the candidate {}", candidate.display()))?;
    let dir = state_dir.unwrap_or_else(|| config.daemon.state_dir.clone());
    let records = Journal::read_all(&dir)
        .with_context(|| format!("reading the journal in {}", dir.display()))?
        .records;
    let report = haven_cli::replay::replay(runtime, &loaded, &records, since_unix_ms);
    out!("{}", haven_cli::replay::render(&report, &loaded));
    Ok(if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--since`: an RFC 3339 time, or a duration back from now; in Unix milliseconds.
fn parse_since(text: &str) -> Result<u64> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(at) => at,
        Err(_) => {
            let back = humantime::parse_duration(text).with_context(|| {
                format!("--since {text:?}: neither an RFC 3339 time nor a duration like 2h")
            })?;
            now.checked_sub(back).unwrap_or(std::time::UNIX_EPOCH)
        }
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64))
}

/// `havenctl deploy`: the steps print as they go; a question when decisions would differ.
fn deploy_command(name: &str, candidate: &Path, config: &Path, yes: bool) -> Result<ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    let options = haven_cli::deploy::DeployOptions {
        config: config.to_owned(),
        name: name.to_owned(),
        candidate: candidate.to_owned(),
        yes,
    };
    let mut confirm = |question: &str| {
        if !std::io::stdin().is_terminal() {
            eprintln!("havenctl: {question}no terminal to answer on");
            return false;
        }
        print!("{question}");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    haven_cli::deploy::deploy(&options, &mut std::io::stdout(), &mut confirm)?;
    outln!("deployed `{name}`");
    Ok(ExitCode::SUCCESS)
}

/// `havenctl fleet`: every pair under the config's witness prefix.
fn fleet_command(path: &Path, json: bool) -> Result<ExitCode> {
    let config = Config::from_file(path)?;
    let Some(witness) = &config.witness else {
        bail!(
            "{} has no [witness]: there is no etcd to ask",
            path.display()
        );
    };
    let fleet = haven_witness::fleet::list(witness)
        .with_context(|| format!("etcd at {}", witness.endpoints.join(", ")))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&fleet)?);
    } else {
        out!("{}", haven_cli::fleet_view::render(&fleet));
    }
    Ok(ExitCode::SUCCESS)
}

/// `havenctl peer-keys`: both hosts' key files at once, so they always match.
fn peer_keys_command(host_a: &str, host_b: &str, out: &Path) -> Result<ExitCode> {
    for host in [host_a, host_b] {
        let valid = !host.is_empty()
            && host.len() <= 64
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !host.starts_with(['-', '.']);
        if !valid {
            anyhow::bail!(
                "host name {host:?}: use 1 to 64 letters, digits, `-`, `.` or `_`, not starting \
                 with `-` or `.`"
            );
        }
    }
    if host_a == host_b {
        anyhow::bail!("the two hosts must have different names, not both {host_a:?}");
    }
    let (a, b) = haven_peer::PeerKeys::generate_pair(host_a, host_b)?;
    for keys in [&a, &b] {
        let path = out.join(format!("{}.key", keys.host));
        keys.write_new(&path)?;
        outln!(
            "wrote {} (mode 0600): {}'s key file",
            path.display(),
            keys.host
        );
    }
    outln!(
        "\nnext: copy each file to its host (e.g. /etc/haven/peer.key, mode 0600) and add to its \
         haven.toml:\n\n[peer]\naddress = \"<the other host>:{port}\"\nkey-file = \
         \"/etc/haven/peer.key\"",
        port = haven_core::config::DEFAULT_PEER_PORT
    );
    Ok(ExitCode::SUCCESS)
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
    if let Command::New { dir, lang, sdk } = &cli.command {
        let written = scaffold::create(dir, *lang, sdk)?;
        for path in written {
            outln!("created {}", path.display());
        }
        let crate_name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace('-', "_");
        outln!("\nnext:\n  cd {}", dir.display());
        for step in lang.next_steps(&crate_name) {
            outln!("  {step}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::PeerKeys {
        host_a,
        host_b,
        out,
    } = &cli.command
    {
        return peer_keys_command(host_a, host_b, out);
    }
    if let Command::Completions { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut command, "havenctl", &mut script);
        out!("{}", String::from_utf8_lossy(&script));
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Fleet { config, json } = &cli.command {
        return fleet_command(config, *json);
    }
    if let Command::Deploy {
        name,
        candidate,
        config,
        yes,
    } = &cli.command
    {
        return deploy_command(name, candidate, config, *yes);
    }
    if let Some(code) = daemon_command(&cli)? {
        return Ok(code);
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
            out!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay {
            candidate,
            policy,
            config,
            state_dir,
            since,
        } => replay_command(
            &runtime,
            &candidate,
            policy.as_deref(),
            &config,
            state_dir,
            since.as_deref(),
        ),
        Command::New { .. }
        | Command::PeerKeys { .. }
        | Command::Deploy { .. }
        | Command::Fleet { .. }
        | Command::Completions { .. }
        | Command::Status { .. }
        | Command::Log { .. }
        | Command::Notify { .. }
        | Command::Reload
        | Command::Switchover { .. }
        | Command::Maintenance { .. }
        | Command::Promote { .. }
        | Command::HastHook { .. }
        | Command::Hook { .. } => unreachable!("handled above"),
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
    let read = |events: &Path| {
        std::fs::read_to_string(events).with_context(|| format!("reading {}", events.display()))
    };
    let (config, timeline_text, bundled) = match (config, events) {
        (Some(config), Some(events)) => (Config::from_file(&config)?, read(&events)?, false),
        (None, Some(events)) => {
            outln!("(no --config: the seed policy, carp-hast-switch, with the seed's config)\n");
            (
                Config::parse(demo::CONFIG, Path::new(demo::CONFIG_PATH))?,
                read(&events)?,
                true,
            )
        }
        _ => {
            outln!(
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
    out!("{}", simulate::run(runtime, &policies, &timeline));
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
                    .compile(haven_bundled_policies::CARP_HAST_SWITCH, &entry.limits)
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
    let compiled = match runtime.compile(&bytes, &haven_core::Limits::default()) {
        Ok(compiled) => compiled,
        Err(error) => bail!("{}: {error}", module.display()),
    };
    outln!(
        "{} {} (module {}) from {}\n",
        compiled.info.name,
        compiled.info.version,
        haven_runtime::pipeline::short_hash(&compiled.module_hash),
        module.display()
    );
    let (mut passed, mut failed) = (0, 0);
    for path in scenarios {
        let report = scenario::run_file(runtime, &compiled, path);
        out!("{}", report.render());
        let (p, f) = report.counts();
        passed += p;
        failed += f;
    }
    outln!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long havenctl waits for havend's answer. Hooks must not hold hastd or ucarp up, and
/// the daemon answers from a thread that never waits on a plan.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `havenctl reload` waits: longer than havend's own wait for the outcome.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(12);

/// The commands that talk to a running daemon (no policy runtime needed); `None` for others.
fn daemon_command(cli: &Cli) -> Result<Option<ExitCode>> {
    let (ask, wait) = match &cli.command {
        Command::Switchover { to, wait } => (OperatorAsk::Switchover(to.clone()), *wait),
        Command::Maintenance { state, wait } => {
            (OperatorAsk::Maintenance(*state == OnOff::On), *wait)
        }
        Command::Promote {
            accept_incomplete,
            wait,
        } => (
            OperatorAsk::AcceptIncomplete(accept_incomplete.clone()),
            *wait,
        ),
        Command::Status { watch: true, .. } => return watch_status(&cli.control_dir),
        _ => return daemon_request(cli),
    };
    let ending = match haven_cli::operate::request(
        &cli.control_dir,
        ask,
        Duration::from_secs(wait),
        &mut |line| outln!("{line}"),
    ) {
        Ok(ending) => ending,
        // Refused before it was queued: nothing changed, as with every refused request.
        Err(error @ haven_cli::operate::OperateError::Refused(_)) => {
            eprintln!("havenctl: {error}");
            return Ok(Some(ExitCode::FAILURE));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(Some(match ending {
        haven_cli::operate::Ending::Done => ExitCode::SUCCESS,
        haven_cli::operate::Ending::NotDone(why) => {
            eprintln!("havenctl: not done: {why}");
            ExitCode::FAILURE
        }
    }))
}

/// `havenctl status --watch`: the status redrawn in place every second (the terminal is
/// cleared first); havend unreachable is shown, not fatal, so the watch outlives a restart.
fn watch_status(control_dir: &Path) -> Result<Option<ExitCode>> {
    loop {
        let text = match control::send(control_dir, &Request::Status, CONTROL_TIMEOUT) {
            Ok(Response::Ok { body }) => match serde_json::from_value::<Status>(body) {
                Ok(status) => daemon_view::render_status(&status),
                Err(error) => format!("havend's status is not what havenctl expects: {error}\n"),
            },
            Ok(Response::Error { message }) => format!("havend refused: {message}\n"),
            Err(error) => format!("{error}\n"),
        };
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        // Home, clear, then the status: a closed reader ends the watch (see `out!`).
        out!("\x1b[H\x1b[2J{now}  (havenctl status --watch; Ctrl-C ends)\n{text}");
        // An operator's refresh rate, not a synchronisation.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// The commands that are one request to the daemon; `None` for others.
fn daemon_request(cli: &Cli) -> Result<Option<ExitCode>> {
    let request = match &cli.command {
        Command::Status { .. } => Request::Status,
        Command::Notify { event } => Request::Notify {
            event: serde_json::from_str(event).context("the event is not valid event JSON")?,
        },
        Command::Reload => Request::Reload,
        Command::HastHook { args } => Request::HastHook { args: args.clone() },
        Command::Hook {
            hook: Hook::Ucarp { args },
        } => Request::UcarpHook { args: args.clone() },
        Command::Log {
            state_dir,
            config,
            lines,
            follow,
            json,
        } => {
            let dir = match (state_dir, config) {
                (Some(dir), _) => dir.clone(),
                (None, Some(config)) => Config::from_file(config)?.daemon.state_dir,
                (None, None) => haven_core::DaemonConfig::default().state_dir,
            };
            log_command(&dir, *lines, *follow, *json)?;
            return Ok(Some(ExitCode::SUCCESS));
        }
        _ => return Ok(None),
    };
    // A reload compiles modules before it answers.
    let timeout = match request {
        Request::Reload => RELOAD_TIMEOUT,
        _ => CONTROL_TIMEOUT,
    };
    let response = control::send(&cli.control_dir, &request, timeout)?;
    let body = match response {
        Response::Ok { body } => body,
        Response::Error { message } => {
            eprintln!("havenctl: havend refused: {message}");
            return Ok(Some(ExitCode::FAILURE));
        }
    };
    match &cli.command {
        Command::Status { json: true, .. } => {
            outln!("{}", serde_json::to_string_pretty(&body)?)
        }
        Command::Status { json: false, .. } => {
            let status: Status = serde_json::from_value(body)
                .context("havend's status is not what havenctl expects")?;
            out!("{}", daemon_view::render_status(&status));
        }
        Command::Reload => match serde_json::from_value(body)? {
            ReloadOutcome::Loaded { changes } => outln!("loaded: {}", changes.join("; ")),
            ReloadOutcome::Unchanged => outln!("unchanged"),
            ReloadOutcome::Rejected { reason } => outln!("rejected: {reason}"),
        },
        // Hooks print nothing on success: hastd and ucarp log their children's output.
        Command::HastHook { .. } | Command::Hook { .. } => {}
        _ => outln!("{body}"),
    }
    Ok(Some(ExitCode::SUCCESS))
}

/// Print the journal in `dir`; with `follow`, keep printing new records until interrupted.
fn log_command(dir: &Path, lines: Option<usize>, follow: bool, json: bool) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "no journal: the state directory {} does not exist (havend has not run with it; \
             name another with --state-dir or --config)",
            dir.display()
        );
    }
    let contents = Journal::read_all(dir)
        .with_context(|| format!("reading the journal in {}", dir.display()))?;
    let skip = lines.map_or(0, |n| contents.records.len().saturating_sub(n));
    let mut last_seq = 0;
    let print = |record: &haven_daemon::journal::Record| -> Result<()> {
        if json {
            outln!("{}", serde_json::to_string(record)?);
        } else {
            outln!("{}", daemon_view::render_record(record));
        }
        Ok(())
    };
    for record in contents.records.iter().skip(skip) {
        print(record)?;
    }
    if let Some(record) = contents.records.last() {
        last_seq = record.seq;
    }
    for torn in &contents.torn {
        eprintln!(
            "havenctl: {}:{}: unreadable line skipped ({})",
            torn.path.display(),
            torn.line,
            haven_core::text::escape(&torn.reason)
        );
    }
    let unreported = contents.torn_total - contents.torn.len() as u64;
    if unreported > 0 {
        eprintln!("havenctl: {unreported} more unreadable lines skipped");
    }
    if !follow {
        return Ok(());
    }
    loop {
        // An operator's tail, not synchronisation: look for new lines twice a second.
        std::thread::sleep(Duration::from_millis(500));
        let contents = Journal::read_all(dir)?;
        let since = last_seq;
        for record in contents.records.iter().filter(|r| r.seq > since) {
            print(record)?;
            last_seq = record.seq;
        }
    }
}
