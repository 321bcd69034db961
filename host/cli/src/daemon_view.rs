//! How `havenctl status` and `havenctl log` show the daemon to a person.
//!
//! `havend` answers in JSON (the control socket's `status`, the journal's lines); scripts take
//! that as is with `--json`. This module turns it into the tables and one-line records an
//! operator reads during an incident: what CARP and HAST say, what is mounted and running,
//! which policy version decided what, and every step with its outcome.

use crate::simulate::summarize_event;
use haven_core::text::{clip, escape};
use haven_daemon::journal::{Entry, Record};
use haven_daemon::reload::ReloadOutcome;
use haven_daemon::status::{PeerView, Status};
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// What the peer link refused and counted (the pair's table shows the rest).
fn render_peer(out: &mut String, peer: &PeerView) {
    let counters = &peer.counters;
    let refused: Vec<String> = counters
        .refused
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "  link: {} received, {} sent, sessions {} in / {} out, refused: {}",
        counters.received,
        counters.sent,
        counters.sessions_in,
        counters.sessions_out,
        if refused.is_empty() {
            "none".to_owned()
        } else {
            refused.join(", ")
        }
    );
}

/// This host alone (no peer link): maintenance, CARP, HAST, mounts and services.
fn render_host(out: &mut String, status: &Status) {
    if let Some(maintenance) = &status.maintenance {
        let _ = writeln!(
            out,
            "MAINTENANCE on since {} (by uid {}): this host does not promote",
            utc(maintenance.since_unix_ms),
            maintenance.uid
        );
    }
    section(out, "CARP", ["vhid", "interface", "state"], |rows| {
        for carp in &status.carp {
            rows.push(vec![
                carp.vhid.to_string(),
                carp.interface.clone(),
                lower(carp.state),
            ]);
        }
    });
    section(
        out,
        "HAST",
        ["resource", "role", "status", "dirty"],
        |rows| {
            for hast in &status.hast {
                rows.push(vec![
                    hast.resource.clone(),
                    hast.role.to_string(),
                    lower(hast.replication),
                    hast.dirty_bytes.map_or("-".to_owned(), |d| d.to_string()),
                ]);
            }
        },
    );
    section(out, "Mounts", ["mountpoint", "device", "fstype"], |rows| {
        for mount in &status.mounts {
            rows.push(vec![
                mount.mountpoint.clone(),
                mount.device.clone(),
                mount.fstype.clone(),
            ]);
        }
    });
    section(out, "Services", ["service", "running"], |rows| {
        for service in &status.services {
            rows.push(vec![service.name.clone(), yes_no(service.running)]);
        }
    });
}

/// The witness: whether etcd answers, and who holds the pair's leader key. The holder's name
/// comes from etcd, so it is escaped.
fn render_witness(out: &mut String, witness: &haven_daemon::status::WitnessView) {
    let state = &witness.state;
    let _ = writeln!(
        out,
        "\nWitness: pair {} under {} on {}: etcd {}",
        witness.pair,
        witness.prefix,
        witness.endpoints.join(", "),
        if state.reachable {
            "answers"
        } else {
            "DOES NOT ANSWER"
        }
    );
    let holder = match &state.leader {
        Some(leader) => format!(
            "{}, fencing token {}, since {}{}",
            haven_core::text::escape(&haven_core::text::clip(&leader.host, 64)),
            leader.token,
            utc(leader.since_unix_ms),
            if state.holding { " (this host)" } else { "" }
        ),
        None => "nobody".to_owned(),
    };
    let _ = writeln!(out, "  leader key: {holder}");
}

