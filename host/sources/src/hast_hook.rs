//! hastd's `exec` hook: the only way hastd tells anyone that a resource changed role, that the
//! peer came or went, that synchronisation started, finished or stopped, or that the two sides
//! split-brained.
//!
//! hast.conf's `exec <path>` makes hastd run `<path> <event> <resource> [...]` without waiting
//! for it (so two hooks can run at once, and the daemon orders them by arrival, not by
//! argument). Haven installs `havenctl hook hast` as that program; it hands its arguments
//! (argv without the program name) to [`parse_hast_hook`], and the event goes to the daemon.
//! The events and their arguments are those of hast.conf(5):
//!
//! ```text
//! role <res> <oldrole> <newrole>
//! connect <res>      disconnect <res>
//! syncstart <res>    syncdone <res>    syncintr <res>
//! split-brain <res>
//! ```
//!
//! The resource name is checked with [`haven_core::names::check_hast_resource`], hastd's own
//! rule: a name that could not have come from a valid hast.conf is refused here. (A name that
//! hastd accepts but that reads as an option, `-x`, is accepted as data; it can never reach a
//! command, because grants refuse it.)

use haven_core::{Event, HastHook, HastRoleChange, names::check_hast_resource};

/// Why hook arguments were refused; quotes all the arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hastd exec hook arguments {args:?}: {problem}")]
pub struct HastHookError {
    pub args: Vec<String>,
    pub problem: HastHookProblem,
}

/// What is wrong with the hook's arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HastHookProblem {
    #[error("there are none")]
    NoArguments,
    #[error(
        "event {0:?} is not one of role, connect, disconnect, syncstart, syncdone, syncintr, \
         split-brain"
    )]
    UnknownEvent(String),
    #[error("`{event}` takes {expected} arguments after it, got {got}")]
    WrongCount {
        event: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{0}")]
    BadResource(String),
    #[error("role {0:?} is not init, primary or secondary")]
    UnknownRole(String),
}

/// Parse hastd's hook arguments (argv after the program name).
pub fn parse_hast_hook<S: AsRef<str>>(args: &[S]) -> Result<HastHook, HastHookError> {
    let refuse = |problem| HastHookError {
        args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        problem,
    };
    let Some((event, rest)) = args.split_first() else {
        return Err(refuse(HastHookProblem::NoArguments));
    };
    // `None` for `role`, the one event with more than the resource.
    type Make = Option<fn(String) -> HastHook>;
    let (event, make): (&'static str, Make) = match event.as_ref() {
        "role" => ("role", None),
        "connect" => ("connect", Some(HastHook::Connect)),
        "disconnect" => ("disconnect", Some(HastHook::Disconnect)),
        "syncstart" => ("syncstart", Some(HastHook::SyncStart)),
        "syncdone" => ("syncdone", Some(HastHook::SyncDone)),
        "syncintr" => ("syncintr", Some(HastHook::SyncInterrupted)),
        "split-brain" => ("split-brain", Some(HastHook::SplitBrain)),
        other => return Err(refuse(HastHookProblem::UnknownEvent(other.to_owned()))),
    };
    let expected = if make.is_some() { 1 } else { 3 };
    if rest.len() != expected {
        return Err(refuse(HastHookProblem::WrongCount {
            event,
            expected,
            got: rest.len(),
        }));
    }
    let resource = rest[0].as_ref();
    check_hast_resource("HAST resource", resource)
        .map_err(|e| refuse(HastHookProblem::BadResource(e)))?;
    if let Some(make) = make {
        return Ok(make(resource.to_owned()));
    }
    let role = |text: &S| {
        let text = text.as_ref();
        crate::hast_role(text).ok_or_else(|| refuse(HastHookProblem::UnknownRole(text.to_owned())))
    };
    Ok(HastHook::RoleChanged(HastRoleChange {
        resource: resource.to_owned(),
        old: role(&rest[1])?,
        new: role(&rest[2])?,
    }))
}

