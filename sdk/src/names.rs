//! Small conveniences on the generated types that every policy would otherwise write again.

use crate::{HastHook, HastReplication, HastRole, OperatorAsk};

impl HastRole {
    /// The role as `hastctl` spells it: `init`, `primary`, `secondary`.
    pub fn as_str(self) -> &'static str {
        match self {
            HastRole::Init => "init",
            HastRole::Primary => "primary",
            HastRole::Secondary => "secondary",
        }
    }
}

impl HastReplication {
    /// The replication as `hastctl list` spells it: `complete`, `degraded`; `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            HastReplication::Complete => "complete",
            HastReplication::Degraded => "degraded",
            HastReplication::Unknown => "unknown",
        }
    }
}

impl OperatorAsk {
    /// The request as the operator typed it after `havenctl`.
    pub fn command(&self) -> String {
        match self {
            OperatorAsk::Switchover(None) => "switchover".to_owned(),
            OperatorAsk::Switchover(Some(to)) => format!("switchover --to {to}"),
            OperatorAsk::Maintenance(on) => {
                format!("maintenance {}", if *on { "on" } else { "off" })
            }
            OperatorAsk::AcceptIncomplete(resource) => {
                format!("promote --accept-incomplete {resource}")
            }
        }
    }
}

impl HastHook {
    /// The HAST resource the hook is about.
    pub fn resource(&self) -> &str {
        match self {
            HastHook::RoleChanged(change) => &change.resource,
            HastHook::Connect(resource)
            | HastHook::Disconnect(resource)
            | HastHook::SyncStart(resource)
            | HastHook::SyncDone(resource)
            | HastHook::SyncInterrupted(resource)
            | HastHook::SplitBrain(resource) => resource,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hastctl_spellings_and_resources() {
        assert_eq!(HastRole::Secondary.as_str(), "secondary");
        assert_eq!(HastHook::SplitBrain("test".into()).resource(), "test");
    }
}
