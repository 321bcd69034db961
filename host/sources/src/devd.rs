//! devd: the kernel's device and network events, as devd relays them.
//!
//! CARP tells the world about state changes only through devctl(4) notifies, which devd passes
//! on verbatim to every client of `/var/run/devd.seqpacket.pipe` (one event per packet) and
//! `/var/run/devd.pipe` (newline-delimited). This module is the parser for those lines and the
//! mapping from a parsed line to Haven's events:
//!
//! - `!system=CARP subsystem=<vhid>@<iface> type=INIT|BACKUP|MASTER` (sys/netinet/ip_carp.c,
//!   FreeBSD 10 and later) → `carp-changed`, with `previous` left empty for the daemon to fill
//!   from its model;
//! - `!system=IFNET subsystem=carp<N> type=LINK_UP|LINK_DOWN` (the carp(4) pseudo-interfaces
//!   of older setups and of the seed's devd.conf) → `carp-link`;
//! - everything else → `devd`, kept whole so a policy can still look at it.
//!
//! The line shapes come from sys/kern/subr_bus.c: `devctl_notify()` writes
//! `!system=%s subsystem=%s type=%s[ %s]\n`; `devaddq()` writes
//! `<+|-|?><name> at <location> <pnpinfo> on <parent>\n` (the name is empty for `?`, the
//! parent is `.` at the root of the tree, location and pnpinfo may both be empty); values that
//! may contain spaces are double-quoted with `"` and `\` escaped by a backslash
//! (`devctl_safe_quote_sb()`).
//!
//! We do not use the `devd-rs` crate (0.3.6): its parser takes a quoted value up to the first
//! `"` (no `\"` escapes), only accepts keys and device names made of letters and digits (so a
//! `pool_name=` attribute ends the attribute list, and the rest of the line is silently
//! dropped, and `+acpi_acad0 ...` does not parse), requires whitespace after `type=` (a line
//! without its `\n` does not parse), and keeps attributes in a map (order and duplicates lost).

use haven_core::{CarpChange, CarpLink, CarpState, DevdAttribute, DevdEvent, DevdKind, Event};

/// Why a devd line or event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevdError {
    /// The line does not have one of devd's shapes.
    #[error("devd line {line:?} {problem}")]
    Malformed { line: String, problem: DevdProblem },
    /// A `system=CARP` notify that does not say which vhid is in which state.
    #[error("devd CARP notify subsystem={subsystem:?} type={kind:?}: {problem}")]
    Carp {
        subsystem: String,
        kind: String,
        problem: CarpProblem,
    },
}

/// What is wrong with a devd line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevdProblem {
    #[error("is empty")]
    Empty,
    #[error(
        "contains a control character (a line break inside a line means two events glued together)"
    )]
    ControlCharacter,
    #[error("starts with {0:?}, which is not one of `!` `+` `-` `?`")]
    UnknownKind(char),
    #[error("has no device name right after `{0}`")]
    MissingDevice(char),
    #[error("has {0:?} where `at` belongs")]
    MissingAt(String),
    #[error("has no `on <parent>` at the end")]
    MissingParent,
    #[error("has {0:?} where the parent device belongs")]
    BadParent(String),
    #[error("has {0:?} after the parent device")]
    TrailingText(String),
    #[error("has {0:?} where a key=value pair belongs")]
    NotKeyValue(String),
    #[error("has an empty key in {0:?}")]
    EmptyKey(String),
    #[error("has no closing quote for the value of {0:?}")]
    UnterminatedQuote(String),
    #[error("has text right after the closing quote of the value of {0:?}")]
    TextAfterQuote(String),
    #[error("is a notify without `{0}=`")]
    MissingField(&'static str),
}

/// What is wrong with a CARP notify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarpProblem {
    #[error("the subsystem is not <vhid>@<interface>")]
    NotVhidAtInterface,
    #[error("vhid {0:?} is not a number from 1 to 255")]
    BadVhid(String),
    #[error("interface {0:?} is not an interface name")]
    BadInterface(String),
    #[error("the type is not INIT, BACKUP or MASTER")]
    UnknownState,
}

