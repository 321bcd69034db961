//! `haven-daemon`: the pieces of `havend`, Haven's daemon.
//!
//! This crate will become `havend`, the process that runs on each node of a high-availability
//! pair. Data flows one way through it:
//!
//! ```text
//! event sources → queue → pipeline (policies, plan check) → executor → journal
//! ```
//!
//! Sources (devd, hastd and ucarp hooks, `hastctl` polling: `haven-sources`) turn what the
//! system reports into events; one ordered [`queue`] holds them while a plan runs; the pipeline
//! (`haven-runtime`) hands each event to the policies and checks their plans against the
//! grants; an executor carries plans out one step at a time; and the [`journal`] records every
//! event, decision and step *before* acting, so that after a crash the daemon knows which step
//! was in progress and can tell the policies at startup instead of blindly re-running it.
//!
//! Modules, in the order data flows through them:
//!
//! - [`sources`]: devd, `hastctl` polling, keepalived's FIFO, the peer link and the witness
//!   (threads built on `sources::source_thread`, and the witness's own session), and the
//!   hooks that arrive through [`control`];
//! - [`inbox`]: where sources leave events ([`queue`]) and reports for the loop;
//! - [`event_loop`]: the one thread that decides and acts, through `haven-executor`'s runner;
//! - [`journal`] and [`status`]: what the loop records, for after a crash and for operators;
//! - [`reconcile`]: the machine read from the system at startup;
//! - [`daemon`]: all of it started and stopped in order; the `havend` binary is a thin shell
//!   around it.

pub mod control;
pub mod daemon;
pub mod event_loop;
pub mod inbox;
pub mod journal;
pub mod maintenance;
pub mod metrics;
pub mod pidfile;
pub mod queue;
pub mod reconcile;
pub mod reload;
pub mod sources;
pub mod status;

pub use daemon::{Daemon, StartError};

pub use journal::{
    Contents, DecisionOutcome, Entry, Interrupted, Journal, JournalError, Record, TornLine,
};
pub use queue::{DroppedEvent, EventQueue, Pushed, QueueError, QueueStats, QueuedEvent};
