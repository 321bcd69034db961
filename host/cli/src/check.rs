//! `havenctl check`: is this module a policy this host will run, and does a config's entry for
//! it load? Admission, compilation, contract version, exports, and with a config, the grants
//! and `init` with the configured settings.

use haven_core::text::Escaped;
use haven_core::{Config, PolicyConfig};
use haven_runtime::{CONTRACT_PACKAGE, CONTRACT_VERSION, Runtime};
use std::fmt::Write as _;
use std::path::Path;

/// What `check` found: the report, and whether everything passed.
#[derive(Debug)]
pub struct CheckReport {
    pub text: String,
    pub ok: bool,
}

/// Check a module, and optionally the config entries that use it.
pub fn check(
    runtime: &Runtime,
    module: &Path,
    config: Option<&Path>,
    policy: Option<&str>,
) -> CheckReport {
    let mut text = String::new();
    let bytes = match std::fs::read(module) {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = writeln!(text, "{}: cannot read: {error}", module.display());
            return CheckReport { text, ok: false };
        }
    };
    // With a config, the module is checked under the limits of the entries that use it (the
    // first one's for the describe call; each entry's own again when it is configured), as
    // the daemon loads it.
    let config = match config.map(|path| (path, Config::from_file(path))) {
        None => None,
        Some((path, Ok(config))) => Some((path, config)),
        Some((_, Err(error))) => {
            let _ = writeln!(text, "{error}");
            return CheckReport { text, ok: false };
        }
    };
    let entries: Vec<&PolicyConfig> = match &config {
        None => Vec::new(),
        Some((_, config)) => {
            let file_name = module.file_name();
            config
                .policies
                .iter()
                .filter(|entry| match policy {
                    Some(name) => entry.name == name,
                    None => config.policies.len() == 1 || entry.module.file_name() == file_name,
                })
                .collect()
        }
    };
    let limits = entries
        .first()
        .map(|entry| entry.limits.clone())
        .unwrap_or_default();
    let compiled = match runtime.compile(&bytes, &limits) {
        Ok(compiled) => compiled,
        Err(error) => {
            let _ = writeln!(text, "{}: REJECTED: {error}", module.display());
            return CheckReport { text, ok: false };
        }
    };
    let _ = writeln!(text, "{}: admitted", module.display());
    let _ = writeln!(
        text,
        "  policy    {} {}",
        Escaped(&compiled.info.name),
        Escaped(&compiled.info.version)
    );
    let _ = writeln!(
        text,
        "  contract  {CONTRACT_PACKAGE}@{CONTRACT_VERSION} (handler exported)"
    );
    let _ = writeln!(text, "  module    sha256:{}", compiled.module_hash);
    let _ = writeln!(
        text,
        "  imports   {}",
        if compiled.imports.is_empty() {
            "none".into()
        } else {
            compiled.imports.join(", ")
        }
    );
    let _ = writeln!(
        text,
        "  compiled  in {:.1} ms{}",
        compiled.compile_time.as_secs_f64() * 1000.0,
        if compiled.from_cache {
            " (from the artifact cache)"
        } else {
            ""
        }
    );
    let Some((config_path, _)) = config else {
        return CheckReport { text, ok: true };
    };
    if entries.is_empty() {
        let _ = writeln!(
            text,
            "{}: no policy entry uses this module (name one with --policy)",
            config_path.display()
        );
        return CheckReport { text, ok: false };
    }
    let mut ok = true;
    for entry in entries {
        match runtime.configure(compiled.clone(), entry) {
            Ok(_) => {
                let _ = writeln!(
                    text,
                    "{}: policy `{}`: grants valid, settings accepted",
                    config_path.display(),
                    entry.name
                );
            }
            Err(error) => {
                ok = false;
                let _ = writeln!(
                    text,
                    "{}: policy `{}`: {error}",
                    config_path.display(),
                    entry.name
                );
            }
        }
    }
    CheckReport { text, ok }
}