/// `havenctl status`: a readable table of the daemon's status.
pub fn render_status(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "havend pid {}, up {}, executor {}, config {}",
        status.pid,
        humantime::format_duration(Duration::from_secs(status.uptime_ms / 1000)),
        status.executor,
        status.config.display()
    );
    if let Some(metrics) = &status.metrics {
        let _ = writeln!(out, "Metrics: {metrics}");
    }
    match &status.peer {
        Some(peer) => {
            out.push_str(&crate::pair_view::render(status, peer));
            render_peer(&mut out, peer);
        }
        None => render_host(&mut out, status),
    }
    if let Some(witness) = &status.witness {
        render_witness(&mut out, witness);
    }
    section(
        &mut out,
        "Policies",
        [
            "policy", "module", "version", "events", "plans", "refused", "failed",
        ],
        |rows| {
            for policy in &status.policies {
                rows.push(vec![
                    policy.name.clone(),
                    haven_runtime::pipeline::short_hash(&policy.module_hash).to_owned(),
                    policy.version.clone(),
                    policy.events.to_string(),
                    policy.plans.to_string(),
                    policy.refused.to_string(),
                    policy.failed.to_string(),
                ]);
            }
        },
    );
    let queue = &status.queue;
    let _ = writeln!(
        out,
        "\nQueue: {} waiting (max {} of {}), {} received, {} coalesced, {} dropped",
        queue.depth,
        queue.max_depth,
        queue.capacity,
        queue.received,
        queue.coalesced,
        queue.dropped
    );
    section(
        &mut out,
        "Sources",
        ["source", "up", "events", "bad input", "last problem"],
        |rows| {
            for (name, source) in &status.sources {
                rows.push(vec![
                    name.clone(),
                    source.up.map_or("-".to_owned(), yes_no),
                    source.events.to_string(),
                    source.bad_input.to_string(),
                    source.last_problem.clone().unwrap_or_default(),
                ]);
            }
        },
    );
    let control = &status.control;
    let _ = writeln!(
        out,
        "\nControl socket: {} handled, {} unauthorized, {} malformed, {} timed out, {} failed",
        control.handled, control.unauthorized, control.malformed, control.timed_out, control.failed
    );
    if status.journal_errors > 0 || status.reports_dropped > 0 {
        let _ = writeln!(
            out,
            "Journal write errors: {}; source reports dropped: {}",
            status.journal_errors, status.reports_dropped
        );
    }
    if let Some(running) = &status.running {
        let _ = writeln!(
            out,
            "\nRunning: policy {} plan {} step {}: {}",
            running.policy, running.plan_id, running.index, running.step
        );
    }
    section(
        &mut out,
        "Last decisions",
        ["event", "kind", "policy", "module", "outcome", "detail"],
        |rows| {
            for decision in &status.last_decisions {
                rows.push(vec![
                    decision.event_id.to_string(),
                    decision.event.clone(),
                    decision.policy.clone(),
                    decision.module_hash.clone(),
                    decision.outcome.as_str().to_owned(),
                    decision.detail.join("; "),
                ]);
            }
        },
    );
    if let Some(reload) = &status.last_reload {
        let outcome = match &reload.outcome {
            ReloadOutcome::Loaded { changes } => format!("loaded: {}", changes.join("; ")),
            ReloadOutcome::Unchanged => "unchanged".to_owned(),
            ReloadOutcome::Rejected { reason } => {
                format!("REJECTED (the running policies stay): {reason}")
            }
        };
        let ago = status.uptime_ms.saturating_sub(reload.uptime_ms) / 1000;
        let _ = writeln!(
            out,
            "\nLast reload ({} loaded, {} rejected since start), {} ago, {}: {outcome}",
            status.reloads.loaded,
            status.reloads.rejected,
            humantime::format_duration(Duration::from_secs(ago)),
            reload.why
        );
    }
    section(
        &mut out,
        "Alerts",
        ["severity", "policy", "message"],
        |rows| {
            for alert in &status.alerts {
                rows.push(vec![
                    alert.severity.clone(),
                    alert.policy.clone().unwrap_or_else(|| "(host)".to_owned()),
                    alert.message.clone(),
                ]);
            }
        },
    );
    out
}

