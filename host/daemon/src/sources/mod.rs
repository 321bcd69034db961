//! Where events come from: each source is a thread of its own that reads one kind of input,
//! turns it into events and reports, and leaves them in the [`Inbox`](crate::inbox::Inbox).
//! Nothing here decides or acts.
//!
//! - [`devd_client`]: FreeBSD's devd socket (CARP changes and every other devd event);
//! - [`hastctl_poller`]: `hastctl list`, polled, for what hastd's hooks never say;
//! - [`keepalived_fifo`]: keepalived's `notify_fifo` (Linux);
//! - [`peer`]: the other host's havend, through the peer link: its facts, its hooks, and
//!   whether the link is up;
//! - [`witness`]: the pair's witness on etcd: who holds the leader key, whether etcd
//!   answers, and the fence the executor takes before making this host a writer;
//! - [`source_thread`]: the thread, backoff and stop handling they share.
//!
//! hastd's and ucarp's hooks arrive through the control socket
//! ([`control`](crate::control)), as `havenctl` requests.

pub mod devd_client;
pub mod hastctl_poller;
pub mod keepalived_fifo;
pub mod peer;
pub mod source_thread;
pub mod witness;
