//! The sandbox: one wasmtime `Engine` for all policies, each policy compiled once, and a fresh
//! `Store` and instance for every call, so nothing leaks from one event to the next and a trap
//! ends only the call that trapped.
//!
//! A policy whose instances are slow to make (a Python component) gets each call's instance
//! made ahead, on a helper thread, and its used stores torn down there ([`crate::spare`]):
//! still a fresh instance per call, made off the event path.
//!
//! Every call is bounded: a wall-clock deadline (epoch interruption, a 1 ms ticker), a memory
//! cap (this module's `ResourceLimiter`), a plan length and a log budget. Whatever a policy
//! does, the call returns a [`Call`] to the caller, never a panic or a hang.
//!
//! Policies are compiled by [`COMPILER`]: Winch, wasmtime's single-pass baseline compiler, on
//! x86-64, Cranelift elsewhere. Winch compiles the seed policy 4-5 times faster than Cranelift
//! (40-50 ms against 150-270 ms on two vCPUs), which is what brings a cold hot reload under its
//! 100 ms target, and its code costs 1-2 µs more per event (5-10 % of a decision); see
//! `BENCHMARKS.md`, "Hot reload". Both honour the same epoch deadline, memory cap and stack
//! limit (`tests/containment.rs` runs under whichever is in use). Winch does not implement a
//! few WebAssembly proposals (tail calls, relaxed SIMD, GC, exceptions), which policies built
//! with the SDK for `wasm32-unknown-unknown` do not use; a module that needs them is refused
//! at load with a compile error.

use crate::admission::{self, AdmissionError};
use crate::bindings::{Answer, Instance, PolicyPre};
use crate::cache::ArtifactCache;
use crate::call_context::{CallContext, KvStore, PolicyLog};
use crate::compiler_process::CompilerProcess;
use crate::spare::{Spare, Spares, Wanted};
use haven_core::text::clip;
use haven_core::{Event, Grants, Limits, Machine, Plan, PolicyConfig, PolicyInfo};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Strategy, Trap,
};

/// The compiler that turns policies into machine code: Winch on x86-64 (fast to compile,
/// see the module's documentation), Cranelift on other architectures, where Winch is
/// incomplete.
pub const COMPILER: &str = if cfg!(target_arch = "x86_64") {
    "Winch"
} else {
    "Cranelift"
};

/// The largest memory cap a policy may be given; the pooling allocator reserves this much
/// address space per instance slot.
pub const MAX_MEMORY_MIB: u32 = 256;

/// How long making an instance must take, at load, for a policy's instances to be made ahead
/// by the spare-instance helper ([`crate::spare`]). A Rust policy's takes 10-50 µs and a
/// JavaScript component's about as little, less than handing the work to another thread
/// saves; a Python component's 0.5-1 ms.
pub const SPARE_WORTH: Duration = Duration::from_micros(200);

/// Options for building a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled policies are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once (calls in flight, across threads).
    pub max_instances: u32,
    /// Compile in a process of its own, into the cache (the daemon's way; it needs
    /// `cache_dir`). `None` compiles in this process (havenctl, tests).
    pub compiler: Option<CompilerProcess>,
    /// Make a policy's instances ahead of its events ([`crate::spare`]) when making one took
    /// at least this long at load ([`SPARE_WORTH`] by default; zero: every policy's). `None`:
    /// every call makes its own.
    pub spares: Option<Duration>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            max_instances: 64,
            compiler: None,
            spares: Some(SPARE_WORTH),
        }
    }
}

/// The runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
    #[error("cannot open the artifact cache {path}: {error}")]
    Cache {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("does not compile: {0}")]
    Compile(String),
    #[error("does not match the contract's types: {0}")]
    Link(String),
    #[error("describe failed: {0}")]
    Describe(CallFailure),
    #[error("rejected its settings: {0}")]
    Init(CallFailure),
    #[error("bad limits: {0}")]
    Limits(String),
    #[error("module {0} is not in the artifact cache")]
    NotCached(String),
}

