#!/usr/bin/env bash
# Installs every Debian 12 package that building, running and testing SlimKV needs.
# Idempotent: packages already present are left as they are. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev
  librocksdb-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libopenblas-dev liblapacke-dev
  libhiredis-dev redis-server redis-tools
  prometheus
  nlohmann-json3-dev
  openssl curl python3 python3-venv python3-yaml python3-numpy python3-grpcio python3-protobuf
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Python client's environment (a venv of PyPI packages pinned by
# clients/python/constraints.txt; installed once per machine, then reused).
"$(dirname "$0")/python-env.sh" >/dev/null
