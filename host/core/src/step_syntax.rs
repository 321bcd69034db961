//! A one-line text form for plan steps, read by people in scenario files, `simulate` timelines,
//! test diffs and logs:
//!
//! ```text
//! wait-worker-gone test secondary timeout=10000
//! hast-role test primary
//! wait-device /dev/hast/test timeout=30000
//! fsck ufs /dev/hast/test preen
//! mount ufs /dev/hast/test /hast/test
//! service start mysql-server
//! unmount /hast/test force
//! set-timer settle 5000
//! cancel-timer settle
//! alert critical split-brain on test: recover by hand
//! ```
//!
//! Words are separated by single spaces; names and paths never contain spaces (the grants
//! would not allow them). An alert's message is the rest of the line, and a trailing
//! ` timeout=N` is never taken from it. `Display` and `FromStr` round-trip.

use crate::types::{
    Action, Alert, AlertSeverity, FsckRequest, HastRole, HastWorker, MountRequest, ServiceOp,
    ServiceRequest, SetHastRole, Step, TimerRequest, UnmountRequest,
};
use std::fmt;
use std::str::FromStr;

/// A line that is not a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad step `{line}`: {reason}")]
pub struct StepSyntaxError {
    line: String,
    reason: String,
}

impl fmt::Display for HastRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HastRole::Init => "init",
            HastRole::Primary => "primary",
            HastRole::Secondary => "secondary",
        })
    }
}

impl FromStr for HastRole {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, String> {
        match word {
            "init" => Ok(HastRole::Init),
            "primary" => Ok(HastRole::Primary),
            "secondary" => Ok(HastRole::Secondary),
            other => Err(format!(
                "`{other}` is not a HAST role (init, primary, secondary)"
            )),
        }
    }
}

impl fmt::Display for ServiceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
        })
    }
}

impl FromStr for ServiceOp {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, String> {
        match word {
            "start" => Ok(ServiceOp::Start),
            "stop" => Ok(ServiceOp::Stop),
            "restart" => Ok(ServiceOp::Restart),
            other => Err(format!(
                "`{other}` is not a service op (start, stop, restart)"
            )),
        }
    }
}

impl fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        })
    }
}

impl FromStr for AlertSeverity {
    type Err = String;
    fn from_str(word: &str) -> Result<Self, String> {
        match word {
            "warning" => Ok(AlertSeverity::Warning),
            "critical" => Ok(AlertSeverity::Critical),
            other => Err(format!("`{other}` is not a severity (warning, critical)")),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Action::SetHastRole(SetHastRole { resource, role }) => {
                write!(f, "{kind} {resource} {role}")
            }
            Action::WaitForDevice(path) => write!(f, "{kind} {path}"),
            Action::WaitHastWorkerGone(HastWorker { resource, role }) => {
                write!(f, "{kind} {resource} {role}")
            }
            Action::Fsck(FsckRequest {
                device,
                fstype,
                preen,
            }) => {
                write!(f, "{kind} {fstype} {device}")?;
                if *preen {
                    f.write_str(" preen")?;
                }
                Ok(())
            }
            Action::Mount(MountRequest {
                device,
                mountpoint,
                fstype,
            }) => write!(f, "{kind} {fstype} {device} {mountpoint}"),
            Action::Unmount(UnmountRequest { mountpoint, force }) => {
                write!(f, "{kind} {mountpoint}")?;
                if *force {
                    f.write_str(" force")?;
                }
                Ok(())
            }
            Action::Service(ServiceRequest { name, op }) => write!(f, "{kind} {op} {name}"),
            Action::SetTimer(TimerRequest { name, after_ms }) => {
                write!(f, "{kind} {name} {after_ms}")
            }
            Action::CancelTimer(name) => write!(f, "{kind} {name}"),
            Action::Alert(Alert { severity, message }) => write!(f, "{kind} {severity} {message}"),
            Action::DemoteCarp(vhid) | Action::LiftCarpDemotion(vhid) => {
                write!(f, "{kind} {vhid}")
            }
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.action, self.timeout_ms) {
            // An alert's message runs to the end of the line; its timeout goes first.
            (Action::Alert(alert), Some(ms)) => {
                write!(f, "alert timeout={ms} {} {}", alert.severity, alert.message)
            }
            (action, Some(ms)) => write!(f, "{action} timeout={ms}"),
            (action, None) => write!(f, "{action}"),
        }
    }
}

impl FromStr for Step {
    type Err = StepSyntaxError;

    fn from_str(line: &str) -> Result<Step, StepSyntaxError> {
        parse_step(line.trim()).map_err(|reason| StepSyntaxError {
            line: line.to_owned(),
            reason,
        })
    }
}

fn parse_step(line: &str) -> Result<Step, String> {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    if kind == "alert" {
        return parse_alert(rest);
    }
    let mut words: Vec<&str> = rest.split(' ').filter(|word| !word.is_empty()).collect();
    let timeout_ms = match words.last().and_then(|word| word.strip_prefix("timeout=")) {
        Some(ms) => {
            let ms = parse_ms(ms)?;
            words.pop();
            Some(ms)
        }
        None => None,
    };
    let action = parse_action(kind, &words)?;
    Ok(Step { action, timeout_ms })
}

