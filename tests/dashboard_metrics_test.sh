#!/usr/bin/env bash
# The dashboard and the alert rules use only metrics slimkvd exports: starts a real slimkvd
# (free loopback ports, temp dir), drives CLI traffic so that every family has samples, scrapes
# /metrics (`promtool check metrics` on it), and checks every metric name in every panel
# expression, templating query and alert rule against the scrape. Also: docs/metrics.md
# documents exactly the slimkv_ families the scrape holds, and the dashboard takes its data
# source and tenant as variables.
# Usage: SOURCE_DIR SLIMKVD SLIMKV
set -euo pipefail
src=$1 slimkvd=$2 cli=$3
dir=$(mktemp -d)
# shellcheck source=tests/ops_test_lib.sh
source "$src/tests/ops_test_lib.sh"
trap 'stop_slimkvd; rm -rf "$dir"' EXIT

start_slimkvd
drive_traffic
curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$dir/metrics" || fail "scrape failed"
promtool check metrics <"$dir/metrics" || fail "promtool check metrics"

failed=0
/usr/bin/python3 "$src/tests/promql_names.py" check "$dir/metrics" \
  "$src/ops/grafana-dashboard.json" "$src/ops/slimkv-alerts.yml" || failed=1

if /usr/bin/python3 - "$dir/metrics" "$src/docs/metrics.md" "$src/ops/grafana-dashboard.json" \
  "$src/tests" <<'PY'
import json, re, sys
scrape, docs, dashboard, tests = sys.argv[1:]
sys.path.insert(0, tests)
import promql_names
text = open(scrape).read()
families = set(re.findall(r"^# TYPE (slimkv_\w+) ", text, re.M))
documented = set(re.findall(r"^\| `(slimkv_\w+)` \|", open(docs).read(), re.M))
bad = [f"FAIL: {n} is exported but not in docs/metrics.md" for n in sorted(families - documented)]
bad += [f"FAIL: docs/metrics.md lists {n}, which slimkvd does not export"
        for n in sorted(documented - families)]
# Sample names that carry a tenant label: a panel on them must filter by $tenant.
per_tenant = set(re.findall(r"^(slimkv_\w+)\{[^}]*\btenant=", text, re.M))
d = json.load(open(dashboard))
variables = {v["name"]: v for v in d["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource":
    bad.append("FAIL: the dashboard has no datasource variable")
if variables.get("tenant", {}).get("type") != "query":
    bad.append("FAIL: the dashboard has no tenant variable")
for where, expr in promql_names.expressions(dashboard):
    if where.startswith("variable"):
        continue
    for name in promql_names.names(expr) & per_tenant:
        if not re.search(re.escape(name) + r'\{[^}]*tenant=~"\$tenant"', expr):
            bad.append(f"FAIL: {where}: {name} is not filtered by the tenant variable")
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(d["panels"]):
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "${datasource}":
            bad.append(f"FAIL: panel '{p['title']}' does not use the datasource variable")
print("\n".join(bad) if bad else
      f"docs/metrics.md documents the {len(families)} exported families; dashboard variables OK")
sys.exit(1 if bad else 0)
PY
then :; else failed=1; fi
((failed == 0)) || fail "see above"
echo "dashboard and alert rules use exported metrics only: OK"
