//! A call's deadline, counted in the policy's own CPU time.
//!
//! The deadline exists to stop a policy that loops or thrashes, and a wall-clock deadline alone
//! also stops a well-behaved policy whose thread simply did not get a CPU: on a loaded host
//! (a database at full tilt during the very failover the policy decides) a 2 ms Python decision
//! can wait 50 ms for a core. So the epoch ticker (one tick a millisecond, wall-clock) only
//! wakes the check: when the ticks run out, this compares the CPU time the calling thread spent
//! since the call began with `deadline-ms`, and lets the call go on for what is left of it.
//! A policy that burns CPU is stopped at its deadline as before; one that was merely kept
//! waiting is not. A wall-clock cap, [`WALL_CAP_FACTOR`] times the deadline, still bounds every
//! call, so a call can never hold the event loop much longer than its deadline however starved.
//!
//! The thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) is read only when the ticks run out, so a
//! call that ends within its deadline's wall-clock time pays nothing.

use rustix::time::{ClockId, clock_gettime};
use std::time::{Duration, Instant};
use wasmtime::{Trap, UpdateDeadline};

/// The most wall-clock time a call gets, as a multiple of its deadline.
pub const WALL_CAP_FACTOR: u32 = 10;

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    let spec = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(spec.tv_sec).unwrap_or(0),
        u32::try_from(spec.tv_nsec).unwrap_or(0),
    )
}

/// The check that runs when a call's epoch ticks run out: go on for the CPU time the call has
/// left (in ticks of a millisecond), or stop it with `Trap::Interrupt` (a deadline failure)
/// once it has used its deadline in CPU time or ten times it in wall-clock time.
pub fn cpu_deadline(deadline_ms: u32) -> impl FnMut() -> wasmtime::Result<UpdateDeadline> {
    let deadline = Duration::from_millis(u64::from(deadline_ms));
    let (cpu_start, wall_start) = (thread_cpu(), Instant::now());
    move || {
        let used = thread_cpu().saturating_sub(cpu_start);
        if used >= deadline || wall_start.elapsed() >= deadline * WALL_CAP_FACTOR {
            return Err(Trap::Interrupt.into());
        }
        let left_ms = (deadline - used).as_millis().max(1);
        Ok(UpdateDeadline::Continue(
            u64::try_from(left_ms).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_waited_goes_on_and_one_that_burned_its_time_stops() {
        let mut check = cpu_deadline(20);
        // Waiting costs no CPU: the call goes on, for about its whole deadline.
        std::thread::sleep(Duration::from_millis(25));
        match check() {
            Ok(UpdateDeadline::Continue(ticks)) => assert!(ticks >= 15, "{ticks}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Spinning uses it up.
        let mut spent = cpu_deadline(1);
        let start = thread_cpu();
        let mut n = 0u64;
        while thread_cpu() - start < Duration::from_millis(2) {
            n = n.wrapping_add(1);
            std::hint::black_box(n);
        }
        assert!(spent().is_err());
    }

    #[test]
    fn a_starved_call_stops_at_the_wall_clock_cap() {
        let mut check = cpu_deadline(2);
        std::thread::sleep(Duration::from_millis(2 * u64::from(WALL_CAP_FACTOR) + 5));
        assert!(check().is_err());
    }
}
