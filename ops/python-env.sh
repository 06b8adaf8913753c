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
  [[ -x $venv/bin/python ]] || /usr/bin/python3 -m venv "$venv"
  # In place when the venv exists (pip changes only what the constraints changed), so that
  # checkouts with different pin lists do not rebuild each other's venv from nothing.
  # torch (slimkv.codecs, the tests) comes from PyPI with its CUDA wheels and transformers is
  # the engine of slimkv.integrations.hf: docs/python.md "Installing" and docs/engines.md say
  # why and what they cost. Both are downloaded once per machine and kept until the pins change.
  echo "python-env: installing the pinned packages into $venv (torch, transformers: once per machine)" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" \
    setuptools grpcio-tools grpcio protobuf numpy google-crc32c pytest safetensors torch \
    transformers >&2
  echo "$want" > "$stamp"
fi
PIP_CONSTRAINT=$constraints "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
  --no-build-isolation --force-reinstall ./clients/python >/dev/null
echo "$venv"
