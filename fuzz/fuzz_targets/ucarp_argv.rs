//! The arguments ucarp runs its up and down scripts with (NUL-separated here, as in argv).
#![no_main]

use std::collections::BTreeMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\0').collect();
    let vhids = BTreeMap::from([(("eth0".to_owned(), "10.0.0.1".to_owned()), 1u8)]);
    match haven_sources::ucarp_args_to_event(&args, &vhids) {
        Ok(event) => assert_eq!(event.kind(), "carp-changed"),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
