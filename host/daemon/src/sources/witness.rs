//! The witness (etcd) as a source and a query: what this host's session with etcd sees
//! arrives in the inbox as `witness` events for the policies (etcd answers or not, who holds
//! the leader key, this host lost it), with a report for the daemon's own alert where one is
//! due; and the executor's [`Fence`] asks it for the key before a step that makes this host a
//! writer.
//!
//! The session itself (lease, key, renewals, the timing rule) is `haven-witness`'s; this
//! module only connects it to the daemon: news into the inbox, the fence for the executor,
//! and this host's member record after each event.

use crate::inbox::{Inbox, Report};
use haven_core::{
    AlertSeverity, Event, Machine, WitnessChange, WitnessConfig, WitnessEvent, WitnessState,
};
use haven_executor::Fence;
use haven_witness::{MemberRecord, WitnessError, WitnessHandle, WitnessNews};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
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
    /// The granted mountpoints and services: what "serving" means in the member record.
    mountpoints: Arc<BTreeSet<String>>,
    services: Arc<BTreeSet<String>>,
    /// What the member record last said (serving, maintenance): it is sent on change only,
    /// not after every event.
    published: Arc<Mutex<Option<(bool, bool)>>>,
}

impl WitnessSource {
    /// Start the session for `host`; what it hears goes to `inbox`.
    pub fn start(
        config: &WitnessConfig,
        host: &str,
        granted: (BTreeSet<String>, BTreeSet<String>),
        inbox: &Inbox,
    ) -> Result<WitnessSource, WitnessError> {
        let (mountpoints, services) = granted;
        let inbox = inbox.clone();
        let handle = WitnessHandle::start(
            config,
            host,
            Arc::new(move |news, state| deliver(&inbox, news, state)),
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
            mountpoints: Arc::new(mountpoints),
            services: Arc::new(services),
            published: Arc::default(),
        })
    }

    /// The fence the executor takes before a step that makes this host a writer.
    pub fn fence(&self) -> WitnessFence {
        WitnessFence {
            source: self.clone(),
        }
    }

    /// Write this host's member record, when what it says changed.
    pub fn publish(&self, machine: &Machine) {
        let serving = haven_executor::fence::holds_storage(machine, &self.mountpoints)
            || self
                .services
                .iter()
                .any(|service| machine.service_running(service));
        let maintenance = machine.maintenance.is_some();
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *published == Some((serving, maintenance)) {
            return;
        }
        *published = Some((serving, maintenance));
        self.handle.publish(MemberRecord {
            host: self.host.clone(),
            serving,
            maintenance,
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

/// One piece of news into the inbox: the daemon's alert first (a report, which the loop takes
/// before events), then the event for the policies.
fn deliver(inbox: &Inbox, news: WitnessNews, state: WitnessState) {
    let change = match &news {
        WitnessNews::Reachable => WitnessChange::Reachable,
        WitnessNews::Unreachable(why) => WitnessChange::Unreachable(why.clone()),
        WitnessNews::Leader(_) => WitnessChange::LeaderChanged,
        WitnessNews::KeyLost { token, .. } => WitnessChange::KeyLost(*token),
        WitnessNews::BadRecord(_) => return inbox.report(Report::Witness(news)),
    };
    if alert_for(&news).is_some() {
        inbox.report(Report::Witness(news));
    }
    inbox.send(Event::Witness(WitnessEvent { change, state }), SOURCE);
}

/// The daemon's own alert for a piece of news, if it warrants one: whatever the policies make
/// of it, an operator hears that etcd is gone, that a held key was lost, or that a record is
/// not Haven's.
pub fn alert_for(news: &WitnessNews) -> Option<(AlertSeverity, String)> {
    use haven_core::text::escape;
    match news {
        WitnessNews::Reachable | WitnessNews::Leader(_) => None,
        WitnessNews::Unreachable(why) => Some((
            AlertSeverity::Warning,
            format!(
                "the witness (etcd) does not answer: {}. A promotion waits for it; this host \
                 keeps serving only while its lease is confirmed or its peer vouches",
                escape(why)
            ),
        )),
        WitnessNews::KeyLost { token, why } => Some((
            AlertSeverity::Critical,
            format!(
                "this host lost the leader key (fencing token {token}): {}; it must stop \
                 writing before its lease runs out and the peer may take over",
                escape(why)
            ),
        )),
        WitnessNews::BadRecord(why) => Some((
            AlertSeverity::Critical,
            format!("witness: {} (not believed)", escape(why)),
        )),
    }
}
