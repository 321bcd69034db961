//! ucarp: CARP-like failover on a Linux peer, reported through its up/down scripts.
//!
//! ucarp has no event channel of its own: on becoming master it runs `--upscript`, on leaving
//! it `--downscript`, each as `<script> <iface> <vip> [xparam]` (ucarp's src/spawn.c; xparam
//! only when `--xparam` is given), and waits for the script to exit. Haven's scripts are
//! `havenctl hook ucarp up|down`, which pass `up|down <iface> <vip> [xparam]` here.
//!
//! ucarp's vhid is not in those arguments, and policies speak CARP, so the config maps each
//! `(interface, vip)` pair to the vhid it runs with (`--vhid`), and [`ucarp_to_event`] turns a
//! transition into `carp-changed`: up → master, down → backup. ucarp runs the down script on
//! startup and shutdown too (unless `--neutral`), so "backup" here means "not master", as it
//! does for ucarp. A pair the config does not map is an error.

use std::collections::BTreeMap;
use std::net::IpAddr;

use haven_core::{CarpChange, CarpState, Event};

/// Which of ucarp's scripts ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UcarpDirection {
    /// The up script: this host became master.
    Up,
    /// The down script: this host is no longer (or not yet) master.
    Down,
}

/// One run of ucarp's up or down script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UcarpTransition {
    pub direction: UcarpDirection,
    pub interface: String,
    /// The virtual address as ucarp wrote it (`inet_ntoa()`: dotted quad).
    pub vip: String,
    pub xparam: Option<String>,
}

/// Why ucarp hook arguments were refused; quotes all the arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UcarpError {
    /// The arguments are not `up|down <iface> <vip> [xparam]`.
    #[error("ucarp hook arguments {args:?}: {problem}")]
    Malformed {
        args: Vec<String>,
        problem: UcarpProblem,
    },
    /// The config does not say which vhid ucarp runs on this interface and address.
    #[error(
        "ucarp on interface {interface:?} with address {vip:?} is not mapped to a vhid in the config"
    )]
    Unmapped { interface: String, vip: String },
    /// The config maps the pair to vhid 0.
    #[error(
        "ucarp on interface {interface:?} with address {vip:?} is mapped to vhid 0, which is not a vhid"
    )]
    BadVhid { interface: String, vip: String },
}

/// What is wrong with ucarp hook arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UcarpProblem {
    #[error("expected `up|down <interface> <vip> [xparam]`, got {0} arguments")]
    WrongCount(usize),
    #[error("{0:?} is not `up` or `down`")]
    UnknownDirection(String),
    #[error("{0:?} is not an interface name")]
    BadInterface(String),
    #[error("{0:?} is not an IP address")]
    BadVip(String),
}

/// Parse `up|down <iface> <vip> [xparam]`.
pub fn parse_ucarp_args<S: AsRef<str>>(args: &[S]) -> Result<UcarpTransition, UcarpError> {
    let refuse = |problem| UcarpError::Malformed {
        args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        problem,
    };
    let (direction, interface, vip, xparam) = match args {
        [d, i, v] => (d.as_ref(), i.as_ref(), v.as_ref(), None),
        [d, i, v, x] => (d.as_ref(), i.as_ref(), v.as_ref(), Some(x.as_ref())),
        _ => return Err(refuse(UcarpProblem::WrongCount(args.len()))),
    };
    let direction = match direction {
        "up" => UcarpDirection::Up,
        "down" => UcarpDirection::Down,
        other => return Err(refuse(UcarpProblem::UnknownDirection(other.to_owned()))),
    };
    if !crate::valid_interface(interface) {
        return Err(refuse(UcarpProblem::BadInterface(interface.to_owned())));
    }
    if vip.parse::<IpAddr>().is_err() {
        return Err(refuse(UcarpProblem::BadVip(vip.to_owned())));
    }
    Ok(UcarpTransition {
        direction,
        interface: interface.to_owned(),
        vip: vip.to_owned(),
        xparam: xparam.map(str::to_owned),
    })
}

/// A transition as `carp-changed`, through the config's map from `(interface, vip)` to vhid.
/// `previous` is left empty for the daemon to fill from its model.
pub fn ucarp_to_event(
    transition: &UcarpTransition,
    vhids: &BTreeMap<(String, String), u8>,
) -> Result<Event, UcarpError> {
    let key = (transition.interface.clone(), transition.vip.clone());
    let vhid = *vhids.get(&key).ok_or_else(|| UcarpError::Unmapped {
        interface: key.0.clone(),
        vip: key.1.clone(),
    })?;
    if !crate::valid_vhid(vhid) {
        return Err(UcarpError::BadVhid {
            interface: key.0,
            vip: key.1,
        });
    }
    Ok(Event::CarpChanged(CarpChange {
        vhid,
        interface: key.0,
        state: match transition.direction {
            UcarpDirection::Up => CarpState::Master,
            UcarpDirection::Down => CarpState::Backup,
        },
        previous: None,
    }))
}

