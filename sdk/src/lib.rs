//! # haven-sdk: write Haven failover policies in Rust
//!
//! A Haven policy is a WebAssembly component that *decides*: the daemon hands it one event at a
//! time, it may look at the machine through read-only queries, and it answers with a [`Plan`],
//! the ordered steps the daemon should carry out. This crate gives policy authors:
//!
//! - the contract's types ([`Event`], [`Plan`], [`Step`], [`Action`], ...), generated from
//!   `wit/haven-policy.wit`;
//! - one trait to implement, [`Policy`], and one macro to export it, [`export_policy!`];
//! - a [`PlanBuilder`] whose calls read like the recipe they replace;
//! - [`testing`]: a scripted [`Host`] so that plain `cargo test` unit-tests policy logic
//!   natively, with no WebAssembly involved.
//!
//! ## A complete policy
//!
//! ```
//! use haven_sdk::{CarpState, Event, Host, Plan, Policy, PolicyInfo, Result};
//! use serde::Deserialize;
//!
//! /// Starts a service when this host becomes CARP master, stops it otherwise.
//! pub struct FollowCarp {
//!     settings: Settings,
//! }
//!
//! #[derive(Deserialize)]
//! pub struct Settings {
//!     vhid: u8,
//!     service: String,
//! }
//!
//! impl Policy for FollowCarp {
//!     type Settings = Settings;
//!
//!     fn info() -> PolicyInfo {
//!         PolicyInfo { name: "follow-carp".into(), version: "1.0.0".into() }
//!     }
//!
//!     fn new(settings: Settings) -> Result<Self> {
//!         Ok(FollowCarp { settings })
//!     }
//!
//!     fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Plan> {
//!         let Event::CarpChanged(change) = event else { return Ok(Plan::none()) };
//!         if change.vhid != self.settings.vhid {
//!             return Ok(Plan::none());
//!         }
//!         let running = host.service_running(&self.settings.service)?;
//!         Ok(match (change.state, running) {
//!             (CarpState::Master, false) => Plan::builder().start_service(&self.settings.service).build(),
//!             (CarpState::Backup | CarpState::Init, true) => {
//!                 Plan::builder().stop_service(&self.settings.service).build()
//!             }
//!             _ => Plan::none(),
//!         })
//!     }
//! }
//!
//! // In the policy crate (a `cdylib` built for `wasm32-unknown-unknown`):
//! // haven_sdk::export_policy!(FollowCarp);
//!
//! // And its native unit test:
//! use haven_sdk::testing::{events, ScriptedHost};
//! let host = ScriptedHost::new().service("mysql-server", false);
//! let mut policy = FollowCarp::new(Settings { vhid: 1, service: "mysql-server".into() }).unwrap();
//! let plan = policy.handle(&events::carp(1, "em0", CarpState::Master), &host).unwrap();
//! assert_eq!(plan, Plan::builder().start_service("mysql-server").build());
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown`, then check and
//! scenario-test the `.wasm` with `havenctl check` and `havenctl test`.

#[cfg(any(test, all(target_arch = "wasm32", feature = "arena")))]
#[allow(unsafe_code)]
mod arena;
mod error;
#[doc(hidden)]
pub mod export;
mod host;
mod names;
mod plan;
pub mod testing;

/// Bindings generated from the WIT contract. Authors use the re-exports at the crate root.
#[doc(hidden)]
#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_haven_world",
        default_bindings_module: "haven_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::haven::policy::types::{
    Action, Alert, AlertSeverity, CarpChange, CarpLink, CarpState, CarpStatus, DevdAttribute,
    DevdEvent, DevdKind, Event, FsckRequest, HastHook, HastReplication, HastRole, HastRoleChange,
    HastStatus, HastWorker, InterruptedStep, LogLevel, MaintenanceState, MountRequest, MountStatus,
    OperatorAsk, OperatorRequest, PeerEvent, PeerFacts, PeerLink, PeerPolicy, PeerState, Plan,
    PolicyInfo, QueryError, ServiceOp, ServiceRequest, ServiceStatus, SetHastRole, StartupState,
    StateLost, Step, StepFailure, TimerRequest, UnmountRequest, WitnessChange, WitnessEvent,
    WitnessLeader, WitnessState,
};
pub use error::{Error, Result};
pub use host::Host;
pub use plan::PlanBuilder;

/// Each event's instance allocates from a static arena (see `arena.rs`): no `memory.grow`,
/// so no page-protection changes in the host, on the hot path.
#[cfg(all(target_arch = "wasm32", feature = "arena"))]
#[global_allocator]
static ALLOCATOR: arena::Bump = arena::Bump;

/// What a policy author implements.
///
/// A fresh instance of the policy is made for every event: [`Policy::new`] runs with the
/// settings from the config, then [`Policy::handle`] runs once. Anything that must be remembered
/// from one event to the next goes into the host's key-value store ([`Host::kv_set`]).
pub trait Policy: Sized {
    /// The policy's settings: the `[policy.settings]` table of `haven.toml`, deserialised.
    type Settings: serde::de::DeserializeOwned;

    /// Name and version.
    fn info() -> PolicyInfo;

    /// Check the settings and build the policy. An error here rejects the policy when it is
    /// loaded, with the message shown to the operator.
    fn new(settings: Self::Settings) -> Result<Self>;

    /// Decide what to do about one event.
    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Plan>;
}
