//! Admission: deciding whether a `.wasm` file may become a policy at all.
//!
//! Authors `cargo build --target wasm32-unknown-unknown` and get a core module with the
//! contract embedded by wit-bindgen; we turn it into a component here, so they need no other
//! tool. Components are accepted as they are. Either way, a policy may import nothing but
//! Haven's own interfaces: no WASI, so it has no files, network, clock, environment or
//! randomness except through the contract; and it must export the contract's `handler` in a
//! version this host speaks.
//!
//! ## Contract versions
//!
//! Policies outlive hosts: an operator upgrades `havend` and keeps the policy modules they
//! built and tested. So the rule (also in the header of `wit/haven-policy.wit`) is semver on
//! the contract package, with minor releases only *adding* what the host provides. A host
//! speaking `haven:policy@M.N` runs a policy built against `M.0` up to `M.N` (any patch), and
//! refuses, naming both versions:
//!
//! - another major: the types or the exports differ, so calls would not line up (this
//!   includes `0.x`, the contract before it was declared stable);
//! - a newer minor: the policy may import what this host lacks;
//! - no version at all, or one that is not `MAJOR.MINOR.PATCH`.
//!
//! An older major is run through a frozen copy of its last contract (`wit/v1/` for `1.1`,
//! `wit/v2/` for `2.0`, `wit/v3/` for `3.0`): the linker holds every major's imports, and the
//! policy is typed against the bindings of the major its `handler` export names. Events an
//! older policy cannot express (the peer's for `1.x`, the operator's for `2.x`, the
//! witness's for `3.x`) are not delivered to it.
//!
//! Running an older minor needs nothing more from us: wasmtime's linker resolves an import of
//! `haven:policy/kv@1.0.0` to our definition `@1.1.0`, and the generated bindings find the
//! policy's `haven:policy/handler@1.0.0` export when looking for `@1.1.0` (both treat versions
//! of the same major as one name). That same leniency is why the check here must come first:
//! wasmtime would also link a newer minor, or fail with a type error instead of saying which
//! versions disagree.

use crate::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, OLDER_CONTRACTS};
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
        "was built against {CONTRACT_PACKAGE}@{found}; this host speaks \
         {CONTRACT_PACKAGE}@{CONTRACT_VERSION} and runs policies built against {range}",
        range = compatible_range()
    )]
    IncompatibleContract { found: String },
    #[error(
        "uses `{0}`, which carries no version; this host speaks {CONTRACT_PACKAGE}@{CONTRACT_VERSION} \
         and runs policies built against {range}",
        range = compatible_range()
    )]
    UnversionedContract(String),
    #[error(
        "does not export `{CONTRACT_PACKAGE}/handler`: is `haven_sdk::export_policy!` missing?"
    )]
    NoHandler,
    #[error("cannot be turned into a component: {0}")]
    Componentize(String),
    #[error("{0}; refused before compiling (compiling it could cost the host too much)")]
    TooCostly(String),
}

/// The largest `.wasm` file admitted: a Python or JavaScript policy is about 20 MB.
pub const MAX_MODULE_BYTES: usize = 64 << 20;
/// Functions in one module, counting every core module inside a component.
pub const MAX_FUNCTIONS: usize = 200_000;
/// The largest function body.
pub const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// How deeply blocks, loops and ifs may nest in one function. Compilers keep a frame per
/// open block, so depth is what turns a small file into gigabytes of compiler memory.
pub const MAX_NESTING: usize = 1024;

/// The bytes of an admitted component, ready to compile. Everything that can be checked
/// without compiling is checked first: the size and structure ([`check_structure`]) and the
/// imports, so that a module that would be refused, or would cost the host gigabytes to
/// compile, never reaches the compiler.
pub fn componentize(bytes: &[u8]) -> Result<Vec<u8>, AdmissionError> {
    admit(bytes)?;
    if Parser::is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|error| AdmissionError::Componentize(format!("{error:#}")))
}

