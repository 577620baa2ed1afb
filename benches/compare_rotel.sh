#!/usr/bin/env bash
# Traces passthrough, Sluice vs rotel, on the same box, load and backend, interleaved rounds.
# Counts what ARRIVES at the backend in a steady window, checks that everything acknowledged
# arrived within 10 s of the load stopping, and charges the drain to CPU per item
# (benches/delivered.py has the details and more options).
#
#   benches/compare_rotel.sh [seconds-per-run]          # ROUNDS=3 SINK=sluice|grpcio|grpc-js
#
# Runs three loads: as fast as acknowledged; paced at 100k spans/s; and the issue-10 load shape
# (100 spans per request, 16 connections) throughout.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
ROUNDS=${ROUNDS:-3}
SINK=${SINK:-sluice}
cargo build --release -q -p sluice
echo "## unlimited rate"
python3 benches/delivered.py --rounds "$ROUNDS" --seconds "$SECS" --sink "$SINK" --cases rotel,interval,always,none
echo "## paced at 100k spans/s"
python3 benches/delivered.py --rounds "$ROUNDS" --seconds "$SECS" --sink "$SINK" --cases rotel,interval,always --rate 100000
