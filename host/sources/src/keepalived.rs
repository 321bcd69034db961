//! keepalived: VRRP state changes on a Linux peer, read from keepalived's `notify_fifo`.
//!
//! On Linux there is no CARP; keepalived's VRRP plays its part. Its `notify` scripts are
//! fire-and-forget and can run out of order, so Haven reads the ordered channel instead: the
//! FIFO named by `notify_fifo`, where keepalived writes one line per transition
//! (keepalived/vrrp/vrrp_notify.c, `"%s \"%s\" %s %d\n"`):
//!
//! ```text
//! INSTANCE "VI_1" MASTER 100
//! GROUP "G1" BACKUP 0
//! ```
//!
//! Policies speak CARP, so the config maps each VRRP instance (or sync group) name to the
//! CARP vhid and interface a policy knows it by, and [`vrrp_to_event`] turns a transition into
//! `carp-changed`: MASTER → master, BACKUP → backup, FAULT and STOP → init (the vhid is not
//! taking part, as CARP's INIT). A name the config does not map is an error, not a silent drop:
//! it means the config and keepalived's disagree.
//!
//! Lines keepalived writes that are not VRRP transitions are known and set apart as
//! [`KeepalivedError::NotTransition`], which the daemon counts and passes over without calling
//! them bad input: the checker's `VS`/`RS` lines on a shared FIFO, and the states
//! `MASTER_RX_LOWER_PRI`, `DELETED`, and (with `notify_priority_changes`) `MASTER_PRIORITY` and
//! `BACKUP_PRIORITY`, which report a priority, not a change of state. Current keepalived writes
//! the checker's terminating NUL byte to a shared FIFO too, so a line may start with NULs; they
//! are passed over.

use std::collections::BTreeMap;

use haven_core::{CarpChange, CarpState, Event};

/// Whether a transition is a VRRP instance's or a sync group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpKind {
    Instance,
    Group,
}

impl VrrpKind {
    /// As keepalived writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpKind::Instance => "INSTANCE",
            VrrpKind::Group => "GROUP",
        }
    }
}

/// The state a VRRP instance or group entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VrrpState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl VrrpState {
    /// The CARP state a policy sees for it.
    pub fn carp_state(self) -> CarpState {
        match self {
            VrrpState::Master => CarpState::Master,
            VrrpState::Backup => CarpState::Backup,
            VrrpState::Fault | VrrpState::Stop => CarpState::Init,
        }
    }
}

/// One `notify_fifo` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpTransition {
    pub kind: VrrpKind,
    pub name: String,
    pub state: VrrpState,
    pub priority: u8,
}

/// Why a `notify_fifo` line or transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepalivedError {
    /// The line is not a VRRP transition.
    #[error("keepalived notify_fifo line {line:?}: {problem}")]
    Malformed {
        line: String,
        problem: VrrpLineProblem,
    },
    /// A line keepalived writes that is not a VRRP transition (see the module documentation).
    #[error("keepalived notify_fifo line {line:?} is not a VRRP transition ({what})")]
    NotTransition { line: String, what: String },
    /// The config does not say which CARP vhid the instance or group stands for.
    #[error(
        "keepalived {} {name:?} is not mapped to a CARP vhid in the config",
        kind.as_str()
    )]
    Unmapped { kind: VrrpKind, name: String },
    /// The config maps the name to vhid 0.
    #[error("keepalived {} {name:?} is mapped to vhid 0, which is not a vhid", kind.as_str())]
    BadVhid { kind: VrrpKind, name: String },
    /// The config maps the name to something that is not an interface name.
    #[error(
        "keepalived {} {name:?} is mapped to interface {interface:?}, which is not an \
         interface name",
        kind.as_str()
    )]
    BadInterface {
        kind: VrrpKind,
        name: String,
        interface: String,
    },
}

