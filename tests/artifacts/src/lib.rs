//! Paths of the WebAssembly policies the tests load, built from source by `build.rs`:
//! the shipped seed policy and policies that misbehave on purpose.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
