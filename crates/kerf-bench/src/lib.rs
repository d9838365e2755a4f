//! Workloads and measurements for kerf's benchmark suites (see `BENCHMARKS.md`).
//!
//! The binary (`cargo run --release -p kerf-bench -- <suite>`) prints the tables; this
//! library holds the generators so criterion benches and tests build the same inputs.

pub mod shape;