/// How a call into a policy failed. The daemon applies the policy's failure mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("exceeded its deadline of {0} ms")]
    Deadline(u32),
    #[error(
        "exceeded its memory limit of {0} MiB (memory-mib in [limits] or [policy.limits] raises \
         it: a Python component needs 16 or more, a JavaScript one 12 or more)"
    )]
    Memory(u32),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("init failed: {0}")]
    Init(String),
    #[error("returned an error: {0}")]
    Returned(String),
    #[error("returned a plan of {steps} steps, over the limit of {limit}")]
    PlanTooLong { steps: usize, limit: u32 },
    #[error(
        "handed the host more than {0} bytes in one transfer (a string or list over \
         limits.max-text-bytes)"
    )]
    TooMuchText(u32),
    #[error("handed the host text that is not valid UTF-8 ({0})")]
    NotUtf8(String),
    #[error("described itself with {0}")]
    BadInfo(String),
}

/// The longest error message from a policy that is kept (journaled, shown); longer ones are
/// cut, with their length noted.
pub const MAX_ERROR_BYTES: usize = 4096;

/// The longest policy name or version `describe` may return.
pub const MAX_INFO_BYTES: usize = 64;

/// A module compiled, admitted and linked, not yet configured.
#[derive(Clone)]
pub struct CompiledPolicy {
    /// SHA-256 of the module file, hex: names the version in the journal.
    pub module_hash: String,
    /// What the policy says it is.
    pub info: PolicyInfo,
    /// Whether the compiled code came from the artifact cache.
    pub from_cache: bool,
    /// How long compiling (or loading from cache) and linking took.
    pub compile_time: Duration,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
    /// The contract version the policy was built against, from its `handler` export: the
    /// host's own or an older minor (see [`crate::admission`]).
    pub contract: String,
    pre: PolicyPre,
    /// The limits `describe` ran under; `configure` asks again only under other limits.
    described_with: Limits,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("module_hash", &self.module_hash)
            .field("info", &self.info)
            .field("from_cache", &self.from_cache)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

/// A policy ready to handle events: compiled, with its settings accepted by `init`.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The operator's name for it.
    pub name: String,
    /// Which configured policy this is, for its spare instances: unique in the process.
    id: u64,
    /// Whether its instances are made ahead, by the spare-instance helper: when making one
    /// took long enough at load ([`RuntimeOptions::spares`]).
    spared: bool,
    /// The compiled module.
    pub compiled: CompiledPolicy,
    /// Its configuration.
    pub config: Arc<PolicyConfig>,
    grants: Arc<Grants>,
    limits: Arc<Limits>,
    settings: String,
}

impl LoadedPolicy {
    /// The grants the policy runs under.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Whether the policy's instances are made ahead of its events ([`crate::spare`]).
    pub fn spared(&self) -> bool {
        self.spared
    }

    /// Whether the policy's contract can express `event`: a policy built against `1.x`
    /// hears nothing of the peer.
    pub fn receives(&self, event: &Event) -> bool {
        self.compiled.pre.receives(event)
    }
}

/// What one call produced, whatever its outcome.
#[derive(Debug)]
pub struct Call {
    /// The plan, or why there is none.
    pub result: Result<Plan, CallFailure>,
    /// Key-value writes: to be committed only if the result is `Ok`.
    pub kv_writes: std::collections::BTreeMap<String, Option<String>>,
    /// What the policy logged.
    pub logs: Vec<PolicyLog>,
    /// Log lines over the budget, dropped.
    pub dropped_logs: u32,
    /// Queries refused for lack of grants: the first few (see
    /// [`MAX_REFUSED_KEPT`](crate::call_context::MAX_REFUSED_KEPT)).
    pub refused_queries: Vec<String>,
    /// Every query refused, kept or not.
    pub refused_count: u32,
    /// Wall time of the whole call, from the event to the answer: instantiation included,
    /// unless a spare instance was ready (see [`crate::spare`]).
    pub elapsed: Duration,
}

