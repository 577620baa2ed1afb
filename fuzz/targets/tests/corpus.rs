//! Every fuzz target over its seed corpus (`fuzz/seeds/<target>/`), its regression inputs
//! (`fuzz/regressions/<target>/`, the crashes fuzzing found) and deterministic mutations of
//! the seeds (truncations and byte flips): the short, uninstrumented fuzz run of `./test.sh`.
//! The coverage-guided run is `fuzz/run.sh` (docs/fuzzing.md).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

/// Truncations at 16 points and 64 single-byte changes, the same on every run.
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..16 {
        out.push(seed[..seed.len() * i / 16].to_vec());
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ seed.len() as u64;
    for _ in 0..64 {
        if seed.is_empty() {
            break;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut m = seed.to_vec();
        let at = (state % seed.len() as u64) as usize;
        m[at] = match (state >> 32) % 4 {
            0 => m[at] ^ 0x80,
            1 => m[at].wrapping_add(1),
            2 => 0xff,
            _ => b'"',
        };
        out.push(m);
    }
    out
}

fn replay(name: &str, target: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seeds = files(&root.join("seeds").join(name));
    assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ has no seed inputs");
    let regressions = files(&root.join("regressions").join(name));
    let mut failures = Vec::new();
    let mut runs = 0;
    for path in seeds.iter().chain(&regressions) {
        let Ok(bytes) = std::fs::read(path) else {
            failures.push(format!("{}: unreadable", path.display()));
            continue;
        };
        let mut inputs = vec![bytes.clone()];
        if seeds.contains(path) {
            inputs.extend(mutations(&bytes));
        }
        for (i, input) in inputs.iter().enumerate() {
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
                failures.push(format!("{} (variant {i})", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{name} panicked on: {failures:#?}");
    eprintln!(
        "{name}: {runs} inputs, {} regression files",
        regressions.len()
    );
}

#[cfg(feature = "otlp_protobuf")]
#[test]
fn otlp_protobuf() {
    replay("otlp_protobuf", sluice_fuzz_targets::otlp_protobuf);
}

#[cfg(feature = "otlp_json")]
#[test]
fn otlp_json() {
    replay("otlp_json", sluice_fuzz_targets::otlp_json);
}

#[cfg(feature = "body_decompress")]
#[test]
fn body_decompress() {
    replay("body_decompress", sluice_fuzz_targets::body_decompress);
}

#[cfg(feature = "sse")]
#[test]
fn sse() {
    replay("sse", sluice_fuzz_targets::sse);
}

#[cfg(feature = "awf_event")]
#[test]
fn awf_event() {
    replay("awf_event", sluice_fuzz_targets::awf_event);
}

#[cfg(feature = "webhook")]
#[test]
fn webhook() {
    replay("webhook", sluice_fuzz_targets::webhook);
}

#[cfg(feature = "spool_files")]
#[test]
fn spool_files() {
    replay("spool_files", sluice_fuzz_targets::spool_files);
}

#[cfg(feature = "config")]
#[test]
fn config() {
    replay("config", sluice_fuzz_targets::config);
}

#[cfg(feature = "alloy")]
#[test]
fn alloy() {
    replay("alloy", sluice_fuzz_targets::alloy);
}

#[cfg(feature = "loki_push")]
#[test]
fn loki_push() {
    replay("loki_push", sluice_fuzz_targets::loki_push);
}

#[cfg(feature = "sink_push")]
#[test]
fn sink_push() {
    replay("sink_push", sluice_fuzz_targets::sink_push);
}

#[cfg(feature = "prometheus_text")]
#[test]
fn prometheus_text() {
    replay("prometheus_text", sluice_fuzz_targets::prometheus_text);
}

#[cfg(feature = "file_sd")]
#[test]
fn file_sd() {
    replay("file_sd", sluice_fuzz_targets::file_sd);
}

#[cfg(feature = "file_log")]
#[test]
fn file_log() {
    replay("file_log", sluice_fuzz_targets::file_log);
}

/// A target added to the library without a test above would be fuzzed but never replayed.
#[cfg(feature = "loki_otlp")]
#[test]
fn loki_otlp() {
    replay("loki_otlp", sluice_fuzz_targets::loki_otlp);
}

#[test]
fn every_target_is_replayed() {
    let tested = [
        "otlp_protobuf",
        "otlp_json",
        "body_decompress",
        "sse",
        "awf_event",
        "webhook",
        "spool_files",
        "config",
        "alloy",
        "loki_push",
        "sink_push",
        "prometheus_text",
        "file_sd",
        "file_log",
        "loki_otlp",
    ];
    for (name, _) in sluice_fuzz_targets::TARGETS {
        assert!(tested.contains(name), "no replay test for {name}");
    }
}
