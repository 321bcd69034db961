//! devd's lines (a seqpacket message or a stream line) as the daemon's devd client reads them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match haven_sources::parse_devd_line(line) {
        Ok(event) => {
            let _ = haven_sources::devd_to_event(&event).map_err(|error| error.to_string());
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