/// Parse one line as read from devd's socket; the trailing `\n` is optional.
pub fn parse_devd_line(line: &str) -> Result<DevdEvent, DevdError> {
    let malformed = |problem| DevdError::Malformed {
        line: line.to_owned(),
        problem,
    };
    let text = line.strip_suffix('\n').unwrap_or(line);
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(malformed(DevdProblem::ControlCharacter));
    }
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return Err(malformed(DevdProblem::Empty));
    };
    let rest = chars.as_str();
    match first {
        '!' => {
            let attributes = key_values(tokens(rest).map_err(malformed)?).map_err(malformed)?;
            for field in ["system", "subsystem", "type"] {
                if !attributes.iter().any(|a| a.key == field) {
                    return Err(malformed(DevdProblem::MissingField(field)));
                }
            }
            Ok(DevdEvent {
                kind: DevdKind::Notify,
                device: None,
                parent: None,
                attributes,
            })
        }
        '+' | '-' => {
            let end = rest.find([' ', '\t']).unwrap_or(rest.len());
            let (device, rest) = rest.split_at(end);
            if device.is_empty() {
                return Err(malformed(DevdProblem::MissingDevice(first)));
            }
            let kind = if first == '+' {
                DevdKind::Attach
            } else {
                DevdKind::Detach
            };
            located(kind, Some(device.to_owned()), rest).map_err(malformed)
        }
        '?' => located(DevdKind::Nomatch, None, rest).map_err(malformed),
        other => Err(malformed(DevdProblem::UnknownKind(other))),
    }
}

/// What a parsed devd event means to Haven.
///
/// A `system=CARP` notify must name a vhid from 1 to 255 and a known state: CARP has no other
/// notifies, so anything else is a broken line, not an event to pass on.
pub fn devd_to_event(event: &DevdEvent) -> Result<Event, DevdError> {
    if event.kind != DevdKind::Notify {
        return Ok(Event::Devd(event.clone()));
    }
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    };
    match (get("system"), get("subsystem"), get("type")) {
        (Some("CARP"), subsystem, kind) => {
            carp_change(subsystem.unwrap_or(""), kind.unwrap_or("")).map(Event::CarpChanged)
        }
        (Some("IFNET"), Some(interface), Some(kind @ ("LINK_UP" | "LINK_DOWN")))
            if is_carp_pseudo_interface(interface) =>
        {
            Ok(Event::CarpLink(CarpLink {
                interface: interface.to_owned(),
                up: kind == "LINK_UP",
            }))
        }
        _ => Ok(Event::Devd(event.clone())),
    }
}

/// [`parse_devd_line`] then [`devd_to_event`].
pub fn devd_line_to_event(line: &str) -> Result<Event, DevdError> {
    devd_to_event(&parse_devd_line(line)?)
}

fn carp_change(subsystem: &str, kind: &str) -> Result<CarpChange, DevdError> {
    let refuse = |problem| DevdError::Carp {
        subsystem: subsystem.to_owned(),
        kind: kind.to_owned(),
        problem,
    };
    let (vhid, interface) = subsystem
        .split_once('@')
        .ok_or_else(|| refuse(CarpProblem::NotVhidAtInterface))?;
    let vhid_number = vhid
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| vhid.parse::<u8>().ok())
        .flatten()
        .filter(|&n| crate::valid_vhid(n))
        .ok_or_else(|| refuse(CarpProblem::BadVhid(vhid.to_owned())))?;
    if !crate::valid_interface(interface) {
        return Err(refuse(CarpProblem::BadInterface(interface.to_owned())));
    }
    let state = match kind {
        "INIT" => CarpState::Init,
        "BACKUP" => CarpState::Backup,
        "MASTER" => CarpState::Master,
        _ => return Err(refuse(CarpProblem::UnknownState)),
    };
    Ok(CarpChange {
        vhid: vhid_number,
        interface: interface.to_owned(),
        state,
        previous: None,
    })
}

/// `carp` followed by one or more digits: a carp(4) pseudo-interface of FreeBSD 9 and earlier.
fn is_carp_pseudo_interface(name: &str) -> bool {
    name.strip_prefix("carp")
        .is_some_and(|unit| !unit.is_empty() && unit.bytes().all(|b| b.is_ascii_digit()))
}

