//! A policy that imports an interface outside Haven's contract (`evil:net/socket@1.0.0`): it
//! must be refused at admission with a message naming the import.

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use haven_sdk::{Event, Host, Plan, Policy, PolicyInfo, Result};

struct WantsNetwork;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "evil:net/socket@1.0.0")]
unsafe extern "C" {
    fn connect(port: u32) -> u32;
}

fn open_socket() -> u32 {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: takes and returns plain integers. (Never runs: admission refuses this module.)
        unsafe { connect(25) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    0
}

impl Policy for WantsNetwork {
    type Settings = serde::de::IgnoredAny;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "wants-network".into(),
            version: "0.1.0".into(),
        }
    }

    fn new(_: Self::Settings) -> Result<Self> {
        Ok(WantsNetwork)
    }

    fn handle(&mut self, _: &Event, _: &dyn Host) -> Result<Plan> {
        Ok(Plan::builder().set_timer("socket", open_socket()).build())
    }
}

haven_sdk::export_policy!(WantsNetwork);
