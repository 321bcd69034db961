//! What havend tells Prometheus: counters the event loop keeps as it goes, and gauges read off
//! the status at each scrape.
//!
//! Operators watch HA pairs through Prometheus (keepalived's exporter, Patroni's `/metrics`),
//! so havend serves the same kind of page when `[metrics] listen` is set ([`listener`]). Two
//! kinds of figures are on it:
//!
//! - **Counted as they happen** ([`Recorder`]): events by source and kind, decisions by policy
//!   and outcome with their latency, steps by kind and outcome with their duration, alerts by
//!   severity. The event loop's observer and the status board feed them; each is an atomic
//!   add, so the event path takes no lock for them.
//! - **Read at scrape time** from the same [`Status`] `havenctl status` shows: CARP and HAST
//!   as the model has them, the queue, the sources' bad input, reloads, journal errors, the
//!   peer and the witness. A scrape never waits for the event loop, even while a plan runs.
//!
//! Names follow Prometheus's conventions: a `haven_` prefix, base units (seconds, bytes),
//! `_total` on counters, and a state as a label with one series per possible value (1 for the
//! current one), as node_exporter does for systemd units. Label values that a policy or a peer
//! could shape are escaped by the encoder; names in Haven's config are checked words anyway.

pub mod listener;

use crate::status::Status;
use haven_core::{CarpState, HastReplication, HastRole, PeerLink};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The content type of OpenMetrics text, which Prometheus asks for first.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A series' labels: names are Haven's, values are what the series is about.
type Labels = Vec<(&'static str, String)>;

/// A float gauge (ages and sizes in base units).
type FloatGauge = Gauge<f64, AtomicU64>;

/// Decision latency buckets, in seconds: 50 µs to about 1.6 s, doubling. A Rust policy decides
/// in tens of microseconds and a Python one in about a millisecond; a deadline is seconds.
fn decision_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

/// Step duration buckets, in seconds: 1 ms to about 16 minutes, quadrupling (an fsck).
fn step_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 4.0, 11,
    ))
}

/// The figures counted as they happen. Clones of the families share their series.
#[derive(Debug)]
pub struct Recorder {
    events: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    decision_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    steps: Family<Labels, Counter>,
    step_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    alerts: Family<Labels, Counter>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            events: Family::default(),
            decisions: Family::default(),
            decision_seconds: Family::new_with_constructor(decision_buckets),
            steps: Family::default(),
            step_seconds: Family::new_with_constructor(step_buckets),
            alerts: Family::default(),
        }
    }
}

