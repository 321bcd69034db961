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

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u32) -> u32 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1).wrapping_add(frame[depth as usize % 64])
}

haven_sdk::export_policy!(Misbehaving);
