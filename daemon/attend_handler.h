// The Attend RPC (slimkv.v1.Cache.Attend): validates the whole request, resolves each
// sequence's page keys as Get does, reads the stored pages through KvCache::Get and runs
// cache::AttendLayer on them — on the GPU through the GPU tier where it can, else on the CPU
// (docs/attention.md).
//
// Thread-safety: stateless function; the cache, the GPU tier and metrics are internally
// synchronized.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "cache/codec/gpu_tier.h"
#include "cache/store/kv_cache.h"
#include "daemon/metrics.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

// Most sequences one Attend request may carry.
inline constexpr int kMaxAttendSequences = 1024;

// Fills `response` with one result per sequence. Every field is validated before any page is
// read, so a bad request changes nothing and names its field:
// INVALID_ARGUMENT for sequences (none, over kMaxAttendSequences), q_dtype, layer (≥
// num_layers), sequences[i].tokens (empty, too long), sequences[i].q (wrong size, non-finite
// value); NOT_FOUND for an unknown model_id. Then DATA_LOSS if a stored layer fails its
// checksum, FAILED_PRECONDITION if a page needs matrices not derived yet or a sequence's
// covered tokens exceed the model's sliding window. `gpu` may be null (no GPU tier). Kernel
// calls are counted in `metrics` (may be null) as slimkv_kernel_dispatches_total{device, op=
// "attend", mode}, and those the GPU could not take as slimkv_kernel_fallbacks_total{op=
// "attend", reason}.
[[nodiscard]] absl::Status HandleAttend(cache::KvCache* cache, cache::GpuTier* gpu,
                                        const std::string& tenant,
                                        const v1::AttendRequest& request,
                                        v1::AttendResponse* response, Metrics* metrics);

}  // namespace slimkv::daemon