/// What is wrong with a `notify_fifo` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VrrpLineProblem {
    #[error("is empty")]
    Empty,
    #[error("contains a control character (a line break inside means two lines glued together)")]
    ControlCharacter,
    #[error("is not `<INSTANCE|GROUP> \"<name>\" <state> <priority>`")]
    Shape,
    #[error("type {0:?} is not INSTANCE or GROUP")]
    UnknownKind(String),
    #[error("name {0:?} is not in double quotes")]
    UnquotedName(String),
    #[error("the name is empty")]
    EmptyName,
    #[error("state {0:?} is not MASTER, BACKUP, FAULT or STOP")]
    UnknownState(String),
    #[error("priority {0:?} is not a number from 0 to 255")]
    BadPriority(String),
}

/// Parse one `notify_fifo` line; the trailing `\n` is optional. The name is everything between
/// the first and the last quote (keepalived does not escape it).
pub fn parse_notify_fifo_line(line: &str) -> Result<VrrpTransition, KeepalivedError> {
    let refuse = |problem| KeepalivedError::Malformed {
        line: line.to_owned(),
        problem,
    };
    let text = line.strip_suffix('\n').unwrap_or(line);
    let text = text.trim_start_matches('\0');
    let not_transition = |what: &str| KeepalivedError::NotTransition {
        line: text.to_owned(),
        what: what.to_owned(),
    };
    if text.starts_with("VS ") || text.starts_with("RS ") {
        return Err(not_transition("a checker line"));
    }
    if text.is_empty() {
        return Err(refuse(VrrpLineProblem::Empty));
    }
    if text.chars().any(char::is_control) {
        return Err(refuse(VrrpLineProblem::ControlCharacter));
    }
    let mut from_right = text.rsplitn(3, ' ');
    let (Some(priority), Some(state), Some(head)) =
        (from_right.next(), from_right.next(), from_right.next())
    else {
        return Err(refuse(VrrpLineProblem::Shape));
    };
    let Some((kind, quoted)) = head.split_once(' ') else {
        return Err(refuse(VrrpLineProblem::Shape));
    };
    let kind = match kind {
        "INSTANCE" => VrrpKind::Instance,
        "GROUP" => VrrpKind::Group,
        other => return Err(refuse(VrrpLineProblem::UnknownKind(other.to_owned()))),
    };
    let name = quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or_else(|| refuse(VrrpLineProblem::UnquotedName(quoted.to_owned())))?;
    if name.is_empty() {
        return Err(refuse(VrrpLineProblem::EmptyName));
    }
    let state = match state {
        "MASTER" => VrrpState::Master,
        "BACKUP" => VrrpState::Backup,
        "FAULT" => VrrpState::Fault,
        "STOP" => VrrpState::Stop,
        "MASTER_PRIORITY" | "BACKUP_PRIORITY" => return Err(not_transition("a priority change")),
        "MASTER_RX_LOWER_PRI" | "DELETED" => return Err(not_transition(state)),
        other => return Err(refuse(VrrpLineProblem::UnknownState(other.to_owned()))),
    };
    let priority = priority
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| priority.parse::<u8>().ok())
        .flatten()
        .ok_or_else(|| refuse(VrrpLineProblem::BadPriority(priority.to_owned())))?;
    Ok(VrrpTransition {
        kind,
        name: name.to_owned(),
        state,
        priority,
    })
}

/// A transition as `carp-changed`, through the config's map from instance (or group) names to
/// `(vhid, interface)`. `previous` is left empty for the daemon to fill from its model.
pub fn vrrp_to_event(
    transition: &VrrpTransition,
    vhids: &BTreeMap<String, (u8, String)>,
) -> Result<Event, KeepalivedError> {
    let kind = transition.kind;
    let name = || transition.name.clone();
    let (vhid, interface) = vhids
        .get(&transition.name)
        .ok_or_else(|| KeepalivedError::Unmapped { kind, name: name() })?;
    if !crate::valid_vhid(*vhid) {
        return Err(KeepalivedError::BadVhid { kind, name: name() });
    }
    if !crate::valid_interface(interface) {
        return Err(KeepalivedError::BadInterface {
            kind,
            name: name(),
            interface: interface.clone(),
        });
    }
    Ok(Event::CarpChanged(CarpChange {
        vhid: *vhid,
        interface: interface.clone(),
        state: transition.state.carp_state(),
        previous: None,
    }))
}

