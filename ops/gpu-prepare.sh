#!/usr/bin/env bash
# Prepares the GPU checks for a lent GPU machine (docs/testing.md "GPU"): builds kernels/ alone
# (-DSLIMKV_KERNELS_ONLY=ON) here with nvcc, then copies the test and benchmark binaries and the
# shared libraries the GPU host lacks (Debian's Abseil, OpenBLAS, LAPACKE, gfortran) into .gpu/,
# which git ignores and the device call carries. Then, on the device: ops/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIMKV_KERNELS_ONLY=ON >/dev/null
cmake --build build-gpu --target codecs_test gpu_bench
rm -rf .gpu && mkdir -p .gpu/lib
cp build-gpu/kernels/codecs_test build-gpu/kernels/gpu_bench .gpu/
strip --strip-debug .gpu/codecs_test .gpu/gpu_bench
# Everything the binaries load except the C/C++ runtime, which the GPU host has (newer).
ldd .gpu/codecs_test .gpu/gpu_bench | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt)\.so' |
  while read -r lib; do cp -L "$lib" .gpu/lib/; done
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
du -sh .gpu
