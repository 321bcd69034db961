//! Text that someone else wrote, made safe to show a person.
//!
//! Policies, peers and files put text in front of operators: alerts, log lines, error
//! strings, refusal messages, names in `hastctl` output. A newline in such text could forge a
//! line of `havenctl log`; an escape sequence could rewrite the operator's terminal. So every
//! place that shows outside text to a person passes it through [`escape`] (and [`clip`] where
//! it may be long). The journal keeps the text as it came (JSON escapes it on disk); only the
//! display escapes.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether a character would be unsafe to show raw: control characters (C0, DEL, C1, which
/// include ESC and the terminal's CSI), and the Unicode marks that reorder or hide text
/// (bidirectional overrides and isolates, zero-width joiners, the BOM, line and paragraph
/// separators).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` with every unsafe character written as an escape (`\n`, `\t`, `\u{1b}`), and `\`
/// itself doubled, so that an escaped text never looks like another. Borrowed when nothing
/// needed escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| unsafe_char(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max_bytes` (on a character boundary), with a note of how long it
/// was when it was cut.
pub fn clip(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// Displays outside text escaped: `format!("{}", Escaped(&alert))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("mysql started on hasta"), Cow::Borrowed(_)));
        assert!(matches!(escape("données répliquées"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_and_reordering_characters_are_escaped() {
        assert_eq!(
            escape("ok\n2026-12-04 decision 7 by mysql@x"),
            "ok\\n2026-12-04 decision 7 by mysql@x"
        );
        assert_eq!(escape("\u{1b}[2J\u{0}\r\t"), "\\u{1b}[2J\\u{0}\\r\\t");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(
            escape("a\\nb"),
            "a\\\\nb",
            "a literal backslash-n stays distinct"
        );
    }

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é… (6 bytes in all)");
        assert_eq!(clip(&"x".repeat(20), 4), "xxxx… (20 bytes in all)");
    }
}
