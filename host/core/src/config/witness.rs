//! The `[witness]` table: the etcd cluster that arbitrates which host of the pair may serve.
//!
//! ```toml
//! [witness]
//! endpoints = ["http://10.0.0.3:2379"]   # etcd's client URLs, 1 to 16
//! prefix = "/haven"                      # every pair's keys live under it
//! pair = "db1"                           # this pair's name under the prefix
//! ttl-s = 10                             # the lease on the leader key
//! renew-ms = 2000                        # how often the lease is renewed
//! timeout-ms = 3000                      # each request to etcd, and the demotion's budget
//! isolated-serve-ms = 0                  # failsafe: see below
//! user = "haven"                         # optional: etcd's authentication
//! password-file = "/usr/local/etc/haven/etcd.password"
//! [witness.tls]                          # optional: https endpoints
//! ca = "/usr/local/etc/haven/etcd-ca.pem"
//! cert = "/usr/local/etc/haven/etcd-client.pem"
//! key = "/usr/local/etc/haven/etcd-client.key"
//! ```
//!
//! **The timing rule**, checked here: `renew-ms + 2 × timeout-ms ≤ ttl-s × 1000`. A master
//! that is cut off from etcd learns it at the latest `renew-ms + timeout-ms` after its last
//! good renewal (the next renewal is due, and it times out); it then has one more
//! `timeout-ms` to demote before the lease, counted by etcd from that last renewal, can
//! expire and let the peer take the key. Patroni's `loop_wait + 2 × retry_timeout ≤ ttl` is
//! the same rule.
//!
//! **`isolated-serve-ms`**: how long a master that can reach neither etcd nor its peer keeps
//! serving after its key is lost. The daemon hands it to the policies (`witness-state`); the
//! seed policy acts on it, and a custom policy should. The default, 0, means demote at once:
//! safe, because the peer may hold the key a moment later; the price is that a master cut off
//! from everything (or whose etcd and peer link fail together) stops serving. Anything more
//! lets both hosts serve for that long if the peer, which can still reach etcd, takes over.

use super::{Located, check_name, check_path};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// The witness's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WitnessConfig {
    /// etcd's client URLs (`http://host:port`, or `https://` with [`WitnessConfig::tls`]).
    pub endpoints: Vec<String>,
    /// Where every pair's keys live: `/haven` by default.
    pub prefix: String,
    /// This pair's name under the prefix.
    pub pair: String,
    /// The lease's time to live, in seconds: 10 by default, 2 to 300.
    pub ttl_s: u32,
    /// How often the lease is renewed: a fifth of the TTL by default.
    pub renew_ms: u32,
    /// The bound on each request to etcd, and the time left to demote: 3/10 of the TTL by
    /// default.
    pub timeout_ms: u32,
    /// How long a master that reaches neither etcd nor its peer keeps serving: 0.
    pub isolated_serve_ms: u32,
    /// etcd's authentication: the user, and the file that holds its password.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS to etcd: its CA, and this host's client certificate and key.
    pub tls: Option<WitnessTls>,
}

/// `[witness.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WitnessTls {
    /// The CA that signed etcd's server certificate.
    pub ca: PathBuf,
    /// This host's client certificate and key (etcd's `--client-cert-auth`), both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl WitnessConfig {
    /// The folder of this pair's keys: `<prefix>/<pair>/`.
    pub fn pair_prefix(&self) -> String {
        format!("{}/{}/", self.prefix, self.pair)
    }
}

