//! The peer link as a source: the other host's havend, through `haven-peer`'s authenticated
//! link.
//!
//! What the peer sends becomes events in the inbox like any other source's: `peer` events
//! when the link comes up or goes down, when the peer's facts change, and for each hook its
//! hastd ran (on a HAST primary that includes `syncstart`, `syncdone` and `syncintr`, which
//! this host's hastd never reports about its own copy). Heartbeats only refresh the facts'
//! age. What the link refuses (a stranger's key, garbage, a replay, an oversized frame) is a
//! bad-input report, counted per kind and reported once a minute at most per kind.
//!
//! The other direction goes through [`PeerPublisher`]: the event loop hands it this host's
//! facts after each event and hastd's hooks as they arrive; the link's own thread sends them,
//! so the loop never waits on the network.
//!
//! The peer's last facts are kept in `<state-dir>/peer-facts.json` (written when they change:
//! temporary file, sync, rename), so that a restarted havend still knows what the peer last
//! said, and how long ago.

use crate::inbox::{Inbox, Report};
use crate::journal::unix_ms;
use crate::status::{PEER_ALERT_BYTES, PEER_ALERTS};
use haven_core::{Event, HastHook, PeerConfig, PeerEvent, PeerFacts, PeerLink, PeerModel};
use haven_peer::{LinkConfig, LinkCounters, PeerKeys, PeerLinkHandle, PeerNews};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The source's name in counters and the journal.
pub const SOURCE: &str = "peer";

/// The file of the peer's last facts, in the state folder.
const FACTS_FILE: &str = "peer-facts.json";
/// The largest facts file read back.
const MAX_FACTS_FILE_BYTES: u64 = 1024 * 1024;

