#!/usr/bin/env bash
# Where an exporter falls behind: one Loki run (sink, collector, load generator on this box),
# printing every half second the lines appended to the spool, the lines the exporter read
# (from memory or back from disk), the lines the backend accepted, and the box's idle share.
#
#   benches/lag_timeline.sh [rate] [seconds]        # defaults: 1000000 lines/s, 8 s
#   SLUICE_BIN=/path/to/sluice benches/lag_timeline.sh
#
# An exporter that keeps up reads only from memory and `sent` trails `appended` by a batch or
# two; one that fell behind reads from disk and the gap between them grows. The idle column
# says how much of the box was left while that happened (benches/RESULTS.md, session 11).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000000}
SECS=${2:-8}
BIN=${SLUICE_BIN:-target/release/sluice}
[ -x "$BIN" ] || cargo build --release -q -p sluice
WORK=$(mktemp -d)
ADMIN=127.0.0.1:22399
cat > "$WORK/sluice.toml" <<EOF
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:24317"
[exporters.sink]
type = "loki"
url = "http://127.0.0.1:25319/loki/api/v1/push"
[[pipelines]]
name = "logs"
signals = ["logs"]
receivers = ["otlp"]
exporters = ["sink"]
EOF
"$BIN" sink --grpc 127.0.0.1:25317 --http 127.0.0.1:25318 --push 127.0.0.1:25319 \
    --report-every 1s --json > "$WORK/sink.log" 2>&1 &
SINK=$!
"$BIN" run "$WORK/sluice.toml" --storage.path "$WORK/data" --server.http.listen-addr "$ADMIN" \
    --log.level warn > "$WORK/sluice.log" 2>&1 &
COLLECTOR=$!
trap 'kill $SINK $COLLECTOR 2>/dev/null; wait $SINK $COLLECTOR 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -sf "http://$ADMIN/metrics" > /dev/null && break; sleep 0.1; done
"$BIN" loadgen --endpoint http://127.0.0.1:24317 --signal logs --duration "${SECS}s" \
    --rate "$RATE" --spans-per-request 512 --concurrency 16 --json > "$WORK/loadgen.json" 2>&1 &
LOAD=$!

# Busy and idle jiffies of the whole box (idle + iowait count as idle).
cpu() { awk 'NR == 1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }
metric() { awk -v name="$1" -v label="$2" 'index($0, name) == 1 && (label == "" || index($0, label)) { s += $NF } END { printf "%d", s }'; }
start=$(date +%s%3N)
read -r total0 idle0 < <(cpu)
printf '%8s %6s %12s %12s %12s %12s\n' ms idle appended read_memory read_disk sent
while :; do
    sleep 0.5
    read -r total1 idle1 < <(cpu)
    m=$(curl -s "http://$ADMIN/metrics")
    printf '%8d %5d%% %12s %12s %12s %12s\n' $(( $(date +%s%3N) - start )) \
        $(( (idle1 - idle0) * 100 / (total1 - total0 > 0 ? total1 - total0 : 1) )) \
        "$(metric sluice_spool_appended_items_total '' <<< "$m")" \
        "$(metric sluice_spool_read_items_total 'source="memory"' <<< "$m")" \
        "$(metric sluice_spool_read_items_total 'source="disk"' <<< "$m")" \
        "$(metric sluice_exporter_sent_items_total '' <<< "$m")"
    total0=$total1 idle0=$idle1
    # Stop once the load is over and everything appended was sent, or 60 s after the load.
    if ! kill -0 $LOAD 2>/dev/null; then
        appended=$(metric sluice_spool_appended_items_total '' <<< "$m")
        sent=$(metric sluice_exporter_sent_items_total '' <<< "$m")
        [ "$sent" -ge "$appended" ] && break
        ended=${ended:-$(date +%s)}
        if [ $(( $(date +%s) - ended )) -ge 60 ]; then
            echo "not everything appended was sent 60 s after the load stopped" >&2
            break
        fi
    fi
done
wait $LOAD || true
cat "$WORK/loadgen.json"; echo
