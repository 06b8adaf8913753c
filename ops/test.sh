#!/usr/bin/env bash
# Builds SlimKV and runs every test: the unit and end-to-end suites (ctest), then the
# concurrency suites again under ThreadSanitizer, daemon included. Run from anywhere; needs the
# packages of ops/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# The include graph keeps the layers of docs/architecture.md.
/usr/bin/python3 ops/check-layers.py

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure --timeout 600

# The Python client against a real slimkvd (clients/python/tests; docs/python.md). pytest exits
# non-zero when it collects nothing, and set -e stops there.
venv=$(ops/python-env.sh | tail -1)
SLIMKVD=$PWD/build/daemon/slimkvd timeout 900 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  clients/python/tests

# ThreadSanitizer: the concurrency tests of the tiers (host, disk, both through KvCache with its
# demotion writer), of the Redis Cluster client (threads sharing one client against a local
# cluster) and of the service (the daemon's shared state under 16 concurrent callers,
# without the gRPC transport: Debian's gRPC is not built with TSan, so a TSan slimkvd drowns in
# reports from inside libgrpc; docs/testing.md).
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIMKV_TSAN=ON
cmake --build build-tsan -j "$jobs" --target cache_test daemon_test redis_cluster_test
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/ops/tsan.supp"
build-tsan/cache/cache_test --gtest_filter='PageStore.Concurrent*:DiskTierTest.Concurrent*:TieredKvCacheTest.Concurrent*'
build-tsan/daemon/daemon_test --gtest_filter='ServiceConcurrency.*'
build-tsan/cache/remote/redis_cluster_test --gtest_filter='RedisClusterTest.Concurrent*'
echo "slimkv: all tests passed (ctest suites, Python client suite, ThreadSanitizer concurrency suites)"
