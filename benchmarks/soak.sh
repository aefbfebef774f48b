#!/bin/sh
# soak.sh runs the soak test (not in CI): DURATION (default 10m) of
# continuous load on the v2 adapter and the relay, reporting every EVERY
# (default 1m). Paste its last report into RELIABILITY.md.
set -eu
cd "$(dirname "$0")/.."
exec go run ./benchmarks/soak -duration "${DURATION:-10m}" -every "${EVERY:-1m}" -clients "${CLIENTS:-32}"
