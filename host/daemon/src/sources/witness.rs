//! The witness (etcd) as a source and a query: what this host's session with etcd sees
//! arrives in the inbox as reports (reachable or not, who holds the leader key, the key lost),
//! and the executor's [`Fence`] asks it for the key before a step that makes this host a
//! writer.
//!
//! The session itself (lease, key, renewals, the timing rule) is `haven-witness`'s; this
//! module only connects it to the daemon: news into the inbox, the fence for the executor,
//! and this host's member record after each event.

use crate::inbox::{Inbox, Report};
use haven_core::{Machine, WitnessConfig};
use haven_executor::Fence;
use haven_witness::{MemberRecord, WitnessError, WitnessHandle};
use std::sync::Arc;
use std::time::Duration;

/// The source's name in counters and the journal.
pub const SOURCE: &str = "witness";

/// The running session.
#[derive(Debug, Clone)]
pub struct WitnessSource {
    handle: Arc<WitnessHandle>,
    host: String,
    /// How long a promotion waits for the key: a dead holder's lease runs out within the TTL.
    wait: Duration,
}

impl WitnessSource {
    /// Start the session for `host`; what it hears goes to `inbox`.
    pub fn start(
        config: &WitnessConfig,
        host: &str,
        inbox: &Inbox,
    ) -> Result<WitnessSource, WitnessError> {
        let inbox = inbox.clone();
        let handle = WitnessHandle::start(
            config,
            host,
            Arc::new(move |news| inbox.report(Report::Witness(news))),
        )?;
        tracing::info!(
            pair = %config.pair,
            prefix = %config.prefix,
            endpoints = ?config.endpoints,
            host,
            "witness session started"
        );
        Ok(WitnessSource {
            handle: Arc::new(handle),
            host: host.to_owned(),
            wait: Duration::from_secs(u64::from(config.ttl_s))
                + Duration::from_millis(u64::from(config.timeout_ms)),
        })
    }

    /// Whether the session holds the leader key now.
    pub fn holding(&self) -> bool {
        self.handle.state().holding
    }

    /// This host's name in the witness's keys.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The fence the executor takes before a step that makes this host a writer.
    pub fn fence(&self) -> WitnessFence {
        WitnessFence {
            source: self.clone(),
        }
    }

    /// Write this host's member record (only when it changed).
    pub fn publish(&self, machine: &Machine) {
        self.handle.publish(MemberRecord {
            host: self.host.clone(),
            serving: haven_executor::fence::holds_storage(machine)
                || machine.services.values().any(|running| *running),
            maintenance: machine.maintenance.is_some(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        });
    }
}

/// The leader key as the executor's [`Fence`].
#[derive(Debug)]
pub struct WitnessFence {
    source: WitnessSource,
}

impl Fence for WitnessFence {
    fn take(&mut self) -> Result<u64, String> {
        self.source
            .handle
            .acquire(self.source.wait)
            .map_err(|error| error.to_string())
    }

    fn let_go(&mut self) {
        self.source.handle.release();
    }
}

/// This host's name for the witness: the peer link's name for it when there is one (the two
/// must agree), the system's host name otherwise.
pub fn host_name(peer_host: Option<&str>) -> Result<String, String> {
    let name = match peer_host {
        Some(host) => host.to_owned(),
        None => nix::unistd::gethostname()
            .map_err(|error| format!("cannot read the host name: {error}"))?
            .to_string_lossy()
            .into_owned(),
    };
    haven_core::names::check_name("this host's name", &name)?;
    Ok(name)
}

/// What the loop journals for a piece of news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Note(String),
    Alert(haven_core::AlertSeverity, String),
}

/// Fold `news` into the model's view of the witness, and say what the journal gets.
/// `holding`: whether the session holds the key now.
pub fn take_news(
    news: haven_witness::WitnessNews,
    state: &mut haven_core::WitnessState,
    holding: bool,
) -> Said {
    state.holding = holding;
    use haven_core::AlertSeverity::{Critical, Warning};
    use haven_core::text::escape;
    use haven_witness::WitnessNews;
    match news {
        WitnessNews::Reachable => {
            state.reachable = true;
            Said::Note("witness: etcd answers".to_owned())
        }
        WitnessNews::Unreachable(why) => {
            state.reachable = false;
            Said::Alert(
                Warning,
                format!(
                    "the witness (etcd) does not answer: {}. A promotion waits for it; this \
                     host keeps serving only while its lease is confirmed",
                    escape(&why)
                ),
            )
        }
        WitnessNews::Leader(leader) => {
            let said = match &leader {
                Some(leader) => format!(
                    "witness: the leader key is held by {} (fencing token {})",
                    escape(&leader.host),
                    leader.token
                ),
                None => "witness: nobody holds the leader key".to_owned(),
            };
            state.leader = leader;
            Said::Note(said)
        }
        WitnessNews::KeyLost { token, why } => {
            state.holding = false;
            Said::Alert(
                Critical,
                format!(
                    "this host lost the leader key (fencing token {token}): {}; it must stop \
                     writing before its lease runs out and the peer may take over",
                    escape(&why)
                ),
            )
        }
        WitnessNews::BadRecord(why) => Said::Alert(
            Critical,
            format!("witness: {} (not believed)", escape(&why)),
        ),
    }
}
