//! Builds every policy the tests load: the shipped seed policy, the misbehaving ones (two of
//! them misbehave in `describe`), one built against an older minor version of the contract
//! (`1.0`) and one against the last contract of the previous major (`2.0`).

use haven_guest_build::{Guest, build};
use std::fmt::Write;

const GUESTS: &[Guest] = &[
    Guest {
        package: "carp-hast-switch",
        dir: "policies/carp-hast-switch",
    },
    Guest {
        package: "misbehaving-policy",
        dir: "tests/policies/misbehaving",
    },
    Guest {
        package: "wasi-import-policy",
        dir: "tests/policies/wasi-import",
    },
    Guest {
        package: "unknown-import-policy",
        dir: "tests/policies/unknown-import",
    },
    Guest {
        package: "contract-1-0-policy",
        dir: "tests/policies/contract-1-0",
    },
    Guest {
        package: "contract-2-0-policy",
        dir: "tests/policies/contract-2-0",
    },
    Guest {
        package: "big-describe-policy",
        dir: "tests/policies/big-describe",
    },
    Guest {
        package: "huge-version-policy",
        dir: "tests/policies/huge-version",
    },
];

fn main() {
    let mut source = String::new();
    for built in build("../..", GUESTS) {
        let constant = built.package.replace('-', "_").to_uppercase();
        writeln!(
            source,
            "/// `{}` built for wasm32-unknown-unknown.",
            built.package
        )
        .unwrap();
        writeln!(
            source,
            "pub const {constant}: &str = {:?};",
            built.wasm.display().to_string()
        )
        .unwrap();
    }
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{out}/artifacts.rs"), source).unwrap();
}
