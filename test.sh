#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian's
# prometheus and chromium, the OpenTelemetry Python SDK), checks formatting and lints,
# validates every shipped config, and runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus (remote-write receiver and PromQL oracle for the tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

if ! command -v prometheus-node-exporter >/dev/null 2>&1; then
  echo "== installing Debian's prometheus-node-exporter (a real scrape target for prometheus_scrape)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-node-exporter >/dev/null
fi

if ! command -v amtool >/dev/null 2>&1; then
  echo "== installing Debian's prometheus-alertmanager (amtool checks deploy/alertmanager)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (headless browser for the UI tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, prometheus_client" 2>/dev/null \
  || [ ! -x .venv/bin/check-jsonschema ] || [ ! -x .venv/bin/kubernetes-validate ]; then
  echo "== installing the OpenTelemetry Python SDK, prometheus_client and the schema validators into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r collector/tests/python/requirements.txt
fi
export SLUICE_TEST_PYTHON="$PWD/.venv/bin/python"

if ! command -v npm >/dev/null 2>&1; then
  echo "== installing Debian's nodejs and npm (query grammars and dashboard schema of deploy/tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

# deploy/tests/package-lock.json pins Grafana's query grammars and dashboard types; reinstall
# whenever it changes.
if ! cmp -s deploy/tests/package-lock.json deploy/tests/node_modules/.installed-lock.json; then
  echo "== installing deploy/tests' npm packages (Grafana's PromQL/LogQL/TraceQL grammars, @grafana/schema)"
  (cd deploy/tests && npm ci --silent --no-audit --no-fund && cp package-lock.json node_modules/.installed-lock.json)
fi

# The Kafka tests need a Kafka-protocol broker on loopback. Apache Kafka's jars come from
# Maven Central, which this project's machines cannot reach; Tansu (a Kafka-compatible broker
# from crates.io, SQLite storage) is installed instead (collector/tests/kafka_support). Cargo
# skips the install when this version with these features is already in ~/.cargo/bin.
echo "== cargo install tansu 0.6.0 (the Kafka-protocol broker of the Kafka tests)"
CARGO_INCREMENTAL=0 cargo install --quiet --locked tansu --version 0.6.0 --features libsql \
  --target-dir target/tools-build
rm -rf target/tools-build
export SLUICE_KAFKA_BROKER="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"

# A clean clone builds everything once, so incremental caches would only cost disk: on a
# clean build they are about as large as the artifacts themselves, and CI's disk is limited.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== sluice validate configs/"
cargo build --quiet -p sluice
# The deployment configs take their secrets from the environment and refuse to start
# without them; placeholders stand in for validation.
env AWF_PUSH_TOKEN=validate-only WATCHER_WEBHOOK_TOKEN=validate-only \
  WATCHER_HMAC_SECRET=validate-only WATCHER_APPROVER_TOKEN=validate-only \
  ./target/debug/sluice validate configs/

echo "== cargo test"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt
