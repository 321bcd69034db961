//! A policy built against `haven:policy@1.0.0`, an older minor version than the host speaks,
//! from the frozen copy of that contract in this crate's `wit/`, with raw `wit-bindgen` rather
//! than the SDK (which always follows the current contract).
//!
//! The contract-version tests load it on the current host to show that older minors keep
//! working: its imports (`haven:policy/kv@1.0.0`, ...) are satisfied by the host's newer
//! definitions and its `haven:policy/handler@1.0.0` export is found. They also rewrite the
//! version inside the built module to make otherwise identical policies of other versions.
//!
//! For a timer event it calls several imports, so that the calls cross the version gap too:
//! it counts the event in its key-value store and answers with one alert that says what it saw.

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
    Action, Alert, AlertSeverity, CarpState, Event, LogLevel, Plan, PolicyInfo, Step,
};
use bindings::haven::policy::{carp, kv, log};

struct Contract10;

impl Guest for Contract10 {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "contract-1-0".into(),
            version: "0.1.0".into(),
        }
    }

    fn init(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn handle(event: Event) -> Result<Plan, String> {
        let Event::TimerFired(timer) = event else {
            return Ok(Plan { steps: Vec::new() });
        };
        let seen = kv::get("seen")
            .and_then(|count| count.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        kv::set("seen", &seen.to_string())?;
        log::log(LogLevel::Info, &format!("timer {timer}, seen {seen}"));
        let carp = match carp::state(1) {
            Some(CarpState::Init) => "init",
            Some(CarpState::Backup) => "backup",
            Some(CarpState::Master) => "master",
            None => "unknown",
        };
        Ok(Plan {
            steps: vec![Step {
                action: Action::Alert(Alert {
                    severity: AlertSeverity::Warning,
                    message: format!("contract 1.0 timer={timer} seen={seen} vhid1={carp}"),
                }),
                timeout_ms: None,
            }],
        })
    }
}

/// The component's exports; the generated glue needs `unsafe`, like the SDK's own.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::{Contract10, bindings};
    bindings::export!(Contract10 with_types_in bindings);
}
