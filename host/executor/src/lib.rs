//! # haven-executor
//!
//! The last stages of Haven's data flow:
//!
//! ```text
//! source → event queue → policies → plan check → executor → journal
//!                                                 ^^^^^^^^
//! ```
//!
//! - [`command`]: runs a program the safe way (no shell, cleared environment, fixed `PATH`,
//!   a deadline after which its whole process group is killed and reaped).
//! - [`probe`]: reads the machine's state from the system (mounts, addresses, CARP, services),
//!   for the daemon's startup reconciliation and for re-reading after a plan.
//! - [`executor`]: the [`Executor`] trait, one step at a time, and the dry-run executor.
//! - [`fence`]: the witness's guard: a step that makes this host a writer runs only under the
//!   witness's fencing token.
//! - [`system`]: the executors that act on the machine, FreeBSD's and Linux's
//!   ([`SystemExecutor`]): idempotent steps, timeouts, bounded retries, arguments checked
//!   again before anything runs.
//! - [`tools`]: where the programs the executors and probes run are (`[executor.tools]`).
//! - [`runner`]: hands an event to the pipeline and carries out the plans that come back, one
//!   at a time, feeding step failures back to the policy that made the plan; the daemon and
//!   `havenctl simulate`/`test` share it.

pub mod command;
pub mod executor;
pub mod fence;
pub mod probe;
pub mod runner;
pub mod system;
pub mod tools;

pub use executor::{DryRun, Executor, StepOutcome};
pub use fence::{Fence, Fenced};
pub use runner::{Delivery, Observer, Runner};
pub use system::{Platform, SetupError, SystemExecutor};
