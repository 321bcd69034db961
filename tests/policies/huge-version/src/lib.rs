//! A policy that says its version is 12 MiB long: the host refuses it at load with a clear
//! reason (it would otherwise sit in every status answer, past the control socket's limit).

// Only the WebAssembly build exports the policy; natively it is never used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use haven_sdk::{Event, Host, Plan, Policy, PolicyInfo, Result};

struct HugeVersion;

impl Policy for HugeVersion {
    type Settings = serde::de::IgnoredAny;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "huge-version".into(),
            version: "9".repeat(12 << 20),
        }
    }

    fn new(_: Self::Settings) -> Result<Self> {
        Ok(HugeVersion)
    }

    fn handle(&mut self, _: &Event, _: &dyn Host) -> Result<Plan> {
        Ok(Plan::none())
    }
}

haven_sdk::export_policy!(HugeVersion);
