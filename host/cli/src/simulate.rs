//! `havenctl simulate`: replay a timeline of events through the configured policies on one or
//! more simulated hosts and print what each decided and what each plan did to the model, like
//! Pacemaker's `crm_simulate`.
//!
//! A timeline file:
//!
//! ```toml
//! description = "hasta dies, hastb takes over"
//! [hosts.hasta]                       # each host's starting state (or one `[state]`)
//! carp = [{ vhid = 1, interface = "em0", state = "master" }]
//! [hosts.hastb]
//! carp = [{ vhid = 1, interface = "em0", state = "backup" }]
//!
//! [[event]]
//! at-ms = 0
//! host = "hasta"
//! startup = true                      # the daemon starts: every policy gets `startup`
//! [[event]]
//! at-ms = 13000
//! host = "hastb"
//! note = "hasta lost power 3 s ago; CARP's master-down timer expires"
//! event = { carp-changed = { vhid = 1, interface = "em0", state = "master", previous = "backup" } }
//! # change = { ... }, fail = { step = 2, reason = "..." } as in scenario files
//! ```
//!
//! With two hosts and `peer-link = true` at the top, the hosts are linked as two havends with
//! `[peer]`: after each event a host's facts go to the other when they changed, and hastd's
//! hooks are relayed as they happen, each as a `peer` event. An entry `peer-link = false` (at
//! its `at-ms`, no `host`) cuts the link: both hear `peer down`; `peer-link = true` restores
//! it: both hear `peer up` and the other's facts. While the link is up, its heartbeats keep
//! each host's copy of the other's facts fresh.
//!
//! A host's `[hosts.<name>]` may have a `witness` (the witness as that host sees it), and
//! `witness` events can be written like any other; simulate runs no etcd, so what havend's
//! witness session and fence would produce (the events, a refused step as `fail`) is written
//! in the timeline (see `examples/witness/`).

use crate::driver::{InjectedFailure, Record, SimHost};
use haven_core::{Event, HastHook, Machine, PeerEvent, PeerFacts, PeerLink, StateChange};
use haven_runtime::pipeline::short_hash;
use haven_runtime::{LoadedPolicy, Outcome, Pipeline, Runtime};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// A timeline file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Timeline {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    state: Option<Machine>,
    #[serde(default)]
    hosts: BTreeMap<String, Machine>,
    /// Link the two hosts as havends with `[peer]` do.
    #[serde(default)]
    peer_link: bool,
    event: Vec<TimelineEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TimelineEvent {
    at_ms: u64,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    startup: bool,
    #[serde(default)]
    event: Option<Event>,
    #[serde(default)]
    change: Option<StateChange>,
    #[serde(default)]
    fail: Option<InjectedFailure>,
    /// Cut (`false`) or restore (`true`) the peer link.
    #[serde(default)]
    peer_link: Option<bool>,
}

/// A timeline that cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("bad timeline: {0}")]
    Parse(String),
    #[error("event {index}: {message}")]
    Event { index: usize, message: String },
}

impl Timeline {
    /// Parse a timeline's text.
    pub fn parse(text: &str) -> Result<Timeline, TimelineError> {
        let timeline: Timeline = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| format!("line {}: ", text[..span.start].matches('\n').count() + 1))
                .unwrap_or_default();
            TimelineError::Parse(format!("{line}{}", error.message()))
        })?;
        let mut last = 0;
        for (index, event) in timeline.event.iter().enumerate() {
            let fail = |message: String| {
                Err(TimelineError::Event {
                    index: index + 1,
                    message,
                })
            };
            if event.at_ms < last {
                return fail(format!(
                    "at-ms {} is before the previous event's {last}",
                    event.at_ms
                ));
            }
            last = event.at_ms;
            if let Some(up) = event.peer_link {
                if !timeline.peer_link {
                    return fail(format!(
                        "peer-link = {up} needs `peer-link = true` at the top of the timeline"
                    ));
                }
                if event.startup || event.event.is_some() || event.host.is_some() {
                    return fail("peer-link stands alone: no `host`, `event` or `startup`".into());
                }
                continue;
            }
            if event.startup == event.event.is_some() {
                return fail("needs exactly one of `startup = true` or `event`".into());
            }
            let host = event.host.as_deref().unwrap_or("local");
            if !timeline.host_names().iter().any(|name| name == host) {
                return fail(format!("unknown host `{host}`"));
            }
        }
        if timeline.peer_link && timeline.hosts.len() != 2 {
            return Err(TimelineError::Parse(format!(
                "peer-link = true links two hosts; this timeline has {}",
                timeline.hosts.len()
            )));
        }
        Ok(timeline)
    }

    fn host_names(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec!["local".to_owned()]
        } else {
            self.hosts.keys().cloned().collect()
        }
    }
}

