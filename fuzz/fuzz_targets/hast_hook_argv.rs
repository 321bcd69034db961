//! The arguments hastd runs its `exec` hook with (NUL-separated here, as in argv).
#![no_main]

use haven_core::names::check_hast_resource;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\0').collect();
    match haven_sources::parse_hast_hook(&args) {
        Ok(hook) => assert!(check_hast_resource("r", hook.resource()).is_ok()),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