/// Increments the engine's epoch every millisecond, for call deadlines.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("haven-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sandbox for every policy of one daemon (or one test run).
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallContext>,
    cache: Option<ArtifactCache>,
    /// Set only with a cache: the child writes its artifact there.
    compiler: Option<CompilerProcess>,
    spares: Option<Spares>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Build the engine, linker and epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let engine_error = |error: wasmtime::Error| RuntimeError::Engine(format!("{error:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let instances = options.max_instances.max(1);
        // A Rust policy is one core instance with a memory and a table; a Python or JavaScript
        // component links a dozen or more core instances (the interpreter, its libraries, the
        // bindings), which share a memory or two. Core instances are only counted, so their
        // limit is generous; memories and tables reserve address space, per slot.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 32)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
            .linear_memory_keep_resident(256 * 1024)
            .table_keep_resident(64 * 1024)
            // Reset only the pages a call touched (Linux 6.7+; ignored elsewhere).
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = engine_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        crate::bindings::v4::Policy::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |context: &mut CallContext| context,
        )
        .map_err(engine_error)?;
        crate::bindings::v3::Policy::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |context: &mut CallContext| context,
        )
        .map_err(engine_error)?;
        crate::bindings::v2::Policy::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |context: &mut CallContext| context,
        )
        .map_err(engine_error)?;
        crate::bindings::v1::Policy::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |context: &mut CallContext| context,
        )
        .map_err(engine_error)?;
        let cache = match &options.cache_dir {
            Some(dir) => {
                Some(
                    ArtifactCache::new(dir, &engine).map_err(|error| RuntimeError::Cache {
                        path: dir.clone(),
                        error,
                    })?,
                )
            }
            None => None,
        };
        Ok(Runtime {
            _ticker: EpochTicker::start(engine.clone()),
            compiler: options.compiler.filter(|_| cache.is_some()),
            spares: options.spares.map(Spares::start),
            engine,
            linker,
            cache,
        })
    }

    /// Remove stale artifact cache entries (see [`ArtifactCache::clean`]); 0 without a cache.
    pub fn clean_cache(
        &self,
        keep: &std::collections::BTreeSet<String>,
        keep_recent: usize,
    ) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |cache| cache.clean(keep, keep_recent))
    }

    /// Admit, compile (or fetch from the cache), link and describe a module; `describe` runs
    /// under `limits`, the limits of the policy the module is for.
    pub fn compile(&self, bytes: &[u8], limits: &Limits) -> Result<CompiledPolicy, LoadError> {
        let started = Instant::now();
        let module_hash = module_hash(bytes);
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, &module_hash));
        let from_cache = cached.is_some();
        let component = match (cached, &self.compiler, &self.cache) {
            (Some(component), _, _) => component,
            (None, Some(compiler), Some(cache)) => {
                // What can be refused without compiling is refused here, with its reason; the
                // child compiles, and the artifact comes back through the cache.
                admission::admit(bytes)?;
                compiler.compile(cache, bytes).map_err(LoadError::Compile)?;
                cache.load(&self.engine, &module_hash).ok_or_else(|| {
                    LoadError::Compile("the compiler process left no usable artifact".to_owned())
                })?
            }
            (None, _, _) => {
                let component_bytes = admission::componentize(bytes)?;
                Component::new(&self.engine, &component_bytes)
                    .map_err(|error| LoadError::Compile(format!("{error:#}")))?
            }
        };
        let compiled = self.link(component, module_hash, from_cache, started, limits)?;
        // Only what was admitted, linked and described is cached.
        if !from_cache && let Some(cache) = &self.cache {
            cache.store(&compiled.module_hash, compiled.pre.component());
        }
        Ok(compiled)
    }

    /// A version of a policy kept in the artifact cache, by its module hash: the last good
    /// version of a policy whose module file no longer loads. Configured from `config`.
    pub fn load_cached(
        &self,
        module_hash: &str,
        config: &PolicyConfig,
    ) -> Result<LoadedPolicy, LoadError> {
        let started = Instant::now();
        let component = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, module_hash))
            .ok_or_else(|| LoadError::NotCached(module_hash.to_owned()))?;
        let compiled = self.link(
            component,
            module_hash.to_owned(),
            true,
            started,
            &config.limits,
        )?;
        self.configure(compiled, config)
    }

    /// Check a component's imports and exports against the contract, link it, and ask it
    /// what it is under `limits`.
    fn link(
        &self,
        component: Component,
        module_hash: String,
        from_cache: bool,
        started: Instant,
        limits: &Limits,
    ) -> Result<CompiledPolicy, LoadError> {
        let (imports, contract) = self.check_interface(&component)?;
        let major = admission::major(&contract);
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| PolicyPre::new(pre, major))
            .map_err(|error| LoadError::Link(format!("{error:#}")))?;
        let compile_time = started.elapsed();
        let mut compiled = CompiledPolicy {
            module_hash,
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
            },
            from_cache,
            compile_time,
            imports,
            contract,
            pre,
            described_with: limits.clone(),
        };
        compiled.info = self
            .describe(&compiled, limits)
            .map_err(LoadError::Describe)?;
        Ok(compiled)
    }

    /// A component's imports and exports, against the contract; returns the imports and the
    /// contract version the component was built against.
    fn check_interface(
        &self,
        component: &Component,
    ) -> Result<(Vec<String>, String), AdmissionError> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        for name in &imports {
            admission::check_import_name(name, None)?;
        }
        let contract =
            admission::check_export_names(ty.exports(&self.engine).map(|(name, _)| name))?;
        Ok((imports, contract))
    }

    /// Read, compile and configure a policy from its config entry.
    pub fn load(&self, config: &PolicyConfig) -> Result<LoadedPolicy, LoadError> {
        let bytes = std::fs::read(&config.module).map_err(|error| LoadError::Read {
            path: config.module.clone(),
            error,
        })?;
        let compiled = self.compile(&bytes, &config.limits)?;
        self.configure(compiled, config)
    }

    /// Give a compiled policy its settings, grants and limits (`describe` is asked again if it
    /// ran under other limits); `init` must accept the settings.
    pub fn configure(
        &self,
        mut compiled: CompiledPolicy,
        config: &PolicyConfig,
    ) -> Result<LoadedPolicy, LoadError> {
        if config.limits.memory_mib == 0 || config.limits.memory_mib > MAX_MEMORY_MIB {
            return Err(LoadError::Limits(format!(
                "memory-mib must be 1 to {MAX_MEMORY_MIB}, not {}",
                config.limits.memory_mib
            )));
        }
        if config.limits.deadline_ms == 0 {
            return Err(LoadError::Limits("deadline-ms must be at least 1".into()));
        }
        if compiled.described_with != config.limits {
            compiled.info = self
                .describe(&compiled, &config.limits)
                .map_err(LoadError::Describe)?;
            compiled.described_with = config.limits.clone();
        }
        static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);
        let mut policy = LoadedPolicy {
            name: config.name.clone(),
            id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
            spared: false,
            compiled,
            grants: Arc::new(config.grants.clone()),
            limits: Arc::new(config.limits.clone()),
            settings: config.settings.to_string(),
            config: Arc::new(config.clone()),
        };
        let mut store = self.store(
            &policy.grants,
            &policy.limits,
            Default::default(),
            Default::default(),
        );
        let started = Instant::now();
        let outcome = policy
            .compiled
            .pre
            .instantiate(&mut store)
            .and_then(|instance| {
                policy.spared = self
                    .spares
                    .as_ref()
                    .is_some_and(|spares| started.elapsed() >= spares.worth);
                instance.init(&mut store, &policy.settings)
            });
        match outcome {
            Ok(Ok(())) => Ok(policy),
            Ok(Err(message)) => Err(LoadError::Init(CallFailure::Init(clip_error(message)))),
            Err(error) => Err(LoadError::Init(classify(&error, &store))),
        }
    }

    /// Ask the policy what it is, under `limits`. Its name and version are shown to
    /// operators, so they must be short; they are escaped wherever they are shown.
    fn describe(
        &self,
        compiled: &CompiledPolicy,
        limits: &Limits,
    ) -> Result<PolicyInfo, CallFailure> {
        let limits = Arc::new(limits.clone());
        let mut store = self.store(
            &Arc::default(),
            &limits,
            Default::default(),
            Default::default(),
        );
        let info: PolicyInfo = compiled
            .pre
            .describe(&mut store)
            .map_err(|error| classify(&error, &store))?;
        for (what, text) in [("a name", &info.name), ("a version", &info.version)] {
            if text.is_empty() || text.len() > MAX_INFO_BYTES {
                return Err(CallFailure::BadInfo(format!(
                    "{what} of {} bytes (1 to {MAX_INFO_BYTES} allowed)",
                    text.len()
                )));
            }
        }
        Ok(info)
    }

    fn store(
        &self,
        grants: &Arc<Grants>,
        limits: &Arc<Limits>,
        machine: Arc<Machine>,
        kv: Arc<KvStore>,
    ) -> Store<CallContext> {
        let context = CallContext::new(machine, grants.clone(), limits.clone(), kv);
        new_store(&self.engine, context)
    }

    /// What the spare-instance helper needs to make `policy` a spare: a store under its
    /// limits and grants with an empty machine (an instance that asks the host anything while
    /// being made is not used), and its linked component.
    fn wanted(&self, policy: &LoadedPolicy) -> Wanted {
        let (engine, grants, limits) = (
            self.engine.clone(),
            policy.grants.clone(),
            policy.limits.clone(),
        );
        Wanted {
            policy: policy.id,
            pre: policy.compiled.pre.clone(),
            store: Box::new(move || {
                let context = CallContext::new(Arc::default(), grants, limits, Arc::default());
                new_store(&engine, context)
            }),
        }
    }

    /// Hand one event to a policy, in a fresh instance, under the policy's limits.
    pub fn call(
        &self,
        policy: &LoadedPolicy,
        event: &Event,
        machine: Arc<Machine>,
        kv: Arc<KvStore>,
    ) -> Call {
        let started = Instant::now();
        let context = CallContext::new(machine, policy.grants.clone(), policy.limits.clone(), kv);
        let spare = match &self.spares {
            Some(spares) if policy.spared => spares.take(policy.id, || self.wanted(policy)),
            _ => None,
        };
        let (mut store, instance) = match spare {
            Some(Spare {
                mut store,
                instance,
            }) => {
                *store.data_mut() = context;
                set_budgets(&mut store);
                (store, Ok(instance))
            }
            None => {
                let mut store = new_store(&self.engine, context);
                let instance = policy.compiled.pre.instantiate(&mut store);
                (store, instance)
            }
        };
        let result = (|| {
            let answer = instance
                .and_then(|instance: Instance| {
                    instance.init_then_handle(&mut store, &policy.settings, event.clone())
                })
                .map_err(|error| classify(&error, &store))?;
            let plan = match answer {
                Answer::InitRefused(message) => {
                    return Err(CallFailure::Init(clip_error(message)));
                }
                Answer::Handled(Ok(plan)) => plan,
                Answer::Handled(Err(message)) => {
                    return Err(CallFailure::Returned(clip_error(message)));
                }
            };
            let limit = policy.limits.max_plan_steps;
            if plan.steps.len() > limit as usize {
                return Err(CallFailure::PlanTooLong {
                    steps: plan.steps.len(),
                    limit,
                });
            }
            Ok(plan)
        })();
        let context = if let Some(spares) = self.spares.as_ref().filter(|_| policy.spared) {
            // The used store is torn down on the spare-instance thread, off the event path.
            let empty = CallContext::new(
                Arc::default(),
                policy.grants.clone(),
                policy.limits.clone(),
                Arc::default(),
            );
            let context = std::mem::replace(store.data_mut(), empty);
            spares.retire(store);
            context
        } else {
            store.into_data()
        };
        Call {
            result,
            kv_writes: context.kv_writes,
            logs: context.logs,
            dropped_logs: context.dropped_logs,
            refused_queries: context.refused_queries,
            refused_count: context.refused_count,
            elapsed: started.elapsed(),
        }
    }
}

