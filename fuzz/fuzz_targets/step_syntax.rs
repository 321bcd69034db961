//! The one-line step syntax (scenario files, `simulate`, the journal's display): what parses
//! prints back to a line that parses to the same step and prints the same.
#![no_main]

use haven_core::Step;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(step) = text.parse::<Step>() else {
        return;
    };
    let printed = step.to_string();
    let again: Step = printed
        .parse()
        .unwrap_or_else(|error| panic!("{printed:?} (from {text:?}) does not parse: {error}"));
    assert_eq!(again, step, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
});
