//! The witness's guard on the storage: a step that makes this host a writer (HAST primary, a
//! mount) runs only once the fence is taken, and under its fencing token; once this host
//! holds no storage any more, the fence is let go at once, so that the peer need not wait
//! for a lease to run out.
//!
//! This is where the data flow's plan check meets the witness: the policies decide, the
//! fence only refuses. A refused step fails like any other, with the reason, and the policy
//! that made the plan hears of it (`step-failed`) and decides what next.

use crate::executor::{Executor, StepOutcome};
use haven_core::{Action, HastRole, Machine, Step};
use std::collections::BTreeSet;

/// Something that grants this host the right to write: the witness's leader key.
pub trait Fence: Send {
    /// Take it (or confirm it is held): the fencing token, or why not.
    fn take(&mut self) -> Result<u64, String>;
    /// This host holds no storage any more: let it go.
    fn let_go(&mut self);
}

/// Whether `step` makes this host a writer of the shared storage.
pub fn takes_storage(step: &Step) -> bool {
    match &step.action {
        Action::SetHastRole(set) => set.role == HastRole::Primary,
        Action::Mount(_) => true,
        _ => false,
    }
}

/// Whether this host holds any storage: a HAST resource in role primary, or a filesystem on
/// one of `mountpoints` (the granted ones: the machine's model has every mount of the host).
pub fn holds_storage(machine: &Machine, mountpoints: &BTreeSet<String>) -> bool {
    machine
        .hast
        .values()
        .any(|status| status.role == HastRole::Primary)
        || mountpoints
            .iter()
            .any(|mountpoint| machine.mounts.contains_key(mountpoint))
}

/// An executor whose storage-taking steps pass through a [`Fence`] first.
#[derive(Debug)]
pub struct Fenced<E, F> {
    inner: E,
    fence: F,
    /// The granted mountpoints: what counts as holding storage besides HAST's primary role.
    mountpoints: BTreeSet<String>,
}

impl<E, F> Fenced<E, F> {
    pub fn new(inner: E, fence: F, mountpoints: BTreeSet<String>) -> Fenced<E, F> {
        Fenced {
            inner,
            fence,
            mountpoints,
        }
    }
}

impl<E: Executor, F: Fence> Executor for Fenced<E, F> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn acts_on_system(&self) -> bool {
        self.inner.acts_on_system()
    }

    fn begin_plan(&mut self) {
        self.inner.begin_plan();
    }

    fn run_step(&mut self, policy: &str, step: &Step, machine: &Machine) -> StepOutcome {
        if takes_storage(step) {
            let token = match self.fence.take() {
                Ok(token) => token,
                Err(why) => {
                    tracing::warn!(%why, "the witness refused a step that takes the storage");
                    return StepOutcome::failed(format!("the witness refused: {why}"), None);
                }
            };
            tracing::info!(token, "fenced");
            let mut outcome = self.inner.run_step(policy, step, machine);
            outcome.fencing_token = Some(token);
            return outcome;
        }
        let outcome = self.inner.run_step(policy, step, machine);
        let gives_up = matches!(&step.action, Action::SetHastRole(_) | Action::Unmount(_));
        if outcome.ok() && gives_up {
            let mut after = machine.clone();
            after.apply(policy, step);
            if !holds_storage(&after, &self.mountpoints) {
                self.fence.let_go();
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DryRun;
    use std::sync::{Arc, Mutex};

    /// A fence that answers from a script and records what it was asked.
    #[derive(Debug, Clone, Default)]
    struct Scripted {
        refuse: Option<String>,
        asked: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Fence for Scripted {
        fn take(&mut self) -> Result<u64, String> {
            self.asked.lock().unwrap().push("take");
            self.refuse.clone().map_or(Ok(7), Err)
        }
        fn let_go(&mut self) {
            self.asked.lock().unwrap().push("let-go");
        }
    }

    fn step(line: &str) -> Step {
        line.parse().unwrap()
    }

    fn run(fence: &Scripted, machine: &mut Machine, line: &str) -> StepOutcome {
        let mountpoints = BTreeSet::from(["/hast/test".to_owned()]);
        let mut executor = Fenced::new(DryRun::new(), fence.clone(), mountpoints);
        let step = step(line);
        let outcome = executor.run_step("p", &step, machine);
        if outcome.ok() {
            machine.apply("p", &step);
        }
        outcome
    }

    #[test]
    fn taking_the_storage_needs_the_fence_and_carries_its_token() {
        let fence = Scripted::default();
        let mut machine = Machine::default();
        let outcome = run(&fence, &mut machine, "hast-role test primary");
        assert_eq!((outcome.ok(), outcome.fencing_token), (true, Some(7)));
        let outcome = run(&fence, &mut machine, "service start mysql-server");
        assert_eq!(outcome.fencing_token, None);
        assert_eq!(*fence.asked.lock().unwrap(), ["take"]);

        let refusing = Scripted {
            refuse: Some("held by hastb".to_owned()),
            ..Scripted::default()
        };
        let mut machine = Machine::default();
        let outcome = run(
            &refusing,
            &mut machine,
            "mount ufs /dev/hast/test /hast/test",
        );
        assert_eq!(
            outcome.result,
            Err("the witness refused: held by hastb".to_owned())
        );
        assert!(machine.mounts.is_empty(), "the refused step did not run");
    }

    #[test]
    fn the_fence_is_let_go_once_nothing_is_held() {
        let fence = Scripted::default();
        // Mounts that are not granted (the root filesystem, say) hold nothing.
        let mut machine = Machine::default();
        machine.mounts.insert(
            "/".to_owned(),
            haven_core::MountStatus {
                device: "/dev/ada0p2".to_owned(),
                mountpoint: "/".to_owned(),
                fstype: "ufs".to_owned(),
            },
        );
        run(&fence, &mut machine, "hast-role test primary");
        run(&fence, &mut machine, "mount ufs /dev/hast/test /hast/test");
        run(&fence, &mut machine, "unmount /hast/test");
        assert_eq!(
            *fence.asked.lock().unwrap(),
            ["take", "take"],
            "still primary"
        );
        run(&fence, &mut machine, "hast-role test secondary");
        assert_eq!(*fence.asked.lock().unwrap(), ["take", "take", "let-go"]);
    }
}
