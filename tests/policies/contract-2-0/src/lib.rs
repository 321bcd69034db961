//! A policy built against `haven:policy@2.0.0`, the last contract of the major before the
//! host's, from the frozen copy in this crate's `wit/` (the same as `wit/v2/`), with raw
//! `wit-bindgen` rather than the SDK (which always follows the current contract).
//!
//! The contract-version tests load it on the current host to show that a `2.x` policy keeps
//! working: it asks for the peer (a `2.0` addition) and the wall clock, and answers a timer
//! with one alert that says what it saw, and a peer event with another.

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy",
    });
}

use bindings::exports::haven::policy::handler::Guest;
use bindings::haven::policy::types::{
    Action, Alert, AlertSeverity, Event, PeerEvent, PeerLink, Plan, PolicyInfo, Step,
};
use bindings::haven::policy::{clock, peer};

struct Contract20;

fn alert(message: String) -> Plan {
    Plan {
        steps: vec![Step {
            action: Action::Alert(Alert {
                severity: AlertSeverity::Warning,
                message,
            }),
            timeout_ms: None,
        }],
    }
}

impl Guest for Contract20 {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "contract-2-0".into(),
            version: "0.1.0".into(),
        }
    }

    fn init(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn handle(event: Event) -> Result<Plan, String> {
        match event {
            Event::TimerFired(timer) => {
                let state = peer::state();
                let link = match state.link {
                    PeerLink::NotConfigured => "not-configured",
                    PeerLink::Up => "up",
                    PeerLink::Down => "down",
                };
                let host = state.facts.map(|facts| facts.host).unwrap_or_default();
                let wall = clock::unix_ms() > 0;
                Ok(alert(format!(
                    "contract 2.0 timer={timer} peer={link} host={host} wall={wall}"
                )))
            }
            Event::Peer(PeerEvent::FactsChanged(facts)) => {
                Ok(alert(format!("contract 2.0 facts from {}", facts.host)))
            }
            _ => Ok(Plan { steps: Vec::new() }),
        }
    }
}

/// The component's exports; the generated glue needs `unsafe`, like the SDK's own.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::{Contract20, bindings};
    bindings::export!(Contract20 with_types_in bindings);
}