/// The longest lease: five minutes of a dead master holding the key is more than anyone wants.
const MAX_TTL_S: u32 = 300;
/// The most endpoints, and the longest one.
const MAX_ENDPOINTS: usize = 16;
const MAX_ENDPOINT_BYTES: usize = 255;
/// The longest key prefix.
const MAX_PREFIX_BYTES: usize = 128;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct RawWitness {
    endpoints: Spanned<Vec<String>>,
    prefix: Option<Spanned<String>>,
    pair: Spanned<String>,
    ttl_s: Option<Spanned<u32>>,
    renew_ms: Option<Spanned<u32>>,
    timeout_ms: Option<Spanned<u32>>,
    isolated_serve_ms: Option<u32>,
    user: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawTls {
    ca: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

pub(super) fn build_witness(raw: Spanned<RawWitness>) -> Located<WitnessConfig> {
    let span = raw.span();
    let raw = raw.into_inner();
    let tls = raw.tls.map(build_tls).transpose()?;
    let endpoints = build_endpoints(raw.endpoints, tls.is_some())?;
    let prefix = match raw.prefix {
        Some(prefix) => {
            check_prefix(prefix.get_ref()).map_err(|message| (prefix.span(), message))?;
            prefix.into_inner()
        }
        None => "/haven".to_owned(),
    };
    check_name("witness: pair", raw.pair.get_ref())
        .map_err(|message| (raw.pair.span(), message))?;
    let ttl_s = match raw.ttl_s {
        Some(ttl) if !(2..=MAX_TTL_S).contains(ttl.get_ref()) => {
            return Err((
                ttl.span(),
                format!(
                    "witness: ttl-s is {}, it must be 2 to {MAX_TTL_S}",
                    ttl.get_ref()
                ),
            ));
        }
        Some(ttl) => ttl.into_inner(),
        None => 10,
    };
    let ttl_ms = ttl_s * 1000;
    let renew_ms = positive(raw.renew_ms, "renew-ms", ttl_ms / 5)?;
    let timeout_ms = positive(raw.timeout_ms, "timeout-ms", ttl_ms * 3 / 10)?;
    let needed = u64::from(renew_ms) + 2 * u64::from(timeout_ms);
    if needed > u64::from(ttl_ms) {
        return Err((
            span,
            format!(
                "witness: renew-ms ({renew_ms}) + 2 × timeout-ms ({timeout_ms}) is {needed} ms, \
                 more than the lease's ttl-s ({ttl_s} s): a master cut off from etcd notices \
                 within renew-ms + timeout-ms and needs another timeout-ms to demote, all \
                 before its lease can expire and let the peer take over. Raise ttl-s or lower \
                 the others"
            ),
        ));
    }
    let user = match raw.user {
        Some(user) => {
            check_name("witness: user", user.get_ref()).map_err(|m| (user.span(), m))?;
            Some(user.into_inner())
        }
        None => None,
    };
    let password_file = raw
        .password_file
        .map(|file| file_path(file, "witness: password-file"))
        .transpose()?;
    if user.is_some() != password_file.is_some() {
        return Err((
            span,
            "witness: user and password-file go together: give both or neither".to_owned(),
        ));
    }
    Ok(WitnessConfig {
        endpoints,
        prefix,
        pair: raw.pair.into_inner(),
        ttl_s,
        renew_ms,
        timeout_ms,
        isolated_serve_ms: raw.isolated_serve_ms.unwrap_or(0),
        user,
        password_file,
        tls,
    })
}

fn positive(value: Option<Spanned<u32>>, what: &str, default: u32) -> Located<u32> {
    match value {
        Some(value) if *value.get_ref() == 0 => Err((
            value.span(),
            format!("witness: {what} is 0; it must be at least 1"),
        )),
        Some(value) => Ok(value.into_inner()),
        None => Ok(default),
    }
}

fn file_path(path: Spanned<String>, what: &str) -> Located<PathBuf> {
    check_path(what, path.get_ref()).map_err(|message| (path.span(), message))?;
    Ok(PathBuf::from(path.into_inner()))
}

fn build_tls(raw: Spanned<RawTls>) -> Located<WitnessTls> {
    let span = raw.span();
    let raw = raw.into_inner();
    let cert = raw
        .cert
        .map(|cert| file_path(cert, "witness.tls: cert"))
        .transpose()?;
    let key = raw
        .key
        .map(|key| file_path(key, "witness.tls: key"))
        .transpose()?;
    if cert.is_some() != key.is_some() {
        return Err((
            span,
            "witness.tls: cert and key go together: give both or neither".to_owned(),
        ));
    }
    Ok(WitnessTls {
        ca: file_path(raw.ca, "witness.tls: ca")?,
        cert,
        key,
    })
}

/// etcd's client URLs: `http://host:port` (`https://` with TLS); a bare `host:port` is read
/// as `http://host:port`.
fn build_endpoints(raw: Spanned<Vec<String>>, tls: bool) -> Located<Vec<String>> {
    let span: Range<usize> = raw.span();
    let raw = raw.into_inner();
    if raw.is_empty() || raw.len() > MAX_ENDPOINTS {
        return Err((
            span,
            format!(
                "witness: endpoints lists {}; give 1 to {MAX_ENDPOINTS} of etcd's client URLs",
                raw.len()
            ),
        ));
    }
    let scheme = if tls { "https://" } else { "http://" };
    raw.into_iter()
        .map(|endpoint| {
            let url = if endpoint.contains("://") {
                endpoint.clone()
            } else {
                format!("{scheme}{endpoint}")
            };
            check_endpoint(&url, scheme).map_err(|why| {
                (
                    span.clone(),
                    format!(
                        "witness: endpoint `{}` {why}",
                        crate::text::escape(&crate::text::clip(&endpoint, 300))
                    ),
                )
            })?;
            Ok(url)
        })
        .collect()
}

fn check_endpoint(url: &str, scheme: &str) -> Result<(), String> {
    if url.len() > MAX_ENDPOINT_BYTES {
        return Err(format!("is longer than {MAX_ENDPOINT_BYTES} bytes"));
    }
    let Some(authority) = url.strip_prefix(scheme) else {
        return Err(if scheme == "https://" {
            "must be https://host:port: [witness.tls] is set".to_owned()
        } else {
            "must be http://host:port (https needs [witness.tls])".to_owned()
        });
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let valid = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "must be {scheme}host:port, e.g. {scheme}10.0.0.3:2379"
        ))
    }
}

