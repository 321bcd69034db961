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
//! For now it holds the queue and the journal; the sources' listeners, the executor and the
//! event loop that joins them are the next pieces.

pub mod control;
pub mod devd_client;
pub mod hastctl_poller;
pub mod journal;
pub mod keepalived_fifo;
pub mod queue;
pub mod source_thread;

pub use journal::{
    Contents, DecisionOutcome, Entry, Interrupted, Journal, JournalError, Record, TornLine,
};
pub use queue::{DroppedEvent, EventQueue, Pushed, QueueError, QueueStats, QueuedEvent};
