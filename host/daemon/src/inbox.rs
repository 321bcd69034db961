//! The daemon's inbox: where sources, hooks and the control socket leave what they heard, and
//! where the event loop waits for it.
//!
//! Sources run on threads of their own (the devd client, the hastctl poller, the keepalived
//! FIFO reader, the control socket); the event loop runs on one more. The inbox is the only
//! thing they share: a mutex around the ordered [`EventQueue`] plus a short list of
//! [`Report`]s (bad input, a source going away or coming back), and a condition variable that
//! wakes the loop. Pushing never blocks on the loop: a plan that takes minutes holds the loop,
//! not the mutex, so a devd burst meanwhile is queued (and coalesced) at once.
//!
//! The inbox also keeps each source's counters (events, bad input, last problem, up or down)
//! for `havenctl status`, so a source needs no other channel to the status display.

use crate::queue::{DroppedEvent, EventQueue, Pushed, QueueError, QueueStats, QueuedEvent};
use haven_core::Event;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Reports waiting for the loop beyond this are counted and dropped (the source's counters
/// still show them): bad input must not grow memory without bound. A reload's outcome is
/// never dropped.
pub const MAX_REPORTS: usize = 1024;

/// Something a source says that is not an event.
#[derive(Debug)]
pub enum Report {
    /// Input that could not be understood; the source goes on.
    BadInput {
        source: String,
        reason: String,
        text: String,
    },
    /// A source lost its input (socket gone, command failing) or got it back.
    SourceState {
        source: String,
        up: bool,
        message: String,
    },
    /// Events may have been missed (a reconnect): the loop re-reads the machine's state.
    Resync { source: String, why: String },
    /// The queue was full and refused an event.
    Dropped(Box<DroppedEvent>),
    /// A reload is ready: swap these policies in before the next event.
    Reload(Box<crate::reload::Prepared>),
    /// A reload failed; the running policies stay.
    ReloadRejected {
        why: String,
        outcome: crate::reload::ReloadOutcome,
    },
    /// The peer's unchanged facts were heard again (a heartbeat): only their age changes.
    PeerHeard,
    /// News from the witness's session with etcd.
    Witness(haven_witness::WitnessNews),
}

/// What the loop gets from [`Inbox::next`].
#[derive(Debug)]
pub enum Next {
    /// Reports to journal, oldest first.
    Reports(Vec<Report>),
    /// The next event (boxed: it is much larger than the other variants).
    Event(Box<QueuedEvent>),
    /// A stop was requested.
    Stop,
    /// Nothing before the deadline (a timer may be due).
    Idle,
}

/// One source's counters, as `havenctl status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourceCounters {
    /// Whether the source has its input (`None` until it says).
    pub up: Option<bool>,
    /// Events it pushed.
    pub events: u64,
    /// Bad input it reported.
    pub bad_input: u64,
    /// The last problem it reported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_problem: Option<String>,
}

#[derive(Debug)]
struct State {
    queue: EventQueue,
    reports: VecDeque<Report>,
    reports_dropped: u64,
    sources: BTreeMap<String, SourceCounters>,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The shared inbox; clones are handles to the same one.
#[derive(Debug, Clone)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Inbox {
    /// An empty inbox whose queue holds at most `capacity` events.
    pub fn new(capacity: usize) -> Result<Inbox, QueueError> {
        Ok(Inbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: EventQueue::new(capacity)?,
                    reports: VecDeque::new(),
                    reports_dropped: 0,
                    sources: BTreeMap::new(),
                    stopping: false,
                }),
                wake: Condvar::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue an event from `source`.
    pub fn push(&self, event: Event, source: &str) -> Pushed {
        self.push_all(vec![event], source)
            .pop()
            .expect("one event pushed, one outcome")
    }

    /// Queue an event from `source` when the caller has no use for the outcome: a dropped
    /// event is reported to the loop (journaled, alerted) by the inbox itself.
    pub fn send(&self, event: Event, source: &str) {
        let _ = self.push(event, source);
    }