/// The `at ... on <parent>` part of an attach, detach or nomatch line.
fn located(kind: DevdKind, device: Option<String>, rest: &str) -> Result<DevdEvent, DevdProblem> {
    let mut tokens = tokens(rest)?.into_iter();
    match tokens.next() {
        Some(Token { raw: "at", .. }) => {}
        other => {
            return Err(DevdProblem::MissingAt(
                other.map_or("", |t| t.raw).to_owned(),
            ));
        }
    }
    let mut location = Vec::new();
    let parent = loop {
        match tokens.next() {
            None => return Err(DevdProblem::MissingParent),
            Some(Token { raw: "on", .. }) => match tokens.next() {
                Some(Token {
                    raw, pair: None, ..
                }) => break raw,
                Some(token) => return Err(DevdProblem::BadParent(token.raw.to_owned())),
                None => return Err(DevdProblem::MissingParent),
            },
            Some(token) => location.push(token),
        }
    };
    if let Some(extra) = tokens.next() {
        return Err(DevdProblem::TrailingText(rest[extra.start..].to_owned()));
    }
    Ok(DevdEvent {
        kind,
        device,
        parent: Some(parent.to_owned()),
        attributes: key_values(location)?,
    })
}

fn key_values(tokens: Vec<Token<'_>>) -> Result<Vec<DevdAttribute>, DevdProblem> {
    tokens
        .into_iter()
        .map(|token| match token.pair {
            Some((key, value)) => Ok(DevdAttribute { key, value }),
            None => Err(DevdProblem::NotKeyValue(token.raw.to_owned())),
        })
        .collect()
}

/// One blank-separated word of a devd line: `key=value`, `key="quoted value"` or a bare word.
#[derive(Debug)]
struct Token<'a> {
    /// The token as written, quotes and escapes included.
    raw: &'a str,
    /// Where the token starts in the text it was split from.
    start: usize,
    /// Key and unescaped value, if the token has a `=`.
    pair: Option<(String, String)>,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Split `text` into tokens. A value is quoted when it starts with `"`; inside, `\"` and `\\`