/// Everything that can be refused without compiling or encoding: not WebAssembly, too costly
/// ([`check_structure`]), or importing what the contract does not offer.
pub fn admit(bytes: &[u8]) -> Result<(), AdmissionError> {
    let is_component = Parser::is_component(bytes);
    if !is_component && !Parser::is_core_wasm(bytes) {
        return Err(AdmissionError::NotWasm);
    }
    check_structure(bytes)?;
    if !is_component {
        check_core_imports(bytes)?;
    }
    Ok(())
}

/// What a module or component may cost to compile, read in one pass without compiling: its
/// size, its function count, each function's size and how deeply its blocks nest; and a
/// component's own imports (those of the components and modules inside it are satisfied
/// inside it).
pub fn check_structure(bytes: &[u8]) -> Result<(), AdmissionError> {
    let costly = |what: String| Err(AdmissionError::TooCostly(what));
    if bytes.len() > MAX_MODULE_BYTES {
        return costly(format!(
            "is {} bytes, over the limit of {MAX_MODULE_BYTES}",
            bytes.len()
        ));
    }
    let invalid = |error: wasmparser::BinaryReaderError| AdmissionError::Invalid(error.to_string());
    let mut functions = 0usize;
    // 1 inside the outermost module or component, more inside nested ones.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(invalid)?;
                    check_import_name(import.name.name, None)?;
                }
            }
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > MAX_FUNCTIONS {
                    return costly(format!("has over {MAX_FUNCTIONS} functions"));
                }
                let size = body.range().len();
                if size > MAX_FUNCTION_BYTES {
                    return costly(format!(
                        "has a function of {size} bytes, over the limit of {MAX_FUNCTION_BYTES}"
                    ));
                }
                let mut open = 0usize;
                let mut operators = body.get_operators_reader().map_err(invalid)?;
                while !operators.eof() {
                    match operators.read().map_err(invalid)? {
                        wasmparser::Operator::Block { .. }
                        | wasmparser::Operator::Loop { .. }
                        | wasmparser::Operator::If { .. }
                        | wasmparser::Operator::Try { .. }
                        | wasmparser::Operator::TryTable { .. } => {
                            open += 1;
                            if open > MAX_NESTING {
                                return costly(format!(
                                    "nests blocks over {MAX_NESTING} deep in one function"
                                ));
                            }
                        }
                        wasmparser::Operator::End => open = open.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
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
            check_version(interface, rest.split_once('@').map(|(_, version)| version)).map(drop)
        }
        None => Err(AdmissionError::ImportsUnknown(full())),
    }
}

/// Check the exports of a component: the contract's handler in a version this host speaks.
/// Returns that version: the contract the policy was built against.
pub(crate) fn check_export_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<String, AdmissionError> {
    let handler = format!("{CONTRACT_PACKAGE}/handler");
    let mut refused = None;
    for name in names {
        let version = match name.strip_prefix(&handler) {
            Some("") => None,
            Some(rest) => match rest.strip_prefix('@') {
                Some(version) => Some(version),
                // Another export that only starts like the handler's name.
                None => continue,
            },
            None => continue,
        };
        match check_version(name, version) {
            Ok(version) => return Ok(version.to_owned()),
            Err(error) => refused = Some(error),
        }
    }
    Err(refused.unwrap_or(AdmissionError::NoHandler))
}

/// Check the contract version an import or export `name` carries, if any; returns it.
fn check_version<'a>(name: &str, version: Option<&'a str>) -> Result<&'a str, AdmissionError> {
    let Some(version) = version else {
        return Err(AdmissionError::UnversionedContract(name.to_owned()));
    };
    match Version::parse(version) {
        Some(module) if spoken().any(|host| host.runs(module)) => Ok(version),
        _ => Err(AdmissionError::IncompatibleContract {
            found: version.to_owned(),
        }),
    }
}

