#!/usr/bin/env bash
# Creates the Python environment of the Python client's tests, demo and benchmark (docs/python.md):
# a venv from Debian's python3 at ${SLIMKV_VENV:-~/.cache/slimkv/venv}, every package from PyPI
# pinned by clients/python/constraints.txt (the one pin list), then the slimkv package itself
# built from this checkout (its stubs generated from proto/). Idempotent: the packages are
# installed again only when the constraints (or this script) change; the package is rebuilt every time (seconds)
# so that it follows proto/. Prints the venv's path last.
set -euo pipefail
script=$(readlink -f "${BASH_SOURCE[0]}")
cd "$(dirname "$script")/.."
venv=${SLIMKV_VENV:-$HOME/.cache/slimkv/venv}
constraints=$PWD/clients/python/constraints.txt
stamp=$venv/.slimkv-constraints
# The pins and this script's package list decide the venv's contents.
want=$(cat "$constraints" "$script" | sha256sum | cut -c1-64)
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  [[ -e $venv && ! -f $venv/pyvenv.cfg ]] && { echo "$venv exists and is not a venv" >&2; exit 1; }
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  # torch (the optional extra; slimkv.codecs and the tests use it) comes from PyPI with its CUDA
  # wheels: docs/python.md "Installing" says why and what it costs.
  "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" \
    setuptools grpcio-tools grpcio protobuf numpy google-crc32c pytest safetensors torch
  echo "$want" > "$stamp"
fi
PIP_CONSTRAINT=$constraints "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
  --no-build-isolation --force-reinstall ./clients/python >/dev/null
echo "$venv"