    /// Queue several events from `source` at once: the loop sees all of them or none, so a
    /// batch of flaps coalesces as it would had it arrived while a plan ran.
    pub fn push_all(&self, events: Vec<Event>, source: &str) -> Vec<Pushed> {
        let received_at = Instant::now();
        let mut state = self.lock();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let pushed = state.queue.push_at(event, source, received_at);
            state.sources.entry(source.to_owned()).or_default().events += 1;
            if let Pushed::Dropped(dropped) = &pushed {
                queue_report(&mut state, Report::Dropped(dropped.clone()));
            }
            outcomes.push(pushed);
        }
        drop(state);
        self.shared.wake.notify_one();
        outcomes
    }

    /// Leave a report for the loop, and count it against its source.
    pub fn report(&self, report: Report) {
        let mut state = self.lock();
        match &report {
            Report::BadInput { source, reason, .. } => {
                let counters = state.sources.entry(source.clone()).or_default();
                counters.bad_input += 1;
                counters.last_problem = Some(reason.clone());
            }
            Report::SourceState {
                source,
                up,
                message,
            } => {
                let counters = state.sources.entry(source.clone()).or_default();
                counters.up = Some(*up);
                if !*up {
                    counters.last_problem = Some(message.clone());
                }
            }
            Report::Witness(news) => {
                use haven_witness::WitnessNews;
                let source = crate::sources::witness::SOURCE.to_owned();
                let counters = state.sources.entry(source).or_default();
                match news {
                    WitnessNews::Reachable => counters.up = Some(true),
                    WitnessNews::Unreachable(why) => {
                        counters.up = Some(false);
                        counters.last_problem = Some(why.clone());
                    }
                    WitnessNews::BadRecord(why) => {
                        counters.bad_input += 1;
                        counters.last_problem = Some(why.clone());
                    }
                    WitnessNews::Leader(_) | WitnessNews::KeyLost { .. } => {}
                }
            }
            Report::Resync { .. }
            | Report::Dropped(_)
            | Report::Reload(_)
            | Report::ReloadRejected { .. }
            | Report::PeerHeard => {}
        }
        queue_report(&mut state, report);
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Number the next events after `last` (see [`EventQueue::continue_ids_after`]).
    pub fn continue_ids_after(&self, last: u64) {
        self.lock().queue.continue_ids_after(last);
    }

    /// Reserve an event id for an event that does not go through the queue.
    pub fn take_id(&self) -> u64 {
        self.lock().queue.take_id()
    }

    /// Ask the loop to stop; it finishes the step it is running first.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.shared.wake.notify_all();
    }

    /// Whether a stop was requested.
    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// The queue's counters.
    pub fn queue_stats(&self) -> QueueStats {
        self.lock().queue.stats()
    }

    /// Each source's counters, and how many reports were dropped for want of room.
    pub fn source_counters(&self) -> (BTreeMap<String, SourceCounters>, u64) {
        let state = self.lock();
        (state.sources.clone(), state.reports_dropped)
    }

    /// Wait for the next thing to do, until `deadline` (forever when `None`). A stop comes
    /// first, then reports, then events.
    pub fn next(&self, deadline: Option<Instant>) -> Next {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return Next::Stop;
            }
            if !state.reports.is_empty() {
                return Next::Reports(state.reports.drain(..).collect());
            }
            if let Some(event) = state.queue.pop() {
                return Next::Event(Box::new(event));
            }
            state = match deadline {
                None => self
                    .shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Next::Idle;
                    }
                    self.shared
                        .wake
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }

    /// Whether nothing is waiting (no event, no report).
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty() && state.reports.is_empty()
    }
}

fn queue_report(state: &mut State, report: Report) {
    // A reload's outcome is never dropped: the reloader already counts what it prepared as in
    // force, and a `havenctl reload` waits for the answer. There is one per reload, and the
    // reloader prepares one at a time.
    let reload = matches!(report, Report::Reload(_) | Report::ReloadRejected { .. });
    if state.reports.len() >= MAX_REPORTS && !reload {
        state.reports_dropped += 1;
        return;
    }
    state.reports.push_back(report);
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_core::{CarpChange, CarpState};
    use std::time::Duration;

    fn carp(vhid: u8, state: CarpState) -> Event {
        Event::CarpChanged(CarpChange {
            vhid,
            interface: "em0".to_owned(),
            state,
            previous: None,
        })
    }

    #[test]
    fn reports_come_before_events_and_stop_before_both() {
        let inbox = Inbox::new(8).unwrap();
        inbox.send(carp(1, CarpState::Master), "devd");
        inbox.report(Report::BadInput {
            source: "devd".into(),
            reason: "no".into(),
            text: "x".into(),
        });
        assert!(matches!(inbox.next(None), Next::Reports(r) if r.len() == 1));
        assert!(matches!(inbox.next(None), Next::Event(e) if e.id == 1));
        assert!(matches!(
            inbox.next(Some(Instant::now() + Duration::from_millis(1))),
            Next::Idle
        ));
        inbox.send(carp(1, CarpState::Backup), "devd");
        inbox.stop();
        assert!(matches!(inbox.next(None), Next::Stop));
        let (sources, dropped) = inbox.source_counters();
        assert_eq!(sources["devd"].events, 2);
        assert_eq!(sources["devd"].bad_input, 1);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_batch_coalesces_and_a_waiting_loop_wakes() {
        let inbox = Inbox::new(8).unwrap();
        let waiter = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.next(None))
        };
        let flaps = (0..10)
            .map(|i| {
                carp(
                    1,
                    if i % 2 == 0 {
                        CarpState::Master
                    } else {
                        CarpState::Backup
                    },
                )
            })
            .collect();
        inbox.push_all(flaps, "test");
        // The waiter got either the whole batch coalesced into one event, or nothing of it
        // yet: never a flap in the middle.
        match waiter.join().unwrap() {
            Next::Event(event) => {
                assert_eq!(event.coalesced, 9);
                assert_eq!(event.id, 10);
            }
            other => panic!("expected the coalesced event, got {other:?}"),
        }
        assert!(inbox.is_empty());
    }

    #[test]
    fn reports_beyond_the_bound_are_counted() {
        let inbox = Inbox::new(1).unwrap();
        for i in 0..MAX_REPORTS + 5 {
            inbox.report(Report::Resync {
                source: "devd".into(),
                why: i.to_string(),
            });
        }
        assert_eq!(inbox.source_counters().1, 5);
        // A full queue turns an event into a Dropped report, which is itself over the bound.
        inbox.send(carp(1, CarpState::Master), "devd");
        assert!(matches!(
            inbox.push(carp(2, CarpState::Master), "devd"),
            Pushed::Dropped(_)
        ));
        assert_eq!(inbox.queue_stats().dropped, 1);
    }
}
