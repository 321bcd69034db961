//! The values and keys Haven reads back from etcd (anyone who may write under the prefix
//! can put anything there). A record that parses survives a JSON round trip; a key is
//! classified without panicking.
#![no_main]

use haven_witness::records::{self, LeaderRecord, MemberRecord};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(leader) = records::parse::<LeaderRecord>("/haven/db1/leader", data) {
        let again = serde_json::to_vec(&leader).expect("a record prints as JSON");
        assert_eq!(records::parse::<LeaderRecord>("k", &again), Ok(leader));
    }
    if let Ok(member) = records::parse::<MemberRecord>("/haven/db1/members/a", data) {
        let again = serde_json::to_vec(&member).expect("a record prints as JSON");
        assert_eq!(records::parse::<MemberRecord>("k", &again), Ok(member));
    }
    if let Ok(key) = std::str::from_utf8(data) {
        let _ = records::classify(key);
    }
});