/// Why the peer link did not start.
#[derive(Debug, thiserror::Error)]
pub enum PeerStartError {
    #[error("{0}")]
    Keys(#[from] haven_peer::KeyError),
    #[error("cannot listen for the peer on {listen}: {error}")]
    Listen {
        listen: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// The peer's facts as kept on disk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FactsFile {
    /// Wall-clock milliseconds when they were heard.
    heard_unix_ms: u64,
    facts: PeerFacts,
}

/// The running link, and the facts file it keeps.
#[derive(Debug)]
pub struct PeerSource {
    link: Arc<PeerLinkHandle>,
    host: String,
    /// The facts last published, shared by every publisher handle.
    last: Arc<Mutex<Option<PeerFacts>>>,
}

impl PeerSource {
    /// Read the keys, bind the listener and start the link's threads; what the peer says goes
    /// to `inbox`.
    pub fn start(
        config: &PeerConfig,
        inbox: &Inbox,
        state_dir: &Path,
    ) -> Result<PeerSource, PeerStartError> {
        let keys = PeerKeys::load(&config.key_file)?;
        let host = keys.host.clone();
        let facts_path = state_dir.join(FACTS_FILE);
        let sink_inbox = inbox.clone();
        let sink = Arc::new(move |news: PeerNews| deliver(&sink_inbox, &facts_path, news));
        let link_config = LinkConfig {
            address: config.address.clone(),
            listen: config.listen,
            heartbeat: Duration::from_millis(u64::from(config.heartbeat_ms)),
            timeout: Duration::from_millis(u64::from(config.timeout_ms)),
        };
        let link = PeerLinkHandle::start(link_config, keys, sink).map_err(|error| {
            PeerStartError::Listen {
                listen: config.listen,
                error,
            }
        })?;
        tracing::info!(peer = %config.address, listen = %link.local_addr(), "peer link started");
        Ok(PeerSource {
            link: Arc::new(link),
            host,
            last: Arc::default(),
        })
    }

    /// The handle the event loop publishes through.
    pub fn publisher(&self) -> PeerPublisher {
        PeerPublisher {
            link: Arc::clone(&self.link),
            host: self.host.clone(),
            last: Arc::clone(&self.last),
        }
    }
}

/// The peer's facts with its alerts held to what a well-behaved peer sends: the last
/// [`PEER_ALERTS`], each clipped to [`PEER_ALERT_BYTES`] (the frame bounds the rest).
fn bounded(mut facts: PeerFacts) -> PeerFacts {
    let extra = facts.alerts.len().saturating_sub(PEER_ALERTS);
    facts.alerts.drain(..extra);
    for alert in &mut facts.alerts {
        if alert.len() > PEER_ALERT_BYTES {
            *alert = haven_core::text::clip(alert, PEER_ALERT_BYTES).into_owned();
        }
    }
    facts
}

/// One piece of news from the link into the inbox.
fn deliver(inbox: &Inbox, facts_path: &Path, news: PeerNews) {
    let event = match news {
        PeerNews::Up => PeerEvent::Up,
        PeerNews::Down => PeerEvent::Down,
        PeerNews::Facts(facts) => {
            let facts = bounded(facts);
            if let Err(error) = save_facts(facts_path, &facts) {
                inbox.report(Report::SourceState {
                    source: SOURCE.to_owned(),
                    up: true,
                    message: format!("the peer's facts could not be kept on disk: {error}"),
                });
            }
            PeerEvent::FactsChanged(facts)
        }
        PeerNews::Hook(hook) => PeerEvent::HastHook(hook),
        PeerNews::Heard => return inbox.report(Report::PeerHeard),
        PeerNews::Trouble { kind, message } => {
            return inbox.report(Report::BadInput {
                source: SOURCE.to_owned(),
                reason: format!("peer link: {kind}"),
                text: message,
            });
        }
    };
    inbox.send(Event::Peer(event), SOURCE);
}

/// Write the facts file: temporary file, sync, rename.
fn save_facts(path: &Path, facts: &PeerFacts) -> std::io::Result<()> {
    let file = FactsFile {
        heard_unix_ms: unix_ms(),
        facts: facts.clone(),
    };
    let temporary = path.with_extension("json.tmp");
    let mut out = std::fs::File::create(&temporary)?;
    out.write_all(&serde_json::to_vec(&file).map_err(std::io::Error::other)?)?;
    out.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The model of the peer at startup: the link configured and down, and the facts kept from
/// before, aged by the wall clock. A damaged file is reported and set aside, never believed.
pub fn peer_at_startup(
    configured: bool,
    state_dir: &Path,
    now_ms: u64,
) -> (PeerModel, Option<String>) {
    let mut model = PeerModel {
        link: if configured {
            PeerLink::Down
        } else {
            PeerLink::NotConfigured
        },
        ..PeerModel::default()
    };
    if !configured {
        return (model, None);
    }
    let path: PathBuf = state_dir.join(FACTS_FILE);
    match load_facts(&path) {
        Ok(None) => (model, None),
        Ok(Some(file)) => {
            let age = unix_ms().saturating_sub(file.heard_unix_ms);
            model.facts = Some(file.facts);
            model.facts_heard_ms = Some(
                i64::try_from(now_ms).unwrap_or(i64::MAX) - i64::try_from(age).unwrap_or(i64::MAX),
            );
            (model, None)
        }
        Err(why) => {
            let aside = path.with_extension("json.damaged");
            let _ = std::fs::rename(&path, &aside);
            let message = format!(
                "the peer's last facts in {} cannot be read ({why}); moved to {}, and the peer \
                 counts as never heard until it speaks",
                path.display(),
                aside.display()
            );
            (model, Some(message))
        }
    }
}

fn load_facts(path: &Path) -> Result<Option<FactsFile>, String> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FACTS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_FACTS_FILE_BYTES {
        return Err(format!("over {MAX_FACTS_FILE_BYTES} bytes"));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// What the event loop publishes through: this host's facts and hooks.
#[derive(Debug, Clone)]
pub struct PeerPublisher {
    link: Arc<PeerLinkHandle>,
    host: String,
    /// The facts last published, so the running plan can be set without the model.
    last: Arc<Mutex<Option<PeerFacts>>>,
}

impl PeerPublisher {
    /// This host's name, as its key file says.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Publish this host's facts (sent now if they changed).
    pub fn facts(&self, facts: PeerFacts) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some(facts.clone());
        drop(last);
        self.link.publish_facts(facts);
    }

    /// The plan running here changed: publish the last facts with it.
    pub fn running_plan(&self, plan_id: Option<u64>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(facts) = last.as_mut()
            && facts.running_plan != plan_id
        {
            facts.running_plan = plan_id;
            let facts = facts.clone();
            drop(last);
            self.link.publish_facts(facts);
        }
    }

    /// hastd ran its hook here.
    pub fn hook(&self, hook: HastHook) {
        self.link.publish_hook(hook);
    }

    /// The link's counters.
    pub fn counters(&self) -> LinkCounters {
        self.link.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_alerts_are_held_to_the_last_few_and_cut() {
        let facts = PeerFacts {
            alerts: (0..1000)
                .map(|n| format!("{n}:{}", "x".repeat(2000)))
                .collect(),
            ..PeerFacts::default()
        };
        let facts = bounded(facts);
        assert_eq!(facts.alerts.len(), PEER_ALERTS);
        assert!(
            facts.alerts[0].starts_with("995:"),
            "{}",
            &facts.alerts[0][..10]
        );
        assert!(
            facts
                .alerts
                .iter()
                .all(|alert| alert.len() < PEER_ALERT_BYTES + 64)
        );
    }
}
