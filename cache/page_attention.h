// Decode attention of one layer over a sequence's stored pages (SPEC §2 "attention on the
// cache"): the per-page side of kernels/attention.h. Each page's layer is read in its stored
// representation (checked against its CRC32C, dequantized to float32 when quantized — the
// quantized bytes are not fed to the kernels directly on the CPU) and attended in the mode it
// is stored in. A sequence may mix modes (a tenant switched modes, a layer fell back to full):
// consecutive pages of one mode go to one kernel call, and the runs are merged exactly with
// kernels::MergeAttention.
//
// Thread-safety: stateless functions; pages are immutable.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "cache/model_codec.h"
#include "cache/page.h"
#include "kernels/attention.h"

namespace slimkv::cache {

// Scale and softcap of the model's decode attention (config softmax_scale, which is 1/√d_k
// unless the config says otherwise; gemma2's logit softcapping), with h_q = num_q_heads.
kernels::AttentionParams AttentionParamsOf(const ModelConfig& config);

// Kernel calls an AttendLayer made, by the stored mode they ran on (index: Mode value).
struct AttendCalls {
  std::array<uint32_t, 5> by_mode{};
};

// Attention of queries q [num_q_heads, k_head_dim] (post-RoPE, float32) for layer `layer` over
// `pages`, which are pages 0, 1, ... of one prefix of the codec's model (page i holds positions
// [i·page_tokens, (i+1)·page_tokens)). Writes o [num_q_heads, v_head_dim] and lse [num_q_heads]
// (no pages: o = 0, lse = −inf) and adds its kernel calls to *calls (may be null).
// INVALID_ARGUMENT: layer ≥ num_layers. DATA_LOSS / FAILED_PRECONDITION as ReadStoredLayer;
// INTERNAL if a kernel refuses a layer the codec built. Nothing is written unless OK.
[[nodiscard]] absl::Status AttendLayer(const ModelCodec& codec,
                                       std::span<const std::shared_ptr<const Page>> pages,
                                       uint32_t layer, const float* q,
                                       kernels::AttentionOut out, AttendCalls* calls = nullptr);

}  // namespace slimkv::cache
