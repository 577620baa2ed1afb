//! See `sluice_fuzz_targets::file_sd` (fuzz/targets/src/lib.rs) for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz_targets::file_sd(data));
