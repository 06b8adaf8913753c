#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus`) scraping a real slimkvd, both on free loopback ports
# in a temp dir, with a 1 s scrape and rule-evaluation interval and ops/slimkv-alerts.yml
# loaded. After CLI traffic it checks: `promtool check metrics` on the scrape; Prometheus holds
# series of every metric name the dashboard uses (/api/v1/series); every dashboard expression
# evaluates without error (/api/v1/query, Grafana's variables filled in); every alert rule
# evaluates without error (/api/v1/rules health "ok").
# Usage: SOURCE_DIR SLIMKVD SLIMKV
set -euo pipefail
src=$1 slimkvd=$2 cli=$3
dir=$(mktemp -d)
# shellcheck source=tests/ops_test_lib.sh
source "$src/tests/ops_test_lib.sh"
prom_pid=
trap 'stop_pid "$prom_pid"; stop_slimkvd; rm -rf "$dir"' EXIT
prom_fail() {
  [[ -f $dir/prometheus.log ]] && tail -20 "$dir/prometheus.log" | sed 's/^/  prometheus: /' >&2
  fail "$@"
}

start_slimkvd

# Prometheus takes no port 0: ask the kernel for a free one, then give it back. Another process
# could take it in between; Prometheus then fails to start and says so below.
prom_port=$(/usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
cp "$src/ops/slimkv-alerts.yml" "$dir/"
cat >"$dir/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - slimkv-alerts.yml
scrape_configs:
  - job_name: slimkv
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
CONF
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
prom_pid=$!
api=http://127.0.0.1:$prom_port
for _ in $(seq 300); do  # 30 s
  curl -sf "$api/-/ready" >/dev/null && break
  kill -0 "$prom_pid" 2>/dev/null || prom_fail "prometheus exited"
  sleep 0.1
done
curl -sf "$api/-/ready" >/dev/null || prom_fail "prometheus not ready within 30 s"

drive_traffic
curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$dir/metrics" || fail "scrape failed"
promtool check metrics <"$dir/metrics" || fail "promtool check metrics"

# Wait for a scrape taken after the traffic: Get's served layers appear only then.
for _ in $(seq 300); do
  curl -sf "$api/api/v1/series" --data-urlencode 'match[]=slimkv_served_layers_total' |
    grep -q '"__name__"' && break
  sleep 0.1
done

/usr/bin/python3 - "$api" "$src/tests" "$src/ops/grafana-dashboard.json" \
  "$src/ops/slimkv-alerts.yml" <<'PY' || fail "see above"
import json, sys, time, urllib.parse, urllib.request
api, tests, dashboard, rules = sys.argv[1:]
sys.path.insert(0, tests)
import promql_names

def get(path, **params):
    url = f"{api}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400 with Prometheus's error in the body
        return json.load(e)

bad = []
exprs = promql_names.expressions(dashboard)
names = set()
for _, expr in exprs:
    names |= promql_names.names(expr)
for name in sorted(names):
    series = get("/api/v1/series", **{"match[]": name})
    if series["status"] != "success" or not series["data"]:
        bad.append(f"FAIL: Prometheus has no series of {name} (used by the dashboard)")
for where, expr in exprs:
    if where.startswith("variable"):
        continue  # label_values() is Grafana's, not PromQL
    q = expr.replace("$__rate_interval", "1m").replace("$tenant", ".*").replace("$instance", ".*")
    r = get("/api/v1/query", query=q)
    if r["status"] != "success":
        bad.append(f"FAIL: {where}: {r.get('error')}: {expr}")
# Rules evaluate every second: wait (at most 30 s) until each has been evaluated once.
deadline = time.time() + 30
while True:
    groups = get("/api/v1/rules")["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    pending = [r["name"] for r in loaded if r.get("lastEvaluation", "").startswith("0001")]
    if loaded and not pending or time.time() > deadline:
        break
    time.sleep(0.2)
want = len(promql_names.expressions(rules))
if len(loaded) != want:
    bad.append(f"FAIL: Prometheus loaded {len(loaded)} of the {want} alert rules")
for r in loaded:
    if r.get("health") != "ok":
        bad.append(f"FAIL: rule {r['name']}: health {r.get('health')}: {r.get('lastError')}")
print("\n".join(bad) if bad else
      f"Prometheus: series of all {len(names)} dashboard metric names, "
      f"{len(exprs)} dashboard queries and {len(loaded)} alert rules evaluate")
sys.exit(1 if bad else 0)
PY
echo "Prometheus scraping slimkvd, dashboard series and alert rules: OK"