/// [`parse_hast_hook`] as an [`Event::HastHook`].
pub fn hast_hook_event<S: AsRef<str>>(args: &[S]) -> Result<Event, HastHookError> {
    parse_hast_hook(args).map(Event::HastHook)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_core::HastRole;

    fn problem(args: &[&str]) -> HastHookProblem {
        let error = parse_hast_hook(args).unwrap_err();
        assert_eq!(error.args, args);
        error.problem
    }

    #[test]
    fn role_change() {
        assert_eq!(
            hast_hook_event(&["role", "test", "secondary", "primary"]).unwrap(),
            Event::HastHook(HastHook::RoleChanged(HastRoleChange {
                resource: "test".into(),
                old: HastRole::Secondary,
                new: HastRole::Primary,
            }))
        );
        assert_eq!(
            parse_hast_hook(&["role", "db", "init", "secondary"]).unwrap(),
            HastHook::RoleChanged(HastRoleChange {
                resource: "db".into(),
                old: HastRole::Init,
                new: HastRole::Secondary,
            })
        );
    }

    #[test]
    fn single_resource_events() {
        for (event, expected) in [
            ("connect", HastHook::Connect("test".into())),
            ("disconnect", HastHook::Disconnect("test".into())),
            ("syncstart", HastHook::SyncStart("test".into())),
            ("syncdone", HastHook::SyncDone("test".into())),
            ("syncintr", HastHook::SyncInterrupted("test".into())),
            ("split-brain", HastHook::SplitBrain("test".into())),
        ] {
            assert_eq!(parse_hast_hook(&[event, "test"]).unwrap(), expected);
        }
    }

    #[test]
    fn accepts_owned_strings() {
        let args: Vec<String> = vec!["connect".into(), "test".into()];
        assert_eq!(
            parse_hast_hook(&args).unwrap(),
            HastHook::Connect("test".into())
        );
    }

    #[test]
    fn wrong_counts() {
        assert_eq!(problem(&[]), HastHookProblem::NoArguments);
        assert_eq!(
            problem(&["connect"]),
            HastHookProblem::WrongCount {
                event: "connect",
                expected: 1,
                got: 0
            }
        );
        assert_eq!(
            problem(&["syncdone", "test", "extra"]),
            HastHookProblem::WrongCount {
                event: "syncdone",
                expected: 1,
                got: 2
            }
        );
        assert_eq!(
            problem(&["role", "test", "primary"]),
            HastHookProblem::WrongCount {
                event: "role",
                expected: 3,
                got: 2
            }
        );
        assert_eq!(
            problem(&["role", "test", "init", "primary", "secondary"]),
            HastHookProblem::WrongCount {
                event: "role",
                expected: 3,
                got: 4
            }
        );
    }

    #[test]
    fn unknown_events_and_roles() {
        for event in ["reload", "Connect", "splitbrain", "", "--help"] {
            assert_eq!(
                problem(&[event, "test"]),
                HastHookProblem::UnknownEvent(event.into())
            );
        }
        assert_eq!(
            problem(&["role", "test", "unknown", "primary"]),
            HastHookProblem::UnknownRole("unknown".into())
        );
        assert_eq!(
            problem(&["role", "test", "primary", "master"]),
            HastHookProblem::UnknownRole("master".into())
        );
    }

    #[test]
    fn resource_names_as_hastd_accepts_them() {
        for name in ["data:1", "tank/vol0", "hast[0]", "-rf", &"r".repeat(254)] {
            assert_eq!(
                parse_hast_hook(&["connect", name]).unwrap(),
                HastHook::Connect(name.to_owned()),
                "{name:?}"
            );
        }
    }

    #[test]
    fn bad_resource_names() {
        for name in ["", "a b", "$(reboot)", "a;b", "é", &"r".repeat(255)] {
            assert!(
                matches!(problem(&["connect", name]), HastHookProblem::BadResource(_)),
                "{name:?}"
            );
            assert!(
                matches!(
                    problem(&["role", name, "init", "primary"]),
                    HastHookProblem::BadResource(_)
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn error_message_names_the_arguments() {
        let message = parse_hast_hook(&["role", "test", "primary"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "hastd exec hook arguments [\"role\", \"test\", \"primary\"]: `role` takes 3 \
             arguments after it, got 2"
        );
    }
}