/// Replay a timeline; every host runs the same policies. Returns the printed timeline.
pub fn run(runtime: &Arc<Runtime>, policies: &[LoadedPolicy], timeline: &Timeline) -> String {
    let mut hosts: BTreeMap<String, SimHost> = timeline
        .host_names()
        .into_iter()
        .map(|name| {
            let machine = match timeline.hosts.get(&name) {
                Some(machine) => machine.clone(),
                None => timeline.state.clone().unwrap_or_default(),
            };
            let pipeline = Pipeline::new(runtime.clone(), policies.to_vec(), machine);
            (name, SimHost::new(pipeline))
        })
        .collect();
    let mut out = String::new();
    if let Some(description) = &timeline.description {
        let _ = writeln!(out, "{description}\n");
    }
    for policy in policies {
        let info = &policy.compiled.info;
        let _ = writeln!(
            out,
            "policy {} = {} {} (module {})",
            policy.name,
            info.name,
            info.version,
            short_hash(&policy.compiled.module_hash)
        );
    }
    let mut link = timeline.peer_link.then(|| PeerLinkSim::start(&mut hosts));
    for entry in &timeline.event {
        for (name, host) in hosts.iter_mut() {
            let mut records = Vec::new();
            host.advance_to(entry.at_ms, &mut records);
            render(&mut out, name, &records);
        }
        if let Some(link) = &mut link {
            link.exchange(&mut hosts, &mut out);
        }
        if let (Some(up), Some(link)) = (entry.peer_link, &mut link) {
            if let Some(note) = &entry.note {
                let _ = writeln!(out, "\n{}  {:<6} -- {note}", clock(entry.at_ms), "link");
            }
            link.set(up, &mut hosts, &mut out);
            continue;
        }
        let name = entry.host.clone().unwrap_or_else(|| "local".into());
        let host = hosts.get_mut(&name).expect("host names were checked");
        if let Some(note) = &entry.note {
            let _ = writeln!(out, "\n{}  {name:<6} -- {note}", clock(entry.at_ms));
        }
        if let Some(change) = &entry.change {
            host.pipeline_mut().machine_mut().change(change);
        }
        let mut records = Vec::new();
        let mut failure = entry.fail.clone();
        match &entry.event {
            Some(event) => host.deliver(event.clone(), None, &mut failure, &mut records),
            None => host.startup(&mut failure, &mut records),
        }
        render(&mut out, &name, &records);
        if let Some(link) = &mut link {
            if let Some(Event::HastHook(hook)) = &entry.event {
                link.relay(
                    &name,
                    Event::Peer(PeerEvent::HastHook(hook.clone())),
                    &mut hosts,
                    &mut out,
                );
            }
            link.exchange(&mut hosts, &mut out);
        }
    }
    let _ = writeln!(out, "\nfinal state");
    for (name, host) in &hosts {
        let _ = writeln!(
            out,
            "  {name:<6} {}",
            summarize_machine(host.pipeline().machine())
        );
    }
    out
}

/// The peer link between the two simulated hosts, as the daemons' would carry it.
struct PeerLinkSim {
    up: bool,
    /// The facts each host last sent, by sender.
    sent: BTreeMap<String, PeerFacts>,
}

impl PeerLinkSim {
    /// Linked from the start: each host knows the other's starting facts.
    fn start(hosts: &mut BTreeMap<String, SimHost>) -> PeerLinkSim {
        let mut link = PeerLinkSim {
            up: true,
            sent: BTreeMap::new(),
        };
        let names: Vec<String> = hosts.keys().cloned().collect();
        for name in &names {
            let facts = facts_of(name, &hosts[name]);
            link.sent.insert(name.clone(), facts.clone());
            let other = other_than(&names, name);
            let machine = hosts
                .get_mut(&other)
                .expect("two hosts")
                .pipeline_mut()
                .machine_mut();
            let now = machine.now_ms;
            machine.peer.set_link(PeerLink::Up, now);
            machine.peer.heard(facts, now);
        }
        link
    }

