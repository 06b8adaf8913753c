#!/usr/bin/env bash
# Checks the deployment files in ops/: the alert rules pass `promtool check rules`; the
# Prometheus config passes `promtool check config` (rules included) and scrapes the sample
# config's metrics_listen; the dashboard is valid JSON; the systemd unit passes
# `systemd-analyze verify` without a warning (where systemd-analyze is installed) and runs the
# installed binary on the installed config.
# Usage: SOURCE_DIR SLIMKVD
set -euo pipefail
src=$1 slimkvd=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Prometheus: rule files are resolved beside the config; the alert rules are checked on their
# own and with it.
cp "$src/ops/prometheus.yml" "$src/ops/slimkv-alerts.yml" "$dir/"
promtool check rules "$dir/slimkv-alerts.yml"
promtool check config "$dir/prometheus.yml"
metrics=$(sed -n 's/^metrics_listen: "\(.*\)"$/\1/p' "$src/ops/slimkvd.conf")
grep -qF "targets: [\"$metrics\"]" "$src/ops/prometheus.yml" ||
  fail "ops/prometheus.yml does not scrape the sample config's metrics_listen $metrics"

/usr/bin/python3 -m json.tool "$src/ops/grafana-dashboard.json" >/dev/null ||
  fail "ops/grafana-dashboard.json is not valid JSON"

# The unit runs the installed binary on the installed config.
unit=$src/ops/slimkvd.service
grep -qx 'ExecStart=/usr/local/bin/slimkvd --config /etc/slimkv/slimkvd.conf' "$unit" ||
  fail "unexpected ExecStart in $unit"
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point it at the one just built. It exits 0 on
  # unknown keys and bad values, only saying so: any output is a failure.
  sed "s#^ExecStart=/usr/local/bin/slimkvd #ExecStart=$slimkvd #" "$unit" >"$dir/slimkvd.service"
  out=$(systemd-analyze verify "$dir/slimkvd.service" 2>&1) || fail "systemd-analyze: $out"
  [[ -z $out ]] || fail "systemd-analyze verify: $out"
else
  echo "systemd-analyze not installed: the unit's syntax is not verified"
fi
echo "ops files: OK"
