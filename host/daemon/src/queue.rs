//! The daemon's one ordered event queue.
//!
//! Plans run one at a time, and a plan can take minutes (an fsck, a database start). Events
//! that arrive meanwhile wait here, in arrival order, and are handed to the policies one by one
//! once the plan is done. This module exists to make that waiting safe:
//!
//! - **Every event gets an id at enqueue**, increasing by one per [`EventQueue::push`], so
//!   logs, tracing spans and the journal can name it from the moment it arrived, including
//!   events that are later coalesced or dropped.
//! - **A flapping CARP link converges instead of replaying.** A `carp-changed` for a vhid that
//!   is still waiting is replaced *in place* by the newer one (same position in the queue, the
//!   newer event's id, source, time and state), but keeps the *older* event's `previous`, so
//!   the transition the policy sees reads from the state before the flap to the state after
//!   it. `carp-link` events coalesce the same way per interface. Nothing else coalesces: HAST
//!   hooks, status changes, devd events, timers, step failures and startup are all kept, in
//!   order, because each of them means something on its own.
//! - **The queue is bounded, and overflow is never silent.** When it is full a new event that
//!   cannot coalesce is refused; [`Pushed::Dropped`] hands it back with its id, source and kind
//!   so the daemon can journal and alert, and [`QueueStats::dropped`] counts it. The newest
//!   event is the one dropped (not the oldest) so that what is already queued keeps its order
//!   and nothing the daemon has acknowledged disappears; CARP flaps, the usual storm, never
//!   need room since they coalesce.
//!
//! Because a coalesced entry takes the newer event's id while keeping the older one's place,
//! ids come out of [`EventQueue::pop`] in increasing order except where coalescing happened;
//! [`Pushed::Coalesced`] records which id superseded which.

use haven_core::Event;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Why a queue could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// A queue that can hold nothing would drop every event.
    #[error("event queue capacity must be at least 1")]
    ZeroCapacity,
}

/// An event waiting to be handled, or handed out by [`EventQueue::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// The id assigned when this event (the newest of any coalesced into it) was pushed.
    pub id: u64,
    /// The source that reported it (`devd`, `hast-hook`, ...).
    pub source: String,
    /// When it was pushed.
    pub received_at: Instant,
    /// The event itself.
    pub event: Event,
    /// How many older events this one superseded in place.
    pub coalesced: u32,
}

/// An event refused because the queue was full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedEvent {
    /// The id it was given.
    pub id: u64,
    /// The source that reported it.
    pub source: String,
    /// Its kind, as [`Event::kind`].
    pub kind: &'static str,
    /// The event, so the daemon can journal it.
    pub event: Event,
}

/// What became of a pushed event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a dropped event must be reported"]
pub enum Pushed {
    /// Queued at the back.
    Queued { id: u64 },
    /// Replaced the waiting event `superseded` in place; the entry now carries `id`.
    Coalesced { id: u64, superseded: u64 },
    /// The queue was full: the event was not queued.
    Dropped(Box<DroppedEvent>),
}

impl Pushed {
    /// The id the pushed event was given, whatever became of it.
    pub fn id(&self) -> u64 {
        match self {
            Pushed::Queued { id } | Pushed::Coalesced { id, .. } => *id,
            Pushed::Dropped(dropped) => dropped.id,
        }
    }
}

/// Counters since the queue was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct QueueStats {
    /// Events pushed, whatever became of them.
    pub received: u64,
    /// Events that replaced a waiting one in place.
    pub coalesced: u64,
    /// Events refused because the queue was full.
    pub dropped: u64,
    /// Events waiting now.
    pub depth: usize,
    /// The most events ever waiting at once.
    pub max_depth: usize,
    /// The capacity.
    pub capacity: usize,
}

/// What makes two events the same for coalescing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CoalesceKey {
    Carp(u8),
    Link(String),
}

impl CoalesceKey {
    fn of(event: &Event) -> Option<CoalesceKey> {
        match event {
            Event::CarpChanged(change) => Some(CoalesceKey::Carp(change.vhid)),
            Event::CarpLink(link) => Some(CoalesceKey::Link(link.interface.clone())),
            _ => None,
        }
    }
}

