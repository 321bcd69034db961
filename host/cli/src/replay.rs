//! `havenctl replay`: decide the journal's recorded events again with a candidate module, and
//! show every decision it would make differently.
//!
//! The reload check catches a module that does not load, not one that loads and decides
//! otherwise; that one would show itself at the next real failover. Replay shows it now. It
//! works because a policy has no inputs but the event, its settings and grants, and what its
//! queries read: the machine and its own store. havend journals those with each decision
//! (`[daemon] journal-inputs`, see `haven_runtime::DecisionInputs`), and replay hands the
//! candidate the same ones, then runs the plan through the same grants check
//! ([`haven_runtime::decide_once`]). So a candidate identical to the running module reproduces
//! every recorded decision exactly, which is how replay tests itself, and catches a policy that
//! is not deterministic.
//!
//! What replay cannot know: how the candidate's *own* store would have evolved. It is handed
//! the store the running module had at each event, which is right for a new version that
//! keeps the store's keys, and an approximation otherwise.

use crate::simulate::summarize_event;
use haven_core::text::{clip, escape};
use haven_core::{Event, Plan};
use haven_daemon::journal::{DecisionOutcome, Entry, Record};
use haven_runtime::{DecisionInputs, LoadedPolicy, Outcome, Runtime, decide_once};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The most of an event's summary shown with a difference.
const EVENT_SHOWN_BYTES: usize = 240;

/// A decision, as replay compares them: what it asked for, not its plan id or timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    NoAction,
    Plan(Plan),
    Refused(String),
    Failed(String),
}

impl Verdict {
    /// What the journal says was decided; `None` for an entry too damaged to say.
    fn recorded(outcome: DecisionOutcome, plan: Option<&Plan>, reason: Option<&str>) -> Verdict {
        let reason = || reason.unwrap_or("(no reason recorded)").to_owned();
        match outcome {
            DecisionOutcome::NoAction => Verdict::NoAction,
            DecisionOutcome::Plan => Verdict::Plan(plan.cloned().unwrap_or_default()),
            DecisionOutcome::Refused => Verdict::Refused(reason()),
            DecisionOutcome::Failed => Verdict::Failed(reason()),
        }
    }

    fn decided(outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::NoAction => Verdict::NoAction,
            Outcome::Plan { plan, .. } => Verdict::Plan(plan),
            Outcome::Refused(refusal) => Verdict::Refused(refusal.to_string()),
            Outcome::Failed(failure) => Verdict::Failed(failure.to_string()),
        }
    }

    /// One line per step of a plan, else one line; escaped (a policy wrote them).
    fn lines(&self) -> Vec<String> {
        match self {
            Verdict::NoAction => vec!["(no action)".to_owned()],
            Verdict::Plan(plan) => plan
                .steps
                .iter()
                .map(|step| escape(&step.to_string()).into_owned())
                .collect(),
            Verdict::Refused(reason) => vec![format!("(plan refused: {})", escape(reason))],
            Verdict::Failed(reason) => vec![format!("(call failed: {})", escape(reason))],
        }
    }
}

