//! Benchmark tools behind `sluice loadgen` and `sluice sink`: an OTLP trace load generator
//! that reports throughput and latency, and an OTLP endpoint that accepts and counts
//! everything.

pub mod loadgen;
pub mod sink;
