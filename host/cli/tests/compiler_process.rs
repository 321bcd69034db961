//! Compiling in a process of its own (`haven_runtime::compiler_process`), with the real
//! havend binary as the compiler: the artifact comes back through the cache, a compile that
//! runs out of memory fails alone with its reason, and what admission refuses never reaches
//! a child.

use haven_runtime::{AdmissionError, CompilerProcess, LoadError, Runtime, RuntimeOptions};
use std::path::Path;
use std::time::Duration;

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

fn runtime(cache: &Path, memory_mib: u64) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.to_owned()),
        compiler: Some(CompilerProcess {
            program: HAVEND.into(),
            args: Vec::new(),
            memory_mib,
            timeout: Duration::from_secs(120),
        }),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn seed() -> Vec<u8> {
    std::fs::read(haven_test_artifacts::CARP_HAST_SWITCH).unwrap()
}

#[test]
fn a_module_compiled_by_a_compiler_process_loads_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runtime = runtime(&cache, 2048);
    let compiled = runtime.compile(&seed(), &Default::default()).unwrap();
    assert!(!compiled.from_cache);
    assert_eq!(compiled.info.name, "carp-hast-switch");
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 1, "the artifact, and no module file left behind");
    let again = runtime.compile(&seed(), &Default::default()).unwrap();
    assert!(again.from_cache);
    assert_eq!(again.module_hash, compiled.module_hash);
}

#[test]
fn a_compile_over_its_memory_limit_fails_alone_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let starved = runtime(&cache, 16);
    let error = starved.compile(&seed(), &Default::default()).unwrap_err();
    let LoadError::Compile(reason) = &error else {
        panic!("{error:?}")
    };
    assert!(
        reason.starts_with(
            "the compiler process ran out of its 16 MiB ([daemon] compile-memory-mib): "
        ),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing cached"
    );
    // This process, and the next compile with room, are fine.
    let compiled = runtime(&cache, 2048).compile(&seed(), &Default::default());
    assert!(compiled.is_ok(), "{compiled:?}");
}

#[test]
fn what_admission_refuses_never_reaches_a_compiler_process() {
    let dir = tempfile::tempdir().unwrap();
    // A compiler that cannot even start: only admission can answer.
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().join("cache")),
        compiler: Some(CompilerProcess {
            program: dir.path().join("no-such-compiler"),
            args: Vec::new(),
            memory_mib: 2048,
            timeout: Duration::from_secs(5),
        }),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let wasi = std::fs::read(haven_test_artifacts::WASI_IMPORT_POLICY).unwrap();
    assert!(matches!(
        runtime.compile(&wasi, &Default::default()),
        Err(LoadError::Admission(AdmissionError::ImportsWasi(_)))
    ));
    assert!(matches!(
        runtime.compile(b"#!/bin/sh\n", &Default::default()),
        Err(LoadError::Admission(AdmissionError::NotWasm))
    ));
    let error = runtime.compile(&seed(), &Default::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("cannot start the compiler process"),
        "{error}"
    );
}
