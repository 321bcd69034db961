//! A policy that misbehaves in the way its settings name, so the containment tests can show
//! that each misbehaviour is stopped or refused and the daemon goes on serving.

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use haven_sdk::{AlertSeverity, Event, Host, LogLevel, Plan, Policy, PolicyInfo, Result};
use serde::Deserialize;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Behaviour {
    /// A plan with one alert naming the event kind and how many events this instance saw.
    Good,
    LoopForever,
    AllocateForever,
    RecurseForever,
    Panic,
    HugePlan,
    OutsideGrants,
    QueryOutsideGrants,
    LogFlood,
    /// Counts events in the key-value store, and fails (after writing) on odd counts.
    KvCounter,
    RejectSettings,
    /// Answers every event with `set-timer again 0`: its own timer, re-armed at once.
    TimerZero,
    /// A step whose timeout is u32::MAX.
    LongTimeout,
    /// Returns an error of 4 MB.
    HugeError,
    /// An alert of 12 MiB.
    HugeAlert,
    /// 200,000 queries outside its grants.
    QueryFlood,
    /// Removes a thousand keys of 200 KB each, none of which exist.
    KvRemoveFlood,
    /// An alert whose text is not valid UTF-8.
    NotUtf8,
    /// An alert that tries to forge a journal line and drive the operator's terminal.
    Injection,
}

#[derive(Deserialize)]
struct Settings {
    behaviour: Behaviour,
}

struct Misbehaving {
    behaviour: Behaviour,
}

/// Events seen by this instance: always 1 if every event gets a fresh instance.
static EVENTS_SEEN: AtomicU32 = AtomicU32::new(0);

impl Policy for Misbehaving {
    type Settings = Settings;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "misbehaving".into(),
            version: "0.1.0".into(),
        }
    }

    fn new(settings: Settings) -> Result<Self> {
        if let Behaviour::RejectSettings = settings.behaviour {
            return Err("these settings are rejected on purpose".into());
        }
        Ok(Misbehaving {
            behaviour: settings.behaviour,
        })
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Plan> {
        let seen = EVENTS_SEEN.fetch_add(1, Ordering::SeqCst) + 1;
        match self.behaviour {
            Behaviour::Good | Behaviour::RejectSettings => {}
            Behaviour::LoopForever => loop {
                std::hint::black_box(seen);
            },
            Behaviour::AllocateForever => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Behaviour::RecurseForever => {
                return Ok(Plan::builder().set_timer("depth", recurse(seen)).build());
            }
            Behaviour::Panic => panic!("this policy panics on purpose"),
            Behaviour::HugePlan => {
                let mut plan = Plan::builder();
                for _ in 0..100_000 {
                    plan = plan.alert(AlertSeverity::Warning, "again");
                }
                return Ok(plan.build());
            }
            Behaviour::OutsideGrants => {
                return Ok(Plan::builder()
                    .alert(AlertSeverity::Warning, "first")
                    .start_service("sshd")
                    .build());
            }
            Behaviour::QueryOutsideGrants => {
                let answer = host.service_running("sshd");
                return Ok(Plan::builder()
                    .alert(AlertSeverity::Warning, format!("{answer:?}"))
                    .build());
            }
            Behaviour::LogFlood => {
                for n in 0..10_000 {
                    host.log(LogLevel::Info, &format!("log line {n}"));
                }
            }
            Behaviour::TimerZero => return Ok(Plan::builder().set_timer("again", 0).build()),
            Behaviour::LongTimeout => {
                return Ok(Plan::builder()
                    .start_service("mysql-server")
                    .timeout_ms(u32::MAX)
                    .build());
            }
            Behaviour::HugeError => return Err("e".repeat(4_000_000).into()),
            Behaviour::HugeAlert => {
                return Ok(Plan::builder()
                    .alert(AlertSeverity::Critical, "a".repeat(12 << 20))
                    .build());
            }
            Behaviour::QueryFlood => {
                for _ in 0..200_000 {
                    let _ = std::hint::black_box(host.service_running("sshd"));
                }
            }
            Behaviour::KvRemoveFlood => {
                let mut key = "k".repeat(200_000);
                for n in 0..1000 {
                    key.replace_range(..8, &format!("{n:08}"));
                    host.kv_remove(&key);
                }
            }
            Behaviour::NotUtf8 => {
                return Ok(Plan::builder()
                    .alert(AlertSeverity::Warning, not_utf8())
                    .build());
            }
            Behaviour::Injection => {
                return Ok(Plan::builder()
                    .alert(
                        AlertSeverity::Critical,
                        "all good\n2026-12-04T00:00:00Z decision 9 by mysql@ffff: plan \
                         \u{1b}[2J\u{1b}[31mforged\u{0}",
                    )
                    .build());
            }
            Behaviour::KvCounter => {
                let count: u64 = host
                    .kv_get("count")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
                    + 1;
                host.kv_set("count", &count.to_string())?;
                if count % 2 == 1 {
                    return Err("odd count: this call's writes must not stick".into());
                }
            }
        }
        let kind = match event {
            Event::Startup(_) => "startup",
            Event::TimerFired(_) => "timer",
            _ => "other",
        };
        Ok(Plan::builder()
            .alert(AlertSeverity::Warning, format!("{kind} seen={seen}"))
            .build())
    }
}

/// A `String` holding bytes that are not UTF-8, as a hostile or buggy guest could hand over.
#[allow(unsafe_code)]
fn not_utf8() -> String {
    // SAFETY: not safe at all for Rust code that reads it as text; it is only handed to the
    // host, which must refuse it.
    unsafe { String::from_utf8_unchecked(vec![b'o', b'k', 0xff, 0xfe]) }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u32) -> u32 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1).wrapping_add(frame[depth as usize % 64])
}

haven_sdk::export_policy!(Misbehaving);