/// An entry and its slot: slots increase by one per entry queued at the back and never change,
/// so an entry can be found by binary search even though coalescing rewrites ids.
#[derive(Debug)]
struct Slot {
    slot: u64,
    queued: QueuedEvent,
}

/// The bounded, ordered, coalescing event queue.
#[derive(Debug)]
pub struct EventQueue {
    capacity: usize,
    entries: VecDeque<Slot>,
    /// Waiting coalescable entries, by key: their slot.
    waiting: HashMap<CoalesceKey, u64>,
    next_id: u64,
    next_slot: u64,
    stats: QueueStats,
}

impl EventQueue {
    /// An empty queue that holds at most `capacity` events. Ids start at 1.
    pub fn new(capacity: usize) -> Result<EventQueue, QueueError> {
        if capacity == 0 {
            return Err(QueueError::ZeroCapacity);
        }
        Ok(EventQueue {
            capacity,
            entries: VecDeque::new(),
            waiting: HashMap::new(),
            next_id: 1,
            next_slot: 0,
            stats: QueueStats {
                capacity,
                ..QueueStats::default()
            },
        })
    }

    /// Enqueue an event reported by `source`, giving it the next id.
    pub fn push(&mut self, event: Event, source: &str) -> Pushed {
        self.push_at(event, source, Instant::now())
    }

    /// [`EventQueue::push`] with the arrival time given.
    pub fn push_at(&mut self, event: Event, source: &str, received_at: Instant) -> Pushed {
        let id = self.next_id;
        self.next_id += 1;
        self.stats.received += 1;

        let key = CoalesceKey::of(&event);
        if let Some(slot) = key.as_ref().and_then(|key| self.waiting.get(key)) {
            let index = self
                .entries
                .binary_search_by_key(slot, |entry| entry.slot)
                .expect("a waiting coalescable entry is in the queue");
            let queued = &mut self.entries[index].queued;
            let superseded = queued.id;
            let mut event = event;
            if let (Event::CarpChanged(older), Event::CarpChanged(newer)) =
                (&queued.event, &mut event)
            {
                newer.previous = older.previous;
            }
            queued.id = id;
            queued.source = source.to_owned();
            queued.received_at = received_at;
            queued.event = event;
            queued.coalesced += 1;
            self.stats.coalesced += 1;
            tracing::debug!(id, superseded, source, "event coalesced into a waiting one");
            return Pushed::Coalesced { id, superseded };
        }

        if self.entries.len() >= self.capacity {
            self.stats.dropped += 1;
            tracing::warn!(
                id,
                source,
                kind = event.kind(),
                capacity = self.capacity,
                "event queue full: event dropped"
            );
            return Pushed::Dropped(Box::new(DroppedEvent {
                id,
                source: source.to_owned(),
                kind: event.kind(),
                event,
            }));
        }

        let slot = self.next_slot;
        self.next_slot += 1;
        if let Some(key) = key {
            self.waiting.insert(key, slot);
        }
        self.entries.push_back(Slot {
            slot,
            queued: QueuedEvent {
                id,
                source: source.to_owned(),
                received_at,
                event,
                coalesced: 0,
            },
        });
        self.stats.depth = self.entries.len();
        self.stats.max_depth = self.stats.max_depth.max(self.stats.depth);
        Pushed::Queued { id }
    }

    /// Number the next events after `last` (a restarted daemon goes on from its journal's
    /// highest id, so ids never repeat within one journal). Never goes back.
    pub fn continue_ids_after(&mut self, last: u64) {
        self.next_id = self.next_id.max(last.saturating_add(1));
    }

    /// Reserve the next id for an event that does not wait in the queue (a timer that fired,
    /// a step failure fed back to its policy), so that ids stay unique across both.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The oldest waiting event. Once popped, it is no longer coalesced into: a later event for
    /// the same vhid or interface queues afresh.
    pub fn pop(&mut self) -> Option<QueuedEvent> {
        let Slot { slot, queued } = self.entries.pop_front()?;
        if let Some(key) = CoalesceKey::of(&queued.event)
            && self.waiting.get(&key) == Some(&slot)
        {
            self.waiting.remove(&key);
        }
        self.stats.depth = self.entries.len();
        Some(queued)
    }