/// stand for `"` and `\`, any other backslash is kept as written. Outside quotes, `"` and `\`
/// are ordinary characters (ACPI handles such as `handle=\_SB_.PCI0` are written bare).
fn tokens(text: &str) -> Result<Vec<Token<'_>>, DevdProblem> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_blank(c) {
            chars.next();
            continue;
        }
        // The key, or a bare word: up to a blank or the first `=`.
        let mut key_end = None;
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if is_blank(c) {
                end = i;
                break;
            }
            chars.next();
            if c == '=' {
                key_end = Some(i);
                break;
            }
        }
        let Some(key_end) = key_end else {
            out.push(Token {
                raw: &text[start..end],
                start,
                pair: None,
            });
            continue;
        };
        let key = &text[start..key_end];
        let raw_to_blank = || {
            let end = text[start..]
                .find(is_blank)
                .map_or(text.len(), |n| start + n);
            text[start..end].to_owned()
        };
        if key.is_empty() {
            return Err(DevdProblem::EmptyKey(raw_to_blank()));
        }
        let mut value = String::new();
        let end;
        if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            let mut closed = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = Some(i + 1);
                        break;
                    }
                    '\\' => match chars.peek() {
                        Some(&(_, escaped @ ('"' | '\\'))) => {
                            value.push(escaped);
                            chars.next();
                        }
                        _ => value.push('\\'),
                    },
                    other => value.push(other),
                }
            }
            let Some(closed) = closed else {
                return Err(DevdProblem::UnterminatedQuote(key.to_owned()));
            };
            if chars.peek().is_some_and(|&(_, c)| !is_blank(c)) {
                return Err(DevdProblem::TextAfterQuote(key.to_owned()));
            }
            end = closed;
        } else {
            let mut bare_end = text.len();
            while let Some(&(i, c)) = chars.peek() {
                if is_blank(c) {
                    bare_end = i;
                    break;
                }
                value.push(c);
                chars.next();
            }
            end = bare_end;
        }
        out.push(Token {
            raw: &text[start..end],
            start,
            pair: Some((key.to_owned(), value)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(key: &str, value: &str) -> DevdAttribute {
        DevdAttribute {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn problem(line: &str) -> DevdProblem {
        match parse_devd_line(line) {
            Err(DevdError::Malformed {
                line: quoted,
                problem,
            }) => {
                assert_eq!(quoted, line);
                problem
            }
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn carp_problem(line: &str) -> CarpProblem {
        match devd_line_to_event(line) {
            Err(DevdError::Carp { problem, .. }) => problem,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    // ------------------------------------------------------------------------------- parsing

    #[test]
    fn notify_with_and_without_newline() {
        for line in [
            "!system=CARP subsystem=1@em0 type=MASTER\n",
            "!system=CARP subsystem=1@em0 type=MASTER",
        ] {
            let event = parse_devd_line(line).unwrap();
            assert_eq!(
                event,
                DevdEvent {
                    kind: DevdKind::Notify,
                    device: None,
                    parent: None,
                    attributes: vec![
                        attr("system", "CARP"),
                        attr("subsystem", "1@em0"),
                        attr("type", "MASTER"),
                    ],
                }
            );
        }
    }

    #[test]
    fn notify_keeps_extra_attributes_in_order_with_duplicates() {
        let line = "!system=ZFS subsystem=ZFS type=sysevent.fs.zfs.vdev_remove \
                    pool_name=tank pool_guid=123 _HID=PNP0C0A a=1 a=2 empty= sernum=\"\"\n";
        let event = parse_devd_line(line).unwrap();
        assert_eq!(
            event.attributes,
            vec![
                attr("system", "ZFS"),
                attr("subsystem", "ZFS"),
                attr("type", "sysevent.fs.zfs.vdev_remove"),
                attr("pool_name", "tank"),
                attr("pool_guid", "123"),
                attr("_HID", "PNP0C0A"),
                attr("a", "1"),
                attr("a", "2"),
                attr("empty", ""),
                attr("sernum", ""),
            ]
        );
    }

    #[test]
    fn notify_fields_in_any_order() {
        let event = parse_devd_line("!type=LINK_UP system=IFNET subsystem=carp0").unwrap();
        assert_eq!(
            devd_to_event(&event).unwrap(),
            Event::CarpLink(CarpLink {
                interface: "carp0".into(),
                up: true
            })
        );
    }

    #[test]
    fn attach_with_quoted_values_and_escapes() {
        let line = "+umass0 at bus=0 sernum=\"A B\" product=\"say \\\"hi\\\" \\\\o/\" \
                    handle=\\_SB_.PCI0 path=\"C:\\dir\" on uhub1\n";
        let event = parse_devd_line(line).unwrap();
        assert_eq!(
            event,
            DevdEvent {
                kind: DevdKind::Attach,
                device: Some("umass0".into()),
                parent: Some("uhub1".into()),
                attributes: vec![
                    attr("bus", "0"),
                    attr("sernum", "A B"),
                    attr("product", "say \"hi\" \\o/"),
                    attr("handle", "\\_SB_.PCI0"),
                    attr("path", "C:\\dir"),
                ],
            }
        );
    }

    #[test]
    fn quoted_value_may_contain_on_and_equals() {
        let event = parse_devd_line("+da0 at desc=\"plug on x=y\" on umass-sim0").unwrap();
        assert_eq!(event.attributes, vec![attr("desc", "plug on x=y")]);
        assert_eq!(event.parent.as_deref(), Some("umass-sim0"));
    }

    #[test]
    fn detach_with_empty_location() {
        let event = parse_devd_line("-uhid1 at  on uhub1\n").unwrap();
        assert_eq!(
            event,
            DevdEvent {
                kind: DevdKind::Detach,
                device: Some("uhid1".into()),
                parent: Some("uhub1".into()),
                attributes: vec![],
            }
        );
    }

    #[test]
    fn device_names_with_underscores_and_root_parent() {
        let event = parse_devd_line("+acpi_acad0 at handle=\\_SB_.ADP1 on acpi0").unwrap();
        assert_eq!(event.device.as_deref(), Some("acpi_acad0"));
        let event = parse_devd_line("+nexus0 at  on .").unwrap();
        assert_eq!(event.parent.as_deref(), Some("."));
    }

    #[test]
    fn nomatch() {
        let event = parse_devd_line("? at bus=0 vendor=0x1050 sernum=\"x y\" on uhub1\n").unwrap();
        assert_eq!(
            event,
            DevdEvent {
                kind: DevdKind::Nomatch,
                device: None,
                parent: Some("uhub1".into()),
                attributes: vec![
                    attr("bus", "0"),
                    attr("vendor", "0x1050"),
                    attr("sernum", "x y"),
                ],
            }
        );
        assert_eq!(
            parse_devd_line("?at  on pci0").unwrap().parent.as_deref(),
            Some("pci0")
        );
    }

    #[test]
    fn tabs_separate_like_spaces() {
        let event = parse_devd_line("!system=A\tsubsystem=B  type=C\t").unwrap();
        assert_eq!(event.attributes.len(), 3);
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(problem(""), DevdProblem::Empty);
        assert_eq!(problem("\n"), DevdProblem::Empty);
        assert_eq!(problem("*system=X"), DevdProblem::UnknownKind('*'));
        assert_eq!(problem("system=X"), DevdProblem::UnknownKind('s'));
        assert_eq!(
            problem("!system=A subsystem=B type=C\n!system=D"),
            DevdProblem::ControlCharacter
        );
        assert_eq!(problem("!system=A\0"), DevdProblem::ControlCharacter);
        assert_eq!(problem("!system=A\r\n"), DevdProblem::ControlCharacter);
        assert_eq!(
            problem("!system=A subsystem=B"),
            DevdProblem::MissingField("type")
        );
        assert_eq!(
            problem("!subsystem=B type=C"),
            DevdProblem::MissingField("system")
        );
        assert_eq!(
            problem("!system=A subsystem=B type=C junk"),
            DevdProblem::NotKeyValue("junk".into())
        );
        assert_eq!(
            problem("!system=A =x type=C"),
            DevdProblem::EmptyKey("=x".into())
        );
        assert_eq!(
            problem("!system=A subsystem=\"B type=C"),
            DevdProblem::UnterminatedQuote("subsystem".into())
        );
        assert_eq!(
            problem("!system=A subsystem=\"B\\\" type=C"),
            DevdProblem::UnterminatedQuote("subsystem".into())
        );
        assert_eq!(
            problem("!system=A subsystem=\"B\"x type=C"),
            DevdProblem::TextAfterQuote("subsystem".into())
        );
        assert_eq!(problem("+ at on uhub0"), DevdProblem::MissingDevice('+'));
        assert_eq!(problem("-"), DevdProblem::MissingDevice('-'));
        assert_eq!(
            problem("+umass0 bus=0 on uhub1"),
            DevdProblem::MissingAt("bus=0".into())
        );
        assert_eq!(problem("+umass0"), DevdProblem::MissingAt("".into()));
        assert_eq!(problem("+umass0 at bus=0"), DevdProblem::MissingParent);
        assert_eq!(problem("+umass0 at bus=0 on"), DevdProblem::MissingParent);
        assert_eq!(
            problem("+umass0 at bus=0 on a=b"),
            DevdProblem::BadParent("a=b".into())
        );
        assert_eq!(
            problem("+umass0 at bus=0 on uhub1 extra \"stuff\""),
            DevdProblem::TrailingText("extra \"stuff\"".into())
        );
        assert_eq!(
            problem("+umass0 at bus=0 stray on uhub1"),
            DevdProblem::NotKeyValue("stray".into())
        );
        assert_eq!(
            problem("? bus=0 on uhub1"),
            DevdProblem::MissingAt("bus=0".into())
        );
    }

    #[test]
    fn error_messages_quote_the_line() {
        let message = parse_devd_line("!system=A subsystem=\"B type=C\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "devd line \"!system=A subsystem=\\\"B type=C\\n\" has no closing quote for the \
             value of \"subsystem\""
        );
    }

    // ------------------------------------------------------------------------------- mapping

    #[test]
    fn carp_states() {
        for (kind, state) in [
            ("INIT", CarpState::Init),
            ("BACKUP", CarpState::Backup),
            ("MASTER", CarpState::Master),
        ] {
            let line = format!("!system=CARP subsystem=1@em0 type={kind}\n");
            assert_eq!(
                devd_line_to_event(&line).unwrap(),
                Event::CarpChanged(CarpChange {
                    vhid: 1,
                    interface: "em0".into(),
                    state,
                    previous: None,
                })
            );
        }
        let Event::CarpChanged(change) =
            devd_line_to_event("!system=CARP subsystem=255@vlan.100 type=BACKUP").unwrap()
        else {
            panic!()
        };
        assert_eq!((change.vhid, change.interface.as_str()), (255, "vlan.100"));
    }

    #[test]
    fn bad_carp_notifies_are_errors() {
        for vhid in [
            "0",
            "256",
            "300",
            "",
            "x",
            "+1",
            "-1",
            " 1",
            "1.0",
            "99999999999",
        ] {
            let line = format!("!system=CARP subsystem=\"{vhid}@em0\" type=MASTER");
            assert_eq!(
                carp_problem(&line),
                CarpProblem::BadVhid(vhid.into()),
                "{line}"
            );
        }
        assert_eq!(
            carp_problem("!system=CARP subsystem=em0 type=MASTER"),
            CarpProblem::NotVhidAtInterface
        );
        assert_eq!(
            carp_problem("!system=CARP subsystem=1@ type=MASTER"),
            CarpProblem::BadInterface("".into())
        );
        assert_eq!(
            carp_problem("!system=CARP subsystem=\"1@e m0\" type=MASTER"),
            CarpProblem::BadInterface("e m0".into())
        );
        for kind in ["master", "LINK_UP", "", "MASTERS"] {
            let line = format!("!system=CARP subsystem=1@em0 type=\"{kind}\"");
            assert_eq!(carp_problem(&line), CarpProblem::UnknownState, "{line}");
        }
        let message = devd_line_to_event("!system=CARP subsystem=300@em0 type=MASTER")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "devd CARP notify subsystem=\"300@em0\" type=\"MASTER\": vhid \"300\" is not a \
             number from 1 to 255"
        );
    }

    #[test]
    fn carp_notify_built_without_fields_is_an_error() {
        let event = DevdEvent {
            kind: DevdKind::Notify,
            device: None,
            parent: None,
            attributes: vec![attr("system", "CARP")],
        };
        assert!(matches!(
            devd_to_event(&event),
            Err(DevdError::Carp {
                problem: CarpProblem::NotVhidAtInterface,
                ..
            })
        ));
    }

    #[test]
    fn legacy_carp_link() {
        for (line, interface, up) in [
            (
                "!system=IFNET subsystem=carp0 type=LINK_UP\n",
                "carp0",
                true,
            ),
            (
                "!system=IFNET subsystem=carp12 type=LINK_DOWN",
                "carp12",
                false,
            ),
        ] {
            assert_eq!(
                devd_line_to_event(line).unwrap(),
                Event::CarpLink(CarpLink {
                    interface: interface.into(),
                    up
                })
            );
        }
    }

    #[test]
    fn other_notifies_stay_devd_events() {
        for line in [
            "!system=IFNET subsystem=em0 type=LINK_UP",
            "!system=IFNET subsystem=carp type=LINK_UP",
            "!system=IFNET subsystem=carp0a type=LINK_DOWN",
            "!system=IFNET subsystem=carpdev0 type=LINK_DOWN",
            "!system=IFNET subsystem=carp0 type=ATTACH",
            "!system=ifnet subsystem=carp0 type=LINK_UP",
            "!system=carp subsystem=nonsense type=whatever",
            "!system=USB subsystem=DEVICE type=ATTACH ugen=ugen0.2",
        ] {
            let parsed = parse_devd_line(line).unwrap();
            assert_eq!(
                devd_to_event(&parsed).unwrap(),
                Event::Devd(parsed),
                "{line}"
            );
        }
    }

    #[test]
    fn attach_detach_nomatch_stay_devd_events_even_when_they_mention_carp() {
        for line in [
            "+carp0 at system=CARP on pseudo",
            "-umass0 at bus=0 on uhub1",
            "? at system=CARP subsystem=1@em0 type=MASTER on pci0",
        ] {
            let parsed = parse_devd_line(line).unwrap();
            assert_eq!(devd_to_event(&parsed).unwrap(), Event::Devd(parsed));
        }
    }
}
