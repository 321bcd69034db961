//! `hastctl list` and `hastctl status` output, as the poller and the executor read it.
#![no_main]

use haven_core::names::check_hast_resource;
use std::collections::HashSet;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list = haven_sources::read_hastctl_list(text);
    // The strict reader agrees with the per-resource one.
    match haven_sources::parse_hastctl_list(text) {
        Ok(statuses) => {
            assert!(list.refused.is_empty());
            assert_eq!(statuses, list.statuses);
        }
        Err(_) => assert!(!list.refused.is_empty()),
    }
    // Every resource read is named as hastd names them, and once.
    let mut names = HashSet::new();
    for status in &list.statuses {
        assert!(check_hast_resource("r", &status.resource).is_ok());
        assert!(
            names.insert(status.resource.as_str()),
            "{} twice",
            status.resource
        );
    }
    for refusal in &list.refused {
        let _ = refusal.to_string();
    }
    if let Ok(statuses) = haven_sources::parse_hastctl_status(text) {
        for status in &statuses {
            assert!(check_hast_resource("r", &status.resource).is_ok());
        }
    }
});
