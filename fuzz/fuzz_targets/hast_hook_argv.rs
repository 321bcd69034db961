//! The arguments hastd runs its `exec` hook with (NUL-separated here, as in argv).
#![no_main]

use haven_core::{Event, HastHook, names::check_hast_resource};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\0').collect();
    match haven_sources::hast_hook_event(&args) {
        Ok(Event::HastHook(hook)) => {
            let resource = match &hook {
                HastHook::RoleChanged(change) => &change.resource,
                HastHook::Connect(r)
                | HastHook::Disconnect(r)
                | HastHook::SyncStart(r)
                | HastHook::SyncDone(r)
                | HastHook::SyncInterrupted(r)
                | HastHook::SplitBrain(r) => r,
            };
            assert!(check_hast_resource("r", resource).is_ok());
        }
        Ok(other) => panic!("a hook became {other:?}"),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
