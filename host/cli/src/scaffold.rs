//! `havenctl new [--lang rust|python|js] <dir>`: a policy that builds, unit-tests and
//! scenario-tests out of the box, so an author goes from an empty folder to a tested policy in
//! three commands, in the language they know.
//!
//! Every language gets the same small policy (follow a CARP vhid with a service), the same
//! scenario file, a unit test in the language's own runner with a scripted host, and the
//! command that builds the component. Rust builds on `haven-sdk`; Python on `haven_policy.py`
//! (`sdk/python`, copied into the folder) and the bindings componentize-py generates from
//! Haven's WIT contract (copied into `wit/`); JavaScript on `haven_policy.js` and
//! `wasm_host.js` (`sdk/js`), built by ComponentizeJS.

use haven_core::names::check_name;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where this havenctl's SDK sources were when it was built: the default `--sdk`.
pub const BUILT_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// The componentize-py release the Python scaffold and CI are tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The ComponentizeJS release the JavaScript scaffold and CI are tested with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// ComponentizeJS's switches that leave every WASI interface out of the component.
const JS_NO_WASI: &str = "-d stdio random clocks http fetch-event";

/// The language of a new policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

const SCENARIO: &str = include_str!("../templates/scenario.toml.in");
const CONTRACT: &str = include_str!("../../../wit/haven-policy.wit");

const RUST_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/Cargo.toml.in")),
    (
        ".cargo/config.toml",
        include_str!("../templates/cargo-config.toml.in"),
    ),
    ("src/lib.rs", include_str!("../templates/lib.rs.in")),
    ("scenarios/basic.toml", SCENARIO),
    ("README.md", include_str!("../templates/README.md.in")),
];

const PYTHON_FILES: &[(&str, &str)] = &[
    ("app.py", include_str!("../templates/python/app.py.in")),
    (
        "test_app.py",
        include_str!("../templates/python/test_app.py.in"),
    ),
    (
        "haven_policy.py",
        include_str!("../../../sdk/python/haven_policy.py"),
    ),
    ("wit/haven-policy.wit", CONTRACT),
    ("scenarios/basic.toml", SCENARIO),
    (
        "README.md",
        include_str!("../templates/python/README.md.in"),
    ),
];

const JS_FILES: &[(&str, &str)] = &[
    ("app.js", include_str!("../templates/js/app.js.in")),
    (
        "app.test.js",
        include_str!("../templates/js/app.test.js.in"),
    ),
    (
        "component.js",
        include_str!("../templates/js/component.js.in"),
    ),
    (
        "haven_policy.js",
        include_str!("../../../sdk/js/haven_policy.js"),
    ),
    ("wasm_host.js", include_str!("../../../sdk/js/wasm_host.js")),
    (
        "package.json",
        include_str!("../templates/js/package.json.in"),
    ),
    ("wit/haven-policy.wit", CONTRACT),
    ("scenarios/basic.toml", SCENARIO),
    ("README.md", include_str!("../templates/js/README.md.in")),
];

impl Lang {
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => RUST_FILES,
            Lang::Python => PYTHON_FILES,
            Lang::Js => JS_FILES,
        }
    }

    /// The built module, relative to the policy's folder.
    pub fn module(self, crate_name: &str) -> String {
        match self {
            Lang::Rust => format!("target/wasm32-unknown-unknown/release/{crate_name}.wasm"),
            Lang::Python | Lang::Js => format!("{crate_name}.wasm"),
        }
    }

    /// What the component is built from: Python's module that holds `Handler`, JavaScript's
    /// entry file; nothing for Rust (the crate).
    pub fn entry(self) -> &'static str {
        match self {
            Lang::Rust => "",
            Lang::Python => "app",
            Lang::Js => "component.js",
        }
    }

    /// The command that builds the component from `entry` into `module`, program first: the
    /// one place the toolchains' switches are written (`--stub-wasi`, every WASI feature
    /// disabled), for the printed next steps, the tests and the benchmark alike. Rust's build
    /// names neither: its module is [`Lang::module`].
    pub fn build_command(self, entry: &str, module: &str) -> Vec<String> {
        let words = match self {
            Lang::Rust => "cargo build --release --target wasm32-unknown-unknown".to_owned(),
            Lang::Python => format!(
                "componentize-py -d wit -w policy componentize --stub-wasi {entry} -o {module}"
            ),
            Lang::Js => {
                format!("componentize-js {entry} -w wit -n policy {JS_NO_WASI} -o {module}")
            }
        };
        words.split(' ').map(str::to_owned).collect()
    }

    /// The commands from the new folder to a passing unit test and scenario test.
    pub fn next_steps(self, crate_name: &str) -> Vec<String> {
        let module = self.module(crate_name);
        let unit = match self {
            Lang::Rust => "cargo test",
            Lang::Python => "python3 -m pytest -q",
            Lang::Js => "node --test",
        };
        let build = self.build_command(self.entry(), &module).join(" ");
        vec![
            unit.to_owned(),
            format!("{build} && havenctl test {module} scenarios/*.toml"),
        ]
    }
}

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
    #[error(
        "componentize-py could not generate the contract's Python bindings in {dir}: {why} \
         (pip install componentize-py=={COMPONENTIZE_PY_VERSION}, then run `componentize-py -d \
         wit -w policy bindings .` there)"
    )]
    Bindings { dir: PathBuf, why: String },
}

/// Create the policy in `dir` (which must not exist); its name is the folder's name. A Python
/// policy also gets its bindings, generated by componentize-py.
pub fn create(dir: &Path, lang: Lang, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    check_name("policy name", &name).map_err(ScaffoldError::Name)?;
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let sdk = match lang {
        Lang::Rust => {
            let sdk = sdk
                .canonicalize()
                .map_err(|_| ScaffoldError::NoSdk(sdk.to_owned()))?;
            if !sdk.join("Cargo.toml").is_file() {
                return Err(ScaffoldError::NoSdk(sdk));
            }
            sdk
        }
        Lang::Python | Lang::Js => PathBuf::new(),
    };
    let crate_name = name.replace('-', "_");
    let mut written = Vec::new();
    for (relative, template) in lang.files() {
        let path = dir.join(relative);
        let text = template
            .replace("{{name}}", &name)
            .replace("{{crate}}", &crate_name)
            .replace("{{module}}", &lang.module(&crate_name))
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
    if lang == Lang::Python {
        written.push(python_bindings(dir)?);
    }
    Ok(written)
}

/// `componentize-py -d wit -w policy bindings .` in `dir`: the contract's types as Python
/// dataclasses (`wit_world/`), which the policy and its unit tests import.
fn python_bindings(dir: &Path) -> Result<PathBuf, ScaffoldError> {
    let failed = |why: String| ScaffoldError::Bindings {
        dir: dir.to_owned(),
        why,
    };
    let output = Command::new("componentize-py")
        .args(["-d", "wit", "-w", "policy", "bindings", "."])
        .current_dir(dir)
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(
            haven_core::text::clip(stderr.trim(), 400).into_owned(),
        ));
    }
    Ok(dir.join("wit_world"))
}
