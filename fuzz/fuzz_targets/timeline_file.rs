//! Timeline files, as `havenctl simulate` reads them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = haven_cli::simulate::Timeline::parse(text) {
        let _ = error.to_string();
    }
});
