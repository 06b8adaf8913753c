#!/usr/bin/env bash
# TLS and mutual TLS end to end. Makes with openssl a CA, a server certificate for
# 127.0.0.1/localhost and a client certificate, plus a second, unrelated CA with a client
# certificate of its own; starts slimkvd with TLS, then with mutual TLS, on free loopback ports
# in a temp dir; and checks with the `slimkv` CLI who gets in. Then config files that must fail
# start-up (TLS files, unknown fields, bad values, a missing file), each with a message naming
# the field.
# Usage: SLIMKVD SLIMKV
set -euo pipefail
slimkvd=$1 cli=$2
dir=$(mktemp -d)
pid=
stop() {
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
trap 'stop; rm -rf "$dir"' EXIT
fail() {
  echo "FAIL: $*" >&2
  [[ -f $dir/log ]] && sed 's/^/  slimkvd: /' "$dir/log" >&2
  exit 1
}

# --- Certificates: EC P-256, valid for two days.
cd "$dir"
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
new_ca() {  # NAME
  new_key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$1" -days 2 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
new_cert() {  # NAME CA EXTENSIONS
  new_key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -days 2 -out "$1.pem" \
    -set_serial "0x$(openssl rand -hex 8)" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
new_ca ca
new_ca other-ca
new_cert server ca $'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'
new_cert client ca 'extendedKeyUsage=clientAuth'
new_cert other-client other-ca 'extendedKeyUsage=clientAuth'
openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
if openssl verify -CAfile ca.pem other-client.pem >/dev/null 2>&1; then
  fail "other-client.pem verifies against ca.pem: the second CA is not unrelated"
fi

# A config-only model (2 layers, 2 KV heads × 8) to register.
mkdir model
echo '{"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16,
       "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}' \
  >model/config.json

# start CONFIG_TEXT [LISTEN]: slimkvd on it, gRPC on LISTEN (default a free loopback port),
# metrics on a free loopback port; returns once it serves.
start() {
  stop
  printf '%s\n' "$1" >slimkvd.conf
  rm -f ready
  "$slimkvd" --config=slimkvd.conf --listen="${2:-127.0.0.1:0}" --metrics_listen=127.0.0.1:0 \
    --data_dir="$dir/data" --ready_file="$dir/ready" 2>"$dir/log" &
  pid=$!
  for _ in $(seq 200); do
    [[ -s ready ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -s ready ]] || fail "slimkvd did not start"
  read -r port _ <ready
}
slimkv() { timeout 20 "$cli" --target="127.0.0.1:$port" "$@"; }
works() {  # WHAT CLI-ARGS...: the command succeeds; its output is left in $out
  local what=$1
  shift
  out=$(slimkv "$@" 2>&1) || fail "$what: $out"
}
# refused WHAT REASON CLI-ARGS...: the connection is refused (UNAVAILABLE), not the call, and
# REASON (OpenSSL's words for the failed check) is in the client's message or in what slimkvd
# logged meanwhile (it logs a failed handshake before closing the connection).
refused() {
  local what=$1 reason=$2 seen
  shift 2
  seen=$(wc -l <log)
  if out=$(slimkv "$@" 2>&1); then fail "$what: succeeded: $out"; fi
  grep -q 'UNAVAILABLE' <<<"$out" || fail "$what: not refused at the connection: $out"
  grep -qF -- "$reason" <<<"$out"$'\n'"$(tail -n +"$((seen + 1))" log)" ||
    fail "$what: refused, but not for '$reason': $out"
}
# works_fully TLS-FLAGS...: a config registered, stats read.
works_fully() {
  works "register with $*" "$@" register "$dir/model"
  grep -q '^model_id [0-9a-f]\{64\}$' <<<"$out" || fail "register with $*: $out"
  works "stats with $*" "$@" stats
  grep -q '^host_budget_bytes: 4294967296$' <<<"$out" || fail "stats with $*: $out"
}

# --- TLS: the server proves who it is; clients need no certificate.
start "tls { cert_file: \"$dir/server.pem\" key_file: \"$dir/server.key\" }"
grep -q '(TLS) on port' log || fail "slimkvd does not say it serves TLS"
works_fully --tls_ca=ca.pem
works_fully --tls_ca=ca.pem --tls_server_name=localhost
refused "a name the certificate does not carry" "Peer name other.example is not in peer certificate" \
  --tls_ca=ca.pem --tls_server_name=other.example stats
refused "a plaintext client" "wrong version number" stats
refused "a client trusting only another CA" "certificate verify failed" --tls_ca=other-ca.pem stats

# --- Mutual TLS: clients need a certificate from ca.
start "tls { cert_file: \"$dir/server.pem\" key_file: \"$dir/server.key\"
             client_ca_file: \"$dir/ca.pem\" }"
grep -q '(mutual TLS) on port' log || fail "slimkvd does not say it serves mutual TLS"
works_fully --tls_ca=ca.pem --tls_cert=client.pem --tls_key=client.key
refused "mTLS, no client certificate" "peer did not return a certificate" --tls_ca=ca.pem stats
refused "mTLS, a client certificate from another CA" "certificate verify failed" --tls_ca=ca.pem \
  --tls_cert=other-client.pem --tls_key=other-client.key stats
refused "mTLS, a plaintext client" "wrong version number" stats
works "mTLS, the right certificate after the refusals" --tls_ca=ca.pem --tls_cert=client.pem \
  --tls_key=client.key stats
stop

# --- Configs that must fail start-up (exit status 2) with a message naming the field.
rejects() {  # WHAT EXPECTED-MESSAGE CONFIG-TEXT [FLAGS...]
  printf '%s\n' "$3" >bad.conf
  local rc=0
  timeout 20 "$slimkvd" --config=bad.conf --metrics_listen=127.0.0.1:0 --data_dir="$dir/data" \
    "${@:4}" 2>bad.log || rc=$?
  [[ $rc -eq 2 ]] || fail "$1: exit status $rc, not 2: $(cat bad.log)"
  grep -qF -- "$2" bad.log || fail "$1: no '$2' in: $(cat bad.log)"
}
server_tls="cert_file: \"$dir/server.pem\" key_file: \"$dir/server.key\""
rejects "unknown field" 'no field named "cert_fle"' 'tls { cert_fle: "x" }'
rejects "missing certificate" "tls.cert_file: cannot read $dir/absent.pem" \
  "tls { cert_file: \"$dir/absent.pem\" key_file: \"$dir/server.key\" }"
rejects "missing key" "tls.key_file: cannot read $dir/absent.key" \
  "tls { cert_file: \"$dir/server.pem\" key_file: \"$dir/absent.key\" }"
rejects "missing client CA" "tls.client_ca_file: cannot read $dir/absent-ca.pem" \
  "tls { $server_tls client_ca_file: \"$dir/absent-ca.pem\" }"
rejects "a key as certificate" "tls.cert_file: $dir/server.key holds no PEM certificate" \
  "tls { cert_file: \"$dir/server.key\" key_file: \"$dir/server.key\" }"
rejects "another certificate's key" "tls.key_file: $dir/client.key is not the key" \
  "tls { cert_file: \"$dir/server.pem\" key_file: \"$dir/client.key\" }"
rejects "client CA without TLS" "tls.client_ca_file" "tls { client_ca_file: \"$dir/ca.pem\" }"
rejects "plaintext on 0.0.0.0" "tls.allow_plaintext_non_loopback" 'listen: "0.0.0.0:0"'
rejects "plaintext on 0.0.0.0 by flag" "tls.allow_plaintext_non_loopback" '' --listen=0.0.0.0:0
# Beyond TLS: unknown fields, bad values and a missing file, each named.
rejects "unknown top-level field" \
  'line 2 column 12: Message type "slimkv.v1.DaemonConfig" has no field named "host_budget"' \
  $'listen: "127.0.0.1:0"\nhost_budget: 5'
rejects "value of the wrong type" 'Expected integer, got: "lots"' 'host_budget_bytes: "lots"'
rejects "value out of range" "default_policy.error_tolerance: 2 is not in (0, 1]" \
  'default_policy { error_tolerance: 2 }'
rejects "unknown enum value" 'Unknown enumeration value of "MODE_SIDEWAYS" for field "mode"' \
  'default_policy { mode: MODE_SIDEWAYS }'
rejects "a tenant's token hash" "tenants[0].token_sha256: expected 64 lower-case hex digits" \
  'tenants { id: "a" token_sha256: "abc" }'
rejects "a limit too small" "max_message_bytes: 1000 is below the minimum of 65536" \
  'max_message_bytes: 1000'
rc=0
timeout 20 "$slimkvd" --config="$dir/absent.conf" 2>bad.log || rc=$?
[[ $rc -eq 2 ]] || fail "absent config: exit status $rc, not 2: $(cat bad.log)"
grep -qF "config: cannot read $dir/absent.conf" bad.log || fail "absent config: $(cat bad.log)"

# Allowed explicitly, plaintext off loopback starts, with a warning.
start 'tls { allow_plaintext_non_loopback: true }' 0.0.0.0:0
grep -q 'serving plaintext on non-loopback 0.0.0.0:0' log || fail "no warning for plaintext"
stop
echo "TLS, mutual TLS and TLS config checks: OK"
