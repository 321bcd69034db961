//! Small conveniences on the generated types that every policy would otherwise write again.

use crate::{HastHook, HastRole};

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
