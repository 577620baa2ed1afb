//! See `sluice_fuzz_targets::prometheus_text` (fuzz/targets/src/lib.rs) for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::prometheus_text(data));
