#!/usr/bin/env bash
# Prepares the GPU checks for a lent GPU machine (docs/testing.md "GPU"). The GPU host has nvcc,
# CMake and PyTorch but none of Debian's Abseil, OpenBLAS, LAPACKE, RocksDB or GoogleTest, so the
# test binaries are built here (nvcc 13.0, as there) and packed with the shared libraries they
# load beyond the C/C++ runtime into .gpu/bundle.tar.xz, which git ignores and the device call
# carries (xz: the 64 MiB a call carries would not hold them uncompressed). Packs codecs_test and
# gpu_bench from kernels/ built alone (-DSLIMKV_KERNELS_ONLY=ON), and cache_test from build/ when
# ops/test.sh has built it (the dispatch and GPU tier tests). Then, on the device: ops/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIMKV_KERNELS_ONLY=ON >/dev/null
cmake --build build-gpu --target codecs_test gpu_bench
stage=build-gpu/bundle
rm -rf "$stage" && mkdir -p "$stage/lib"
bins=(build-gpu/kernels/codecs_test build-gpu/kernels/gpu_bench)
[[ -x build/cache/cache_test ]] && bins+=(build/cache/cache_test)
for b in "${bins[@]}"; do strip --strip-debug -o "$stage/$(basename "$b")" "$b"; done
# Everything the binaries load except the C/C++ runtime, which the GPU host has (newer).
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
mkdir -p .gpu
tar -C "$stage" -cf - . | xz -T0 -6 > .gpu/bundle.tar.xz
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
echo "packed: ${bins[*]##*/}"
du -h .gpu/bundle.tar.xz
