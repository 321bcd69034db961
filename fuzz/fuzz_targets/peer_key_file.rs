//! The peer link's key file. A file that parses prints back to the same keys.
#![no_main]

use haven_peer::PeerKeys;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(keys) = PeerKeys::parse(text) {
        let again = PeerKeys::parse(&keys.to_file_text()).expect("printed keys parse");
        assert_eq!(again, keys);
    }
});
