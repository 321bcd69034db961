//! `haven.toml`: which policies run, with which settings, grants and limits.
//!
//! ```toml
//! [limits]                      # defaults for every policy (all optional)
//! deadline-ms = 50
//!
//! [[policy]]
//! name = "mysql"
//! module = "carp_hast_switch.wasm"   # relative to this file
//! on-failure = "alert"               # or "log"
//!
//! [policy.grants]
//! hast-resources = ["test"]
//! services = ["mysql-server"]
//! timers = 1
//! mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]
//!
//! [policy.settings]                  # the policy's own, handed to its `init` as JSON
//! vhid = 1
//! ```
//!
//! Every error names the file, the line and what is wrong.

use crate::grants::Grants;
use crate::names::{check_fstype, check_name, check_path};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Bounds on one call into a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline of one call (init or handle), by epoch interruption.
    pub deadline_ms: u32,
    /// Linear memory a policy instance may grow to.
    pub memory_mib: u32,
    /// Steps in one plan.
    pub max_plan_steps: u32,
    /// Log messages per call; more are dropped and counted.
    pub max_log_messages: u32,
    /// Bytes of log text per call; more are dropped and counted.
    pub max_log_bytes: u32,
    /// Keys in the policy's key-value store.
    pub max_kv_keys: u32,
    /// Bytes of one key plus its value.
    pub max_kv_entry_bytes: u32,
    /// Longest timeout a step may ask for.
    pub max_step_timeout_ms: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline_ms: 50,
            memory_mib: 16,
            max_plan_steps: 64,
            max_log_messages: 100,
            max_log_bytes: 16 * 1024,
            max_kv_keys: 256,
            max_kv_entry_bytes: 4096,
            max_step_timeout_ms: 3_600_000,
        }
    }
}

/// What happens when a call into a policy traps, times out, overflows or is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Fail closed: no action, and an operator alert (journaled, logged at error).
    #[default]
    Alert,
    /// No action, logged at warn only.
    Log,
}

/// One configured policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// The operator's name for this policy (unique in the config).
    pub name: String,
    /// The `.wasm` file (core module or component), absolute or relative to the config file.
    pub module: PathBuf,
    /// What it may touch.
    pub grants: Grants,
    /// Its settings, handed to `init` as JSON.
    pub settings: serde_json::Value,
    /// Bounds on each call.
    pub limits: Limits,
    /// What a failed call leads to.
    pub on_failure: FailureMode,
}

/// A shared address that moves with a CARP vhid (ucarp or keepalived on Linux): the ucarp hook
/// maps `(interface, address)` to the vhid, and at startup the vhid counts as master on this
/// host if the address is configured on the interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CarpAddress {
    pub vhid: u8,
    pub interface: String,
    pub address: std::net::IpAddr,
}

/// A whole config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Policies in the order they are consulted for each event.
    pub policies: Vec<PolicyConfig>,
}

/// A config that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or a description of where the text came from).
    pub path: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    policy: Vec<Spanned<RawPolicy>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    module: Spanned<String>,
    #[serde(default)]
    grants: Option<Spanned<Grants>>,
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    limits: Option<Spanned<toml::Table>>,
    #[serde(default)]
    on_failure: FailureMode,
}

impl Config {
    /// Read and check a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {error}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parse and check config text; relative module paths are resolved against `path`'s folder.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error_at = |span: Option<Range<usize>>, message: String| ConfigError {
            path: path.to_owned(),
            line: span.map(|span| line_of(text, span.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|error| error_at(error.span(), error.message().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut policies = Vec::with_capacity(raw.policy.len());
        let mut owners = ResourceOwners::default();
        for spanned in raw.policy {
            let span = spanned.span();
            let raw_policy = spanned.into_inner();
            let policy = build_policy(raw_policy, &raw.limits, base, &mut owners)
                .map_err(|(span, message)| error_at(Some(span), message))?;
            if policies
                .iter()
                .any(|p: &PolicyConfig| p.name == policy.name)
            {
                return Err(error_at(
                    Some(span),
                    format!("policy `{}` is defined twice", policy.name),
                ));
            }
            policies.push(policy);
        }
        Ok(Config { policies })
    }
}

/// The 1-based line of a byte offset; a span that starts on the white space before a table
/// header counts from the header.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let skipped = text[offset..].len() - text[offset..].trim_start().len();
    text[..offset + skipped].matches('\n').count() + 1
}

type Located<T> = Result<T, (Range<usize>, String)>;

/// Which policy was granted each exclusive thing first: two policies driving the same HAST
/// resource, mountpoint or service would fight over it.
#[derive(Default)]
struct ResourceOwners(BTreeMap<String, String>);

impl ResourceOwners {
    fn claim(&mut self, thing: String, policy: &str) -> Result<(), String> {
        match self.0.get(&thing) {
            Some(owner) => Err(format!(
                "policy `{policy}`: {thing} is already granted to policy `{owner}`"
            )),
            None => {
                self.0.insert(thing, policy.to_owned());
                Ok(())
            }
        }
    }
}

fn build_policy(
    raw: RawPolicy,
    default_limits: &toml::Table,
    base: &Path,
    owners: &mut ResourceOwners,
) -> Located<PolicyConfig> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    check_name("policy name", &name).map_err(|message| (name_span.clone(), message))?;