    /// Send each host's facts to the other when they changed (and the link is up). The
    /// link's heartbeats (every second, between events) keep the facts each host holds fresh.
    fn exchange(&mut self, hosts: &mut BTreeMap<String, SimHost>, out: &mut String) {
        if !self.up {
            return;
        }
        for host in hosts.values_mut() {
            let machine = host.pipeline_mut().machine_mut();
            if machine.peer.facts.is_some() {
                machine.peer.facts_heard_ms =
                    Some(i64::try_from(machine.now_ms).unwrap_or(i64::MAX));
            }
        }
        let names: Vec<String> = hosts.keys().cloned().collect();
        for name in &names {
            let facts = facts_of(name, &hosts[name]);
            if self.sent.get(name) != Some(&facts) {
                self.sent.insert(name.clone(), facts.clone());
                self.relay(
                    name,
                    Event::Peer(PeerEvent::FactsChanged(facts)),
                    hosts,
                    out,
                );
            }
        }
    }

    /// Deliver `event` from `from` to the other host, if the link is up.
    fn relay(
        &self,
        from: &str,
        event: Event,
        hosts: &mut BTreeMap<String, SimHost>,
        out: &mut String,
    ) {
        if !self.up {
            return;
        }
        let names: Vec<String> = hosts.keys().cloned().collect();
        let to = other_than(&names, from);
        let mut records = Vec::new();
        let host = hosts.get_mut(&to).expect("two hosts");
        host.deliver(event, None, &mut None, &mut records);
        render(out, &to, &records);
    }

    /// Cut or restore the link: both hosts hear it; on restore, each other's facts too.
    fn set(&mut self, up: bool, hosts: &mut BTreeMap<String, SimHost>, out: &mut String) {
        if self.up == up {
            return;
        }
        self.up = up;
        let event = Event::Peer(if up { PeerEvent::Up } else { PeerEvent::Down });
        for (name, host) in hosts.iter_mut() {
            let mut records = Vec::new();
            host.deliver(event.clone(), None, &mut None, &mut records);
            render(out, name, &records);
        }
        if up {
            self.sent.clear();
            self.exchange(hosts, out);
        }
    }
}

/// What `name`'s havend would publish.
fn facts_of(name: &str, host: &SimHost) -> PeerFacts {
    host.pipeline().peer_facts(name, env!("CARGO_PKG_VERSION"))
}

fn other_than(names: &[String], name: &str) -> String {
    names
        .iter()
        .find(|other| *other != name)
        .cloned()
        .unwrap_or_default()
}

fn clock(ms: u64) -> String {
    format!("[{:>4}.{:03}s]", ms / 1000, ms % 1000)
}