/// A state's name as Haven writes it elsewhere (`master`, `degraded`).
fn lower(value: impl std::fmt::Debug) -> String {
    format!("{value:?}").to_lowercase()
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// Wall-clock milliseconds as an RFC 3339 time in UTC, to the second.
pub(crate) fn utc(unix_ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// A titled table with aligned columns; "(none)" when `fill` adds no row.
pub(crate) fn section<const N: usize>(
    out: &mut String,
    title: &str,
    header: [&str; N],
    fill: impl FnOnce(&mut Vec<Vec<String>>),
) {
    let mut rows = Vec::new();
    fill(&mut rows);
    // Cells hold text from policies and the system: escaped, and cut to fit a screen.
    for cell in rows.iter_mut().flatten() {
        *cell = escape(&clip(cell, MAX_CELL_BYTES)).into_owned();
    }
    let _ = writeln!(out, "\n{title}:");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(text, " {cell:<width$}");
        }
        text.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// The most of one cell `havenctl status` shows.
const MAX_CELL_BYTES: usize = 1024;

/// `havenctl log`: one line per journal record. The line is escaped whole: alerts, reasons,
/// names and bad input are text from outside, and a newline or an escape sequence in them
/// must not forge a line or reach the terminal.
pub fn render_record(record: &Record) -> String {
    let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(record.at));
    let what = match &record.entry {
        Entry::Event {
            event_id,
            source,
            event,
            coalesced,
        } => {
            let coalesced = match coalesced {
                0 => String::new(),
                n => format!(" (superseded {n} older)"),
            };
            format!(
                "event {event_id} from {source}: {}{coalesced}",
                summarize_event(event)
            )
        }
        Entry::Decision {
            event_id,
            policy,
            module_hash,
            outcome,
            plan_id,
            plan,
            reason,
            elapsed_us,
            ..
        } => {
            let mut text = format!(
                "decision on event {event_id} by {policy}@{} in {elapsed_us} µs: {}",
                haven_runtime::pipeline::short_hash(module_hash),
                outcome.as_str()
            );
            if let (Some(plan_id), Some(plan)) = (plan_id, plan) {
                let steps: Vec<String> = plan.steps.iter().map(ToString::to_string).collect();
                let _ = write!(text, " {plan_id}: {}", steps.join("; "));
            }
            if let Some(reason) = reason {
                let _ = write!(text, ": {reason}");
            }
            text
        }
        Entry::StepStart {
            plan_id,
            policy,
            index,
            step,
        } => format!("step {plan_id}.{index} ({policy}) start: {step}"),
        Entry::StepEnd {
            plan_id,
            policy,
            index,
            ok,
            skipped_as_done,
            detail,
            fencing_token,
            duration_us,
        } => {
            let detail = match (fencing_token, detail) {
                (Some(token), Some(detail)) => Some(format!("fencing token {token}; {detail}")),
                (Some(token), None) => Some(format!("fencing token {token}")),
                (None, detail) => detail.clone(),
            };
            let result = match (ok, skipped_as_done) {
                (true, true) => "already done",
                (true, false) => "ok",
                (false, _) => "FAILED",
            };
            let detail = detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            format!("step {plan_id}.{index} ({policy}) {result} in {duration_us} µs{detail}")
        }
        Entry::PlanEnd {
            plan_id,
            policy,
            completed,
        } => format!(
            "plan {plan_id} ({policy}) {}",
            if *completed { "completed" } else { "abandoned" }
        ),
        Entry::Alert {
            policy,
            severity,
            message,
        } => format!(
            "ALERT {} from {}: {message}",
            match severity {
                haven_core::AlertSeverity::Critical => "critical",
                haven_core::AlertSeverity::Warning => "warning",
            },
            policy.as_deref().unwrap_or("host")
        ),
        Entry::BadInput {
            source,
            reason,
            text,
        } => format!("bad input from {source}: {reason}: {text:?}"),
        Entry::Reload {
            why,
            result,
            changes,
            policies,
            reason,
        } => {
            let mut text = format!("reload ({why}): {result}");
            if !changes.is_empty() {
                let _ = write!(text, ": {}", changes.join("; "));
            }
            if !policies.is_empty() {
                let _ = write!(text, "; now {}", policies.join(", "));
            }
            if let Some(reason) = reason {
                let _ = write!(text, ": {reason}");
            }
            text
        }
        Entry::Note { message } => message.clone(),
    };
    escape(&format!("{at} #{} {what}", record.seq)).into_owned()
}
