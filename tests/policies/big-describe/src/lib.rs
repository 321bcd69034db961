//! A policy that needs 20 MiB of memory to say what it is: `describe` must run under the
//! policy's own `[policy.limits] memory-mib`, as every other call does, so that it loads with
//! `memory-mib = 64` and is refused, with the reason, under the default 16.

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use haven_sdk::{Event, Host, Plan, Policy, PolicyInfo, Result};

struct BigDescribe;

impl Policy for BigDescribe {
    type Settings = serde::de::IgnoredAny;

    fn info() -> PolicyInfo {
        let scratch = std::hint::black_box(vec![1u8; 20 << 20]);
        PolicyInfo {
            name: "big-describe".into(),
            version: format!("0.1.{}", scratch[scratch.len() - 1]),
        }
    }

    fn new(_: Self::Settings) -> Result<Self> {
        Ok(BigDescribe)
    }

    fn handle(&mut self, _: &Event, _: &dyn Host) -> Result<Plan> {
        Ok(Plan::none())
    }
}

haven_sdk::export_policy!(BigDescribe);
