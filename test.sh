#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (Debian's
# prometheus, the OpenTelemetry Python SDK), checks formatting and lints, validates every
# shipped config, and runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing Debian's prometheus (remote-write receiver and PromQL oracle for the tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  echo "== installing the OpenTelemetry Python SDK into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r collector/tests/python/requirements.txt
fi
export SLUICE_TEST_PYTHON="$PWD/.venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== sluice validate configs/*.toml configs/*.river"
cargo build --quiet -p sluice
for f in configs/*.toml configs/*.river; do ./target/debug/sluice validate "$f"; done

echo "== cargo test"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt
