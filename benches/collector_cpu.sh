#!/usr/bin/env bash
# CPU seconds of the collector, the sink and the load generator over one 10 s run of logs to a
# Loki push sink: for A/B comparisons of builds at a rate both keep up with (benches/RESULTS.md,
# session 8). Alternate the builds and compare within one sitting; the box is noisy.
#
#   benches/collector_cpu.sh SLUICE_BINARY [RATE] [RECORDS_PER_REQUEST]    # 500000, 512
#
# The same binary serves as collector (`run`), sink (`sink`) and load generator (`loadgen`).
# Prints utime/stime per process (from /proc/PID/stat, taken as the load stops), then the
# sink's last count and the load generator's report.
set -euo pipefail
bin=$(realpath "${1:?usage: collector_cpu.sh SLUICE_BINARY [RATE] [RECORDS_PER_REQUEST]}")
rate=${2:-500000}; per_request=${3:-512}
dir=$(mktemp -d)
# Waits for both to exit, so that the next run finds the ports free.
trap 'kill $sluice $sink 2>/dev/null; wait $sluice $sink 2>/dev/null; rm -rf "$dir"' EXIT
cat > "$dir/loki.toml" <<TOML
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
TOML
"$bin" sink --grpc 127.0.0.1:25317 --http 127.0.0.1:25318 --push 127.0.0.1:25319 \
  --report-every 1s --json > "$dir/sink.log" 2>&1 & sink=$!
sleep 0.5
"$bin" run "$dir/loki.toml" --storage.path "$dir/data" \
  --server.http.listen-addr 127.0.0.1:22399 --log.level warn > "$dir/sluice.log" 2>&1 & sluice=$!
sleep 1.5
"$bin" loadgen --endpoint http://127.0.0.1:24317 --signal logs --duration 10s --rate "$rate" \
  --spans-per-request "$per_request" --concurrency 16 --json > "$dir/loadgen.json" 2>&1 & loadgen=$!
sleep 9.5
for role in collector:$sluice sink:$sink loadgen:$loadgen; do
  awk -v role="${role%%:*}" '{printf "%-10s utime %6.2f stime %6.2f\n", role, $14/100, $15/100}' \
    "/proc/${role##*:}/stat"
done
wait $loadgen; sleep 2
tail -1 "$dir/sink.log"; cat "$dir/loadgen.json"; echo
