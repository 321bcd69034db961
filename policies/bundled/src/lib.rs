//! The policies Haven ships, as WebAssembly, built from `policies/*` by this crate's build
//! script. `havenctl simulate` runs the seed policy from here when given no files.

/// The seed recipe, `carp-hast-switch`, as a core module (the runtime componentizes it).
pub const CARP_HAST_SWITCH: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carp_hast_switch.wasm"));
