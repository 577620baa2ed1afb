#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on stable Rust (no
# nightly, no cargo-fuzz needed) and runs them (docs/fuzzing.md):
#   ./fuzz/run.sh TARGET [SECONDS] [libFuzzer args]     one target
#   ./fuzz/run.sh all [SECONDS] [libFuzzer args]        every target, SECONDS each
#   ./fuzz/run.sh sse,config [SECONDS] [libFuzzer args] these targets, SECONDS each
# One instrumented build holds every target. With a list (or `all`) each target runs in turn,
# its log goes to fuzz/logs/TARGET.log and a line per target (executions, coverage at start and
# end, corpus, crashes) to the summary printed at the end (fuzz/logs/summary-*.txt).
# A crash is written to fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
targets=${1:?usage: run.sh TARGET|all|T1,T2 [SECONDS] [libFuzzer args]}; seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"

# spool_files and file_log write (and fsync) files for every input: keep them in memory.
if [[ -z ${TMPDIR:-} && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi

# Every [[bin]] of Cargo.toml, in its order.
every=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx sluice-fuzz | paste -sd,)
# One build of every target, whichever are run: every crate is compiled once, with one set of
# features, so running another target (or several at once) never rebuilds anything.
cargo build --release --quiet --target "$triple" --features "$every" --bins

if [[ $targets != all && $targets != *,* ]]; then
  mkdir -p "corpus/$targets" "artifacts/$targets"
  exec "target/$triple/release/$targets" -max_total_time="$seconds" \
    -artifact_prefix="artifacts/$targets/" "$@" "corpus/$targets" "seeds/$targets"
fi

[[ $targets == all ]] && targets=$every
mkdir -p logs
summary=logs/summary-$(date -u +%Y%m%dT%H%M%S)-$$.txt
printf '%-16s %8s %12s %12s %8s %7s\n' target seconds executions coverage corpus crashes > "$summary"
for t in ${targets//,/ }; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  # A crash ends one target's run, not the list's.
  "target/$triple/release/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "$@" "corpus/$t" "seeds/$t" > "logs/$t.log" 2>&1 || true
  # libFuzzer's status lines: `#N INITED cov: C ft: F corp: K/S ...` and the last `#N ... cov:`.
  start=$(sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "logs/$t.log" | head -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "logs/$t.log" | tail -1 || true)
  end=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<< "$last")
  corpus=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<< "$last")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log")
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  printf '%-16s %8s %12s %12s %8s %7s\n' "$t" "$seconds" "${execs:-?}" \
    "${start:-?}->${end:-?}" "${corpus:-?}" "$crashes" | tee -a "$summary"
done
echo "---"; cat "$summary"
