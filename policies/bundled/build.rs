//! Compiles the shipped policies to wasm and copies them next to the crate's code, so the
//! binaries can embed them.

use haven_guest_build::{Guest, build};

const SHIPPED: &[Guest] = &[Guest {
    package: "carp-hast-switch",
    dir: "policies/carp-hast-switch",
}];

fn main() {
    let out = std::env::var("OUT_DIR").unwrap();
    for built in build("../..", SHIPPED) {
        let name = built.wasm.file_name().unwrap();
        std::fs::copy(&built.wasm, format!("{out}/{}", name.to_string_lossy())).unwrap();
    }
}
