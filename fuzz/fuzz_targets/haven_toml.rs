//! `haven.toml`. A config that parses can be printed back (settings that JSON cannot carry,
//! such as `nan`, must have been refused).
#![no_main]

use haven_core::Config;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/etc/haven/haven.toml")) {
        Ok(config) => {
            if let Err(error) = toml::to_string(&config) {
                panic!("a parsed config cannot be printed back: {error}\n{config:?}");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
