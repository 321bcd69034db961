//! Lines of keepalived's `notify_fifo`, mapped as a config would map them.
#![no_main]

use std::collections::BTreeMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let vhids = BTreeMap::from([
        ("VI_1".to_owned(), (1, "eth0".to_owned())),
        ("G1".to_owned(), (7, "bond0".to_owned())),
    ]);
    match haven_sources::notify_fifo_line_to_event(line, &vhids) {
        Ok(event) => assert_eq!(event.kind(), "carp-changed"),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
