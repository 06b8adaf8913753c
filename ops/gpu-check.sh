#!/usr/bin/env bash
# The GPU checks, in one device call (docs/testing.md "GPU"), from the repository root of a
# tree carrying .gpu/bundle.tar.xz (ops/gpu-prepare.sh):
#   run(command="bash ops/gpu-check.sh", carry=[".gpu"])
# 1. the GPU's state as found (clocks are read, never set);
# 2. the attention conformance table, the dequantizer and reconstruction on the GPU backend, with the start-up
#    known-answer check, against the CPU references; cache_test's dispatch and GPU tier tests
#    when the bundle has them;
# 3. compute-sanitizer (memcheck, racecheck) on a slice of the table, where it works;
# 4. gpu_bench (kernels/gpu_bench.cc) and PyTorch's scaled_dot_product_attention and cuBLAS on
#    the same shapes (ops/gpu_sdpa_bench.py), joined into tables of ratios.
# Logs go to $OUT (or ./gpu-out when $OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
bundle=/tmp/slimkv-gpu
rm -rf "$bundle" && mkdir -p "$bundle"
python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpu/bundle.tar.xz "$bundle"
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv | tee "$out/gpu.txt"
# Each step is bounded: a kernel that hangs costs two minutes of the lease, not all of it.
timeout 120 "$bundle/codecs_test" --gtest_filter='*_gpu*:GpuBackend.*:GpuDecode.*' 2>&1 |
  tee "$out/conformance.txt" | tail -40
status=${PIPESTATUS[0]}
if [[ -x $bundle/cache_test ]]; then
  timeout 120 "$bundle/cache_test" --gtest_filter='*Gpu*' 2>&1 | tee "$out/cache_gpu.txt" | tail -20
  ((status |= PIPESTATUS[0]))
fi
# Out-of-bounds accesses and shared-memory races in the kernels, on a small slice of the table
# (compute-sanitizer works on the Firecracker machines, not under gVisor: KINDS.md).
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 3 "$bundle/codecs_test" \
      --gtest_filter='*gqa_gpu*:*mha2mla_gpu*:GpuBackend.*:GpuDecode.*' 2>&1 |
      tee "$out/sanitizer-$tool.txt" | tail -5
  done
fi
timeout 240 "$bundle/gpu_bench" "$@" 2>&1 | tee "$out/gpu_bench.txt"
PYTHONUNBUFFERED=1 python3 ops/gpu_sdpa_bench.py "$out/gpu_bench.txt" 2>&1 | tee "$out/sdpa.txt"
exit "$status"
