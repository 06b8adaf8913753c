# Sourced by the ops end-to-end tests: a real slimkvd on free loopback ports with two tenants,
# and `slimkv` CLI traffic after which every slimkvd metric family has samples.
# The caller sets: dir (a temp dir it removes), slimkvd, cli (binaries).

fail() {
  echo "FAIL: $*" >&2
  [[ -f $dir/slimkvd.log ]] && sed 's/^/  slimkvd: /' "$dir/slimkvd.log" >&2
  exit 1
}

slimkvd_pid=
# Tenant alpha stores full+int8 (measured on every page) under a 16 KiB host quota, so its
# pages are evicted; beta asks for slim, which a model without weights cannot take (fallbacks),
# and overflows the 64 KiB host budget, so its oldest pages leave the host tier too (to the disk
# tier, where there is one, and back on Get).
start_slimkvd() {
  local alpha beta
  alpha=$(printf %s alpha-secret | sha256sum | cut -d' ' -f1)
  beta=$(printf %s beta-secret | sha256sum | cut -d' ' -f1)
  cat >"$dir/slimkvd.conf" <<CONF
host_budget_bytes: 65536
tenants { id: "alpha" token_sha256: "$alpha" host_quota_bytes: 16384
          policy { mode: MODE_FULL quant: QUANT_INT8 error_tolerance: 0.1 } }
tenants { id: "beta" token_sha256: "$beta" policy { mode: MODE_SLIM } }
CONF
  "$slimkvd" --config="$dir/slimkvd.conf" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
    --data_dir="$dir/data" --ready_file="$dir/ready" 2>"$dir/slimkvd.log" &
  slimkvd_pid=$!
  for _ in $(seq 200); do
    [[ -s $dir/ready ]] && break
    kill -0 "$slimkvd_pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -s $dir/ready ]] || fail "slimkvd did not start"
  read -r port metrics_port <"$dir/ready"
}

# Stops a child process this shell started (no-op for an empty pid).
stop_pid() {
  [[ -n $1 ]] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

stop_slimkvd() {
  stop_pid "$slimkvd_pid"
  slimkvd_pid=
}

# A config-only model (2 layers, 2 KV heads × 8; pages of 4 tokens = 1 KiB in fp32): per
# tenant, 64 pages put, read back, looked up, explained and partly deleted, then a short prompt
# put and found; and one call without a token (UNAUTHENTICATED).
drive_traffic() {
  mkdir -p "$dir/model"
  echo '{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 1024}' \
    >"$dir/model/config.json"
  /usr/bin/python3 -c '
import random, struct, sys
random.seed(7)
sys.stdout.buffer.write(struct.pack("<16384f", *[random.gauss(0, 1) for _ in range(16384)]))
' >"$dir/pages.bin"
  local t out
  for t in alpha beta; do
    printf %s "$t-secret" >"$dir/$t.token"
    kv() { timeout 20 "$cli" --target="127.0.0.1:$port" --token_file="$dir/$t.token" \
      --page_tokens=4 "$@"; }
    out=$(kv put "$dir/model" range:0:256 "$dir/pages.bin" --dtype=fp32) || fail "$t put: $out"
    grep -q '^stored 64 pages' <<<"$out" || fail "$t put: $out"
    out=$(kv get "$dir/model" range:0:256 --first_page=60) || fail "$t get: $out"
    grep -q '^got 4 pages' <<<"$out" || fail "$t get: $out"
    kv get "$dir/model" range:0:256 >/dev/null || fail "$t get from the first page"
    out=$(kv lookup "$dir/model" range:0:256) || fail "$t lookup: $out"
    kv lookup "$dir/model" range:1000:64 >/dev/null || fail "$t lookup of a cold prompt"
    # A short prompt put last stays in the host tier: its lookup hits.
    head -c 8192 "$dir/pages.bin" >"$dir/short.bin"
    kv put "$dir/model" range:5000:32 "$dir/short.bin" --dtype=fp32 >/dev/null || fail "$t put"
    out=$(kv lookup "$dir/model" range:5000:32) || fail "$t lookup: $out"
    grep -q '^hit_tokens 32 of 32$' <<<"$out" || fail "$t lookup of the short prompt: $out"
    kv explain "$dir/model" range:0:256 >/dev/null || fail "$t explain"
    kv delete "$dir/model" range:0:256 --first_page=63 >/dev/null || fail "$t delete"
    kv stats >/dev/null || fail "$t stats"
  done
  if out=$(timeout 20 "$cli" --target="127.0.0.1:$port" stats 2>&1); then
    fail "a call without a token succeeded: $out"
  fi
}
