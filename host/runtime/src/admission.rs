//! Admission: deciding whether a `.wasm` file may become a policy at all.
//!
//! Authors `cargo build --target wasm32-unknown-unknown` and get a core module with the
//! contract embedded by wit-bindgen; we turn it into a component here, so they need no other
//! tool. Components are accepted as they are. Either way, a policy may import nothing but
//! Haven's own interfaces: no WASI, so it has no files, network, clock, environment or
//! randomness except through the contract; and it must export the contract's `handler` in a
//! version this host speaks.

use crate::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
use wasmparser::{Parser, Payload};

/// Why a module was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("not a WebAssembly module or component")]
    NotWasm,
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error(
        "imports `{0}`: policies get no WASI (no files, network, clock, environment or randomness); \
         build for wasm32-unknown-unknown and use only Haven's interfaces"
    )]
    ImportsWasi(String),
    #[error("imports `{0}`, which is not part of Haven's contract ({CONTRACT_PACKAGE}/*)")]
    ImportsUnknown(String),
    #[error(
        "was built against {CONTRACT_PACKAGE}@{found}; this host speaks {CONTRACT_PACKAGE}@{CONTRACT_VERSION}"
    )]
    IncompatibleContract { found: String },
    #[error(
        "does not export `{CONTRACT_PACKAGE}/handler`: is `haven_sdk::export_policy!` missing?"
    )]
    NoHandler,
    #[error("cannot be turned into a component: {0}")]
    Componentize(String),
}

/// The bytes of an admitted component, ready to compile.
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>, AdmissionError> {
    if Parser::is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    if !Parser::is_core_wasm(bytes) {
        return Err(AdmissionError::NotWasm);
    }
    check_core_imports(bytes)?;
    wit_component::ComponentEncoder::default()
        .module(bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|error| AdmissionError::Componentize(format!("{error:#}")))
}

/// A core module's imports, checked before wit-component (whose own errors about WASI or
/// unknown imports are hard to read).
fn check_core_imports(bytes: &[u8]) -> Result<(), AdmissionError> {
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|error| AdmissionError::Invalid(error.to_string()))?;
        let Payload::ImportSection(reader) = payload else {
            continue;
        };
        for import in reader.into_imports() {
            let import = import.map_err(|error| AdmissionError::Invalid(error.to_string()))?;
            check_import_name(import.module, Some(import.name))?;
        }
    }
    Ok(())
}

/// Check one import: a component's instance name, or a core module's module and field names.
pub(crate) fn check_import_name(module: &str, field: Option<&str>) -> Result<(), AdmissionError> {
    let full = || match field {
        Some(field) => format!("{module}::{field}"),
        None => module.to_owned(),
    };
    // wit-bindgen's own plumbing in core modules: `[export]<interface>` resource hooks and
    // `$root` functions of the world itself.
    let interface = module.strip_prefix("[export]").unwrap_or(module);
    if interface == "$root" {
        return Ok(());
    }
    if interface.starts_with("wasi") {
        return Err(AdmissionError::ImportsWasi(full()));
    }
    match interface
        .strip_prefix(CONTRACT_PACKAGE)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(rest) => {
            let (_interface, version) = rest.split_once('@').unwrap_or((rest, ""));
            if version.is_empty() || compatible(version) {
                Ok(())
            } else {
                Err(AdmissionError::IncompatibleContract {
                    found: version.to_owned(),
                })
            }
        }
        None => Err(AdmissionError::ImportsUnknown(full())),
    }
}

/// Check the exports of a component: the contract's handler in a version this host speaks.
pub(crate) fn check_export_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), AdmissionError> {
    let handler = format!("{CONTRACT_PACKAGE}/handler@");
    let mut incompatible = None;
    for name in names {
        if let Some(version) = name.strip_prefix(&handler) {
            if compatible(version) {
                return Ok(());
            }
            incompatible = Some(version.to_owned());
        }
    }
    Err(match incompatible {
        Some(found) => AdmissionError::IncompatibleContract { found },
        None => AdmissionError::NoHandler,
    })
}

/// Semver compatibility with [`CONTRACT_VERSION`]: same major, and for 0.x the same minor.
fn compatible(version: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut numbers = v.split('.').map(|n| n.parse::<u64>().ok());
        Some((numbers.next()??, numbers.next()??))
    };
    match (parts(version), parts(CONTRACT_VERSION)) {
        (Some((0, minor)), Some((0, ours))) => minor == ours,
        (Some((major, _)), Some((ours, _))) => major == ours,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_names() {
        assert!(check_import_name("haven:policy/carp@0.1.0", Some("state")).is_ok());
        assert!(check_import_name("haven:policy/kv@0.1.2", None).is_ok());
        assert!(check_import_name("$root", Some("f")).is_ok());
        let wasi = check_import_name("wasi_snapshot_preview1", Some("fd_write")).unwrap_err();
        assert!(
            wasi.to_string()
                .starts_with("imports `wasi_snapshot_preview1::fd_write`: policies get no WASI")
        );
        assert!(matches!(
            check_import_name("wasi:cli/environment@0.2.0", None),
            Err(AdmissionError::ImportsWasi(_))
        ));
        let unknown = check_import_name("evil:net/socket@1.0.0", None).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "imports `evil:net/socket@1.0.0`, which is not part of Haven's contract (haven:policy/*)"
        );
        let future = check_import_name("haven:policy/carp@0.2.0", None).unwrap_err();
        assert_eq!(
            future.to_string(),
            "was built against haven:policy@0.2.0; this host speaks haven:policy@0.1.0"
        );
    }

    #[test]
    fn export_names() {
        assert!(check_export_names(["haven:policy/handler@0.1.0"]).is_ok());
        assert_eq!(
            check_export_names(["other"]),
            Err(AdmissionError::NoHandler)
        );
        assert!(matches!(
            check_export_names(["haven:policy/handler@1.0.0"]),
            Err(AdmissionError::IncompatibleContract { .. })
        ));
    }

    #[test]
    fn garbage_is_not_wasm() {
        assert_eq!(componentize(b"hello"), Err(AdmissionError::NotWasm));
    }
}
