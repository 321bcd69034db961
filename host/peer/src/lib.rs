//! # haven-peer
//!
//! The link between the two havends of an HA pair. Only a HAST *primary* knows whether the
//! secondary's copy is complete (hastd runs the sync hooks and counts `dirty` on the primary
//! alone), so each havend publishes what it knows of its host, and the other records it.
//!
//! ```text
//! this host's event loop ── publish(facts, hooks) ──▶ sender thread ══ Noise/TCP ══▶ peer
//! peer ══ Noise/TCP ══▶ listener ─▶ receiver thread ── PeerNews ──▶ this host's queue
//! ```
//!
//! - [`keys`]: the key file each host keeps (its private key and the peer's public key), and
//!   generating a pair of them.
//! - [`wire`]: frames, the Noise handshake and transport, and the messages. Every frame is
//!   bounded, every read and write has a deadline.
//! - [`link`]: the threads. The link never blocks the event loop: publishing only hands the
//!   latest facts to the sender, and what arrives is handed to a sink (the daemon's queue).
//!   A silent or hostile peer costs a thread for at most the handshake deadline, and a counter.
//!
//! Why Noise (`snow`) and not mutual TLS: both hosts are configured by the same operator, so
//! there is no certificate authority to lean on, only two keys to exchange; `Noise_KK` gives
//! mutual authentication from those two static keys with no certificates, no clock (TLS
//! certificates expire; an HA pair must not fail over because a certificate did), and a pure
//! Rust stack that builds for FreeBSD without a C toolchain. Every transport message carries an
//! implicit nonce, so a replayed, reordered or altered message fails to decrypt and ends the
//! session; a new session has new ephemeral keys, so nothing from an old one is accepted.

pub mod keys;
pub mod link;
pub mod wire;

pub use keys::{KeyError, PeerKeys};
pub use link::{LinkConfig, LinkCounters, PeerLinkHandle, PeerNews, Sink};
pub use wire::{Message, WireError};