fn parse_alert(rest: &str) -> Result<Step, String> {
    let (timeout_ms, rest) = match rest.strip_prefix("timeout=") {
        Some(after) => {
            let (ms, rest) = after.split_once(' ').unwrap_or((after, ""));
            (Some(parse_ms(ms)?), rest)
        }
        None => (None, rest),
    };
    let (severity, message) = rest.split_once(' ').unwrap_or((rest, ""));
    Ok(Step {
        action: Action::Alert(Alert {
            severity: severity.parse()?,
            message: message.to_owned(),
        }),
        timeout_ms,
    })
}

fn parse_ms(word: &str) -> Result<u32, String> {
    word.parse()
        .map_err(|_| format!("`{word}` is not a number of milliseconds"))
}

/// The words after the kind, checked for count, with an optional trailing flag.
fn words<'a, const N: usize>(
    kind: &str,
    words: &[&'a str],
    flag: Option<&str>,
) -> Result<([&'a str; N], bool), String> {
    let (words, flagged) = match (flag, words.split_last()) {
        (Some(flag), Some((last, init))) if *last == flag && init.len() == N => (init, true),
        _ => (words, false),
    };
    let words: [&str; N] = words.try_into().map_err(|_| {
        let flag = flag.map(|flag| format!(" [{flag}]")).unwrap_or_default();
        format!("`{kind}` takes {N} words{flag}, got {}", words.len())
    })?;
    Ok((words, flagged))
}

fn parse_action(kind: &str, rest: &[&str]) -> Result<Action, String> {
    let owned = |word: &str| word.to_owned();
    Ok(match kind {
        "hast-role" => {
            let ([resource, role], _) = words(kind, rest, None)?;
            Action::SetHastRole(SetHastRole {
                resource: owned(resource),
                role: role.parse()?,
            })
        }
        "wait-device" => {
            let ([path], _) = words(kind, rest, None)?;
            Action::WaitForDevice(owned(path))
        }
        "wait-worker-gone" => {
            let ([resource, role], _) = words(kind, rest, None)?;
            Action::WaitHastWorkerGone(HastWorker {
                resource: owned(resource),
                role: role.parse()?,
            })
        }
        "fsck" => {
            let ([fstype, device], preen) = words(kind, rest, Some("preen"))?;
            Action::Fsck(FsckRequest {
                device: owned(device),
                fstype: owned(fstype),
                preen,
            })
        }
        "mount" => {
            let ([fstype, device, mountpoint], _) = words(kind, rest, None)?;
            Action::Mount(MountRequest {
                device: owned(device),
                mountpoint: owned(mountpoint),
                fstype: owned(fstype),
            })
        }
        "unmount" => {
            let ([mountpoint], force) = words(kind, rest, Some("force"))?;
            Action::Unmount(UnmountRequest {
                mountpoint: owned(mountpoint),
                force,
            })
        }
        "service" => {
            let ([op, name], _) = words(kind, rest, None)?;
            Action::Service(ServiceRequest {
                name: owned(name),
                op: op.parse()?,
            })
        }
        "set-timer" => {
            let ([name, after_ms], _) = words(kind, rest, None)?;
            Action::SetTimer(TimerRequest {
                name: owned(name),
                after_ms: parse_ms(after_ms)?,
            })
        }
        "cancel-timer" => {
            let ([name], _) = words(kind, rest, None)?;
            Action::CancelTimer(owned(name))
        }
        "demote-carp" | "lift-carp-demotion" => {
            let ([vhid], _) = words(kind, rest, None)?;
            let vhid = vhid
                .parse()
                .ok()
                .filter(|vhid| *vhid != 0)
                .ok_or_else(|| format!("`{vhid}` is not a vhid (1 to 255)"))?;
            if kind == "demote-carp" {
                Action::DemoteCarp(vhid)
            } else {
                Action::LiftCarpDemotion(vhid)
            }
        }
        other => {
            return Err(format!(
                "unknown step kind `{other}` (hast-role, wait-device, wait-worker-gone, fsck, \
                 mount, unmount, service, set-timer, cancel-timer, alert, demote-carp, \
                 lift-carp-demotion)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &[&str] = &[
        "wait-worker-gone test secondary timeout=10000",
        "hast-role test primary",
        "wait-device /dev/hast/test timeout=30000",
        "fsck ufs /dev/hast/test preen",
        "fsck ext4 /dev/loop0",
        "mount ufs /dev/hast/test /hast/test",
        "service start mysql-server",
        "unmount /hast/test force",
        "unmount /hast/test",
        "set-timer settle 5000",
        "cancel-timer settle",
        "alert critical split-brain on test: run hastctl role init test timeout=5",
        "alert timeout=100 warning short",
    ];

    #[test]
    fn every_form_round_trips() {
        for line in LINES {
            let step: Step = line.parse().unwrap();
            assert_eq!(&step.to_string(), line);
        }
    }

    #[test]
    fn alert_message_keeps_a_trailing_timeout_word() {
        let step: Step = "alert warning wait timeout=5".parse().unwrap();
        assert_eq!(step.timeout_ms, None);
        let Action::Alert(alert) = step.action else {
            panic!("not an alert")
        };
        assert_eq!(alert.message, "wait timeout=5");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("mount ufs /dev/x", "`mount` takes 3 words, got 2"),
            ("hast-role test boss", "`boss` is not a HAST role"),
            ("reboot now", "unknown step kind `reboot`"),
            ("set-timer t soon", "`soon` is not a number"),
            ("unmount /a /b", "`unmount` takes 1 words [force], got 2"),
        ];
        for (line, expected) in cases {
            let error = line.parse::<Step>().unwrap_err().to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
