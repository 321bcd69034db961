//! What Haven keeps in etcd, and where.
//!
//! ```text
//! <prefix>/<pair>/leader          {"host":"hasta","since-unix-ms":…}   on the holder's lease
//! <prefix>/<pair>/members/<host>  {"host":"hasta","serving":true,…}    on that host's lease
//! ```
//!
//! The leader key's creation revision is the fencing token: a holder creates the key, and
//! nobody else can until the holder lets it go or its lease expires, so every new holder's
//! token is higher than the last. Member records say what each havend last published; both
//! vanish with their host's lease.
//!
//! Everything read back is bounded and checked: a value over [`MAX_VALUE_BYTES`], or one that
//! is not the JSON Haven writes, is reported as damaged with its key, never believed.

use haven_core::WitnessConfig;
use haven_core::names::check_name;
use serde::{Deserialize, Serialize};

/// The largest value Haven reads back from etcd.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The leader key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LeaderRecord {
    pub host: String,
    /// When this host took the key (wall clock).
    pub since_unix_ms: u64,
}

/// A host's member record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemberRecord {
    pub host: String,
    /// Whether this host serves (its storage primary, or its services running).
    pub serving: bool,
    /// Whether the operator put it in maintenance.
    pub maintenance: bool,
    /// The havend version that wrote it.
    pub version: String,
}

/// Why a value read from etcd was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{key}: {bytes} bytes, more than the {MAX_VALUE_BYTES} Haven writes")]
    TooLong { key: String, bytes: usize },
    #[error("{key}: not Haven's record: {why}")]
    Damaged { key: String, why: String },
}

/// Parse a value Haven wrote at `key`: bounded, strict, with a valid host name.
pub fn parse<T: for<'de> Deserialize<'de> + HasHost>(
    key: &str,
    value: &[u8],
) -> Result<T, RecordError> {
    let key = haven_core::text::escape(&haven_core::text::clip(key, 300)).into_owned();
    if value.len() > MAX_VALUE_BYTES {
        return Err(RecordError::TooLong {
            key,
            bytes: value.len(),
        });
    }
    let record: T = serde_json::from_slice(value).map_err(|error| RecordError::Damaged {
        key: key.clone(),
        why: error.to_string(),
    })?;
    check_name("host", record.host()).map_err(|why| RecordError::Damaged { key, why })?;
    Ok(record)
}

/// A record that names a host.
pub trait HasHost {
    fn host(&self) -> &str;
}

impl HasHost for LeaderRecord {
    fn host(&self) -> &str {
        &self.host
    }
}

impl HasHost for MemberRecord {
    fn host(&self) -> &str {
        &self.host
    }
}

/// The keys of one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairKeys {
    /// `<prefix>/<pair>/`
    pub folder: String,
}

impl PairKeys {
    pub fn of(config: &WitnessConfig) -> PairKeys {
        PairKeys {
            folder: config.pair_prefix(),
        }
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.folder)
    }

    pub fn member(&self, host: &str) -> String {
        format!("{}members/{host}", self.folder)
    }
}

/// What a key under the prefix is, for the fleet listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind<'a> {
    Leader { pair: &'a str },
    Member { pair: &'a str, host: &'a str },
}

/// Read a key under `prefix/` (given without the prefix): `<pair>/leader` or
/// `<pair>/members/<host>`; anything else is not Haven's.
pub fn classify(rest: &str) -> Option<KeyKind<'_>> {
    let mut parts = rest.split('/');
    let pair = parts
        .next()
        .filter(|pair| check_name("pair", pair).is_ok())?;
    match (parts.next(), parts.next(), parts.next()) {
        (Some("leader"), None, None) => Some(KeyKind::Leader { pair }),
        (Some("members"), Some(host), None) if check_name("host", host).is_ok() => {
            Some(KeyKind::Member { pair, host })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_strictly_and_bounded() {
        let leader: LeaderRecord =
            parse("/h/p/leader", br#"{"host":"hasta","since-unix-ms":5}"#).unwrap();
        assert_eq!(leader.host, "hasta");
        for (value, expected) in [
            (
                &br#"{"host":"-x","since-unix-ms":5}"#[..],
                "not a valid name",
            ),
            (br#"{"host":"a","since-unix-ms":5,"x":1}"#, "unknown field"),
            (b"\xff\x00", "not Haven's record"),
        ] {
            let error = parse::<LeaderRecord>("/h/p/leader", value).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        let long = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            parse::<LeaderRecord>("/h/p/leader", &long),
            Err(RecordError::TooLong { .. })
        ));
        let error = parse::<LeaderRecord>("/h/\u{1b}[31m/leader", b"{").unwrap_err();
        assert!(!error.to_string().contains('\u{1b}'), "{error}");
    }

    #[test]
    fn keys_under_the_prefix_are_classified() {
        assert_eq!(
            classify("db1/leader"),
            Some(KeyKind::Leader { pair: "db1" })
        );
        assert_eq!(
            classify("db1/members/hasta"),
            Some(KeyKind::Member {
                pair: "db1",
                host: "hasta"
            })
        );
        for other in [
            "db1",
            "db1/leader/x",
            "db1/members",
            "../leader",
            "db1/members/-x",
            "db1/other",
        ] {
            assert_eq!(classify(other), None, "{other}");
        }
    }
}
