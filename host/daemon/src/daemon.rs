//! `havend` put together: start every piece in order, and stop them in reverse.
//!
//! [`Daemon::start`] first binds the control socket (which fails if another havend answers on
//! it, before this one has touched its journal or decided anything), reads the journal for a
//! step a crash interrupted, loads the policies, reads the machine's state from the system,
//! and then starts, in this order, the event loop (which first hands every policy its
//! `startup` event), the sources (devd, hastctl, keepalived) and the control socket's thread.
//! Each source gets a sink that leaves what it hears in the [`Inbox`]; nothing but the loop
//! decides or acts.
//!
//! [`Daemon::stop`] asks the loop to stop (it finishes the running step first), stops the
//! sources and the control socket, and waits for all of them, each within a bound.

use crate::control::{self, ControlSocket, Request, Response};
use crate::event_loop::{EventLoop, raise_alert};
use crate::inbox::{Inbox, Report};
use crate::journal::{Entry, Journal, JournalError, Recovered};
use crate::metrics::listener::MetricsListener;
use crate::queue::Pushed;
use crate::reconcile::Reconciler;
use crate::reload::{ReloadOutcome, Reloader};
use crate::sources::devd_client::{DevdClient, DevdMessage, DevdOptions};
use crate::sources::hastctl_poller::{HastMessage, HastctlOptions, HastctlPoller};
use crate::sources::keepalived_fifo::{FifoMessage, KeepalivedFifo};
use crate::sources::peer::{self, PeerSource};
use crate::sources::witness::{WitnessFence, WitnessSource};
use crate::status::{Identity, StatusBoard};
use haven_core::names::check_hast_argument;
use haven_core::text::escape;
use haven_core::{
    AlertSeverity, Config, Event, ExecutorKind, HastStatus, Machine, MaintenanceState, OperatorAsk,
    OperatorRequest, PeerLink, PolicyConfig,
};
use haven_executor::{DryRun, Executor, Fence, Fenced, Platform, Runner, SystemExecutor};
use haven_runtime::{
    CompilerProcess, KvFiles, LoadedPolicy, Pipeline, Runtime, RuntimeError, RuntimeOptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a control socket exchange may take on the server side.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("policy runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Control(#[from] control::ControlError),
    #[error("executor: {0}")]
    Executor(#[from] haven_executor::SetupError),
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
}

/// The running sources; each stops when dropped, too.
#[derive(Debug, Default)]
struct Sources {
    devd: Option<DevdClient>,
    hastctl: Option<HastctlPoller>,
    keepalived: Option<KeepalivedFifo>,
    /// Started before the event loop, which publishes through it.
    peer: Option<PeerSource>,
}

impl Sources {
    fn stop(self) {
        if let Some(devd) = self.devd {
            devd.stop();
        }
        if let Some(hastctl) = self.hastctl {
            hastctl.stop();
        }
        if let Some(keepalived) = self.keepalived {
            keepalived.stop();
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    inbox: Inbox,
    board: StatusBoard,
    event_loop: JoinHandle<()>,
    sources: Sources,
    control: ControlServer,
    reloader: Arc<Reloader>,
    metrics: Option<MetricsListener>,
}

impl Daemon {
    /// Start everything for `config`, read from `config_path`, compiling policies in this
    /// process (benchmarks, tests; havend uses [`Daemon::start_with`]).
    pub fn start(config: Config, config_path: &Path) -> Result<Daemon, StartError> {
        Daemon::start_with(config, config_path, None)
    }

    /// [`Daemon::start`], compiling each policy module with `compiler`: a process of its own
    /// under `[daemon] compile-memory-mib` (see `haven_runtime::compiler_process`).
    pub fn start_with(
        config: Config,
        config_path: &Path,
        compiler: Option<CompilerProcess>,
    ) -> Result<Daemon, StartError> {
        let settings = &config.daemon;
        // First, before anything is read, written or decided: binding fails if another
        // havend answers on the socket, and that one owns the journal and the machine.
        let socket = ControlSocket::bind_with(
            &settings.control_dir,
            control::Limits {
                timeout: CONTROL_TIMEOUT,
                ..control::Limits::default()
            },
        )?;
        let recovered = Journal::recover(&settings.state_dir)?;
        let interrupted = recovered.interrupted.clone();
        let mut journal = Journal::open(
            &settings.state_dir,
            settings.journal_max_bytes,
            settings.journal_keep_files,
        )?;
        if let Some(torn) = journal.torn_tail() {
            let message = format!(
                "the journal ended in a torn line ({} bytes at {}:{}), cut off: a crash mid-write",
                torn.bytes,
                torn.path.display(),
                torn.line
            );
            journal.append(&Entry::Note { message })?;
        }

        let executor = executor(&config)?;

        let runtime = Arc::new(Runtime::new(RuntimeOptions {
            cache_dir: Some(settings.state_dir.join("cache")),
            compiler,
            ..RuntimeOptions::default()
        })?);
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut startup_alerts = Vec::new();
        for policy in &config.policies {
            match load_or_fall_back(&runtime, policy, &recovered) {
                Ok((loaded, alert)) => {
                    tracing::info!(
                        policy = %policy.name,
                        module = %haven_runtime::pipeline::short_hash(&loaded.compiled.module_hash),
                        from_cache = loaded.compiled.from_cache,
                        "policy loaded"
                    );
                    startup_alerts.extend(alert.map(|alert| (policy.name.clone(), alert)));
                    policies.push(loaded);
                }
                Err(alert) => startup_alerts.push((policy.name.clone(), alert)),
            }
        }

        let reconciler = Reconciler::new(&config);
        let (mut machine, problems) = reconciler.read(&Machine::default(), &policies);
        for problem in problems {
            journal.append(&Entry::Note {
                message: format!("startup: cannot read {problem}"),
            })?;
        }
        let (peer_model, peer_problem) =
            peer::peer_at_startup(config.peer.is_some(), &settings.state_dir, 0);
        machine.peer = peer_model;
        machine.unix_ms = crate::journal::unix_ms();
        startup_alerts.extend(peer_problem.map(|problem| (String::new(), problem)));
        machine.maintenance = match crate::maintenance::load(&settings.state_dir) {
            Ok(maintenance) => maintenance,
            Err((assumed, problem)) => {
                startup_alerts.push((String::new(), problem));
                Some(assumed)
            }
        };

        let inbox = Inbox::new(settings.queue_capacity)?;
        let peer_source = config.peer.as_ref().and_then(|peer| {
            PeerSource::start(peer, &inbox, &settings.state_dir)
                .map_err(|error| {
                    let message = format!(
                        "the peer link did not start, so this host hears nothing of its peer: \
                         {error}"
                    );
                    startup_alerts.push((String::new(), message));
                })
                .ok()
        });
        // What this host writes to (besides HAST's primary role), and what it runs: what the
        // status shows, and what "serving" and "holding storage" mean to the witness.
        let granted_mountpoints = granted(&config, |g| g.mounts.iter().map(|m| &m.mountpoint));
        let granted_services = granted(&config, |g| g.services.iter());
        let (witness_source, fence) = start_witness(
            &config,
            peer_source.as_ref(),
            (&granted_mountpoints, &granted_services),
            &inbox,
        );
        if let Err(problem) = &fence {
            startup_alerts.push((String::new(), problem.clone()));
        }
        if config.witness.is_some() {
            machine.witness = Some(haven_core::WitnessState::default());
        }
        // Bound now, so that a port in use is said at startup with the other problems; a
        // daemon that cannot serve its metrics still serves the pair.
        let metrics_socket = config.metrics.as_ref().and_then(|metrics| {
            TcpListener::bind(metrics.listen)
                .map_err(|error| {
                    startup_alerts.push((
                        String::new(),
                        format!(
                            "metrics: cannot listen on {}: {error}; havend runs without them",
                            metrics.listen
                        ),
                    ))
                })
                .ok()
        });
        let identity = Identity {
            config: config_path.to_owned(),
            state_dir: settings.state_dir.clone(),
            executor: executor.name().to_owned(),
            granted_hast: granted(&config, |g| g.hast_resources.iter()),
            granted_mountpoints: granted_mountpoints.clone(),
            granted_services: granted_services.clone(),
            witness: config.witness.clone(),
            metrics: metrics_socket
                .as_ref()
                .and_then(|socket| socket.local_addr().ok()),
        };
        let board = StatusBoard::new(identity, Arc::new(machine.clone()), settings.decisions_kept);
        for (policy, message) in &startup_alerts {
            tracing::error!(policy = %policy, alert = %message, "operator alert");
            // Alerts about the host (the peer link) have no policy.
            let policy = Some(policy.as_str()).filter(|name| !name.is_empty());
            raise_alert(
                &mut journal,
                &board,
                policy,
                AlertSeverity::Critical,
                message,
            );
        }
        let reloader = Arc::new(
            Reloader::start(
                config_path,
                &config,
                &policies,
                Arc::clone(&runtime),
                inbox.clone(),
                true,
            )
            .map_err(|source| StartError::Thread {
                what: "reloader",
                source,
            })?,
        );
        let mut pipeline = Pipeline::new(runtime, policies, machine);
        for (policy, why) in pipeline.keep_stores_in(KvFiles::new(settings.state_dir.join("kv"))) {
            let message = format!(
                "the stored state of policy `{policy}` could not be read back ({why}); it starts \
                 empty, and the policy is told at startup that its state was lost"
            );
            tracing::error!(policy = %policy, alert = %message, "operator alert");
            raise_alert(
                &mut journal,
                &board,
                Some(&policy),
                AlertSeverity::Critical,
                &message,
            );
        }
        pipeline.continue_plan_ids_after(recovered.last_plan_id);
        inbox.continue_ids_after(recovered.last_event_id);
        journal.append(&Entry::Note {
            message: format!(
                "havend {} started (pid {}, config {}, executor {}, policies: {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                config_path.display(),
                executor.name(),
                pipeline
                    .policies()
                    .iter()
                    .map(|p| format!(
                        "{}@{}",
                        p.name,
                        haven_runtime::pipeline::short_hash(&p.compiled.module_hash)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if let Some(interrupted) = &interrupted {
            tracing::warn!(
                policy = %interrupted.policy,
                plan_id = interrupted.plan_id,
                step = interrupted.step_index,
                "a step was interrupted by the last stop; the policy is told at startup"
            );
        }

        let executor: Box<dyn Executor> = match fence {
            Ok(None) => executor,
            Ok(Some(fence)) => Box::new(Fenced::new(executor, fence, granted_mountpoints)),
            Err(why) => Box::new(Fenced::new(executor, Unfenceable(why), granted_mountpoints)),
        };
        let event_loop = EventLoop {
            runner: Runner::new(pipeline, executor),
            journal,
            inbox: inbox.clone(),
            board: board.clone(),
            read_machine: Box::new(move |previous, policies| reconciler.read(previous, policies).0),
            interrupted: interrupted.map(|i| (i.policy.clone(), i.into())),
            started: Instant::now(),
            peer: peer_source.as_ref().map(PeerSource::publisher),
            stores_failing: false,
            witness: witness_source,
            journal_inputs: settings.journal_inputs,
        };
        let event_loop = spawn("event-loop", move || event_loop.run())?;

        let known_hast = board_hast(&board);
        let mut sources = start_sources(&config, &inbox, known_hast);
        if let Some(peer) = &peer_source {
            board.set_peer(peer.publisher());
        }
        sources.peer = peer_source;
        let handler = Handler {
            reloader: Arc::clone(&reloader),
            inbox: inbox.clone(),
            board: board.clone(),
            state_dir: settings.state_dir.clone(),
            ucarp_vhids: config.ucarp_vhids(),
        };
        let control = ControlServer::start(socket, handler)?;
        let metrics = match metrics_socket {
            Some(socket) => Some(start_metrics(socket, &board, &inbox)?),
            None => None,
        };
        tracing::info!(socket = %control.path.display(), "havend ready");
        Ok(Daemon {
            inbox,
            board,
            event_loop,
            sources,
            control,
            reloader,
            metrics,
        })
    }

    /// The control socket's path.
    pub fn control_path(&self) -> &Path {
        &self.control.path
    }

    /// The status board the loop keeps (decisions, model, counters).
    pub fn status_board(&self) -> &StatusBoard {
        &self.board
    }

    /// Whether the event loop has ended (it only does when stopped, or if it panicked).
    pub fn loop_finished(&self) -> bool {
        self.event_loop.is_finished()
    }

    /// Reload the config and policies (SIGHUP): off the event path, swapped in between two
    /// events if all is well.
    pub fn reload(&self, why: &str) {
        self.reloader.request(why, None);
    }

    /// Stop: the loop finishes its running step, then sources, the control socket and the
    /// reloader stop.
    pub fn stop(self) {
        tracing::info!("havend stopping");
        self.inbox.stop();
        if self.event_loop.join().is_err() {
            tracing::error!("the event loop panicked");
        }
        self.sources.stop();
        self.control.stop();
        if let Some(metrics) = self.metrics {
            metrics.stop();
        }
        match Arc::try_unwrap(self.reloader) {
            Ok(reloader) => reloader.stop(),
            Err(_) => tracing::warn!("the reloader is still referenced; not waiting for it"),
        }
        tracing::info!("havend stopped");
    }
}

/// The witness's session and the fence for the executor, when `[witness]` is configured.
/// A witness that cannot start (its password file unreadable, say) leaves a fence that
/// refuses every promotion, with why: a configured witness is never silently skipped.
fn start_witness(
    config: &Config,
    peer: Option<&PeerSource>,
    (mountpoints, services): (&BTreeSet<String>, &BTreeSet<String>),
    inbox: &Inbox,
) -> (Option<WitnessSource>, Result<Option<WitnessFence>, String>) {
    let Some(witness) = &config.witness else {
        return (None, Ok(None));
    };
    let peer_host = peer.map(|peer| peer.publisher().host().to_owned());
    let started = crate::sources::witness::host_name(peer_host.as_deref()).and_then(|host| {
        let granted = (mountpoints.clone(), services.clone());
        WitnessSource::start(witness, &host, granted, inbox).map_err(|error| error.to_string())
    });
    match started {
        Ok(source) => {
            let fence = source.fence();
            (Some(source), Ok(Some(fence)))
        }
        Err(error) => (
            None,
            Err(format!(
                "the witness did not start, so no promotion can be fenced and every one is \
                 refused: {error}"
            )),
        ),
    }
}

/// The fence of a witness that did not start: it refuses, saying why.
#[derive(Debug)]
struct Unfenceable(String);

impl Fence for Unfenceable {
    fn take(&mut self) -> Result<u64, String> {
        Err(self.0.clone())
    }

    fn let_go(&mut self) {}
}

/// The executor the config asks for (`auto`: this OS's).
/// Serve the metrics page from the status board (never from the event loop, which may be busy).
fn start_metrics(
    socket: TcpListener,
    board: &StatusBoard,
    inbox: &Inbox,
) -> Result<MetricsListener, StartError> {
    let (board, inbox) = (board.clone(), inbox.clone());
    let page = move |openmetrics: bool| {
        let status = board.status(&inbox, control::ControlStats::default());
        board.metrics().render(&status, openmetrics)
    };
    let listener =
        MetricsListener::start(socket, Box::new(page)).map_err(|source| StartError::Thread {
            what: "metrics",
            source,
        })?;
    tracing::info!(address = %listener.address(), "metrics served");
    Ok(listener)
}

fn executor(config: &Config) -> Result<Box<dyn Executor>, StartError> {
    let platform = match config.daemon.executor.resolve() {
        ExecutorKind::Freebsd => Platform::FreeBsd,
        ExecutorKind::Linux => Platform::Linux,
        ExecutorKind::DryRun | ExecutorKind::Auto => return Ok(Box::new(DryRun::new())),
    };
    let executor = SystemExecutor::new(platform, &config.executor)?.with_carp(&config.carp);
    for (tool, path) in executor.missing_tools() {
        tracing::warn!(tool, path = %path.display(), "a tool this executor needs is not executable; steps that need it will fail");
    }
    Ok(Box::new(executor))
}

/// Everything granted to some policy, by `pick`.
fn granted<'a, I>(
    config: &'a Config,
    pick: impl Fn(&'a haven_core::Grants) -> I,
) -> BTreeSet<String>
where
    I: Iterator<Item = &'a String>,
{
    config
        .policies
        .iter()
        .flat_map(|policy| pick(&policy.grants))
        .cloned()
        .collect()
}

fn spawn(
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|source| StartError::Thread { what: name, source })
}

/// The HAST statuses startup read, so the poller's first snapshot only reports differences.
fn board_hast(board: &StatusBoard) -> Vec<HastStatus> {
    board.machine().hast.values().cloned().collect()
}

/// Start the sources the config names, each with a sink into the inbox. `known_hast` is what
/// startup read from hastctl a moment ago.
fn start_sources(config: &Config, inbox: &Inbox, known_hast: Vec<HastStatus>) -> Sources {
    let mut sources = Sources::default();
    if let Some(devd) = &config.sources.devd {
        let inbox = inbox.clone();
        sources.devd = Some(DevdClient::spawn(
            devd.socket.clone(),
            DevdOptions::default(),
            move |message| devd_message(&inbox, message),
        ));
    }
    if let Some(hastctl) = &config.sources.hastctl {
        let inbox = inbox.clone();
        let options = HastctlOptions {
            program: hastctl.program.clone(),
            interval: Duration::from_millis(hastctl.interval_ms),
            timeout: Duration::from_millis(hastctl.timeout_ms),
        };
        let mut known = Some(known_hast);
        sources.hastctl = Some(HastctlPoller::spawn(options, move |message| {
            hastctl_message(&inbox, message, &mut known)
        }));
    }
    if let Some(keepalived) = &config.sources.keepalived {
        let inbox = inbox.clone();
        sources.keepalived = Some(KeepalivedFifo::spawn(
            keepalived.fifo.clone(),
            config.keepalived_instances(),
            move |message| fifo_message(&inbox, message),
        ));
    }
    sources
}

const DEVD: &str = "devd";
const HASTCTL: &str = crate::sources::hastctl_poller::SOURCE;
const KEEPALIVED: &str = "keepalived";
/// The source name of operators' requests.
const OPERATOR: &str = "havenctl";

fn bad_input(source: &str, reason: String, text: String) -> Report {
    Report::BadInput {
        source: source.to_owned(),
        reason,
        text,
    }
}

fn source_state(source: &str, up: bool, message: String) -> Report {
    Report::SourceState {
        source: source.to_owned(),
        up,
        message,
    }
}

fn devd_message(inbox: &Inbox, message: DevdMessage) {
    match message {
        DevdMessage::Event(event) => {
            inbox.send(event, DEVD);
        }
        DevdMessage::BadInput { text, reason } => inbox.report(bad_input(DEVD, reason, text)),
        DevdMessage::Connected { reconnect } => {
            inbox.report(source_state(DEVD, true, "connected to devd".to_owned()));
            if reconnect {
                inbox.report(Report::Resync {
                    source: DEVD.to_owned(),
                    why: "reconnected to devd".to_owned(),
                });
            }
        }
        DevdMessage::Disconnected { reason } => inbox.report(source_state(DEVD, false, reason)),
    }
}

/// `known` holds what startup read, until the first snapshot is compared with it.
fn hastctl_message(inbox: &Inbox, message: HastMessage, known: &mut Option<Vec<HastStatus>>) {
    match message {
        // Startup read the same state a moment ago: only a difference is a change.
        HastMessage::Snapshot(statuses) => {
            inbox.report(source_state(HASTCTL, true, "hastctl list works".to_owned()));
            let known = known.take().unwrap_or_default();
            let events = statuses
                .into_iter()
                .filter(|status| !known.contains(status))
                .map(Event::HastStatusChanged)
                .collect();
            inbox.push_all(events, HASTCTL);
        }
        HastMessage::Changed(event) => {
            inbox.send(event, HASTCTL);
        }
        HastMessage::Vanished(resource) => inbox.report(source_state(
            HASTCTL,
            true,
            format!("HAST resource `{resource}` is no longer listed"),
        )),
        HastMessage::BadOutput {
            text_excerpt,
            reason,
        } => inbox.report(bad_input(HASTCTL, reason, text_excerpt)),
        HastMessage::CommandFailed { reason } => inbox.report(source_state(HASTCTL, false, reason)),
        HastMessage::Recovered { failures } => inbox.report(source_state(
            HASTCTL,
            true,
            format!("hastctl list works again after {failures} failed run(s)"),
        )),
    }
}

/// Load a configured policy at startup. A module that does not load must not keep the others
/// from starting: its last good version (the module of its last journaled decision, kept in
/// the artifact cache) runs instead, with an alert; without one, the policy does not run and
/// the alert says why. `Ok` carries the alert to raise, if any; `Err` is the alert.
fn load_or_fall_back(
    runtime: &Runtime,
    policy: &PolicyConfig,
    recovered: &Recovered,
) -> Result<(LoadedPolicy, Option<String>), String> {
    let error = match runtime.load(policy) {
        Ok(loaded) => return Ok((loaded, None)),
        Err(error) => error,
    };
    let module = policy.module.display();
    let last_good = recovered
        .last_modules
        .get(&policy.name)
        .map(|hash| (hash, runtime.load_cached(hash, policy)));
    match last_good {
        Some((hash, Ok(loaded))) => Ok((
            loaded,
            Some(format!(
                "policy `{}`: {module} does not load ({error}); running its last good version \
                 {} from the artifact cache until the module is fixed",
                policy.name,
                haven_runtime::pipeline::short_hash(hash)
            )),
        )),
        Some((_, Err(cached))) => Err(format!(
            "policy `{}` is not running: {module} does not load ({error}), and its last good \
             version cannot be used ({cached})",
            policy.name
        )),
        None => Err(format!(
            "policy `{}` is not running: {module} does not load ({error}), and the journal \
             names no earlier version",
            policy.name
        )),
    }
}

fn fifo_message(inbox: &Inbox, message: FifoMessage) {
    match message {
        FifoMessage::Event(event) => {
            inbox.send(event, KEEPALIVED);
        }
        FifoMessage::BadInput { text, reason } => inbox.report(bad_input(KEEPALIVED, reason, text)),
        // Counted by the reader; nothing for the policies or the journal.
        FifoMessage::Skipped { .. } => {}
        FifoMessage::Opened { reopen } => {
            inbox.report(source_state(KEEPALIVED, true, "FIFO open".to_owned()));
            if reopen {
                inbox.report(Report::Resync {
                    source: KEEPALIVED.to_owned(),
                    why: "reopened the notify FIFO".to_owned(),
                });
            }
        }
        FifoMessage::Unavailable { reason } => {
            inbox.report(source_state(KEEPALIVED, false, reason))
        }
    }
}

// ------------------------------------------------------------------------------ control socket

/// How long `havenctl reload` waits for the outcome: a reload that waits for a long plan to
/// finish answers "still in progress" rather than hold its connection's thread for minutes
/// (each connection has its own; see [`MAX_CONTROL_CONNECTIONS`]).
const RELOAD_WAIT: Duration = Duration::from_secs(2);

/// Answers control requests: reads status, turns hooks into events, asks for reloads.
#[derive(Debug)]
struct Handler {
    reloader: Arc<Reloader>,
    inbox: Inbox,
    board: StatusBoard,
    state_dir: PathBuf,
    ucarp_vhids: BTreeMap<(String, String), u8>,
}

impl Handler {
    fn handle(&self, socket: &ControlSocket, peer: control::Peer, request: Request) -> Response {
        match request {
            Request::Operator { ask } => {
                let kept = self.board.machine().maintenance;
                if let Err(reason) = self.check_operator(&ask) {
                    return Response::error(reason);
                }
                let maintenance = matches!(ask, OperatorAsk::Maintenance(_));
                let request = OperatorRequest { uid: peer.uid, ask };
                let response = self.queue(OPERATOR, Ok(Event::Operator(request)), &[]);
                if maintenance && matches!(response, Response::Error { .. }) {
                    // Not queued (the queue is full): the file goes back to what the daemon
                    // holds, so that disk and daemon never disagree.
                    if let Err(error) = crate::maintenance::save(&self.state_dir, kept) {
                        tracing::error!(%error, "cannot restore the maintenance file");
                    }
                }
                response
            }
            Request::Status => {
                let status = self.board.status(&self.inbox, socket.stats());
                match serde_json::to_value(status) {
                    Ok(body) => Response::ok(body),
                    Err(error) => Response::error(format!("cannot encode the status: {error}")),
                }
            }
            Request::HastHook { args } => {
                let event = haven_sources::hast_hook_event(&args).map_err(|e| e.to_string());
                self.queue("hast-hook", event, &args)
            }
            Request::UcarpHook { args } => {
                let event = haven_sources::ucarp_args_to_event(&args, &self.ucarp_vhids)
                    .map_err(|e| e.to_string());
                self.queue("ucarp", event, &args)
            }
            Request::Notify { event } => self.queue("notify", Ok(event), &[]),
            Request::LogTail { lines } => match Journal::read_all(&self.state_dir) {
                Ok(contents) => {
                    let skip = contents.records.len().saturating_sub(lines as usize);
                    let tail: Vec<_> = contents.records.into_iter().skip(skip).collect();
                    match serde_json::to_value(tail) {
                        Ok(body) => Response::ok(body),
                        Err(error) => Response::error(format!("cannot encode the log: {error}")),
                    }
                }
                Err(error) => Response::error(format!("cannot read the journal: {error}")),
            },
            Request::Reload => {
                let (reply, outcome) = std::sync::mpsc::channel();
                self.reloader.request("havenctl reload", Some(reply));
                match outcome.recv_timeout(RELOAD_WAIT) {
                    Ok(ReloadOutcome::Rejected { reason }) => Response::error(format!(
                        "reload rejected, the running policies stay: {reason}"
                    )),
                    Ok(outcome) => match serde_json::to_value(outcome) {
                        Ok(body) => Response::ok(body),
                        Err(error) => {
                            Response::error(format!("cannot encode the outcome: {error}"))
                        }
                    },
                    Err(_) => Response::error(format!(
                        "the reload is still in progress after {RELOAD_WAIT:?} (a plan may be \
                         running); see havenctl status for its outcome"
                    )),
                }
            }
        }
    }

    /// Check an operator's request before it becomes an event, and keep a maintenance change
    /// on disk first. `Err` is the answer: nothing changed.
    fn check_operator(&self, ask: &OperatorAsk) -> Result<(), String> {
        match ask {
            OperatorAsk::Switchover(to) => {
                let machine = self.board.machine();
                if machine.peer.link == PeerLink::NotConfigured {
                    return Err("switchover needs the peer link: haven.toml has no [peer], so nothing here \
                         knows whether the other host can take over"
                        .to_owned());
                }
                if let Some(to) = to {
                    let known = machine.peer.facts.as_ref().map(|facts| facts.host.as_str());
                    if known != Some(to.as_str()) {
                        let peer = known.map_or_else(
                            || "the peer has not said its name yet".to_owned(),
                            |name| format!("this host's peer is `{}`", escape(name)),
                        );
                        return Err(format!("unknown host `{}`: {peer}", escape(to)));
                    }
                }
                if let Some(running) = self.board.running() {
                    return Err(format!(
                        "a plan is running ({running}); ask again when it has ended"
                    ));
                }
                Ok(())
            }
            OperatorAsk::AcceptIncomplete(resource) => {
                check_hast_argument("HAST resource", resource)?;
                if self.board.hast_granted(resource) {
                    Ok(())
                } else {
                    Err(format!(
                        "HAST resource `{resource}` is not granted to any policy (grants.hast-\
                         resources in haven.toml)"
                    ))
                }
            }
            OperatorAsk::Maintenance(on) => {
                // On again keeps the first `since`, as the model does.
                let kept = match (on, self.board.machine().maintenance) {
                    (false, _) => None,
                    (true, Some(already)) => Some(already),
                    (true, None) => Some(MaintenanceState {
                        since_unix_ms: crate::journal::unix_ms(),
                        uid: 0,
                    }),
                };
                crate::maintenance::save(&self.state_dir, kept).map_err(|error| {
                    format!(
                        "cannot keep maintenance {} in {}: {error}; nothing changed",
                        if *on { "on" } else { "off" },
                        self.state_dir.join(crate::maintenance::FILE).display()
                    )
                })
            }
        }
    }

    /// Queue a hook's event, or report its bad arguments (to the journal and the caller).
    fn queue(&self, source: &str, event: Result<Event, String>, args: &[String]) -> Response {
        match event {
            Ok(event) => match self.inbox.push(event, source) {
                Pushed::Dropped(dropped) => Response::error(format!(
                    "havend's event queue is full: event {} ({}) dropped",
                    dropped.id, dropped.kind
                )),
                pushed => Response::ok(serde_json::json!({ "event-id": pushed.id() })),
            },
            Err(reason) => {
                let text = format!("{args:?}");
                self.inbox.report(bad_input(source, reason.clone(), text));
                Response::error(reason)
            }
        }
    }
}

/// Control connections served at once. Each is bounded by the socket's deadline, so an idle
/// or slow client holds only its own thread; the hooks from hastd and ucarp are served beside
/// it, never behind it. Past this many, a connection is turned away at once, saying so.
const MAX_CONTROL_CONNECTIONS: usize = 32;

/// The control socket's accepting thread; each connection is served on a thread of its own.
#[derive(Debug)]
struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ControlServer {
    fn start(socket: ControlSocket, handler: Handler) -> Result<ControlServer, StartError> {
        let path = socket.path().to_owned();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let socket = Arc::new(socket);
        let handler = Arc::new(handler);
        let in_hand = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = spawn("control", move || {
            while !stop.load(Ordering::Acquire) {
                let stream = match socket.accept() {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::error!(%error, "control socket");
                        // accept itself failed (EMFILE and the like): do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let count = in_hand.fetch_add(1, Ordering::AcqRel) + 1;
                if count > MAX_CONTROL_CONNECTIONS {
                    in_hand.fetch_sub(1, Ordering::AcqRel);
                    socket.refuse_busy(stream, count - 1);
                    continue;
                }
                let (socket, handler, done) = (
                    Arc::clone(&socket),
                    Arc::clone(&handler),
                    Arc::clone(&in_hand),
                );
                let served = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        socket.serve_connection(stream, |peer, request| {
                            handler.handle(&socket, *peer, request)
                        });
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(error) = served {
                    in_hand.fetch_sub(1, Ordering::AcqRel);
                    tracing::error!(%error, "cannot start a thread for a control connection");
                }
            }
        })?;
        Ok(ControlServer {
            path,
            stopping,
            thread,
        })
    }

    fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the blocking accept with a request of our own (answered like any other).
        let _ = control::send(&self.path, &Request::Status, CONTROL_TIMEOUT);
        if self.thread.join().is_err() {
            tracing::error!("the control socket thread panicked");
        }
    }
}
