#!/usr/bin/env bash
# Traces passthrough, Sluice vs rotel, on the same box, load and backend, in one run.
#
#   benches/compare_rotel.sh [seconds-per-run]
#
# Topology (all on loopback): `sluice loadgen` → collector (:4317) → `sluice sink` (:5317).
# The sink is the real OTLP receiver that counts and discards, so both collectors forward to
# the same backend. Compression is off on both exporters (gzip would measure zlib, not the
# collectors); Sluice runs with its default batch settings (Alloy's 2000/3000/200ms). For each collector it reports max throughput (rate unlimited), the collector's
# CPU seconds per 100k spans, and p50/p99 ingest latency at a fixed 100k spans/s.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
SLUICE=./target/release/sluice
cargo build --release -q -p sluice
if [ ! -x .venv/lib/python3*/site-packages/rotel/rotel-agent ]; then
  python3 -m venv .venv && .venv/bin/pip install -q rotel
fi
ROTEL=$(ls .venv/lib/python3*/site-packages/rotel/rotel-agent)
WORK=$(mktemp -d)
PIDS=()
# Stop in reverse start order and wait, so no process outlives the run holding its ports.
cleanup() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

$SLUICE sink --grpc 127.0.0.1:5317 --http 127.0.0.1:5318 --report-every 3600s >/dev/null &
PIDS+=($!)

cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

sluice_config() { # $1 = fsync level
  cat > "$WORK/sluice-$1.toml" <<TOML
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:4317"
[processors.batch]
type = "batch"
[exporters.sink]
type = "otlp"
endpoint = "http://127.0.0.1:5317"
compression = "none"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["sink"]
[pipelines.spool]
fsync = "$1"
TOML
}

run_case() { # $1 = label, rest = command
  local label=$1; shift
  "$@" >"$WORK/$label.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_port 4317
  sleep 1
  local c0; c0=$(cpu_seconds $pid)
  local max; max=$($SLUICE loadgen --endpoint http://127.0.0.1:4317 --concurrency 8 --spans-per-request 500 --duration ${SECS}s --json)
  local c1; c1=$(cpu_seconds $pid)
  local paced; paced=$($SLUICE loadgen --endpoint http://127.0.0.1:4317 --concurrency 8 --spans-per-request 500 --rate 100000 --duration ${SECS}s --json)
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$label" "$max" "$paced" "$c0" "$c1" >> "$WORK/results.jsonl" <<'PY'
import json, sys
label, mx, paced, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(json.dumps({"label": label, "max": mx["spans_per_second"], "cpu": (c1 - c0) / max(mx["spans_accepted"], 1) * 100_000,
                  "p99_max": mx["p99_ms"], "paced": paced["spans_per_second"], "p50": paced["p50_ms"], "p99": paced["p99_ms"],
                  "errors": sum(mx["errors"].values()) + sum(paced["errors"].values())}))
PY
}

ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  run_case rotel "$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4319 \
    --exporter otlp --otlp-exporter-endpoint http://127.0.0.1:5317 --otlp-exporter-compression none
  for fsync in none interval always; do
    sluice_config $fsync
    rm -rf "$WORK/data-$fsync"
    run_case "sluice fsync=$fsync" $SLUICE run "$WORK/sluice-$fsync.toml" --storage.path "$WORK/data-$fsync" \
      --server.http.listen-addr 127.0.0.1:12399 --shutdown.timeout 2s --log.level warn
  done
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
labels = list(dict.fromkeys(r["label"] for r in rows))
by = {l: [r for r in rows if r["label"] == l] for l in labels}
med = lambda l, k: st.median(r[k] for r in by[l])
print(f"medians over {len(by[labels[0]])} interleaved rounds")
print("| collector | max spans/s | × rotel (median of per-round ratios) | CPU s per 100k spans | p99 ms at max | spans/s at 100k target | p50 ms at 100k/s | p99 ms at 100k/s | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for l in labels:
    ratios = [r["max"] / q["max"] for r, q in zip(by[l], by["rotel"])]
    print(f"| {l} | {med(l,'max'):.0f} | {st.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) | {med(l,'cpu'):.2f} | {med(l,'p99_max'):.1f} | {med(l,'paced'):.0f} | {med(l,'p50'):.2f} | {med(l,'p99'):.2f} | {sum(r['errors'] for r in by[l])} |")
PY
