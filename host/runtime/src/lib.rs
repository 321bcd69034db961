//! # haven-runtime
//!
//! Haven's WebAssembly sandbox. It admits policy modules ([`admission`]), compiles them once
//! and caches the result ([`cache`]), and calls them for each event in a fresh instance under
//! limits ([`runtime`], with the deadline in CPU time: [`deadline`]), answering their queries from the machine model within their grants
//! ([`call_context`]). [`pipeline`] hands an event to every policy concerned and checks each
//! plan against the policy's grants: the "policies → plan check" stage of Haven's data flow.
//! [`kv_files`] keeps the policies' key-value stores on disk across restarts.

pub mod admission;
mod bindings;
pub mod cache;
pub mod call_context;
pub mod compiler_process;
pub mod deadline;
pub mod kv_files;
pub mod pipeline;
pub mod runtime;
pub mod spare;
pub use spare::MAX_SPARES;

pub use admission::AdmissionError;
pub use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
pub use call_context::{KvStore, PolicyLog};
pub use compiler_process::CompilerProcess;
pub use kv_files::{KvFileError, KvFiles};
pub use pipeline::{Decision, DecisionInputs, Outcome, Pipeline, decide_once};
pub use runtime::{
    COMPILER, Call, CallFailure, CompiledPolicy, LoadError, LoadedPolicy, Runtime, RuntimeError,
    RuntimeOptions,
};
