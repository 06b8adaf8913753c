#!/usr/bin/env bash
# Runs the demo client against a real slimkvd (free ports, temp data dir), then checks the
# daemon's /metrics scrape with `promtool check metrics`, and drives every `slimkv` CLI command.
# Usage: SLIMKVD DEMO SLIMKV
set -euo pipefail
slimkvd=$1 demo=$2 cli=$3
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

# The CLI: a config-only model of 2 layers, 2 KV heads × 8, pages of 4 tokens = 512 B in bf16.
mkdir -p "$dir/cli-model"
echo '{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
       "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}' \
  >"$dir/cli-model/config.json"
slimkv() { "$cli" --target="127.0.0.1:$port" --page_tokens=4 "$@"; }
slimkv register "$dir/cli-model" | grep -q '^model_id [0-9a-f]\{64\}$'
head -c 1024 /dev/urandom >"$dir/pages.bin"
slimkv put "$dir/cli-model" range:100:8 "$dir/pages.bin" --dtype=bf16 | grep -q '^stored 2 pages'
slimkv get "$dir/cli-model" range:100:10 --out="$dir/got.bin" | grep -q '^got 2 pages, 1024 bytes'
cmp "$dir/pages.bin" "$dir/got.bin"
slimkv lookup "$dir/cli-model" range:100:10 | grep -q '^hit_tokens 8 of 10$'
slimkv explain "$dir/cli-model" range:100:10 | grep -q 'REASON_PARTIAL_PAGE'
slimkv delete "$dir/cli-model" range:100:8 --first_page=1 | grep -q '^deleted 1 pages$'
slimkv stats | grep -q 'pages: 11$'  # the demo's 10 pages, then the CLI's 2 less 1 deleted
echo "demo, metrics and CLI: OK"
