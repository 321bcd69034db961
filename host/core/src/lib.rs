//! # haven-core
//!
//! The host side of Haven without the WebAssembly sandbox: the contract's types as plain Rust
//! ([`types`]), the one-line text form of plan steps ([`step_syntax`]), the model of the machine
//! that events update and plans change ([`model`]), what a policy may touch and the check every
//! plan passes ([`grants`], [`names`]), and the config file ([`config`]).
//!
//! Data flows one way through Haven: source → event queue → policies → plan check → executor →
//! journal. This crate holds the vocabulary of every stage and the plan check itself.

pub mod config;
pub mod grants;
pub mod model;
pub mod names;
pub mod step_syntax;
pub mod text;
pub mod types;

pub use config::{
    CarpAddress, CarpInstance, Config, ConfigError, DEFAULT_METRICS_PORT, DEMOTED_ADVSKEW,
    DaemonConfig, DevdSource, ExecutorConfig, ExecutorKind, ExecutorTools, FailureMode,
    HastctlSource, KeepalivedSource, Limits, MetricsConfig, PeerConfig, PolicyConfig,
    ServiceManagerKind, SourcesConfig, StorageKind, WitnessConfig, WitnessTls,
};
pub use grants::{Grants, Missing, MountGrant, PlanRefusal};
pub use model::{Machine, PeerModel, StateChange};
pub use types::*;
