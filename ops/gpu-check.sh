#!/usr/bin/env bash
# The GPU checks, in one device call (docs/testing.md "GPU"), from the repository root of a
# tree carrying .gpu/ (ops/gpu-prepare.sh):
#   run(command="bash ops/gpu-check.sh", carry=[".gpu"])
# 1. the GPU's state as found (clocks are read, never set);
# 2. the attention conformance table and the dequantizer on the GPU backend, with the start-up
#    known-answer check, against the CPU references;
# 3. gpu_bench (kernels/gpu_bench.cc) and PyTorch's scaled_dot_product_attention on the same
#    shapes (ops/gpu_sdpa_bench.py), joined into one table of ratios.
# Logs go to $OUT (or ./gpu-out when $OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv | tee "$out/gpu.txt"
.gpu/codecs_test --gtest_filter='*_gpu*:GpuBackend.*' 2>&1 | tee "$out/conformance.txt" | tail -40
status=${PIPESTATUS[0]}
.gpu/gpu_bench "$@" 2>&1 | tee "$out/gpu_bench.txt"
PYTHONUNBUFFERED=1 python3 ops/gpu_sdpa_bench.py "$out/gpu_bench.txt" 2>&1 | tee "$out/sdpa.txt"
exit "$status"
