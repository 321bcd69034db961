//! Scenario tests: a policy's behaviour written down as TOML and checked on the real runtime.
//!
//! A scenario file gives the policy's grants and settings, the machine's starting state and
//! key-value store, and a list of cases. Each case moves virtual time to `at-ms` (firing due
//! timers), applies explicit state changes, delivers its event (or, without one, expects the
//! timers that fire), and compares what the policy decided with what the case expects:
//!
//! ```toml
//! [settings]
//! vhid = 1
//! [grants]
//! services = ["mysql-server"]
//! [state]
//! carp = [{ vhid = 1, interface = "em0", state = "backup" }]
//! services = { mysql-server = false }
//!
//! [[case]]
//! name = "master starts the service"
//! at-ms = 1000
//! event = { carp-changed = { vhid = 1, interface = "em0", state = "master" } }
//! expect = "plan"                       # or "no-action", "refused", "failed"
//! plan = ["service start mysql-server"] # exact; an alert line ending in `*` matches a prefix
//! # reason = "..."                      # refused/failed: a part of the reason
//! # fail = { step = 0, reason = "exit 1" }   # inject a step failure into the plan
//! # after-failure = ["alert critical *"]      # the policy's answer to that failure
//! # change = { services = { mysql-server = true } }  # state changes before the event
//! # kv = { "key" = "value" }  /  kv-absent = ["key"]  # the store after the case
//! ```
//!
//! Accepted plans are applied to the model (dry run) before the next case.

use crate::driver::{InjectedFailure, Record, SimHost};
use haven_core::{Config, Event, Grants, Machine, PolicyConfig, StateChange, Step};
use haven_runtime::{CompiledPolicy, Outcome, Pipeline, Runtime};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    state: Machine,
    #[serde(default)]
    kv: BTreeMap<String, String>,
    #[serde(default)]
    startup: bool,
    case: Vec<Case>,
}

/// What a case expects of the policy's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Expect {
    Plan,
    NoAction,
    Refused,
    Failed,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    at_ms: Option<u64>,
    #[serde(default)]
    event: Option<Event>,
    #[serde(default)]
    change: Option<StateChange>,
    #[serde(default)]
    fail: Option<InjectedFailure>,
    expect: Expect,
    #[serde(default)]
    plan: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    after_failure: Option<Vec<String>>,
    #[serde(default)]
    kv: BTreeMap<String, String>,
    #[serde(default)]
    kv_absent: Vec<String>,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseReport {
    pub name: String,
    /// Empty when the case passed; otherwise what differed, ready to print.
    pub problems: Vec<String>,
}

/// The results of one scenario file.
#[derive(Debug)]
pub struct FileReport {
    pub path: String,
    pub description: Option<String>,
    /// A problem with the file itself (unreadable, bad TOML, settings rejected).
    pub error: Option<String>,
    pub cases: Vec<CaseReport>,
}

impl FileReport {
    /// Cases passed and failed; a broken file counts as one failure.
    pub fn counts(&self) -> (usize, usize) {
        let failed = self.cases.iter().filter(|c| !c.problems.is_empty()).count();
        let broken = usize::from(self.error.is_some());
        (self.cases.len() - failed, failed + broken)
    }

    /// The report as printed by `havenctl test`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let description = self
            .description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{description}", self.path);
        if let Some(error) = &self.error {
            let _ = writeln!(out, "  ERROR {error}");
        }
        for case in &self.cases {
            let verdict = if case.problems.is_empty() {
                "PASS"
            } else {
                "FAIL"
            };
            let _ = writeln!(out, "  {verdict}  {}", case.name);
            for problem in &case.problems {
                for line in problem.lines() {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
        out
    }
}

/// Run one scenario file against a compiled policy.
pub fn run_file(runtime: &Arc<Runtime>, compiled: &CompiledPolicy, path: &Path) -> FileReport {
    let mut report = FileReport {
        path: path.display().to_string(),
        description: None,
        error: None,
        cases: Vec::new(),
    };
    let parsed = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read: {error}"))
        .and_then(|text| parse(&text, path));
    let (scenario, config) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            report.error = Some(error);
            return report;
        }
    };
    report.description = scenario.description.clone();
    let policy = match runtime.configure(compiled.clone(), &config) {
        Ok(policy) => policy,
        Err(error) => {
            report.error = Some(format!("policy not loaded: {error}"));
            return report;
        }
    };
    let name = policy.name.clone();
    let mut pipeline = Pipeline::new(runtime.clone(), vec![policy], scenario.state.clone());
    pipeline.set_kv(&name, scenario.kv.clone());
    let mut host = SimHost::new(pipeline);
    if scenario.startup {
        let mut records = Vec::new();
        host.startup(&mut None, &mut records);
        if let Some(outcome) = decisions(&records, &name)
            .into_iter()
            .find(|o| is_failure(o))
        {
            report.error = Some(format!("startup: the policy {}", describe(outcome)));
        }
    }
    for case in &scenario.case {
        report.cases.push(run_case(&mut host, &name, case));
    }
    report
}