    /// The oldest waiting event, left in place.
    pub fn peek(&self) -> Option<&QueuedEvent> {
        self.entries.front().map(|entry| &entry.queued)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most events the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters since the queue was made.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_core::{CarpChange, CarpLink, CarpState, HastHook, HastRole, HastRoleChange};

    fn carp(vhid: u8, state: CarpState, previous: Option<CarpState>) -> Event {
        Event::CarpChanged(CarpChange {
            vhid,
            interface: "em0".into(),
            state,
            previous,
        })
    }

    fn link(interface: &str, up: bool) -> Event {
        Event::CarpLink(CarpLink {
            interface: interface.into(),
            up,
        })
    }

    fn hook(n: usize) -> Event {
        Event::HastHook(HastHook::Connect(format!("res{n}")))
    }

    fn drain(queue: &mut EventQueue) -> Vec<QueuedEvent> {
        let mut out = Vec::new();
        // Bounded: the queue can never hold more than its capacity.
        for _ in 0..=queue.capacity() {
            match queue.pop() {
                Some(event) => out.push(event),
                None => return out,
            }
        }
        panic!("queue held more than its capacity");
    }

    #[test]
    fn zero_capacity_is_refused() {
        assert_eq!(EventQueue::new(0).unwrap_err(), QueueError::ZeroCapacity);
    }

    #[test]
    fn fifo_with_increasing_ids() {
        let mut queue = EventQueue::new(16).unwrap();
        assert!(queue.is_empty());
        let events = [
            hook(1),
            Event::TimerFired("t".into()),
            carp(1, CarpState::Master, None),
            hook(2),
            link("carp0", true),
        ];
        for (n, event) in events.iter().enumerate() {
            let source = format!("src{n}");
            assert_eq!(
                queue.push(event.clone(), &source),
                Pushed::Queued { id: n as u64 + 1 }
            );
        }
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.peek().unwrap().id, 1);
        let popped = drain(&mut queue);
        assert_eq!(
            popped.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        for (n, queued) in popped.iter().enumerate() {
            assert_eq!(queued.event, events[n]);
            assert_eq!(queued.source, format!("src{n}"));
            assert_eq!(queued.coalesced, 0);
        }
        assert!(
            popped
                .windows(2)
                .all(|w| w[0].received_at <= w[1].received_at)
        );
        assert!(queue.pop().is_none());
        let stats = queue.stats();
        assert_eq!(stats.received, 5);
        assert_eq!(stats.depth, 0);
        assert_eq!(stats.max_depth, 5);
        assert_eq!(stats.coalesced, 0);
        assert_eq!(stats.dropped, 0);
    }

    #[test]
    fn ids_keep_increasing_across_pops() {
        let mut queue = EventQueue::new(2).unwrap();
        for expected in 1..=10u64 {
            assert_eq!(queue.push(hook(0), "x").id(), expected);
            assert_eq!(queue.pop().unwrap().id, expected);
        }
    }

    #[test]
    fn flap_storm_collapses_to_one_carp_event() {
        let mut queue = EventQueue::new(128).unwrap();
        assert!(matches!(
            queue.push(hook(0), "hast"),
            Pushed::Queued { id: 1 }
        ));
        let mut hooks = vec![hook(0)];
        let mut carp_id: Option<u64> = None;
        for n in 0..1000usize {
            let (state, previous) = if n % 2 == 0 {
                (CarpState::Master, CarpState::Backup)
            } else {
                (CarpState::Backup, CarpState::Master)
            };
            let pushed = queue.push(carp(1, state, Some(previous)), "devd");
            let id = pushed.id();
            match carp_id {
                None => assert_eq!(pushed, Pushed::Queued { id: 2 }),
                Some(superseded) => assert_eq!(pushed, Pushed::Coalesced { id, superseded }),
            }
            carp_id = Some(id);
            if n % 10 == 9 {
                hooks.push(hook(n));
                assert!(matches!(queue.push(hook(n), "hast"), Pushed::Queued { .. }));
            }
        }
        // Last push was n = 999, odd: backup, after a flap that started from backup.
        let popped = drain(&mut queue);
        assert_eq!(popped.len(), 1 + 1 + 100);
        assert_eq!(popped[0].event, hook(0));
        let carp_event = &popped[1];
        assert_eq!(Some(carp_event.id), carp_id);
        assert_eq!(carp_event.coalesced, 999);
        assert_eq!(carp_event.source, "devd");
        assert_eq!(
            carp_event.event,
            carp(1, CarpState::Backup, Some(CarpState::Backup))
        );
        let rest: Vec<Event> = popped.iter().skip(2).map(|e| e.event.clone()).collect();
        assert_eq!(rest, hooks[1..]);
        assert!(popped[2..].windows(2).all(|w| w[0].id < w[1].id));
        let stats = queue.stats();
        assert_eq!(stats.received, 1 + 1000 + 100);
        assert_eq!(stats.coalesced, 999);
        assert_eq!(stats.dropped, 0);
        assert_eq!(stats.max_depth, 102);
    }

    #[test]
    fn different_vhids_do_not_coalesce() {
        let mut queue = EventQueue::new(8).unwrap();
        let _ = queue.push(carp(1, CarpState::Master, Some(CarpState::Backup)), "devd");
        let _ = queue.push(carp(2, CarpState::Master, Some(CarpState::Backup)), "devd");
        let pushed = queue.push(carp(1, CarpState::Backup, Some(CarpState::Master)), "devd");
        assert_eq!(
            pushed,
            Pushed::Coalesced {
                id: 3,
                superseded: 1
            }
        );
        let popped = drain(&mut queue);
        assert_eq!(popped.len(), 2);
        assert_eq!(popped[0].id, 3);
        assert_eq!(
            popped[0].event,
            carp(1, CarpState::Backup, Some(CarpState::Backup))
        );
        assert_eq!(popped[1].id, 2);
        assert_eq!(
            popped[1].event,
            carp(2, CarpState::Master, Some(CarpState::Backup))
        );
    }

    #[test]
    fn carp_link_coalesces_per_interface() {
        let mut queue = EventQueue::new(8).unwrap();
        let _ = queue.push(link("carp0", false), "devd");
        let _ = queue.push(link("carp1", false), "devd");
        assert_eq!(
            queue.push(link("carp0", true), "devd"),
            Pushed::Coalesced {
                id: 3,
                superseded: 1
            }
        );
        assert_eq!(
            queue.push(link("carp0", false), "devd"),
            Pushed::Coalesced {
                id: 4,
                superseded: 3
            }
        );
        let popped = drain(&mut queue);
        assert_eq!(popped.len(), 2);
        assert_eq!(popped[0].event, link("carp0", false));
        assert_eq!(popped[0].coalesced, 2);
        assert_eq!(popped[1].event, link("carp1", false));
        assert_eq!(popped[1].coalesced, 0);
    }

    #[test]
    fn carp_changed_and_carp_link_do_not_coalesce_with_each_other() {
        let mut queue = EventQueue::new(8).unwrap();
        let _ = queue.push(carp(1, CarpState::Master, None), "devd");
        assert!(matches!(
            queue.push(link("em0", true), "devd"),
            Pushed::Queued { .. }
        ));
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn nothing_else_coalesces() {
        let mut queue = EventQueue::new(16).unwrap();
        let same = [
            Event::HastHook(HastHook::RoleChanged(HastRoleChange {
                resource: "test".into(),
                old: HastRole::Secondary,
                new: HastRole::Primary,
            })),
            Event::TimerFired("retry".into()),
        ];
        for event in same.iter().chain(same.iter()) {
            assert!(matches!(
                queue.push(event.clone(), "x"),
                Pushed::Queued { .. }
            ));
        }
        let popped: Vec<Event> = drain(&mut queue).into_iter().map(|e| e.event).collect();
        assert_eq!(popped, [same.clone(), same].concat());
    }

    #[test]
    fn previous_none_of_the_older_event_is_kept() {
        let mut queue = EventQueue::new(4).unwrap();
        let _ = queue.push(carp(1, CarpState::Backup, None), "startup-poll");
        let _ = queue.push(carp(1, CarpState::Master, Some(CarpState::Backup)), "devd");
        let popped = queue.pop().unwrap();
        assert_eq!(popped.event, carp(1, CarpState::Master, None));
        assert_eq!(popped.source, "devd");
        assert_eq!(popped.coalesced, 1);
    }

    #[test]
    fn a_popped_event_is_no_longer_coalesced_into() {
        let mut queue = EventQueue::new(4).unwrap();
        let _ = queue.push(carp(1, CarpState::Master, Some(CarpState::Backup)), "devd");
        let _ = queue.push(link("carp0", true), "devd");
        let first = queue.pop().unwrap();
        assert_eq!(first.id, 1);
        // Handled already: the next change for vhid 1 is a new transition, queued afresh.
        assert_eq!(
            queue.push(carp(1, CarpState::Backup, Some(CarpState::Master)), "devd"),
            Pushed::Queued { id: 3 }
        );
        // The link event still waits, so it still coalesces.
        assert_eq!(
            queue.push(link("carp0", false), "devd"),
            Pushed::Coalesced {
                id: 4,
                superseded: 2
            }
        );
        let rest = drain(&mut queue);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].event, link("carp0", false));
        assert_eq!(
            rest[1].event,
            carp(1, CarpState::Backup, Some(CarpState::Master))
        );
        assert_eq!(rest[1].coalesced, 0);
        // And after those pops, both keys queue afresh again.
        assert!(matches!(
            queue.push(carp(1, CarpState::Master, None), "devd"),
            Pushed::Queued { .. }
        ));
        assert!(matches!(
            queue.push(link("carp0", true), "devd"),
            Pushed::Queued { .. }
        ));
    }