/// The contracts this host speaks: its own and the last of each older major it keeps.
fn spoken() -> impl Iterator<Item = Version> {
    OLDER_CONTRACTS
        .iter()
        .chain([&CONTRACT_VERSION])
        .map(|text| Version::parse(text).expect("contract versions are MAJOR.MINOR.PATCH"))
}

/// The major of a version [`check_export_names`] accepted.
pub(crate) fn major(version: &str) -> u64 {
    Version::parse(version).map_or(0, |version| version.major)
}

/// What the host runs, for messages: `1.0 to 1.1, 2.0`.
fn compatible_range() -> String {
    let ranges: Vec<String> = spoken()
        .map(|Version { major, minor }| match (major, minor) {
            (0, _) | (_, 0) => format!("{major}.{minor}"),
            _ => format!("{major}.0 to {major}.{minor}"),
        })
        .collect();
    ranges.join(", ")
}

/// A contract version, `MAJOR.MINOR.PATCH`. The patch is not kept: patch releases change
/// documentation only, so they never decide compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u64,
    minor: u64,
}

impl Version {
    /// Parse `MAJOR.MINOR.PATCH`; anything else (a pre-release, build metadata, missing parts)
    /// is not a version this host could promise anything about.
    fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.').map(|part| {
            let plain = !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
            plain.then(|| part.parse::<u64>().ok()).flatten()
        });
        let version = Version {
            major: parts.next()??,
            minor: parts.next()??,
        };
        parts.next()??;
        parts.next().is_none().then_some(version)
    }

    /// Whether a host speaking `self` runs a policy built against `module`: the same major,
    /// and a minor no newer than ours (see the module documentation). Before 1.0 any minor may
    /// break, so there only the same minor.
    fn runs(self, module: Version) -> bool {
        match self.major {
            0 => module == self,
            _ => module.major == self.major && module.minor <= self.minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's message for a module built against `found`.
    fn incompatible(found: &str) -> String {
        format!(
            "was built against haven:policy@{found}; this host speaks haven:policy@4.0.0 and \
             runs policies built against 1.0 to 1.1, 2.0, 3.0, 4.0"
        )
    }

    #[test]
    fn import_names() {
        assert!(check_import_name("haven:policy/carp@1.1.0", Some("state")).is_ok());
        assert!(check_import_name("haven:policy/kv@1.0.0", None).is_ok());
        assert!(check_import_name("haven:policy/kv@1.1.7", None).is_ok());
        assert!(check_import_name("[export]haven:policy/handler@1.0.0", Some("f")).is_ok());
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
        let newer = check_import_name("haven:policy/carp@1.2.0", None).unwrap_err();
        assert_eq!(newer.to_string(), incompatible("1.2.0"));
        let unversioned = check_import_name("haven:policy/carp", Some("state")).unwrap_err();
        assert_eq!(
            unversioned.to_string(),
            "uses `haven:policy/carp`, which carries no version; this host speaks \
             haven:policy@4.0.0 and runs policies built against 1.0 to 1.1, 2.0, 3.0, 4.0"
        );
    }

    #[test]
    fn export_names() {
        assert_eq!(
            check_export_names(["haven:policy/handler@1.1.0"]),
            Ok("1.1.0".into())
        );
        assert_eq!(
            check_export_names(["other", "haven:policy/handler@1.0.0"]),
            Ok("1.0.0".into())
        );
        assert_eq!(
            check_export_names(["other", "haven:policy/handler-extra@1.0.0"]),
            Err(AdmissionError::NoHandler)
        );
        assert_eq!(
            check_export_names(["haven:policy/handler@2.0.0"]),
            Ok("2.0.0".into())
        );
        assert_eq!(
            check_export_names(["haven:policy/handler@3.0.0"]),
            Ok("3.0.0".into())
        );
        assert_eq!(
            check_export_names(["haven:policy/handler@4.0.0"]),
            Ok("4.0.0".into())
        );
        let future = check_export_names(["haven:policy/handler@5.0.0"]).unwrap_err();
        assert_eq!(future.to_string(), incompatible("5.0.0"));
        let newer = check_export_names(["haven:policy/handler@2.1.0"]).unwrap_err();
        assert_eq!(newer.to_string(), incompatible("2.1.0"));
        assert_eq!(
            check_export_names(["haven:policy/handler"]),
            Err(AdmissionError::UnversionedContract(
                "haven:policy/handler".into()
            ))
        );
    }

    #[test]
    fn versions_a_host_runs() {
        let host = Version::parse(CONTRACT_VERSION).unwrap();
        assert!(host.runs(host), "a host runs its own version");
        let runs = |module: &str| {
            Version::parse(module).is_some_and(|module| spoken().any(|host| host.runs(module)))
        };
        // Its own major, the older majors it keeps (their minors, any patch).
        for module in [
            "4.0.0", "4.0.3", "3.0.0", "3.0.2", "2.0.0", "2.0.4", "1.0.0", "1.0.3", "1.1.0",
            "1.1.12",
        ] {
            assert!(runs(module), "{module}");
        }
        // Another major, a newer minor, the pre-stable 0.x, and what is not MAJOR.MINOR.PATCH.
        for module in [
            "5.0.0",
            "4.1.0",
            "3.1.0",
            "2.1.0",
            "0.1.0",
            "1.2.0",
            "1.1",
            "1.1.0.0",
            "1.1.0-rc1",
            "1.1.+0",
            "",
            "x.y.z",
        ] {
            assert!(!runs(module), "{module}");
        }
        // Before 1.0, every minor is its own major.
        let zero_one = Version { major: 0, minor: 1 };
        assert!(zero_one.runs(zero_one));
        assert!(!zero_one.runs(Version { major: 0, minor: 0 }));
        assert!(!zero_one.runs(Version { major: 1, minor: 1 }));
    }

    /// A core module with one function whose body nests `depth` empty blocks.
    fn nested_blocks(depth: usize) -> Vec<u8> {
        use wasm_encoder::{
            BlockType, CodeSection, Function, FunctionSection, Instruction, Module, TypeSection,
        };
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        functions.function(0);
        let mut body = Function::new([]);
        for _ in 0..depth {
            body.instruction(&Instruction::Block(BlockType::Empty));
        }
        for _ in 0..=depth {
            body.instruction(&Instruction::End);
        }
        let mut code = CodeSection::new();
        code.function(&body);
        let mut module = Module::new();
        module.section(&types).section(&functions).section(&code);
        module.finish()
    }

    #[test]
    fn deep_nesting_is_refused_before_compiling() {
        assert_eq!(check_structure(&nested_blocks(MAX_NESTING)), Ok(()));
        let refused = check_structure(&nested_blocks(MAX_NESTING + 1)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "nests blocks over 1024 deep in one function; refused before compiling (compiling \
             it could cost the host too much)"
        );
        assert!(matches!(
            componentize(&nested_blocks(100_000)),
            Err(AdmissionError::TooCostly(_))
        ));
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read() {
        let mut big = nested_blocks(1);
        big.resize(MAX_MODULE_BYTES + 1, 0);
        assert!(matches!(
            check_structure(&big),
            Err(AdmissionError::TooCostly(why)) if why.contains("over the limit")
        ));
    }

    #[test]
    fn a_component_importing_wasi_is_refused_before_compiling() {
        use wasm_encoder::{Component, ComponentImportSection, ComponentTypeRef, InstanceType};
        let mut imports = ComponentImportSection::new();
        imports.import("wasi:cli/environment@0.2.0", ComponentTypeRef::Instance(0));
        let mut types = wasm_encoder::ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        let mut component = Component::new();
        component.section(&types);
        component.section(&imports);
        let bytes = component.finish();
        assert!(matches!(
            componentize(&bytes),
            Err(AdmissionError::ImportsWasi(name)) if name == "wasi:cli/environment@0.2.0"
        ));
    }

    #[test]
    fn garbage_is_not_wasm() {
        assert_eq!(componentize(b"hello"), Err(AdmissionError::NotWasm));
    }
}