/// A scenario file's text, read: the scenario, and its policy's config entry (grants, limits
/// and settings checked as in `haven.toml`). `path` names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<(ScenarioFile, PolicyConfig), String> {
    let scenario: ScenarioFile = toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1)
            .map(|line| format!("line {line}: "))
            .unwrap_or_default();
        format!("{line}{}", error.message())
    })?;
    let config = policy_config(&scenario, path)?;
    Ok((scenario, config))
}

/// Scenarios check decisions, not speed: unless a scenario sets its own, calls get this
/// deadline rather than the daemon's 50 ms, so a loaded test machine cannot fail a case.
const SCENARIO_DEADLINE_MS: i64 = 1000;

/// The scenario's policy as a config entry, so grants and limits are checked as in
/// `haven.toml`.
fn policy_config(scenario: &ScenarioFile, path: &Path) -> Result<PolicyConfig, String> {
    let mut limits = scenario.limits.clone();
    limits
        .entry("deadline-ms")
        .or_insert(toml::Value::Integer(SCENARIO_DEADLINE_MS));
    let mut table = toml::Table::new();
    table.insert("name".into(), "policy".into());
    table.insert("module".into(), "scenario".into());
    table.insert("settings".into(), scenario.settings.clone().into());
    table.insert("limits".into(), limits.into());
    let grants = toml::Value::try_from(&scenario.grants).map_err(|e| e.to_string())?;
    table.insert("grants".into(), grants);
    let mut root = toml::Table::new();
    root.insert("policy".into(), toml::Value::Array(vec![table.into()]));
    // A vhid the policy may demote needs a `[[carp]]` entry; a scenario acts on nothing, so
    // each granted vhid gets one on the interface the state names (a documentation address).
    let carp: Vec<toml::Value> = scenario
        .grants
        .carp_vhids
        .iter()
        .map(|vhid| {
            let interface = scenario
                .state
                .carp
                .get(vhid)
                .map_or_else(|| format!("carp{vhid}"), |carp| carp.interface.clone());
            let mut entry = toml::Table::new();
            entry.insert("vhid".into(), i64::from(*vhid).into());
            entry.insert("interface".into(), interface.into());
            entry.insert("address".into(), format!("192.0.2.{vhid}").into());
            entry.into()
        })
        .collect();
    root.insert("carp".into(), toml::Value::Array(carp));
    let text = toml::to_string(&root).map_err(|e| e.to_string())?;
    let mut config = Config::parse(&text, path).map_err(|error| error.message)?;
    Ok(config.policies.remove(0))
}

fn run_case(host: &mut SimHost, policy: &str, case: &Case) -> CaseReport {
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut failure = case.fail.clone();
    let at_ms = case.at_ms.unwrap_or(host.pipeline().machine().now_ms);
    match &case.event {
        Some(event) => {
            let mut before = Vec::new();
            host.advance_to(at_ms, &mut before);
            for outcome in decisions(&before, policy) {
                if *outcome != Outcome::NoAction {
                    problems.push(format!(
                        "a timer fired before this case's event and the policy decided {}; \
                         expect it in a case without `event` at its due time",
                        describe(outcome)
                    ));
                }
            }
            if let Some(change) = &case.change {
                host.pipeline_mut().machine_mut().change(change);
            }
            host.deliver(event.clone(), None, &mut failure, &mut records);
        }
        None => {
            if let Some(change) = &case.change {
                host.pipeline_mut().machine_mut().change(change);
            }
            host.advance_to(at_ms, &mut records);
        }
    }
    let decisions = decisions(&records, policy);
    let first = decisions.first().copied().unwrap_or(&Outcome::NoAction);
    check_outcome(
        case.expect,
        &case.plan,
        case.reason.as_deref(),
        first,
        &mut problems,
    );
    if let Some(expected) = &case.after_failure {
        match decisions.get(1) {
            Some(answer) => check_outcome(Expect::Plan, expected, None, answer, &mut problems),
            None => problems
                .push("expected an answer to the injected failure; the policy got none".into()),
        }
    }
    let kv = host.pipeline().kv(policy);
    for (key, value) in &case.kv {
        if kv.get(key) != Some(value) {
            problems.push(format!(
                "kv `{key}`: expected {value:?}, found {:?}",
                kv.get(key)
            ));
        }
    }
    for key in &case.kv_absent {
        if let Some(value) = kv.get(key) {
            problems.push(format!("kv `{key}`: expected absent, found {value:?}"));
        }
    }
    CaseReport {
        name: case.name.clone(),
        problems,
    }
}

