//! # haven-sources
//!
//! The first stage of Haven's data flow, as pure functions:
//!
//! ```text
//! source → event queue → policies → plan check → executor → journal
//! ^^^^^^
//! ```
//!
//! Haven learns what happens on the machine from text other programs produce: devd's socket
//! lines (CARP state changes, legacy carp link events), hastd's `exec` hook arguments, the
//! output of `hastctl list`/`hastctl status`, keepalived's `notify_fifo` lines and ucarp's
//! up/down script arguments. This crate turns that text into [`haven_core::Event`]s (or, for
//! `hastctl`, into [`haven_core::HastStatus`]es the daemon turns into a startup snapshot or a
//! `hast-status-changed` event), and refuses anything it does not understand with a typed error
//! that names the source and quotes the offending text.
//!
//! Nothing here opens a socket or file or runs a process: the daemon owns the I/O (reading the
//! devd socket, running `hastctl`, the `havenctl hook` entry points) and hands the text to these
//! functions. That keeps every format testable byte for byte, and keeps what the daemon does with
//! a bad line (log it and read on, or count it) the daemon's decision.
//!
//! One module per source:
//!
//! - [`devd`]: a devd line → [`haven_core::DevdEvent`] → `carp-changed`, `carp-link` or `devd`.
//! - [`hastctl`]: `hastctl list` / `hastctl status` output → `Vec<HastStatus>`.
//! - [`hast_hook`]: hastd's `exec` hook arguments → `hast-hook`.
//! - [`keepalived`]: a `notify_fifo` line → [`keepalived::VrrpTransition`] → `carp-changed`.
//! - [`ucarp`]: ucarp's up/down script arguments → [`ucarp::UcarpTransition`] → `carp-changed`.
//!
//! Every module has its own error type; [`Error`] gathers them for callers that handle all
//! sources alike. Offending text is quoted with Rust's `{:?}`, so control characters and line
//! breaks in hostile input show escaped in logs.

pub mod devd;
pub mod hast_hook;
pub mod hastctl;
pub mod keepalived;
pub mod ucarp;

pub use devd::{DevdError, devd_line_to_event, devd_to_event, parse_devd_line};
pub use hast_hook::{HastHookError, hast_hook_event, parse_hast_hook};
pub use hastctl::{
    HastctlError, HastctlList, parse_hastctl_list, parse_hastctl_status, read_hastctl_list,
};
pub use keepalived::{
    KeepalivedError, VrrpTransition, notify_fifo_line_to_event, parse_notify_fifo_line,
    vrrp_to_event,
};
pub use ucarp::{
    UcarpError, UcarpTransition, parse_ucarp_args, ucarp_args_to_event, ucarp_to_event,
};

use haven_core::HastRole;

/// Any source's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Devd(#[from] DevdError),
    #[error(transparent)]
    Hastctl(#[from] HastctlError),
    #[error(transparent)]
    HastHook(#[from] HastHookError),
    #[error(transparent)]
    Keepalived(#[from] KeepalivedError),
    #[error(transparent)]
    Ucarp(#[from] UcarpError),
}

/// A HAST role as hastd spells it (`role2str()` in sbin/hastd/hast_proto.c); `None` for
/// anything else, including hastd's own `unknown`.
pub(crate) fn hast_role(text: &str) -> Option<HastRole> {
    match text {
        "init" => Some(HastRole::Init),
        "primary" => Some(HastRole::Primary),
        "secondary" => Some(HastRole::Secondary),
        _ => None,
    }
}

/// A CARP/VRRP vhid: 1 to 255 (0 is not a valid vhid on either).
pub(crate) fn valid_vhid(vhid: u8) -> bool {
    vhid != 0
}

/// A network interface name as the kernels allow it: 1 to 15 bytes (IFNAMSIZ is 16 with the
/// NUL on FreeBSD and Linux), printable ASCII without spaces, not starting with `-`.
pub(crate) fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert_eq!(hast_role("init"), Some(HastRole::Init));
        assert_eq!(hast_role("primary"), Some(HastRole::Primary));
        assert_eq!(hast_role("secondary"), Some(HastRole::Secondary));
        for bad in ["unknown", "Primary", "", " primary", "primary "] {
            assert_eq!(hast_role(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn interfaces() {
        for good in [
            "em0",
            "carp0",
            "eth0",
            "enp0s31f6",
            "vlan.100",
            "a23456789012345",
        ] {
            assert!(valid_interface(good), "{good}");
        }
        for bad in ["", "-i", "em 0", "em0\n", "a234567890123456", "é0"] {
            assert!(!valid_interface(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_convert_and_keep_their_message() {
        let devd = parse_devd_line("").unwrap_err();
        let message = devd.to_string();
        let any: Error = devd.into();
        assert_eq!(any.to_string(), message);
        assert!(message.starts_with("devd"), "{message}");
    }
}
