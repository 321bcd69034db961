//! A planned switchover (issue 13), timed: `havenctl switchover` on the serving host while a
//! client writes, until the database answers on the other host; then every acknowledged row
//! is looked for. Shared by the switchover benchmark; the tests in `tests/operate.rs` assert
//! the same outcome.
//!
//! The parts come from the rig's timeline (ucarp's and havend's output) and both havends'
//! journals: the demotion here (the command to the end of its last step, `demote-carp`), the
//! hand-over (that to the peer's ucarp saying MASTER: ucarp's own pause and the peer's
//! master-down timer), the peer's reaction (MASTER to its first step), and its promotion (the
//! first step to the database answering).

use crate::RigError;
use crate::crash::{FAILOVER_LIMIT, promotion_steps};
use crate::mariadb::{self, Prober, Writer};
use crate::rig::{Rig, Side, VIP, wait_until};
use std::time::Duration;

/// Rows acknowledged before the switchover, so the client is known to be writing.
const ROWS_BEFORE: usize = 10;

/// What a switchover cost.
#[derive(Debug, Clone)]
pub struct SwitchoverReport {
    /// Rows acknowledged, and those missing afterwards (the goal: none).
    pub acked: usize,
    pub lost: Vec<u64>,
    /// `havenctl switchover`'s own output.
    pub output: String,
    /// The command to the end of this host's `demote-carp` step.
    pub demotion: Duration,
    /// That to the peer's ucarp saying MASTER.
    pub handover: Duration,
    /// The peer's MASTER to its first step.
    pub reaction: Duration,
    /// The peer's first step to the database answering on the shared address.
    pub promotion: Duration,
    /// The command to the database answering on the shared address.
    pub total: Duration,
    /// The steps on each side, with their durations (havend's journals).
    pub steps_here: Vec<(String, Duration)>,
    pub steps_there: Vec<(String, Duration)>,
}

fn missing(what: String) -> RigError {
    RigError::new(what)
}

/// Switch the service from `from` (serving now) to its peer while a client writes.
pub fn switchover(rig: &Rig, from: Side, prober: &Prober) -> Result<SwitchoverReport, RigError> {
    let to = from.peer();
    let writer = Writer::start(rig.client(), VIP);
    if !wait_until(FAILOVER_LIMIT, || writer.acked_count() >= ROWS_BEFORE) {
        return Err(missing(
            "the client could not write before the switchover".into(),
        ));
    }
    let log = &rig.log;
    let sent = log.now();
    let output = rig.havenctl(from, &["switchover", "--to", to.name()])?;
    if !prober.wait_answering(FAILOVER_LIMIT) {
        return Err(missing(format!("{} did not serve", to.name())));
    }
    let serving = log.now();
    let before = writer.acked_count();
    if !wait_until(FAILOVER_LIMIT, || writer.acked_count() >= before + 5) {
        return Err(missing(
            "the client could not write after the switchover".into(),
        ));
    }
    let (acked, _) = writer.finish();
    let lost = mariadb::missing(rig.client(), VIP, &acked)?;
    let here = format!("{}/havend", from.name());
    let there = format!("{}/havend", to.name());
    let demoted = log
        .lines()
        .into_iter()
        .find(|line| {
            line.at >= sent
                && line.source == here
                && line.text.contains("step done")
                && line.text.contains("demote-carp")
        })
        .ok_or_else(|| missing(format!("{}'s demote-carp never ended", from.name())))?;
    let master = log
        .find(sent, &format!("{}/ucarp", to.name()), "MASTER")
        .ok_or_else(|| missing(format!("{}'s ucarp never said MASTER", to.name())))?;
    let first = log
        .find(master.at, &there, "step started")
        .ok_or_else(|| missing(format!("{}'s havend started no step", to.name())))?;
    Ok(SwitchoverReport {
        acked: acked.len(),
        lost,
        output,
        demotion: demoted.at.saturating_sub(sent),
        handover: master.at.saturating_sub(demoted.at),
        reaction: first.at.saturating_sub(master.at),
        promotion: serving.saturating_sub(first.at),
        total: serving.saturating_sub(sent),
        steps_here: promotion_steps(rig, from),
        steps_there: promotion_steps(rig, to),
    })
}
