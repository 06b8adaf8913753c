// Decode attention of one layer over a sequence's stored pages (SPEC §2 "attention on the
// cache"): the per-page side of kernels/attention.h. Each page's layer is read in its stored
// representation (checked against its CRC32C, dequantized to float32 when quantized — the
// quantized bytes are not fed to the kernels directly on the CPU) and attended in the mode it
// is stored in. A sequence may mix modes (a tenant switched modes, a layer fell back to full):
// consecutive pages of one mode go to one kernel call, and the runs are merged exactly with
// kernels::MergeAttention.
//
// Dispatch: each run goes to the GPU first (kernels/gpu.h) when a GPU tier is given, the device
// is usable and has passed its self-test, and the GPU supports the run's mode and shape (full,
// slim and native MLA latent; xcache and projected latent stay on the CPU); the pages are read
// from the tier in their stored form and dequantized on the device (a run whose pages differ in
// device dtype — a quantized page is float32 there — takes one op call per stretch of one dtype,
// merged like runs). Otherwise, or when anything on the GPU side fails, the run is attended on
// the CPU exactly as without a GPU, and the run records why (GpuFallback). The result does not
// depend on where a run went beyond the kernels' float32 rounding (docs/attention.md
// "Accuracy").
//
// Thread-safety: stateless functions; pages are immutable; the GPU tier is internally
// synchronized.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "cache/codec/gpu_tier.h"
#include "cache/model/model_codec.h"
#include "cache/store/page.h"
#include "kernels/attention.h"

namespace slimkv::cache {

// Scale and softcap of the model's decode attention (config softmax_scale, which is 1/√d_k
// unless the config says otherwise; gemma2's logit softcapping), with h_q = num_q_heads.
kernels::AttentionParams AttentionParamsOf(const ModelConfig& config);

// One kernel call: a run of consecutive pages stored in one mode, and where it ran.
struct AttendRun {
  Mode mode = Mode::kFull;
  KernelDevice device = KernelDevice::kCpu;
  GpuFallback fallback = GpuFallback::kNone;  // kNone exactly when device is kGpu
  absl::Status gpu_error = absl::OkStatus();  // the failed GPU call's status (kError, kNoRoom), else OK
  uint32_t pages = 0;
};

// Kernel calls AttendLayer made, in order.
struct AttendCalls {
  std::vector<AttendRun> runs;
};

// Attention of queries q [num_q_heads, k_head_dim] (post-RoPE, float32) for layer `layer` over
// `pages`, which are pages 0, 1, ... of one prefix of the codec's model (page i holds positions
// [i·page_tokens, (i+1)·page_tokens)). Writes o [num_q_heads, v_head_dim] and lse [num_q_heads]
// (no pages: o = 0, lse = −inf) and appends its kernel calls to *calls (may be null). `gpu`
// (may be null: every run on the CPU, counted kNoGpu, or kNoRoom on a usable device) holds the
// device copies of pages and layers.
// INVALID_ARGUMENT: layer ≥ num_layers. DATA_LOSS / FAILED_PRECONDITION as ReadStoredLayer;
// INTERNAL if a kernel refuses a layer the codec built. Nothing is written unless OK; GPU
// failures are never returned (the run falls back).
[[nodiscard]] absl::Status AttendLayer(const ModelCodec& codec,
                                       std::span<const std::shared_ptr<const Page>> pages,
                                       uint32_t layer, const float* q,
                                       kernels::AttentionOut out, AttendCalls* calls = nullptr,
                                       GpuTier* gpu = nullptr);

}  // namespace slimkv::cache
