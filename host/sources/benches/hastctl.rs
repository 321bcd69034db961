//! Reading `hastctl list` output is linear in its size: the same per-resource cost for 5,000
//! resources as for 50,000 (2.8 MiB, past the poller's 1 MiB output limit). A reader that
//! checked duplicates by scanning a list, as Haven's did before, shows a ratio near 100
//! between the two, not 10.
//!
//! `cargo bench -p haven-sources --bench hastctl`

use std::time::{Duration, Instant};

fn list(resources: usize) -> String {
    (0..resources)
        .map(|n| format!("r{n}:\n  role: primary\n  status: complete\n  dirty: 0 (0B)\n"))
        .collect()
}

/// The best of `rounds` reads of `text` (the least disturbed by the machine).
fn best_read(text: &str, rounds: usize) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let read = haven_sources::read_hastctl_list(std::hint::black_box(text));
            let elapsed = started.elapsed();
            assert!(read.refused.is_empty());
            elapsed
        })
        .min()
        .unwrap()
}

fn main() {
    let small = list(5_000);
    let large = list(50_000);
    let (small_time, large_time) = (best_read(&small, 20), best_read(&large, 20));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("reading `hastctl list` output (best of 20 reads):");
    println!(
        "   5,000 resources ({:4} KiB): {:7.2} ms",
        small.len() / 1024,
        ms(small_time)
    );
    println!(
        "  50,000 resources ({:4} KiB): {:7.2} ms",
        large.len() / 1024,
        ms(large_time)
    );
    println!(
        "  ratio {:.1} for 10 times the resources (10 is linear, 100 quadratic)",
        large_time.as_secs_f64() / small_time.as_secs_f64()
    );
}