/// A key prefix: `/` then path-like words, at most 128 bytes, no trailing or doubled `/`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid_chars = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
    let valid = prefix.starts_with('/')
        && prefix.len() > 1
        && prefix.len() <= MAX_PREFIX_BYTES
        && valid_chars
        && prefix[1..]
            .split('/')
            .all(|part| !matches!(part, "" | "." | ".."));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "witness: prefix `{}` must be like /haven or /sites/paris/haven: `/`-separated \
             words of A-Z a-z 0-9 _ - ., at most {MAX_PREFIX_BYTES} bytes, no trailing `/`",
            crate::text::escape(&crate::text::clip(prefix, 300))
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn parse(witness: &str) -> Result<crate::Config, String> {
        Config::parse(
            &format!("[witness]\n{witness}"),
            Path::new("/etc/haven.toml"),
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn the_witness_reads_with_defaults_that_keep_the_timing_rule() {
        let config = parse("endpoints = [\"10.0.0.3:2379\"]\npair = \"db1\"\n").unwrap();
        let witness = config.witness.unwrap();
        assert_eq!(witness.endpoints, ["http://10.0.0.3:2379"]);
        assert_eq!(witness.prefix, "/haven");
        assert_eq!(witness.pair_prefix(), "/haven/db1/");
        assert_eq!(
            (witness.ttl_s, witness.renew_ms, witness.timeout_ms),
            (10, 2000, 3000)
        );
        assert_eq!(witness.isolated_serve_ms, 0);
        assert!(
            Config::parse("", Path::new("/x"))
                .unwrap()
                .witness
                .is_none()
        );
    }

    #[test]
    fn the_timing_rule_is_enforced_and_explained() {
        let error = parse(
            "endpoints = [\"http://e:2379\"]\npair = \"db1\"\nttl-s = 5\nrenew-ms = 2000\n\
             timeout-ms = 2000\n",
        )
        .unwrap_err();
        assert!(error.contains("/etc/haven.toml:1:"), "{error}");
        assert!(
            error.contains("is 6000 ms, more than the lease's ttl-s (5 s)"),
            "{error}"
        );
        parse("endpoints = [\"http://e:2379\"]\npair = \"p\"\nttl-s = 6\nrenew-ms = 2000\ntimeout-ms = 2000\n")
            .unwrap();
    }

    #[test]
    fn what_cannot_work_is_refused_with_where() {
        for (witness, expected) in [
            ("endpoints = []\npair = \"p\"", "endpoints lists 0"),
            (
                "endpoints = [\"ftp://e:1\"]\npair = \"p\"",
                "must be http://host:port",
            ),
            (
                "endpoints = [\"https://e:1\"]\npair = \"p\"",
                "https needs [witness.tls]",
            ),
            (
                "endpoints = [\"e\"]\npair = \"p\"",
                "must be http://host:port",
            ),
            (
                "endpoints = [\"e:0\"]\npair = \"p\"",
                "must be http://host:port",
            ),
            (
                "endpoints = [\"e:1 --x\"]\npair = \"p\"",
                "must be http://host:port",
            ),
            ("endpoints = [\"e:1\"]\npair = \"../x\"", "not a valid name"),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nprefix = \"haven\"",
                "prefix `haven`",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nprefix = \"/a//b\"",
                "prefix `/a//b`",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nprefix = \"/a/\"",
                "prefix `/a/`",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nttl-s = 1",
                "ttl-s is 1",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nttl-s = 301",
                "ttl-s is 301",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nrenew-ms = 0",
                "renew-ms is 0",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nuser = \"u\"",
                "go together",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\n[witness.tls]\nca = \"/ca\"\ncert = \"/c\"",
                "cert and key go together",
            ),
            (
                "endpoints = [\"e:1\"]\npair = \"p\"\nttl = 3",
                "unknown field `ttl`",
            ),
        ] {
            let error = parse(witness).unwrap_err();
            assert!(error.contains(expected), "{witness}: {error}");
        }
        let tls =
            parse("endpoints = [\"e:2379\"]\npair = \"p\"\n[witness.tls]\nca = \"/ca.pem\"\n")
                .unwrap();
        assert_eq!(tls.witness.unwrap().endpoints, ["https://e:2379"]);
    }
}
