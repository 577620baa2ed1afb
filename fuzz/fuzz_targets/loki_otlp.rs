//! See `sluice_fuzz_targets::loki_otlp` (fuzz/targets/src/lib.rs) for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::loki_otlp(data));
