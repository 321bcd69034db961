//! Paths of the WebAssembly policies the tests load, built from source by `build.rs`:
//! the shipped seed policy and policies that misbehave on purpose. Also what the tests of
//! several crates share: [`support`] (stand-ins for system tools, a bounded wait) and [`etcd`]
//! (a real etcd server on loopback).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(unix)]
pub mod etcd;
#[cfg(unix)]
pub mod support;
