#!/usr/bin/env bash
# AWF events end to end: `sluice awf-sim` pushes events → Sluice (AWF push receiver → spool →
# OTLP exporter) → `sluice sink`, which reports delivered log records/s (one per event) and
# event-to-export latency (arrival time minus the event's own timestamp).
#
#   SPEED=50 benches/awf_e2e.sh [events-per-second] [seconds]
# SPEED runs simulated time faster so enough executions overlap to reach the target rate;
# event timestamps stay wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-10000}
SECS=${2:-30}
SLUICE=./target/release/sluice
cargo build --release -q -p sluice
WORK=$(mktemp -d)
PIDS=()
# Stop in reverse start order and wait, so no process outlives the run holding its ports.
cleanup() { for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/awf.toml" <<TOML
[receivers.awf]
type = "awf"
[receivers.awf.push]
endpoint = "127.0.0.1:4320"
[processors.batch]
type = "batch"
timeout = "100ms"
[exporters.sink]
type = "otlp"
endpoint = "http://127.0.0.1:5317"
compression = "none"
[[pipelines]]
name = "awf"
signals = ["traces", "metrics", "logs"]
receivers = ["awf"]
processors = ["batch"]
exporters = ["sink"]
TOML

$SLUICE sink --grpc 127.0.0.1:5317 --http 127.0.0.1:5318 --log-latency --report-every 10s > "$WORK/sink.log" &
PIDS+=($!)
$SLUICE run "$WORK/awf.toml" --storage.path "$WORK/data" --server.http.listen-addr 127.0.0.1:12398 --shutdown.timeout 2s --log.level warn > "$WORK/sluice.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:12398/-/ready >/dev/null && break; sleep 0.1; done
$SLUICE awf-sim --listen 127.0.0.1:8099 --rate "$RATE" --speed "${SPEED:-50}" --push-url http://127.0.0.1:4320/v1/awf/events --log.level info > "$WORK/sim.log" 2>&1 &
PIDS+=($!)
sleep "$SECS"
echo "target ${RATE} events/s for ${SECS}s; sink reports every 10s (log records = events):"
cat "$WORK/sink.log"
tail -n 3 "$WORK/sim.log" "$WORK/sluice.log"
curl -s http://127.0.0.1:12398/metrics | grep -E '^sluice_receiver_(accepted|refused)_items_total\{component_id="receivers.awf"' || true
