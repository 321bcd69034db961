//! The control socket's request lines. A request that parses survives a JSON round trip.
#![no_main]

use haven_daemon::control::{Request, parse_request};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        let line = serde_json::to_vec(&request).expect("a request prints as JSON");
        let again: Request = parse_request(&line).expect("a printed request parses");
        assert_eq!(again, request);
    }
});
