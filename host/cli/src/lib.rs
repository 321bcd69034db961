//! # haven-cli
//!
//! The library behind `havenctl`: checking modules ([`check`]), scenario tests on the real
//! runtime ([`scenario`]), replaying timelines ([`simulate`]), scaffolding new policies
//! ([`scaffold`]), the dry-run loop the last three share ([`driver`]), and showing a running
//! daemon's status and journal ([`daemon_view`]), the pairs a witness knows ([`fleet_view`]).

pub mod check;
pub mod daemon_view;
pub mod deploy;
pub mod driver;
pub mod fleet_view;
pub mod operate;
pub mod pair_view;
pub mod replay;
pub mod scaffold;
pub mod scenario;
pub mod simulate;

/// Where havend and havenctl look for the config by default.
pub const DEFAULT_CONFIG: &str = if cfg!(target_os = "freebsd") {
    "/usr/local/etc/haven/haven.toml"
} else {
    "/etc/haven/haven.toml"
};

/// The bundled demo: the seed's two-host config and a recorded failover.
pub mod demo {
    /// `examples/seed/haven.toml`.
    pub const CONFIG: &str = include_str!("../../../examples/seed/haven.toml");
    /// `examples/seed/failover.toml`.
    pub const TIMELINE: &str = include_str!("../../../examples/seed/failover.toml");
    /// Where the demo config says it lives, for messages.
    pub const CONFIG_PATH: &str = "examples/seed/haven.toml";
}

/// An error and its causes on one line, each said once. Library errors often repeat their
/// source in their own message (`cannot bind: permission denied`) and also name it as their
/// source; printing the chain as it is says the same thing two or three times.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io)
            .context("control socket: cannot create /run/x: no such file")
            .context("starting havend");
        assert_eq!(
            super::error_line(&error),
            "starting havend: control socket: cannot create /run/x: no such file"
        );
    }
}