    let module = raw.module.into_inner();
    if module.is_empty() {
        return Err((name_span, format!("policy `{name}`: module is empty")));
    }
    let module = base.join(module);

    let (grants_span, grants) = split_spanned(raw.grants, &name_span);
    check_grants(&grants, &name, owners).map_err(|message| (grants_span, message))?;

    let (limits_span, own_limits) = split_spanned(raw.limits, &name_span);
    let mut limits = default_limits.clone();
    limits.extend(own_limits);
    let limits: Limits = limits.try_into().map_err(|error: toml::de::Error| {
        (
            limits_span,
            format!("policy `{name}`: limits: {}", error.message()),
        )
    })?;

    let settings = serde_json::to_value(&raw.settings).map_err(|error| {
        (
            name_span,
            format!("policy `{name}`: settings cannot be passed on: {error}"),
        )
    })?;

    Ok(PolicyConfig {
        name,
        module,
        grants,
        settings,
        limits,
        on_failure: raw.on_failure,
    })
}

/// An optional table's value and span; a missing one is empty and points at the policy's name.
fn split_spanned<T: Default>(
    value: Option<Spanned<T>>,
    fallback: &Range<usize>,
) -> (Range<usize>, T) {
    match value {
        Some(spanned) => (spanned.span(), spanned.into_inner()),
        None => (fallback.clone(), T::default()),
    }
}

fn check_grants(grants: &Grants, policy: &str, owners: &mut ResourceOwners) -> Result<(), String> {
    let in_policy = |message: String| format!("policy `{policy}`: grants: {message}");
    for resource in &grants.hast_resources {
        check_name("HAST resource", resource).map_err(in_policy)?;
        owners.claim(format!("HAST resource `{resource}`"), policy)?;
    }
    for service in &grants.services {
        check_name("service", service).map_err(in_policy)?;
        owners.claim(format!("service `{service}`"), policy)?;
    }
    for mount in &grants.mounts {
        check_path("device", &mount.device).map_err(in_policy)?;
        check_path("mountpoint", &mount.mountpoint).map_err(in_policy)?;
        check_fstype(&mount.fstype).map_err(in_policy)?;
        owners.claim(format!("mountpoint `{}`", mount.mountpoint), policy)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[limits]
deadline-ms = 20

[[policy]]
name = "mysql"
module = "seed.wasm"

[policy.grants]
hast-resources = ["test"]
services = ["mysql-server"]
timers = 1
mounts = [{ device = "/dev/hast/test", mountpoint = "/hast/test", fstype = "ufs" }]

[policy.limits]
memory-mib = 8

[policy.settings]
vhid = 1
services = ["mysql-server"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/haven/haven.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_config_reads_whole() {
        let config = parse(GOOD).unwrap();
        let policy = &config.policies[0];
        assert_eq!(policy.module, Path::new("/etc/haven/seed.wasm"));
        assert_eq!(policy.limits.deadline_ms, 20);
        assert_eq!(policy.limits.memory_mib, 8);
        assert_eq!(
            policy.limits.max_plan_steps,
            Limits::default().max_plan_steps
        );
        assert_eq!(policy.settings["vhid"], 1);
        assert_eq!(policy.on_failure, FailureMode::Alert);
        assert!(policy.grants.hast_resources.contains("test"));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let typo = GOOD.replace("timers = 1", "timerz = 1");
        assert!(
            error(&typo).starts_with("/etc/haven/haven.toml:12: unknown field `timerz`"),
            "{}",
            error(&typo)
        );

        let second = GOOD.to_owned()
            + "\n[[policy]]\nname = \"other\"\nmodule = \"x.wasm\"\n[policy.grants]\nhast-resources = [\"test\"]\n";
        let message = error(&second);
        assert!(
            message.contains(
                ":25: policy `other`: HAST resource `test` is already granted to policy `mysql`"
            ),
            "{message}"
        );

        let bad_path = GOOD.replace("/hast/test\"", "hast/test\"");
        assert!(error(&bad_path).contains("mountpoint `hast/test` is not an absolute path"));

        let injected = GOOD.replace(
            "[\"mysql-server\"]\ntimers",
            "[\"mysql; rm -rf /\"]\ntimers",
        );
        assert!(error(&injected).contains("service `mysql; rm -rf /` is not a valid name"));

        let bad_limit = GOOD.replace("memory-mib = 8", "memory-mib = \"lots\"");
        assert!(
            error(&bad_limit).contains("policy `mysql`: limits:"),
            "{}",
            error(&bad_limit)
        );

        let duplicate = GOOD.to_owned() + "\n[[policy]]\nname = \"mysql\"\nmodule = \"x.wasm\"\n";
        assert!(error(&duplicate).contains("policy `mysql` is defined twice"));
    }
}
