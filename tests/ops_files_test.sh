#!/usr/bin/env bash
# Checks the deployment files in ops/: the Prometheus config passes `promtool check config` and
# scrapes the sample config's metrics_listen; the systemd unit passes `systemd-analyze verify`
# without a warning (where systemd-analyze is installed) and runs the installed binary on the
# installed config.
# Usage: SOURCE_DIR SLIMKVD
set -euo pipefail
src=$1 slimkvd=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Prometheus: rule files are resolved beside the config. The alert rules are checked with it
# once ops/ has them; until then an empty rule file stands in.
cp "$src/ops/prometheus.yml" "$dir/"
if [[ -f $src/ops/slimkv-alerts.yml ]]; then
  cp "$src/ops/slimkv-alerts.yml" "$dir/"
else
  echo "ops/slimkv-alerts.yml absent: checking prometheus.yml with an empty rule file"
  printf 'groups: []\n' >"$dir/slimkv-alerts.yml"
fi
promtool check config "$dir/prometheus.yml"
metrics=$(sed -n 's/^metrics_listen: "\(.*\)"$/\1/p' "$src/ops/slimkvd.conf")
grep -qF "targets: [\"$metrics\"]" "$src/ops/prometheus.yml" ||
  fail "ops/prometheus.yml does not scrape the sample config's metrics_listen $metrics"

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