/// A store for one call, with `context` as its data, bounded by the context's limits.
fn new_store(engine: &Engine, context: CallContext) -> Store<CallContext> {
    let mut store = Store::new(engine, context);
    store.limiter(|context| context as &mut dyn ResourceLimiter);
    set_budgets(&mut store);
    store
}

/// Start a store's budgets afresh, from the limits in its data: the deadline (which counts
/// the CPU time of the thread that calls this) and the bytes it may copy out of the sandbox.
fn set_budgets(store: &mut Store<CallContext>) {
    let (deadline_ms, max_text_bytes) = {
        let limits = store.data().limits();
        (limits.deadline_ms, limits.max_text_bytes)
    };
    store.set_epoch_deadline(u64::from(deadline_ms));
    // The deadline counts the policy's CPU time, not time spent waiting for a core.
    let mut check = crate::deadline::cpu_deadline(deadline_ms);
    store.epoch_deadline_callback(move |_| check());
    // wasmtime counts the bytes of every string and list it copies out of the sandbox,
    // per import call and for each returned value, against this.
    store.set_hostcall_fuel(max_text_bytes as usize);
}

/// A policy's error message as kept: at most [`MAX_ERROR_BYTES`].
fn clip_error(message: String) -> String {
    match clip(&message, MAX_ERROR_BYTES) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(clipped) => clipped,
    }
}

