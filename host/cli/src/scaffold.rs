//! `havenctl new <dir>`: a policy crate that builds, unit-tests and scenario-tests out of the
//! box, so an author goes from an empty folder to a tested policy in three commands.

use haven_core::names::check_name;
use std::path::{Path, PathBuf};

/// Where this havenctl's SDK sources were when it was built: the default `--sdk`.
pub const BUILT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/Cargo.toml.in")),
    (
        ".cargo/config.toml",
        include_str!("../templates/cargo-config.toml.in"),
    ),
    ("src/lib.rs", include_str!("../templates/lib.rs.in")),
    (
        "scenarios/basic.toml",
        include_str!("../templates/scenario.toml.in"),
    ),
    ("README.md", include_str!("../templates/README.md.in")),
];

/// Why a policy crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    Name(String),
    #[error("{0} already exists; choose a new folder")]
    Exists(PathBuf),
    #[error("the SDK is not at {0}; pass --sdk <path to haven's sdk folder>")]
    NoSdk(PathBuf),
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Create the crate in `dir` (which must not exist); its name is the folder's name.
pub fn create(dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    check_name("policy name", &name).map_err(ScaffoldError::Name)?;
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let sdk = sdk
        .canonicalize()
        .map_err(|_| ScaffoldError::NoSdk(sdk.to_owned()))?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(ScaffoldError::NoSdk(sdk));
    }
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (relative, template) in FILES {
        let path = dir.join(relative);
        let text = template
            .replace("{{name}}", &name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string());
        let write = |path: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("files are in the crate folder"))?;
            std::fs::write(path, text)
        };
        write(&path).map_err(|error| ScaffoldError::Write {
            path: path.clone(),
            error,
        })?;
        written.push(path);
    }
    Ok(written)
}
