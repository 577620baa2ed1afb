#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on stable Rust (no
# nightly, no cargo-fuzz needed) and runs one: ./fuzz/run.sh TARGET [SECONDS] [libFuzzer args]
# A crash is written to fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS]}; seconds=${2:-60}; shift $(( $# < 2 ? $# : 2 ))
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares" \
  cargo build --release --quiet --target "$triple" --features "$target" --bin "$target"
mkdir -p "corpus/$target" "artifacts/$target"
exec "target/$triple/release/$target" -max_total_time="$seconds" -artifact_prefix="artifacts/$target/" \
  "$@" "corpus/$target" "seeds/$target"
