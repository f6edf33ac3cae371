//! Code shared by the worker benches.

pub mod bench_model;