/// What wasmtime says when a transfer out of the sandbox is over the store's hostcall fuel
/// (its error type is private; `tests/containment.rs` pins the text).
const HOSTCALL_FUEL_EXHAUSTED: &str =
    "too much data is being copied between the host and the guest";

/// Turn a wasmtime error into the reason an operator reads: one line, never a backtrace.
fn classify(error: &wasmtime::Error, store: &Store<CallContext>) -> CallFailure {
    let limits = store.data().limits();
    if store.data().memory_denied {
        return CallFailure::Memory(limits.memory_mib);
    }
    if let Some(utf8) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::str::Utf8Error>())
    {
        return CallFailure::NotUtf8(utf8.to_string());
    }
    let root = error.root_cause().to_string();
    if root.starts_with(HOSTCALL_FUEL_EXHAUSTED) {
        return CallFailure::TooMuchText(limits.max_text_bytes);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallFailure::Deadline(limits.deadline_ms),
        Some(Trap::StackOverflow) => CallFailure::StackOverflow,
        Some(Trap::UnreachableCodeReached) => {
            CallFailure::Trap("unreachable code reached (a panic or abort in the policy)".into())
        }
        Some(trap) => CallFailure::Trap(trap.to_string()),
        None => CallFailure::Trap(clip_error(root)),
    }
}

/// What decides how policies are compiled: the same for the daemon's engine and for a
/// compiler process's (which instantiates nothing, so it needs no instance pool), so that an
/// artifact either one compiled loads in the other.
fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .strategy(if cfg!(target_arch = "x86_64") {
            Strategy::Winch
        } else {
            Strategy::Cranelift
        });
    config
}

/// An engine for a compiler process ([`crate::compiler_process::worker_main`]).
pub fn compiler_engine() -> Result<Engine, RuntimeError> {
    Engine::new(&engine_config()).map_err(|error| RuntimeError::Engine(format!("{error:#}")))
}

/// A module's name in the journal and the artifact cache: the SHA-256 of its bytes, in hex.
pub(crate) fn module_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl ResourceLimiter for CallContext {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits().memory_mib as usize * 1024 * 1024 {
            self.memory_denied = true;
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
