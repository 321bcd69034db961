//! # haven-witness
//!
//! The pair's witness: an etcd cluster both hosts reach, which decides which of them may
//! serve when they cannot see each other. Haven does not invent consensus; it borrows etcd's
//! (as Patroni does), through one key per pair:
//!
//! ```text
//! <prefix>/<pair>/leader   held on its holder's lease; its creation revision is the
//!                          fencing token, higher for every new holder
//! ```
//!
//! A host takes the key before the first step that makes it primary, renews its lease while
//! it serves, lets the key go when it demotes, and demotes on its own when it can no longer
//! renew in time (the timing rule is in `haven_core::config`). A host whose peer holds the
//! key cannot take it until the peer lets go or its lease runs out: a partition between the
//! hosts no longer makes two primaries.
//!
//! - [`session`]: this host's session, on a thread of its own: lease, key, member record,
//!   news for the daemon;
//! - [`records`]: the keys and the values Haven writes, read back strictly and bounded;
//! - [`fleet`]: every pair under a prefix, for `havenctl fleet`;
//! - [`connect`]: the client, with credentials and TLS, every request bounded.

pub mod connect;
pub mod fleet;
pub mod records;
pub mod session;

pub use connect::WitnessError;
pub use fleet::{Fleet, LeaderView, PairView};
pub use records::{LeaderRecord, MemberRecord};
pub use session::{AcquireError, Sink, WitnessHandle, WitnessNews};