    #[test]
    fn overflow_is_counted_and_reported() {
        let mut queue = EventQueue::new(3).unwrap();
        for n in 0..3 {
            assert!(matches!(queue.push(hook(n), "hast"), Pushed::Queued { .. }));
        }
        let pushed = queue.push(Event::TimerFired("late".into()), "timer");
        assert_eq!(
            pushed,
            Pushed::Dropped(Box::new(DroppedEvent {
                id: 4,
                source: "timer".into(),
                kind: "timer-fired",
                event: Event::TimerFired("late".into()),
            }))
        );
        let pushed = queue.push(hook(9), "hast");
        assert!(matches!(
            &pushed,
            Pushed::Dropped(dropped) if dropped.id == 5 && dropped.kind == "hast-hook"
        ));
        let stats = queue.stats();
        assert_eq!(stats.received, 5);
        assert_eq!(stats.dropped, 2);
        assert_eq!(stats.depth, 3);
        assert_eq!(stats.max_depth, 3);
        assert_eq!(stats.capacity, 3);
        // What was queued is intact and in order; the dropped ids are gaps.
        let ids: Vec<u64> = drain(&mut queue).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        // Room again after popping.
        assert_eq!(queue.push(hook(0), "hast"), Pushed::Queued { id: 6 });
    }

    #[test]
    fn coalescing_needs_no_room_in_a_full_queue() {
        let mut queue = EventQueue::new(2).unwrap();
        let _ = queue.push(carp(1, CarpState::Master, Some(CarpState::Backup)), "devd");
        let _ = queue.push(hook(0), "hast");
        let mut waiting = 1;
        for n in 0..100u32 {
            let state = if n % 2 == 0 {
                CarpState::Backup
            } else {
                CarpState::Master
            };
            match queue.push(carp(1, state, None), "devd") {
                Pushed::Coalesced { id, superseded } => {
                    assert_eq!(superseded, waiting);
                    waiting = id;
                }
                other => panic!("expected coalescing, got {other:?}"),
            }
        }
        assert!(matches!(
            queue.push(carp(2, CarpState::Master, None), "devd"),
            Pushed::Dropped(_)
        ));
        let stats = queue.stats();
        assert_eq!(stats.coalesced, 100);
        assert_eq!(stats.dropped, 1);
        let first = queue.pop().unwrap();
        assert_eq!(first.coalesced, 100);
        assert_eq!(
            first.event,
            carp(1, CarpState::Master, Some(CarpState::Backup))
        );
    }
}