/// [`parse_notify_fifo_line`] then [`vrrp_to_event`].
pub fn notify_fifo_line_to_event(
    line: &str,
    vhids: &BTreeMap<String, (u8, String)>,
) -> Result<Event, KeepalivedError> {
    vrrp_to_event(&parse_notify_fifo_line(line)?, vhids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_nul_bytes_are_passed_over() {
        let transition = parse_notify_fifo_line("\0INSTANCE \"VI_1\" MASTER 100\n").unwrap();
        assert_eq!(transition.state, VrrpState::Master);
        assert_eq!(transition.name, "VI_1");
        assert!(parse_notify_fifo_line("\0\0GROUP \"G1\" FAULT 0").is_ok());
    }

    #[test]
    fn known_lines_that_are_not_transitions_are_set_apart() {
        for line in [
            "INSTANCE \"VI_1\" MASTER_PRIORITY 110\n",
            "INSTANCE \"VI_1\" BACKUP_PRIORITY 90\n",
            "INSTANCE \"VI_1\" MASTER_RX_LOWER_PRI 100\n",
            "INSTANCE \"VI_1\" DELETED 100\n",
            "\0VS [10.0.0.1]:tcp:80 UP\n",
            "RS [10.0.0.2]:tcp:80 [10.0.0.1]:tcp:80 DOWN\n",
        ] {
            assert!(
                matches!(
                    parse_notify_fifo_line(line),
                    Err(KeepalivedError::NotTransition { .. })
                ),
                "{line:?}"
            );
        }
    }

    fn problem(line: &str) -> VrrpLineProblem {
        match parse_notify_fifo_line(line) {
            Err(KeepalivedError::Malformed {
                line: quoted,
                problem,
            }) => {
                assert_eq!(quoted, line);
                problem
            }
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn map() -> BTreeMap<String, (u8, String)> {
        BTreeMap::from([
            ("VI_1".to_owned(), (1, "eth0".to_owned())),
            ("G1".to_owned(), (7, "bond0".to_owned())),
            ("zero".to_owned(), (0, "eth0".to_owned())),
            ("noif".to_owned(), (3, "".to_owned())),
        ])
    }

    #[test]
    fn instance_and_group_lines() {
        assert_eq!(
            parse_notify_fifo_line("INSTANCE \"VI_1\" MASTER 100\n").unwrap(),
            VrrpTransition {
                kind: VrrpKind::Instance,
                name: "VI_1".into(),
                state: VrrpState::Master,
                priority: 100,
            }
        );
        assert_eq!(
            parse_notify_fifo_line("GROUP \"G1\" BACKUP 0").unwrap(),
            VrrpTransition {
                kind: VrrpKind::Group,
                name: "G1".into(),
                state: VrrpState::Backup,
                priority: 0,
            }
        );
        for (word, state) in [("FAULT", VrrpState::Fault), ("STOP", VrrpState::Stop)] {
            let line = format!("INSTANCE \"VI_1\" {word} 255\n");
            let parsed = parse_notify_fifo_line(&line).unwrap();
            assert_eq!((parsed.state, parsed.priority), (state, 255));
        }
    }

    #[test]
    fn names_with_spaces_and_quotes_are_kept_verbatim() {
        let parsed = parse_notify_fifo_line("INSTANCE \"my \"odd\" vi\" MASTER 50").unwrap();
        assert_eq!(parsed.name, "my \"odd\" vi");
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(problem(""), VrrpLineProblem::Empty);
        assert_eq!(problem("\n"), VrrpLineProblem::Empty);
        assert_eq!(
            problem("INSTANCE \"VI_1\" MASTER 100\r\n"),
            VrrpLineProblem::ControlCharacter
        );
        assert_eq!(
            problem("INSTANCE \"VI_1\" MASTER 100\nINSTANCE \"VI_2\" BACKUP 90"),
            VrrpLineProblem::ControlCharacter
        );
        assert_eq!(problem("INSTANCE \"VI_1\" MASTER"), VrrpLineProblem::Shape);
        assert_eq!(problem("MASTER 100"), VrrpLineProblem::Shape);
        assert_eq!(problem("garbage"), VrrpLineProblem::Shape);
        assert_eq!(
            problem("XS \"[10.0.0.1]:tcp:80\" UP 0"),
            VrrpLineProblem::UnknownKind("XS".into())
        );
        assert_eq!(
            problem("instance \"VI_1\" MASTER 100"),
            VrrpLineProblem::UnknownKind("instance".into())
        );
        assert_eq!(
            problem("INSTANCE VI_1 MASTER 100"),
            VrrpLineProblem::UnquotedName("VI_1".into())
        );
        assert_eq!(
            problem("INSTANCE \"VI_1 MASTER 100"),
            VrrpLineProblem::UnquotedName("\"VI_1".into())
        );
        assert_eq!(
            problem("INSTANCE \" MASTER 100"),
            VrrpLineProblem::UnquotedName("\"".into())
        );
        assert_eq!(
            problem("INSTANCE \"\" MASTER 100"),
            VrrpLineProblem::EmptyName
        );
        assert_eq!(
            problem("INSTANCE \"VI_1\" MASTER_RX_LOWER 100"),
            VrrpLineProblem::UnknownState("MASTER_RX_LOWER".into())
        );
        assert_eq!(
            problem("INSTANCE \"VI_1\" master 100"),
            VrrpLineProblem::UnknownState("master".into())
        );
        for priority in ["256", "-1", "+1", "", "x", "1.5"] {
            let line = format!("INSTANCE \"VI_1\" MASTER {priority}");
            assert_eq!(
                problem(&line),
                VrrpLineProblem::BadPriority(priority.into()),
                "{line}"
            );
        }
        assert_eq!(
            problem("INSTANCE \"VI_1\"  MASTER 100"),
            VrrpLineProblem::UnquotedName("\"VI_1\" ".into())
        );
    }

    #[test]
    fn mapping_to_carp() {
        for (state, carp) in [
            ("MASTER", CarpState::Master),
            ("BACKUP", CarpState::Backup),
            ("FAULT", CarpState::Init),
            ("STOP", CarpState::Init),
        ] {
            let line = format!("INSTANCE \"VI_1\" {state} 100\n");
            assert_eq!(
                notify_fifo_line_to_event(&line, &map()).unwrap(),
                Event::CarpChanged(CarpChange {
                    vhid: 1,
                    interface: "eth0".into(),
                    state: carp,
                    previous: None,
                })
            );
        }
        let Event::CarpChanged(change) =
            notify_fifo_line_to_event("GROUP \"G1\" MASTER 0", &map()).unwrap()
        else {
            panic!()
        };
        assert_eq!((change.vhid, change.interface.as_str()), (7, "bond0"));
    }

    #[test]
    fn mapping_errors() {
        assert_eq!(
            notify_fifo_line_to_event("INSTANCE \"VI_9\" MASTER 100", &map()).unwrap_err(),
            KeepalivedError::Unmapped {
                kind: VrrpKind::Instance,
                name: "VI_9".into()
            }
        );
        assert_eq!(
            notify_fifo_line_to_event("INSTANCE \"VI_1\" MASTER 100", &BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "keepalived INSTANCE \"VI_1\" is not mapped to a CARP vhid in the config"
        );
        assert_eq!(
            notify_fifo_line_to_event("GROUP \"zero\" MASTER 0", &map()).unwrap_err(),
            KeepalivedError::BadVhid {
                kind: VrrpKind::Group,
                name: "zero".into()
            }
        );
        assert!(matches!(
            notify_fifo_line_to_event("INSTANCE \"noif\" MASTER 1", &map()),
            Err(KeepalivedError::BadInterface { .. })
        ));
    }

    #[test]
    fn malformed_message_quotes_the_line() {
        assert_eq!(
            parse_notify_fifo_line("INSTANCE \"VI_1\" MASTER 999\n")
                .unwrap_err()
                .to_string(),
            "keepalived notify_fifo line \"INSTANCE \\\"VI_1\\\" MASTER 999\\n\": priority \
             \"999\" is not a number from 0 to 255"
        );
    }
}
