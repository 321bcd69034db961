//! What carries out one step of a checked plan, and the executor that only pretends to.
//!
//! The [`Runner`](crate::Runner) decides *when* steps run (in order, one plan at a time, the
//! first failure stops the plan); an [`Executor`] decides *how* one step is done on a given
//! system. Keeping the two apart means the ordering rules are written once and tested with the
//! [`DryRun`] executor, and each real backend (FreeBSD, Linux) only has to know its commands.
//!
//! Every step reaches the executor, host-side ones too (timers and alerts only change Haven's
//! own state, which the runner updates when the executor reports success): real backends
//! answer those with [`StepOutcome::done`] at once, see [`is_host_side`], while the dry-run
//! executor can fail any step it is told to.

use haven_core::{Action, Machine, Step};
use serde::Deserialize;

/// Whether a step only changes Haven's own state (timers, alerts): nothing to run.
pub fn is_host_side(step: &Step) -> bool {
    matches!(
        step.action,
        Action::SetTimer(_) | Action::CancelTimer(_) | Action::Alert(_)
    )
}

/// What came of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// `Err` holds the failure reason the policy is told (command, exit status, stderr).
    pub result: Result<(), String>,
    /// The step's goal already held, so nothing was run.
    pub skipped_as_done: bool,
    /// What was run or checked, for the journal (e.g. the command line).
    pub detail: Option<String>,
    /// The witness's fencing token this step ran under (a step that makes this host a
    /// writer, with `[witness]` configured: see [`crate::fence`]).
    pub fencing_token: Option<u64>,
}

impl StepOutcome {
    /// The step was carried out.
    pub fn done(detail: impl Into<Option<String>>) -> StepOutcome {
        StepOutcome {
            result: Ok(()),
            skipped_as_done: false,
            detail: detail.into(),
            fencing_token: None,
        }
    }

    /// The step's goal already held; nothing ran.
    pub fn already_done(detail: impl Into<String>) -> StepOutcome {
        StepOutcome {
            result: Ok(()),
            skipped_as_done: true,
            detail: Some(detail.into()),
            fencing_token: None,
        }
    }

    /// The step failed for `reason`.
    pub fn failed(reason: impl Into<String>, detail: impl Into<Option<String>>) -> StepOutcome {
        StepOutcome {
            result: Err(reason.into()),
            skipped_as_done: false,
            detail: detail.into(),
            fencing_token: None,
        }
    }

    /// Whether the step succeeded (carried out or already done).
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Carries out steps on one kind of system.
pub trait Executor: Send {
    /// A short name for logs and status: `dry-run`, `freebsd`, `linux`.
    fn name(&self) -> &'static str;

    /// Whether steps change the real system. When they do, everything journaled so far must be
    /// on disk before a step starts.
    fn acts_on_system(&self) -> bool;

    /// A plan is about to start.
    fn begin_plan(&mut self) {}

    /// Carry out one step of `policy`'s plan. `machine` is Haven's model as it stands before
    /// the step; the runner updates it from the outcome.
    fn run_step(&mut self, policy: &str, step: &Step, machine: &Machine) -> StepOutcome;
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn acts_on_system(&self) -> bool {
        (**self).acts_on_system()
    }

    fn begin_plan(&mut self) {
        (**self).begin_plan()
    }

    fn run_step(&mut self, policy: &str, step: &Step, machine: &Machine) -> StepOutcome {
        (**self).run_step(policy, step, machine)
    }
}

/// A step failure to inject into the next plan the [`DryRun`] executor carries out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InjectedFailure {
    /// Index of the step that fails, from 0.
    pub step: u32,
    /// The reason reported to the policy.
    pub reason: String,
}

/// Runs nothing: every step succeeds (the runner applies it to the model), except a failure
/// injected for the next plan. For `havenctl simulate` and `test`, and for a first deployment
/// in monitor mode, where the journal shows what Haven *would* have run.
#[derive(Debug, Default)]
pub struct DryRun {
    /// Fails one step of the next plan, then is used up.
    pub fail_next: Option<InjectedFailure>,
    current: Option<InjectedFailure>,
    index: u32,
}

impl DryRun {
    /// A dry-run executor with nothing injected.
    pub fn new() -> DryRun {
        DryRun::default()
    }
}

impl Executor for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn acts_on_system(&self) -> bool {
        false
    }

    fn begin_plan(&mut self) {
        self.current = self.fail_next.take();
        self.index = 0;
    }

    fn run_step(&mut self, _policy: &str, step: &Step, _machine: &Machine) -> StepOutcome {
        let index = self.index;
        self.index += 1;
        match &self.current {
            Some(injected) if injected.step == index => {
                StepOutcome::failed(injected.reason.clone(), None)
            }
            _ => {
                tracing::info!(step = %step, "dry run: would run");
                StepOutcome::done(None)
            }
        }
    }
}
