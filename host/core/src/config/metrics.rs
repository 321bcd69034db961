//! The `[metrics]` table: where havend serves Prometheus metrics, if anywhere.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9750"   # an IP address and port; off without the table
//! ```
//!
//! The listener is opt-in because it opens a TCP port: the metrics say which host serves, how
//! replication goes and which policies fail, which is worth keeping on loopback or a
//! management network. It serves `GET /metrics` and nothing else, and takes no input beyond
//! the request line.

use super::Located;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use toml::Spanned;

/// The port the examples use (9750 is not taken in Prometheus's list of default ports).
pub const DEFAULT_METRICS_PORT: u16 = 9750;

/// The metrics listener's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetricsConfig {
    /// The address and port to listen on.
    pub listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Spanned<String>,
}

pub(super) fn build_metrics(raw: RawMetrics) -> Located<MetricsConfig> {
    let listen = raw.listen.get_ref().parse().map_err(|_| {
        (
            raw.listen.span(),
            format!(
                "metrics: listen `{}` must be an IP address and port (e.g. \
                 127.0.0.1:{DEFAULT_METRICS_PORT})",
                raw.listen.get_ref()
            ),
        )
    })?;
    Ok(MetricsConfig { listen })
}
