//! `havend`: Haven's daemon. Reads `haven.toml`, starts the pieces (see `haven_daemon::daemon`)
//! and waits for a signal.
//!
//! ```text
//! havend -c /usr/local/etc/haven/haven.toml                 # foreground, logs to stderr
//! havend -c haven.toml --daemon --pid-file /var/run/havend.pid --log-file /var/log/havend.log
//! havend -c haven.toml --check                              # check the config and exit
//! ```
//!
//! SIGTERM and SIGINT stop it after the running step (never in the middle of one); SIGHUP
//! reloads the config and policies (so does a change to their files). A config
//! error at start exits with status 2 and names the file, the line and the reason; any other
//! failure to start exits with status 1.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use haven_core::Config;
use haven_daemon::Daemon;
use haven_daemon::pidfile::PidFile;
use haven_runtime::{CompilerProcess, Runtime, RuntimeOptions, compiler_process};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(name = "havend", version, about = "Haven's failover daemon")]
struct Args {
    /// The configuration file.
    #[arg(short, long, default_value = haven_cli::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Detach from the terminal and run in the background.
    #[arg(long)]
    daemon: bool,
    /// Write the pid here, and hold it locked while running.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Append logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How long one policy may take to compile in its compiler process.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    // havend started again as a compiler process by a running havend (not for people).
    let mut raw = std::env::args_os().skip(1);
    if raw.next().as_deref() == Some(std::ffi::OsStr::new(compiler_process::WORKER_FLAG)) {
        return compile_worker(raw.collect());
    }
    let mut args = Args::parse();
    // `--daemon` changes the working folder to `/`: every path given relative to where havend
    // was started must be made absolute first (module paths follow the config's).
    for path in [
        Some(&mut args.config),
        args.pid_file.as_mut(),
        args.log_file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(absolute) = std::path::absolute(&*path) {
            *path = absolute;
        }
    }
    // Before anything else, and before detaching: a bad config is reported where the operator
    // is looking.
    let config = match Config::from_file(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("havend: {error}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return check(&args, &config);
    }
    match run(args, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let line = haven_cli::error_line(&error);
            tracing::error!("{line}");
            eprintln!("havend: {line}");
            ExitCode::from(1)
        }
    }
}

/// `havend --compile-worker <cache dir> <module file> <memory MiB>`: compile one module into
/// the artifact cache under a memory limit, for the havend that started it.
fn compile_worker(args: Vec<std::ffi::OsString>) -> ExitCode {
    let [cache, module, memory] = &args[..] else {
        eprintln!(
            "usage: havend {} <cache dir> <module file> <memory MiB>",
            compiler_process::WORKER_FLAG
        );
        return ExitCode::from(2);
    };
    let Some(memory_mib) = memory.to_str().and_then(|text| text.parse().ok()) else {
        eprintln!("havend: the memory limit is not a number of MiB");
        return ExitCode::from(2);
    };
    let engine = match haven_runtime::runtime::compiler_engine() {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let code = compiler_process::worker_main(
        &engine,
        std::path::Path::new(cache),
        std::path::Path::new(module),
        memory_mib,
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `--check`: the config, and every policy loaded as the daemon would load it (read, admitted,
/// compiled, described and configured under its own limits), so that a config `--check`
/// passes is one the daemon starts with.
fn check(args: &Args, config: &Config) -> ExitCode {
    let runtime = match Runtime::new(RuntimeOptions::default()) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("havend: {error}");
            return ExitCode::from(1);
        }
    };
    let mut failed = 0;
    for policy in &config.policies {
        if let Err(error) = runtime.load(policy) {
            failed += 1;
            eprintln!(
                "{}: policy `{}` ({}): {error}",
                args.config.display(),
                policy.name,
                policy.module.display()
            );
        }
    }
    if failed > 0 {
        return ExitCode::from(2);
    }
    println!(
        "{}: ok ({} policies)",
        args.config.display(),
        config.policies.len()
    );
    ExitCode::SUCCESS
}

fn run(args: Args, config: Config) -> anyhow::Result<()> {
    if args.daemon {
        // Fork before any thread exists (the runtime's and the sources' come later).
        nix::unistd::daemon(false, false).context("cannot detach")?;
    }
    init_logging(&args)?;
    let _pid_file = args.pid_file.as_deref().map(PidFile::create).transpose()?;

    // Take the signals before starting (compiling policies can take a while): a SIGTERM or
    // SIGHUP that comes meanwhile waits instead of killing the process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let signals = {
        let _context = runtime.enter();
        Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        }
    };
    let compiler = CompilerProcess {
        program: std::env::current_exe().context("cannot find havend's own program")?,
        args: Vec::new(),
        memory_mib: config.daemon.compile_memory_mib,
        timeout: COMPILE_TIMEOUT,
    };
    let daemon = Daemon::start_with(config, &args.config, Some(compiler))?;
    runtime.block_on(wait_for_stop(&daemon, signals))?;
    daemon.stop();
    Ok(())
}

/// The signals havend acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// Wait for SIGTERM or SIGINT (or the event loop ending on its own, which only a panic does).
async fn wait_for_stop(daemon: &Daemon, signals: Signals) -> anyhow::Result<()> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT"); return Ok(()) }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config and policies");
                daemon.reload("SIGHUP");
            }
            _ = watchdog.tick() => {
                if daemon.loop_finished() {
                    anyhow::bail!("the event loop ended unexpectedly");
                }
            }
        }
    }
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HAVEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = match &args.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    // Colours only for a person at a terminal: log files and pipes get plain text.
    let ansi = args.log_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