/// The outcomes of a policy's decisions among the records, in order.
fn decisions<'a>(records: &'a [Record], policy: &str) -> Vec<&'a Outcome> {
    records
        .iter()
        .filter_map(|record| match record {
            Record::Decision(decision) if decision.policy == policy => Some(&decision.outcome),
            _ => None,
        })
        .collect()
}

fn is_failure(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_))
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NoAction => "no action".into(),
        Outcome::Plan { plan, .. } => format!("a plan of {} steps", plan.steps.len()),
        Outcome::Refused(refusal) => format!("refused: {refusal}"),
        Outcome::Failed(failure) => format!("failed: {failure}"),
    }
}

fn check_outcome(
    expect: Expect,
    expected_plan: &[String],
    reason: Option<&str>,
    actual: &Outcome,
    problems: &mut Vec<String>,
) {
    match (expect, actual) {
        (Expect::NoAction, Outcome::NoAction) => {}
        (Expect::Plan, Outcome::Plan { plan, .. }) => {
            if let Some(diff) = plan_diff(expected_plan, &plan.steps) {
                problems.push(diff);
            }
        }
        (Expect::Plan, Outcome::NoAction) if expected_plan.is_empty() => {}
        (Expect::Refused, Outcome::Refused(refusal)) => {
            check_reason(reason, refusal.to_string(), problems)
        }
        (Expect::Failed, Outcome::Failed(failure)) => {
            check_reason(reason, failure.to_string(), problems)
        }
        (expect, actual) => {
            let mut problem = format!("expected {expect:?}, got {}", describe(actual));
            if let Outcome::Plan { plan, .. } = actual {
                for step in &plan.steps {
                    let _ = write!(problem, "\n  + {step}");
                }
            }
            problems.push(problem);
        }
    }
}

fn check_reason(expected_part: Option<&str>, reason: String, problems: &mut Vec<String>) {
    if let Some(part) = expected_part.filter(|part| !reason.contains(part)) {
        problems.push(format!("reason does not contain {part:?}: {reason}"));
    }
}

/// Whether an expected line matches a step: exactly, or for an alert ending in `*`, by prefix.
fn line_matches(expected: &str, actual: &Step) -> bool {
    let actual = actual.to_string();
    match expected.strip_suffix('*') {
        Some(prefix) if expected.starts_with("alert ") => actual.starts_with(prefix),
        _ => expected == actual,
    }
}

/// A readable diff of expected and actual plans, or `None` when they match.
fn plan_diff(expected: &[String], actual: &[Step]) -> Option<String> {
    let matches = expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(e, a)| line_matches(e, a));
    if matches {
        return None;
    }
    // Show wildcard lines as the actual line they matched, so only real differences show.
    let actual_lines: Vec<String> = actual.iter().map(Step::to_string).collect();
    let expected_lines: Vec<String> = expected
        .iter()
        .enumerate()
        .map(|(i, line)| match actual.get(i) {
            Some(step) if line_matches(line, step) => step.to_string(),
            _ => line.clone(),
        })
        .collect();
    let expected_refs: Vec<&str> = expected_lines.iter().map(String::as_str).collect();
    let actual_refs: Vec<&str> = actual_lines.iter().map(String::as_str).collect();
    let diff = similar::TextDiff::from_slices(&expected_refs, &actual_refs);
    let mut out = String::from("plan differs (- expected, + actual):");
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Equal => ' ',
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
        };
        let _ = write!(out, "\n  {sign} {}", change.value());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(lines: &[&str]) -> Vec<Step> {
        lines.iter().map(|line| line.parse().unwrap()).collect()
    }

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn equal_plans_and_alert_wildcards_match() {
        let actual = steps(&[
            "service start db",
            "alert critical split-brain on test: do this",
        ]);
        assert_eq!(
            plan_diff(
                &strings(&["service start db", "alert critical split-brain*"]),
                &actual
            ),
            None
        );
    }

    #[test]
    fn a_difference_is_shown_line_by_line() {
        let actual = steps(&["hast-role test primary", "service start db"]);
        let diff = plan_diff(
            &strings(&[
                "hast-role test primary",
                "mount ufs /d /m",
                "service start db",
            ]),
            &actual,
        )
        .unwrap();
        assert_eq!(
            diff,
            "plan differs (- expected, + actual):\n    hast-role test primary\n  - mount ufs /d /m\n    service start db"
        );
    }

    #[test]
    fn wrong_outcome_kind_is_named() {
        let mut problems = Vec::new();
        check_outcome(
            Expect::NoAction,
            &[],
            None,
            &Outcome::Plan {
                plan_id: 1,
                plan: haven_core::Plan {
                    steps: steps(&["service stop db"]),
                },
            },
            &mut problems,
        );
        assert_eq!(
            problems,
            vec!["expected NoAction, got a plan of 1 steps\n  + service stop db"]
        );
    }
}
