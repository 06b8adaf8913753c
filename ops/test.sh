#!/usr/bin/env bash
# Builds SlimKV and runs every test: the unit and end-to-end suites (ctest), then the
# concurrency suites again under ThreadSanitizer, daemon included. Run from anywhere; needs the
# packages of ops/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure --timeout 600

# ThreadSanitizer: the page store's and the daemon's concurrency tests, with slimkvd itself
# built under TSan. Only the targets those tests need are built.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIMKV_TSAN=ON
cmake --build build-tsan -j "$jobs" --target cache_test e2e_test
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/ops/tsan.supp"
build-tsan/cache/cache_test --gtest_filter='PageStore.Concurrent*'
build-tsan/tests/e2e_test --gtest_filter='Concurrency.*'
echo "slimkv: all tests passed (ctest suites + ThreadSanitizer concurrency suites)"
