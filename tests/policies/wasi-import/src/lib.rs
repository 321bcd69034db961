//! A policy that imports WASI (`wasi_snapshot_preview1::random_get`): it must be refused at
//! admission, because a policy gets no randomness, clock, files or network except through
//! Haven's contract.

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use haven_sdk::{Event, Host, Plan, Policy, PolicyInfo, Result};

struct WantsWasi;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

fn random_byte() -> u8 {
    #[cfg(target_arch = "wasm32")]
    {
        let mut byte = 0u8;
        // SAFETY: one writable byte. (Never runs: admission refuses this module.)
        unsafe { random_get(&mut byte, 1) };
        byte
    }
    #[cfg(not(target_arch = "wasm32"))]
    4
}

impl Policy for WantsWasi {
    type Settings = serde::de::IgnoredAny;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "wants-wasi".into(),
            version: "0.1.0".into(),
        }
    }

    fn new(_: Self::Settings) -> Result<Self> {
        Ok(WantsWasi)
    }

    fn handle(&mut self, _: &Event, _: &dyn Host) -> Result<Plan> {
        Ok(Plan::builder()
            .set_timer("random", u32::from(random_byte()))
            .build())
    }
}

haven_sdk::export_policy!(WantsWasi);
