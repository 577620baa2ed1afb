//! Criterion benchmarks and the load generator
