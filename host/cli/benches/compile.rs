//! Compiling a policy in a process of its own against compiling it in the daemon, in one run:
//! what the isolation (`haven_runtime::compiler_process`) adds to a cold load or reload.
//!
//! `cargo bench -p haven-cli --bench compile` (`-- --quick` for a smoke run). Each round gets
//! a module the cache has never seen (the seed policy with another custom section), so every
//! compile is cold; the two ways alternate, so machine load falls on both alike.

use haven_runtime::{CompilerProcess, Runtime, RuntimeOptions};
use haven_test_artifacts::support::{Percentiles, with_custom_section};
use std::time::{Duration, Instant};

const HAVEND: &str = env!("CARGO_BIN_EXE_havend");

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let rounds: u32 = if quick { 3 } else { 30 };
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read(haven_test_artifacts::CARP_HAST_SWITCH).unwrap();
    let in_process = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().join("in-process")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let isolated = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.path().join("isolated")),
        compiler: Some(CompilerProcess {
            program: HAVEND.into(),
            args: Vec::new(),
            memory_mib: 2048,
            timeout: Duration::from_secs(120),
        }),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let (mut local, mut child) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let module = with_custom_section(&seed, "haven-bench-round", &round.to_le_bytes());
        for (runtime, samples) in [(&in_process, &mut local), (&isolated, &mut child)] {
            let started = Instant::now();
            let compiled = runtime.compile(&module, &Default::default()).unwrap();
            samples.push(started.elapsed());
            assert!(!compiled.from_cache);
        }
    }
    let local = Percentiles::of(local);
    let child = Percentiles::of(child);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold compile of the seed policy ({} KB), {rounds} rounds each, admission to a linked \
         and described policy:",
        seed.len() / 1024
    );
    for (name, p) in [("in the daemon", local), ("compiler process", child)] {
        println!(
            "  {name:<17} median {:7.1} ms   p90 {:7.1} ms   max {:7.1} ms",
            ms(p.median),
            ms(p.p90),
            ms(p.max)
        );
    }
    println!(
        "  isolation adds {:.1} ms at the median ({:.2}x)",
        ms(child.median) - ms(local.median),
        ms(child.median) / ms(local.median)
    );
}