/// Print records under a host's name.
fn render(out: &mut String, host: &str, records: &[Record]) {
    for record in records {
        let _ = match record {
            Record::Event {
                id,
                at_ms,
                event,
                to,
            } => {
                let to = to
                    .as_deref()
                    .map(|p| format!(" (to {p})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}  {host:<6} event #{id} {}{to}",
                    clock(*at_ms),
                    summarize_event(event)
                )
            }
            Record::Decision(decision) => {
                let what = match &decision.outcome {
                    Outcome::NoAction => "no action".to_owned(),
                    Outcome::Plan { plan_id, plan } => {
                        format!("plan #{plan_id} of {} step(s)", plan.steps.len())
                    }
                    Outcome::Refused(refusal) => format!("REFUSED: {refusal}"),
                    Outcome::Failed(failure) => format!("FAILED: {failure}"),
                };
                let mut line = format!(
                    "{:13}{host:<6}   {} decided {what} in {} µs",
                    "",
                    decision.policy,
                    decision.elapsed.as_micros()
                );
                for log in &decision.logs {
                    let _ = write!(
                        line,
                        "\n{:13}{host:<6}     log {:?}: {}",
                        "", log.level, log.message
                    );
                }
                if let Some(alert) = &decision.host_alert {
                    let _ = write!(line, "\n{:13}{host:<6}     ALERT {alert}", "");
                }
                writeln!(out, "{line}")
            }
            Record::Step {
                index,
                step,
                failure,
                ..
            } => {
                let result = match failure {
                    Some(reason) => format!("FAILED: {reason}"),
                    None => "ok".to_owned(),
                };
                writeln!(
                    out,
                    "{:13}{host:<6}     {}. {step}  → {result}",
                    "",
                    index + 1
                )
            }
            Record::FollowUpsCut => writeln!(
                out,
                "{:13}{host:<6}   (too many follow-up failures; stopped)",
                ""
            ),
            Record::TimersCut { fired } => writeln!(
                out,
                "{:13}{host:<6}   (timers fired {fired} times in one step of the clock; the rest wait)",
                ""
            ),
        };
    }
}

/// The witness's news: what changed, and who holds the key now. The holder's name and etcd's
/// error come from outside: escaped.
fn summarize_witness(event: &haven_core::WitnessEvent) -> String {
    use haven_core::WitnessChange;
    use haven_core::text::escape;
    let holder = match &event.state.leader {
        Some(leader) => format!(
            "{} holds the key (token {}){}",
            escape(&leader.host),
            leader.token,
            if event.state.holding {
                ", this host"
            } else {
                ""
            }
        ),
        None => "nobody holds the key".to_owned(),
    };
    match &event.change {
        WitnessChange::Reachable => format!("witness: etcd answers; {holder}"),
        WitnessChange::Unreachable(why) => {
            format!("witness: etcd does not answer ({})", escape(why))
        }
        WitnessChange::LeaderChanged => format!("witness: {holder}"),
        WitnessChange::KeyLost(token) => {
            format!("witness: this host lost the leader key (token {token})")
        }
    }
}

/// One line for an event, as timelines and `havenctl log` show it.
pub fn summarize_event(event: &Event) -> String {
    match event {
        Event::Startup(_) => "startup".into(),
        Event::CarpChanged(change) => {
            let previous = change
                .previous
                .map(|p| format!("{p:?} → "))
                .unwrap_or_default();
            format!(
                "CARP vhid {} on {}: {previous}{:?}",
                change.vhid, change.interface, change.state
            )
        }
        Event::CarpLink(link) => format!(
            "{} link {}",
            link.interface,
            if link.up { "up" } else { "down" }
        ),
        Event::HastHook(HastHook::RoleChanged(change)) => {
            format!(
                "HAST {}: role {} → {}",
                change.resource, change.old, change.new
            )
        }
        Event::HastHook(hook) => format!("HAST {}: {}", hook.resource(), hook_kind(hook)),
        Event::HastStatusChanged(status) => format!(
            "HAST {} status: {} {:?} dirty {}",
            status.resource,
            status.role,
            status.replication,
            status
                .dirty_bytes
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into())
        ),
        Event::Devd(devd) => format!("devd {:?} {:?}", devd.kind, devd.attributes),
        Event::TimerFired(name) => format!("timer {name} fired"),
        Event::StepFailed(failure) => {
            format!(
                "plan #{} step {} failed: {}",
                failure.plan_id,
                failure.step_index + 1,
                failure.reason
            )
        }
        Event::Operator(request) => format!(
            "operator (uid {}): havenctl {}",
            request.uid,
            request.ask.command()
        ),
        Event::Witness(event) => summarize_witness(event),
        Event::Peer(PeerEvent::Up) => "peer link up".into(),
        Event::Peer(PeerEvent::Down) => "peer link down".into(),
        Event::Peer(PeerEvent::FactsChanged(facts)) => {
            let hast: Vec<String> = facts
                .hast
                .iter()
                .map(|h| {
                    let dirty = h
                        .dirty_bytes
                        .map(|d| format!(" dirty {d}"))
                        .unwrap_or_default();
                    format!("{} {} {:?}{dirty}", h.resource, h.role, h.replication)
                })
                .collect();
            format!("peer {} facts: HAST {}", facts.host, hast.join(", "))
        }
        Event::Peer(PeerEvent::HastHook(hook)) => {
            format!("peer HAST {}: {}", hook.resource(), hook_kind(hook))
        }
    }
}

/// A hook's name as the journal writes it (`sync-interrupted`).
fn hook_kind(hook: &HastHook) -> String {
    serde_json::to_value(hook)
        .ok()
        .and_then(|value| value.as_object().and_then(|o| o.keys().next().cloned()))
        .unwrap_or_default()
}

/// One line: CARP states, HAST roles, mounts, running services.
pub fn summarize_machine(machine: &Machine) -> String {
    let carp: Vec<String> = machine
        .carp
        .values()
        .map(|c| format!("vhid {} {:?}", c.vhid, c.state))
        .collect();
    let hast: Vec<String> = machine
        .hast
        .values()
        .map(|h| format!("{} {}", h.resource, h.role))
        .collect();
    let mounts: Vec<&str> = machine.mounts.keys().map(String::as_str).collect();
    let running: Vec<&str> = machine
        .services
        .iter()
        .filter(|(_, running)| **running)
        .map(|(name, _)| name.as_str())
        .collect();
    let list = |items: Vec<&str>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    format!(
        "CARP {}; HAST {}; mounted {}; running {}",
        list(carp.iter().map(String::as_str).collect()),
        list(hast.iter().map(String::as_str).collect()),
        list(mounts),
        list(running)
    )
}