/// One decision the candidate makes differently.
#[derive(Debug, Clone)]
pub struct Difference {
    pub event_id: u64,
    /// When the decision was journaled, in Unix milliseconds.
    pub at_unix_ms: u64,
    pub event: Event,
    /// The module that decided then.
    pub recorded_module: String,
    pub recorded: Verdict,
    pub candidate: Verdict,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Decisions decided again.
    pub replayed: usize,
    /// Of those, decided differently.
    pub differences: Vec<Difference>,
    /// The policy's decisions journaled without their inputs, not replayed.
    pub without_inputs: usize,
    /// Decisions whose event is not in the journal (rotated away), not replayed.
    pub without_event: usize,
    /// Recorded decisions per module hash (short), among those replayed.
    pub modules: BTreeMap<String, usize>,
    /// Time spent deciding.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Decisions re-decided per second.
    pub fn rate(&self) -> f64 {
        self.replayed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Decide again, with `candidate`, every decision of the policy named like it in `records`
/// journaled at or after `since_unix_ms`.
pub fn replay(
    runtime: &Runtime,
    candidate: &LoadedPolicy,
    records: &[Record],
    since_unix_ms: Option<u64>,
) -> ReplayReport {
    let mut events: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut report = ReplayReport::default();
    let started = Instant::now();
    for record in records {
        match &record.entry {
            Entry::Event {
                event_id, event, ..
            } => {
                events.insert(*event_id, event);
            }
            Entry::Decision {
                event_id,
                policy,
                module_hash,
                outcome,
                plan,
                reason,
                inputs,
                ..
            } if *policy == candidate.name
                && since_unix_ms.is_none_or(|since| record.at >= since) =>
            {
                let Some(inputs) = inputs else {
                    report.without_inputs += 1;
                    continue;
                };
                let Some(event) = events.get(event_id) else {
                    report.without_event += 1;
                    continue;
                };
                let recorded = Verdict::recorded(*outcome, plan.as_ref(), reason.as_deref());
                let candidate_verdict = decide(runtime, candidate, event, inputs);
                report.replayed += 1;
                *report
                    .modules
                    .entry(haven_runtime::pipeline::short_hash(module_hash).to_owned())
                    .or_default() += 1;
                if candidate_verdict != recorded {
                    report.differences.push(Difference {
                        event_id: *event_id,
                        at_unix_ms: record.at,
                        event: (*event).clone(),
                        recorded_module: module_hash.clone(),
                        recorded,
                        candidate: candidate_verdict,
                    });
                }
            }
            _ => {}
        }
    }
    report.elapsed = started.elapsed();
    report
}

fn decide(
    runtime: &Runtime,
    policy: &LoadedPolicy,
    event: &Event,
    inputs: &DecisionInputs,
) -> Verdict {
    let (outcome, _call) = decide_once(runtime, policy, event, inputs, || 0);
    Verdict::decided(outcome)
}

/// The report as `havenctl replay` prints it: each difference as a diff of the plans, then a
/// summary.
pub fn render(report: &ReplayReport, candidate: &LoadedPolicy) -> String {
    let mut out = String::new();
    for difference in &report.differences {
        render_difference(&mut out, difference);
    }
    let modules = report
        .modules
        .iter()
        .map(|(module, count)| format!("{module} ({count})"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "policy `{}`: {} recorded decision(s) replayed with module {} in {} ms ({:.0} per \
         second): {} differ{}",
        candidate.name,
        report.replayed,
        haven_runtime::pipeline::short_hash(&candidate.compiled.module_hash),
        report.elapsed.as_millis(),
        report.rate(),
        report.differences.len(),
        if modules.is_empty() {
            String::new()
        } else {
            format!("; recorded by module(s) {modules}")
        }
    );
    if report.without_inputs > 0 {
        let _ = writeln!(
            out,
            "{} decision(s) not replayed: journaled without their inputs ([daemon] \
             journal-inputs = false, or an older havend)",
            report.without_inputs
        );
    }
    if report.without_event > 0 {
        let _ = writeln!(
            out,
            "{} decision(s) not replayed: their event was rotated out of the journal",
            report.without_event
        );
    }
    out
}

fn render_difference(out: &mut String, difference: &Difference) {
    let _ = writeln!(
        out,
        "event {} at {}: {}\n  recorded (module {}) vs candidate:",
        difference.event_id,
        crate::daemon_view::utc(difference.at_unix_ms),
        escape(&clip(
            &summarize_event(&difference.event),
            EVENT_SHOWN_BYTES
        )),
        haven_runtime::pipeline::short_hash(&difference.recorded_module),
    );
    let recorded = difference.recorded.lines();
    let candidate = difference.candidate.lines();
    for (mark, line) in diff_lines(&recorded, &candidate) {
        let _ = writeln!(out, "  {mark} {line}");
    }
    out.push('\n');
}

/// A line diff of two short lists (a plan has at most a few dozen steps): `-` recorded only,
/// `+` candidate only, ` ` both, by longest common subsequence.
fn diff_lines<'a>(old: &'a [String], new: &'a [String]) -> Vec<(char, &'a str)> {
    let (n, m) = (old.len(), new.len());
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            lines.push((' ', old[i].as_str()));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', old[i].as_str()));
            i += 1;
        } else {
            lines.push(('+', new[j].as_str()));
            j += 1;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn a_plan_diff_keeps_common_steps_and_marks_the_rest() {
        let old = lines(&["hast-role r primary", "fsck /dev/hast/r", "mount r"]);
        let new = lines(&[
            "hast-role r primary",
            "wait-device /dev/hast/r",
            "fsck /dev/hast/r",
            "mount r",
        ]);
        assert_eq!(
            diff_lines(&old, &new),
            vec![
                (' ', "hast-role r primary"),
                ('+', "wait-device /dev/hast/r"),
                (' ', "fsck /dev/hast/r"),
                (' ', "mount r"),
            ]
        );
        assert_eq!(
            diff_lines(&lines(&["(no action)"]), &lines(&["a"])),
            vec![('-', "(no action)"), ('+', "a")]
        );
    }
}
