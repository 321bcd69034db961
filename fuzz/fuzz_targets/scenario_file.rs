//! Scenario files, as `havenctl test` reads them (the policy's config entry included).
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = haven_cli::scenario::parse(text, Path::new("scenario.toml"));
});
