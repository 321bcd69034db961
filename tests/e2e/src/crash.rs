//! The master crash (scenario 2), shared by its test, the live demo and the benchmark: a
//! client writes through the shared address, the serving host loses power, the other takes
//! over; then every acknowledged row is looked for, and the failover is timed from the rig's
//! timeline.

use crate::RigError;
use crate::log::{Line, Log};
use crate::mariadb::{self, Prober, Writer};
use crate::rig::{Failover, Rig, Side, VIP, wait_until};
use std::time::Duration;

/// How long a failover may take before the rig gives up: CARP's detection (about 3 s) plus
/// fsck, mount and MariaDB's crash recovery, on a loaded machine.
pub const FAILOVER_LIMIT: Duration = Duration::from_secs(60);
/// Rows acknowledged before the crash, so the client is known to be writing.
const ROWS_BEFORE: usize = 20;

/// What a crash cost.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// Rows the server acknowledged, before and after the crash.
    pub acked: usize,
    /// Acknowledged rows missing afterwards (the goal: none).
    pub lost: Vec<u64>,
    /// Inserts tried (acknowledged or not).
    pub tried: u64,
    /// When the power was cut, and when the database answered again (the rig's clock).
    pub cut: Duration,
    pub serving: Duration,
    pub times: FailoverTimes,
}

/// A failover's timeline, measured on the rig's clock.
#[derive(Debug, Clone, Default)]
pub struct FailoverTimes {
    /// Power cut to the survivor's ucarp switching to MASTER: CARP's own detection.
    pub carp_detection: Duration,
    /// ucarp's MASTER to the first step of havend's plan: the up script, the hook, the
    /// queue, the policy's decision and the journal. (For the seed script: to its first
    /// command after its fixed sleep, i.e. including it.)
    pub reaction: Duration,
    /// Of that, havend's own part: the event taken off its queue to the first step.
    pub decision: Option<Duration>,
    /// Each step of the promotion and how long it took (havend's journal).
    pub steps: Vec<(String, Duration)>,
    /// Power cut to the database answering on the shared address.
    pub total: Duration,
}

impl FailoverTimes {
    /// The times as a few lines for a person.
    pub fn render(&self) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let mut text = format!(
            "  CARP detection (ucarp, power cut to MASTER)   {}\n  \
             reaction (MASTER to the plan's first step)     {}\n",
            ms(self.carp_detection),
            ms(self.reaction)
        );
        if let Some(decision) = self.decision {
            text += &format!(
                "    of which havend (event to first step)       {}\n",
                ms(decision)
            );
        }
        for (step, took) in &self.steps {
            text += &format!("  step {step:<40} {}\n", ms(*took));
        }
        text += &format!(
            "  total (power cut to the database answering)  {}\n",
            ms(self.total)
        );
        text
    }
}

/// Crash the host serving now (`victim`) while a client writes, and wait for the other to
/// serve. `prober` asks the database on the shared address.
pub fn crash(rig: &mut Rig, victim: Side, prober: &Prober) -> Result<CrashReport, RigError> {
    let survivor = victim.peer();
    let writer = Writer::start(rig.client(), VIP);
    if !wait_until(FAILOVER_LIMIT, || writer.acked_count() >= ROWS_BEFORE) {
        return Err(RigError::new("the client could not write before the crash"));
    }
    let before = writer.acked_count();
    let cut = rig.log.now();
    rig.power_off(victim);
    if !prober.wait_answering(FAILOVER_LIMIT) {
        return Err(RigError::new(format!(
            "{} did not serve within {FAILOVER_LIMIT:?}",
            survivor.name()
        )));
    }
    let serving = rig.log.now();
    rig.log
        .note(format!("the database answers again ({})", survivor.name()));
    // Let the writer get a few rows through the new server before stopping it.
    if !wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5) {
        return Err(RigError::new(
            "the client could not write after the failover",
        ));
    }
    let (acked, tried) = writer.finish();
    let lost = mariadb::missing(rig.client(), VIP, &acked)?;
    if rig.failover() == Failover::Haven {
        // The database answers before `service start` returns: let the plan end, so that
        // every step's time is in the journal.
        let ended = |rig: &Rig| {
            let journal = rig.journal(survivor);
            let count = |kind: &str| journal.iter().filter(|e| e["kind"] == kind).count();
            count("step-start") == count("step-end")
        };
        if !wait_until(FAILOVER_LIMIT, || ended(rig)) {
            return Err(RigError::new(format!(
                "{}'s plan never ended",
                survivor.name()
            )));
        }
    }
    let times = timeline(rig, survivor, cut, serving)?;
    Ok(CrashReport {
        acked: acked.len(),
        lost,
        tried,
        cut,
        serving,
        times,
    })
}

/// Read the failover's times from the log (and `survivor`'s journal, under havend).
fn timeline(
    rig: &Rig,
    survivor: Side,
    cut: Duration,
    serving: Duration,
) -> Result<FailoverTimes, RigError> {
    let log: &Log = &rig.log;
    let name = survivor.name();
    let master = log
        .find(cut, &format!("{name}/ucarp"), "MASTER")
        .ok_or_else(|| RigError::new(format!("{name}'s ucarp never said MASTER")))?;
    let (first_step, decision) = match rig.failover() {
        Failover::Haven => {
            let source = format!("{name}/havend");
            let event: Option<Line> = log.find(master.at, &source, " event ");
            let step = log
                .find(master.at, &source, "step started")
                .ok_or_else(|| RigError::new(format!("{name}'s havend started no step")))?;
            let decision = event.map(|event| step.at.saturating_sub(event.at));
            (step, decision)
        }
        Failover::SeedScript => (
            log.find(
                master.at,
                &format!("{name}/ucarp"),
                "carp-hast-switch: hastctl role primary",
            )
            .ok_or_else(|| RigError::new(format!("{name}'s script never switched")))?,
            None,
        ),
    };
    Ok(FailoverTimes {
        carp_detection: master.at.saturating_sub(cut),
        reaction: first_step.at.saturating_sub(master.at),
        decision,
        steps: promotion_steps(rig, survivor),
        total: serving.saturating_sub(cut),
    })
}

/// The steps of the last plan `side`'s havend ran (its promotion, after a failover), with
/// their durations.
pub fn promotion_steps(rig: &Rig, side: Side) -> Vec<(String, Duration)> {
    let journal = rig.journal(side);
    let Some(plan) = journal
        .iter()
        .rev()
        .find(|entry| entry["kind"] == "step-start")
        .and_then(|entry| entry["plan-id"].as_u64())
    else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    let mut started = None;
    for entry in &journal {
        if entry["plan-id"].as_u64() != Some(plan) {
            continue;
        }
        match entry["kind"].as_str() {
            Some("step-start") => started = Some(step_text(&entry["step"])),
            Some("step-end") => {
                let took = Duration::from_micros(entry["duration-us"].as_u64().unwrap_or(0));
                steps.push((started.take().unwrap_or_default(), took));
            }
            _ => {}
        }
    }
    steps
}

/// A journal step as one line, the way havend logs it (`fsck ext4 /dev/hast/test preen …`).
pub fn step_text(step: &serde_json::Value) -> String {
    serde_json::from_value::<haven_core::Step>(step.clone())
        .map(|step| step.to_string())
        .unwrap_or_else(|_| step.to_string())
}
