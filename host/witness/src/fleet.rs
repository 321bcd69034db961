//! Every pair under a prefix, as etcd holds them: `havenctl fleet`.
//!
//! One range read of the prefix (bounded to [`MAX_KEYS`] keys), then one lease lookup per
//! leader key for its time to live (each bounded, and all of them together). What is not Haven's under the prefix is listed as a
//! problem with its key, escaped, and otherwise left alone.

use crate::connect::{Connector, WitnessError, bounded};
use crate::records::{self, KeyKind, LeaderRecord, MemberRecord};
use etcd_client::GetOptions;
use haven_core::WitnessConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// The most keys one listing reads.
pub const MAX_KEYS: i64 = 10_000;
/// The time all lease lookups of one listing may take, in request timeouts.
const LEASE_LOOKUPS: u32 = 4;

/// One pair, as etcd holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PairView {
    pub pair: String,
    pub leader: Option<LeaderView>,
    /// Member records, by host.
    pub members: Vec<MemberRecord>,
}

/// A pair's leader key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaderView {
    pub host: String,
    /// The fencing token (the key's creation revision).
    pub token: u64,
    pub since_unix_ms: u64,
    /// The lease's granted TTL, and what is left of it (`None`: the key has no lease, or the
    /// lease could not be read).
    pub lease_ttl_s: Option<i64>,
    pub lease_left_s: Option<i64>,
}

/// The whole listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Fleet {
    pub prefix: String,
    pub pairs: Vec<PairView>,
    /// Keys under the prefix that are not Haven's records, with why.
    pub problems: Vec<String>,
    /// Whether the listing stopped at [`MAX_KEYS`].
    pub truncated: bool,
}

/// List every pair under `config.prefix`.
pub fn list(config: &WitnessConfig) -> Result<Fleet, WitnessError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| WitnessError::Etcd(format!("cannot start a runtime: {error}")))?;
    runtime.block_on(list_async(config))
}

async fn list_async(config: &WitnessConfig) -> Result<Fleet, WitnessError> {
    let connector = Connector::new(config)?;
    let timeout = connector.timeout();
    let mut client = connector.connect().await?;
    let folder = format!("{}/", config.prefix);
    let response = bounded(
        timeout,
        client.get(
            folder.clone(),
            Some(GetOptions::new().with_prefix().with_limit(MAX_KEYS)),
        ),
    )
    .await?;
    let mut fleet = Fleet {
        prefix: config.prefix.clone(),
        truncated: response.more(),
        ..Fleet::default()
    };
    let mut pairs: BTreeMap<String, PairView> = BTreeMap::new();
    let mut leases = Vec::new();
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        let rest = key.strip_prefix(&folder).unwrap_or(&key);
        let problem = match records::classify(rest) {
            Some(KeyKind::Leader { pair }) => {
                match records::parse::<LeaderRecord>(&key, kv.value()) {
                    Ok(record) => {
                        let view = pairs.entry(pair.to_owned()).or_default();
                        view.leader = Some(LeaderView {
                            host: record.host,
                            token: u64::try_from(kv.create_revision()).unwrap_or(0),
                            since_unix_ms: record.since_unix_ms,
                            lease_ttl_s: None,
                            lease_left_s: None,
                        });
                        leases.push((pair.to_owned(), kv.lease()));
                        None
                    }
                    Err(error) => Some(error.to_string()),
                }
            }
            Some(KeyKind::Member { pair, host }) => {
                match records::parse::<MemberRecord>(&key, kv.value()) {
                    Ok(record) if record.host == host => {
                        pairs
                            .entry(pair.to_owned())
                            .or_default()
                            .members
                            .push(record);
                        None
                    }
                    Ok(record) => Some(format!(
                        "{}: names host {}",
                        haven_core::text::escape(&key),
                        record.host
                    )),
                    Err(error) => Some(error.to_string()),
                }
            }
            None => Some(format!(
                "{}: not a key Haven writes",
                haven_core::text::escape(&haven_core::text::clip(&key, 300))
            )),
        };
        fleet.problems.extend(problem);
    }
    // One lookup per leader, each bounded, and all of them within LEASE_LOOKUPS × timeout:
    // past that, the remaining leases are left unread rather than the listing held up.
    let deadline = std::time::Instant::now() + timeout * LEASE_LOOKUPS;
    for (pair, lease) in leases {
        if lease == 0 || std::time::Instant::now() >= deadline {
            continue;
        }
        let Ok(ttl) = bounded(timeout, client.lease_time_to_live(lease, None)).await else {
            continue;
        };
        if let Some(leader) = pairs.get_mut(&pair).and_then(|view| view.leader.as_mut()) {
            leader.lease_ttl_s = Some(ttl.granted_ttl());
            leader.lease_left_s = Some(ttl.ttl());
        }
    }
    fleet.pairs = pairs
        .into_iter()
        .map(|(pair, view)| PairView { pair, ..view })
        .collect();
    Ok(fleet)
}
