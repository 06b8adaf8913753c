#!/usr/bin/python3
"""Checks the include graph against the layers of docs/architecture.md.

Floors, lowest first; a file may include headers of its own floor or the floors below:
  0 kernels/        math: CPU references, fast paths, CUDA
  1 cache/model/    model files, the page vocabulary, derived matrices, the registry
  1 cache/remote/   the Redis Cluster client under the remote tier (includes no other cache/)
  2 cache/store/    pages, keys, tiers, quotas, the KvCache facade
  3 cache/codec/    page codecs, decode and attention dispatch, GPU residency, planner, put plan
  4 daemon/, clients/   peers: neither includes the other
  5 tests/          end-to-end suites and tests/support (test helpers)
Unit tests and benchmarks (*_test.cc, *_bench.cc) stand on the tests floor wherever they sit.
A folder's internal/ headers are included only from within that folder. Generated proto code
(slimkv/v1/...) is included only by daemon/, clients/ and tests/.

Usage: ops/check-layers.py [repo root]. Prints each violation; exit status 1 if any.
"""
import os
import re
import sys

FLOORS = [  # longest prefix first
    ("cache/model/", 1),
    ("cache/remote/", 1),
    ("cache/store/", 2),
    ("cache/codec/", 3),
    ("kernels/", 0),
    ("daemon/", 4),
    ("clients/", 4),
    ("tests/", 5),
]
TESTS_FLOOR = 5
# Files allowed above their floor, and why.
EXCEPTIONS = {
    "clients/cpp/demo.cc": "the demo writes a synthetic model with tests/support's writer",
}
SOURCE = re.compile(r"\.(h|cc|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def floor_of(path):
    for prefix, floor in FLOORS:
        if path.startswith(prefix):
            return prefix, floor
    return None, None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    errors = []
    for top in ("kernels", "cache", "daemon", "clients", "tests"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not SOURCE.search(name):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                prefix, floor = floor_of(path)
                if prefix is None:
                    errors.append(f"{path}: in no floor of ops/check-layers.py")
                    continue
                if re.search(r"_(test|bench)\.cc$", name) or path in EXCEPTIONS:
                    floor = TESTS_FLOOR
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    text = f.read()
                for included in INCLUDE.findall(text):
                    errors += check(path, prefix, floor, included)
    for e in errors:
        print(e)
    if errors:
        print(f"check-layers: {len(errors)} include(s) against the layers "
              "(docs/architecture.md)", file=sys.stderr)
        return 1
    print("check-layers: the include graph keeps the layers")
    return 0


def check(path, prefix, floor, included):
    if included.startswith("slimkv/v1/"):
        if prefix not in ("daemon/", "clients/", "tests/"):
            return [f"{path}: includes generated proto code {included}"]
        return []
    to_prefix, to_floor = floor_of(included)
    if to_prefix is None:
        return []  # a third-party header
    out = []
    if "/internal/" in included:
        owner = included.split("/internal/")[0] + "/"
        if not path.startswith(owner):
            out.append(f"{path}: includes {included}, private to {owner}")
    if to_floor > floor:
        out.append(f"{path}: includes {included}, a floor above ({to_prefix} over {prefix})")
    elif to_floor == floor and to_prefix != prefix and floor != TESTS_FLOOR:
        out.append(f"{path}: includes {included}: {prefix} and {to_prefix} are peers")
    return out


if __name__ == "__main__":
    sys.exit(main())
