//! # haven-cli
//!
//! The library behind `havenctl`: checking modules ([`check`]), scenario tests on the real
//! runtime ([`scenario`]), replaying timelines ([`simulate`]), scaffolding new policies
//! ([`scaffold`]), the dry-run loop the last three share ([`driver`]), and showing a running
//! daemon's status and journal ([`daemon_view`]).

pub mod check;
pub mod daemon_view;
pub mod driver;
pub mod scaffold;
pub mod scenario;
pub mod simulate;

/// The bundled demo: the seed's two-host config and a recorded failover.
pub mod demo {
    /// `examples/seed/haven.toml`.
    pub const CONFIG: &str = include_str!("../../../examples/seed/haven.toml");
    /// `examples/seed/failover.toml`.
    pub const TIMELINE: &str = include_str!("../../../examples/seed/failover.toml");
    /// Where the demo config says it lives, for messages.
    pub const CONFIG_PATH: &str = "examples/seed/haven.toml";
}