/// [`parse_ucarp_args`] then [`ucarp_to_event`].
pub fn ucarp_args_to_event<S: AsRef<str>>(
    args: &[S],
    vhids: &BTreeMap<(String, String), u8>,
) -> Result<Event, UcarpError> {
    ucarp_to_event(&parse_ucarp_args(args)?, vhids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> BTreeMap<(String, String), u8> {
        BTreeMap::from([
            (("eth0".to_owned(), "192.168.1.50".to_owned()), 1),
            (("eth1".to_owned(), "10.0.0.10".to_owned()), 42),
            (("eth2".to_owned(), "10.0.0.11".to_owned()), 0),
        ])
    }

    fn problem(args: &[&str]) -> UcarpProblem {
        match parse_ucarp_args(args) {
            Err(UcarpError::Malformed {
                args: quoted,
                problem,
            }) => {
                assert_eq!(quoted, args);
                problem
            }
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn parse_with_and_without_xparam() {
        assert_eq!(
            parse_ucarp_args(&["up", "eth0", "192.168.1.50"]).unwrap(),
            UcarpTransition {
                direction: UcarpDirection::Up,
                interface: "eth0".into(),
                vip: "192.168.1.50".into(),
                xparam: None,
            }
        );
        assert_eq!(
            parse_ucarp_args(&["down", "eth1", "10.0.0.10", "anything at all"]).unwrap(),
            UcarpTransition {
                direction: UcarpDirection::Down,
                interface: "eth1".into(),
                vip: "10.0.0.10".into(),
                xparam: Some("anything at all".into()),
            }
        );
    }

    #[test]
    fn malformed_arguments() {
        assert_eq!(problem(&[]), UcarpProblem::WrongCount(0));
        assert_eq!(problem(&["up", "eth0"]), UcarpProblem::WrongCount(2));
        assert_eq!(
            problem(&["up", "eth0", "1.2.3.4", "x", "y"]),
            UcarpProblem::WrongCount(5)
        );
        assert_eq!(
            problem(&["eth0", "1.2.3.4", "x"]),
            UcarpProblem::UnknownDirection("eth0".into())
        );
        assert_eq!(
            problem(&["UP", "eth0", "1.2.3.4"]),
            UcarpProblem::UnknownDirection("UP".into())
        );
        for interface in ["", "-x", "eth 0", "a234567890123456"] {
            assert_eq!(
                problem(&["up", interface, "1.2.3.4"]),
                UcarpProblem::BadInterface(interface.into())
            );
        }
        for vip in ["", "1.2.3", "1.2.3.4/24", "host", "1.2.3.4 "] {
            assert_eq!(
                problem(&["up", "eth0", vip]),
                UcarpProblem::BadVip(vip.into())
            );
        }
    }

    #[test]
    fn mapping_to_carp() {
        assert_eq!(
            ucarp_args_to_event(&["up", "eth0", "192.168.1.50"], &map()).unwrap(),
            Event::CarpChanged(CarpChange {
                vhid: 1,
                interface: "eth0".into(),
                state: CarpState::Master,
                previous: None,
            })
        );
        assert_eq!(
            ucarp_args_to_event(&["down", "eth1", "10.0.0.10", "x"], &map()).unwrap(),
            Event::CarpChanged(CarpChange {
                vhid: 42,
                interface: "eth1".into(),
                state: CarpState::Backup,
                previous: None,
            })
        );
    }

    #[test]
    fn mapping_errors() {
        assert_eq!(
            ucarp_args_to_event(&["up", "eth0", "192.168.1.51"], &map()).unwrap_err(),
            UcarpError::Unmapped {
                interface: "eth0".into(),
                vip: "192.168.1.51".into()
            }
        );
        assert_eq!(
            ucarp_args_to_event(&["up", "eth1", "192.168.1.50"], &map())
                .unwrap_err()
                .to_string(),
            "ucarp on interface \"eth1\" with address \"192.168.1.50\" is not mapped to a vhid \
             in the config"
        );
        assert_eq!(
            ucarp_args_to_event(&["up", "eth2", "10.0.0.11"], &map()).unwrap_err(),
            UcarpError::BadVhid {
                interface: "eth2".into(),
                vip: "10.0.0.11".into()
            }
        );
    }

    #[test]
    fn malformed_message_quotes_the_arguments() {
        assert_eq!(
            parse_ucarp_args(&["sideways", "eth0", "1.2.3.4"])
                .unwrap_err()
                .to_string(),
            "ucarp hook arguments [\"sideways\", \"eth0\", \"1.2.3.4\"]: \"sideways\" is not \
             `up` or `down`"
        );
    }
}
