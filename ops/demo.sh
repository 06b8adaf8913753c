#!/usr/bin/env bash
# Builds SlimKV, starts slimkvd on its embedded defaults (gRPC 127.0.0.1:50551, metrics
# 127.0.0.1:9551, data under ./slimkv-data) and runs the engine-like demo client against it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$(nproc)" --target slimkvd slimkv slimkv_demo

build/daemon/slimkvd --ready_file=build/slimkvd.ready &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s build/slimkvd.ready ]] && break; sleep 0.1; done
[[ -s build/slimkvd.ready ]] || { echo "slimkvd did not start" >&2; exit 1; }
rm -f build/slimkvd.ready

build/clients/cpp/slimkv_demo
echo "--- the same prompts in every mode (clients/python/examples/demo.py)"
venv=$(ops/python-env.sh | tail -1)
"$venv/bin/python" clients/python/examples/demo.py
echo "--- slimkv stats"
build/clients/cpp/slimkv stats
echo "--- a few of slimkvd's metrics (http://127.0.0.1:9551/metrics)"
curl -s http://127.0.0.1:9551/metrics | grep -E '^slimkv_(stored|logical|hit|miss)' || true
