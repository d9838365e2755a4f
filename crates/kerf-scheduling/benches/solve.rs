//! Criterion benchmarks for `solve`'s hot paths, so a regression shows in `cargo bench -p
//! kerf-scheduling`. Inputs come from `kerf-bench`, the same generators the `kerf-bench`
//! binary's suites use:
//!
//! - `solve/karpenter-shape/{1000,5000}`: Karpenter's scheduling benchmark shape (five pod
//!   classes: plain, zone spread, hostname spread, zone affinity, hostname anti-affinity)
//!   on its 400 fake instance types;
//! - `solve/cost-mix/2000-spread`: the `cost` suite's Deployment mix on the `aws` catalog
//!   with zone spread, DaemonSet overhead included.
//!
//! Whole-process figures (pods per second at 100,000 pods, peak memory, cost against the
//! lower bounds) come from `cargo run --release -p kerf-bench -- <suite>`; see
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kerf_scheduling::{Config, solve};

fn karpenter_shape(c: &mut Criterion) {
    let mut group = c.benchmark_group("solve/karpenter-shape");
    // Criterion's minimum sample count: until the solver rewrite lands a 5,000-pod solve
    // takes 20-30 s, and criterion will say it cannot fit ten in the measurement time.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for pods in [1_000, 5_000] {
        let input = kerf_bench::shape::input(pods, false);
        group.throughput(Throughput::Elements(pods as u64));
        group.bench_with_input(BenchmarkId::from_parameter(pods), &input, |b, input| {
            b.iter(|| solve(black_box(input), &Config::default()))
        });
    }
    group.finish();
}

fn cost_mix(c: &mut Criterion) {
    let mut group = c.benchmark_group("solve/cost-mix");
    group.sample_size(10);
    let pods = 2_000;
    let input = kerf_bench::mix::input(pods, true);
    group.throughput(Throughput::Elements(pods as u64));
    group.bench_with_input(
        BenchmarkId::from_parameter(format!("{pods}-spread")),
        &input,
        |b, input| b.iter(|| solve(black_box(input), &Config::default())),
    );
    group.finish();
}

criterion_group!(benches, karpenter_shape, cost_mix);
criterion_main!(benches);