impl Recorder {
    /// An event taken off the queue for the policies.
    pub fn event(&self, source: &str, kind: &str) {
        self.events
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("kind", kind.to_owned()),
            ])
            .inc();
    }

    /// A policy's decision: `outcome` as the journal writes it.
    pub fn decision(&self, policy: &str, outcome: &str, elapsed: Duration) {
        let labels = vec![
            ("policy", policy.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        self.decisions.get_or_create(&labels).inc();
        self.decision_seconds
            .get_or_create(&vec![("policy", policy.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// A step that ended: `ok`, `failed`, or `already-done` (its effect was in place).
    pub fn step(&self, kind: &str, outcome: &str, elapsed: Duration) {
        let labels = vec![("kind", kind.to_owned()), ("outcome", outcome.to_owned())];
        self.steps.get_or_create(&labels).inc();
        self.step_seconds
            .get_or_create(&vec![("kind", kind.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// An operator alert.
    pub fn alert(&self, severity: &str) {
        self.alerts
            .get_or_create(&vec![("severity", severity.to_owned())])
            .inc();
    }

    /// The page for a scrape, with the figures read off `status`: OpenMetrics text when
    /// `openmetrics`, else Prometheus's text format 0.0.4. Returns the content type too.
    pub fn render(&self, status: &Status, openmetrics: bool) -> (String, &'static str) {
        let mut registry = Registry::with_prefix("haven");
        self.register(&mut registry);
        register_status(&mut registry, status);
        let mut page = String::new();
        // Writing to a String cannot fail.
        let (written, content_type) = if openmetrics {
            (text::encode(&mut page, &registry), OPENMETRICS_CONTENT_TYPE)
        } else {
            (
                prometheus_text::encode(&mut page, &registry),
                prometheus_text::CONTENT_TYPE,
            )
        };
        debug_assert!(written.is_ok());
        (page, content_type)
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "events",
            "Events handed to the policies, by source and kind",
            self.events.clone(),
        );
        registry.register(
            "decisions",
            "Policy decisions, by policy and outcome (no-action, plan, refused, failed)",
            self.decisions.clone(),
        );
        registry.register_with_unit(
            "decision_duration",
            "How long a policy took to decide, by policy",
            Unit::Seconds,
            self.decision_seconds.clone(),
        );
        registry.register(
            "steps",
            "Plan steps that ended, by kind and outcome (ok, failed, already-done)",
            self.steps.clone(),
        );
        registry.register_with_unit(
            "step_duration",
            "How long a step took, by kind",
            Unit::Seconds,
            self.step_seconds.clone(),
        );
        registry.register(
            "alerts",
            "Operator alerts raised, by severity",
            self.alerts.clone(),
        );
    }
}

/// A gauge family, filled from the status.
fn gauges<I>(series: I) -> Family<Labels, Gauge>
where
    I: IntoIterator<Item = (Labels, i64)>,
{
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in series {
        family.get_or_create(&labels).set(value);
    }
    family
}

/// A counter family whose values the status already counts.
fn counters<I>(series: I) -> Family<Labels, Counter>
where
    I: IntoIterator<Item = (Labels, u64)>,
{
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in series {
        family.get_or_create(&labels).inc_by(value);
    }
    family
}

/// One series per possible state of one thing, 1 for the state it is in.
fn one_hot(
    key: (&'static str, String),
    states: &'static [&'static str],
    current: &'static str,
) -> impl Iterator<Item = (Labels, i64)> {
    states.iter().map(move |state| {
        (
            vec![key.clone(), ("state", (*state).to_owned())],
            i64::from(*state == current),
        )
    })
}

fn carp_state(state: CarpState) -> &'static str {
    match state {
        CarpState::Init => "init",
        CarpState::Backup => "backup",
        CarpState::Master => "master",
    }
}

fn hast_role(role: HastRole) -> &'static str {
    match role {
        HastRole::Init => "init",
        HastRole::Primary => "primary",
        HastRole::Secondary => "secondary",
    }
}

fn hast_replication(replication: HastReplication) -> &'static str {
    match replication {
        HastReplication::Complete => "complete",
        HastReplication::Degraded => "degraded",
        HastReplication::Unknown => "unknown",
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn float(value: f64) -> FloatGauge {
    let gauge = FloatGauge::default();
    gauge.set(value);
    gauge
}

/// The figures read off the status at each scrape.
fn register_status(registry: &mut Registry, status: &Status) {
    registry.register(
        "build_info",
        "havend's version, always 1",
        gauges([(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1)]),
    );
    registry.register_with_unit(
        "uptime",
        "How long havend has run",
        Unit::Seconds,
        float(seconds(status.uptime_ms)),
    );

    // The machine as the model has it.
    registry.register(
        "carp_state",
        "CARP state per vhid: 1 for the state it is in",
        gauges(status.carp.iter().flat_map(|carp| {
            one_hot(
                ("vhid", carp.vhid.to_string()),
                &["init", "backup", "master"],
                carp_state(carp.state),
            )
        })),
    );
    registry.register(
        "hast_role",
        "HAST role per granted resource: 1 for the role it has",
        gauges(status.hast.iter().flat_map(|hast| {
            one_hot(
                ("resource", hast.resource.clone()),
                &["init", "primary", "secondary"],
                hast_role(hast.role),
            )
        })),
    );
    registry.register(
        "hast_replication",
        "HAST replication per granted resource, as its primary sees it: 1 for the state",
        gauges(status.hast.iter().flat_map(|hast| {
            one_hot(
                ("resource", hast.resource.clone()),
                &["complete", "degraded", "unknown"],
                hast_replication(hast.replication),
            )
        })),
    );
    registry.register_with_unit(
        "hast_dirty",
        "Bytes not yet copied to the other host, per granted resource (only a primary knows)",
        Unit::Bytes,
        gauges(status.hast.iter().filter_map(|hast| {
            let dirty = i64::try_from(hast.dirty_bytes?).unwrap_or(i64::MAX);
            Some((vec![("resource", hast.resource.clone())], dirty))
        })),
    );
    registry.register(
        "mounted",
        "Granted mountpoints: 1 when mounted",
        gauges(
            status
                .mounts
                .iter()
                .map(|mount| (vec![("mountpoint", mount.mountpoint.clone())], 1)),
        ),
    );
    registry.register(
        "service_running",
        "Granted services: 1 when running",
        gauges(status.services.iter().map(|service| {
            (
                vec![("service", service.name.clone())],
                i64::from(service.running),
            )
        })),
    );
    registry.register(
        "maintenance",
        "1 while this host is in maintenance",
        gauges([(Vec::new(), i64::from(status.maintenance.is_some()))]),
    );
    registry.register(
        "step_running",
        "1 while a plan's step runs",
        gauges([(Vec::new(), i64::from(status.running.is_some()))]),
    );

    // The daemon's own health.
    registry.register(
        "queue_depth",
        "Events waiting for the policies",
        ConstGauge::new(status.queue.depth as i64),
    );
    registry.register(
        "queue_capacity",
        "The most events the queue holds",
        ConstGauge::new(status.queue.capacity as i64),
    );
    registry.register(
        "queue_dropped",
        "Events refused because the queue was full",
        ConstCounter::new(status.queue.dropped),
    );
    registry.register(
        "queue_coalesced",
        "Events that replaced a waiting one of the same thing",
        ConstCounter::new(status.queue.coalesced),
    );
    registry.register(
        "reports_dropped",
        "Source reports dropped because too many waited at once",
        ConstCounter::new(status.reports_dropped),
    );
    registry.register(
        "bad_input",
        "Input a source could not use, by source",
        counters(
            status
                .sources
                .iter()
                .map(|(source, counters)| (vec![("source", source.clone())], counters.bad_input)),
        ),
    );
    registry.register(
        "source_up",
        "Whether each source has its input (1) or not (0)",
        gauges(status.sources.iter().filter_map(|(source, counters)| {
            Some((vec![("source", source.clone())], i64::from(counters.up?)))
        })),
    );
    registry.register(
        "reloads",
        "Reloads of the config and policies, by outcome",
        counters([
            (
                vec![("outcome", "loaded".to_owned())],
                status.reloads.loaded,
            ),
            (
                vec![("outcome", "rejected".to_owned())],
                status.reloads.rejected,
            ),
        ]),
    );
    registry.register(
        "journal_errors",
        "Journal writes that failed",
        ConstCounter::new(status.journal_errors),
    );
    registry.register(
        "policy_loaded",
        "Policies in force, by name and module hash: always 1",
        gauges(status.policies.iter().map(|policy| {
            (
                vec![
                    ("policy", policy.name.clone()),
                    ("module", policy.module_hash.clone()),
                ],
                1,
            )
        })),
    );

    if let Some(peer) = &status.peer {
        registry.register(
            "peer_link_up",
            "1 while the peer link is up",
            ConstGauge::new(i64::from(peer.state.link == PeerLink::Up)),
        );
        registry.register_with_unit(
            "peer_link_state_age",
            "How long the peer link has been in its state",
            Unit::Seconds,
            float(seconds(peer.state.link_for_ms)),
        );
        if let Some(age) = peer.state.facts_age_ms {
            registry.register_with_unit(
                "peer_facts_age",
                "How long ago the peer's facts were last heard (a heartbeat counts)",
                Unit::Seconds,
                float(seconds(age)),
            );
        }
    }
    if let Some(witness) = &status.witness {
        let state = &witness.state;
        registry.register(
            "witness_reachable",
            "1 while etcd answers",
            ConstGauge::new(i64::from(state.reachable)),
        );
        registry.register(
            "witness_holding",
            "1 while this host holds the pair's leader key",
            ConstGauge::new(i64::from(state.holding)),
        );
        if let Some(leader) = &state.leader {
            registry.register(
                "witness_fencing_token",
                "The leader key's fencing token (its creation revision), by holder",
                gauges([(
                    vec![("leader", leader.host.clone())],
                    i64::try_from(leader.token).unwrap_or(i64::MAX),
                )]),
            );
        }
    }
}
