#!/usr/bin/env bash
# Runs the demo client against a real slimkvd (free ports, temp data dir), then checks the
# daemon's /metrics scrape with `promtool check metrics`. Usage: SLIMKVD DEMO
set -euo pipefail
slimkvd=$1 demo=$2
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT

"$slimkvd" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --data_dir="$dir/data" \
  --ready_file="$dir/ready" 2>"$dir/log" &
pid=$!
for _ in $(seq 200); do [[ -s "$dir/ready" ]] && break; sleep 0.05; done
read -r port metrics_port <"$dir/ready"

"$demo" --target="127.0.0.1:$port" --model_dir="$dir/model"
curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$dir/metrics"
grep -q '^slimkv_hit_tokens_total{tenant="default"} 64$' "$dir/metrics"
promtool check metrics <"$dir/metrics"
echo "demo and metrics: OK"
