// The GPU tier: hot pages resident in device memory in their stored form (Page::payload, all
// layers, quantized or not), and the per-layer matrices the GPU attention ops read
// (kernels::gpu::DeviceLayer), under one byte budget with least-recently-used eviction. It is
// a cache of the host tier, not a tier of its own: a page is uploaded the first time Attend
// reads it on the GPU and dropped when colder entries must make room; the host keeps it.
//
// Identity. A page is found by its PageKey (which already names the model, the tenant's
// namespace and the tokens) and must be the same Page object as the resident copy's (a weak
// reference is kept): a page put again, or promoted from disk as a new object, is uploaded
// again rather than trusted by key. Layer matrices are found by the model's registration
// fingerprint (Page::model, which covers the geometry and the weights they are derived from),
// the layer and the mode.
//
// Budget: the device bytes of the resident payloads (each layer starting 256-byte aligned on
// the device, so a page takes up to 255 bytes per layer more than its payload) and layers. Scratch a call dequantizes
// into is the call's own and not counted. An entry evicted while a call still reads it stays
// allocated until that call returns (device memory is shared by shared_ptr), so the device may
// briefly hold more than the budget.
//
// Thread-safety: internally synchronized. Uploads and layer builds run outside the lock, so two
// callers missing the same entry may both build it; the first to finish is kept.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "cache/codec/internal/byte_lru.h"
#include "cache/model/model_codec.h"
#include "cache/store/page.h"
#include "kernels/gpu.h"

namespace slimkv::cache {

// Where a kernel call ran (slimkv_kernel_dispatches_total's device label).
enum class KernelDevice : uint8_t { kCpu, kGpu };
const char* KernelDeviceName(KernelDevice d);  // "cpu", "gpu"

// Why a call that could have run on the GPU ran on the CPU: kNone for a GPU call; kNoGpu, no
// usable device or its self-test failed; kUnsupported, the GPU does not run this mode or shape
// (Supports* said no, or the layer's matrices are not ready); kError, a GPU call failed at run
// time; kNoRoom, the GPU tier is off (budget 0) or could not hold the pages or layer.
enum class GpuFallback : uint8_t { kNone, kNoGpu, kUnsupported, kError, kNoRoom };
const char* GpuFallbackName(GpuFallback r);  // "none", "no_gpu", "unsupported", "error", "no_room"

class GpuTier;

// Whether a call may try the GPU at all: kNoGpu without a usable device that passed its
// self-test, kNoRoom without a GPU tier (`tier` null), else kNone.
GpuFallback GpuPathClosed(const GpuTier* tier);
// The fallback for a GPU step that failed with `failed`: kNoRoom for RESOURCE_EXHAUSTED (the
// tier's or the device's lack of room), else kError; `failed` is kept in *why for the log.
GpuFallback FallbackForFailure(const absl::Status& failed, absl::Status* why);

class GpuTier {
 public:
  // REQUIRES budget_bytes > 0 (a budget of 0 means no tier: make none).
  explicit GpuTier(uint64_t budget_bytes);

  struct Stats {
    uint64_t budget_bytes = 0;
    uint64_t used_bytes = 0;  // resident payloads and layers
    uint64_t entries = 0;
    uint64_t uploads = 0;    // payloads and layers copied to the device, total
    uint64_t evictions = 0;  // entries dropped to make room, total
  };
  Stats stats() const;
  uint64_t budget_bytes() const { return lru_budget_; }
  // Device bytes `page` takes in the tier.
  static uint64_t DeviceBytes(const Page& page);

  // Layer `l` of `page` on the device as the attention ops read it: the mode's stored values
  // [page_tokens, Σ StoredParts cols], in page->dtype when unquantized, else dequantized into
  // float32 scratch owned by the result (parts back to back, as ReadStoredLayer). The payload is
  // uploaded on the first call for the page, its every layer checked against its CRC32C first.
  // DATA_LOSS: a layer's bytes fail their CRC32C (nothing uploaded); RESOURCE_EXHAUSTED: the
  // page alone exceeds the budget, or the device has no room; UNAVAILABLE: no usable GPU or a
  // CUDA call failed. REQUIRES l < page->geometry.num_layers; the codec is the page's model's.
  struct DeviceLayerValues {
    kernels::gpu::DevicePage page;
    std::shared_ptr<const kernels::gpu::DeviceBuffer> payload;  // keeps page.data valid
    kernels::gpu::DeviceBuffer scratch;  // the dequantized values of a quantized layer
  };
  [[nodiscard]] absl::StatusOr<DeviceLayerValues> ReadLayer(
      const ModelCodec& codec, const std::shared_ptr<const Page>& page, uint32_t l,
      int32_t first_position);

  // The device copy of slim layer `l` of the model with fingerprint `model` (`kv` is that
  // layer's codec view), covering positions [0, max_position) at least: made on first use, and
  // made again, larger (the next power of two), when a later position comes. Errors as
  // kernels::gpu::DeviceLayer::ForSlim, and RESOURCE_EXHAUSTED when it exceeds the budget.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const kernels::gpu::DeviceLayer>> SlimLayer(
      const Digest& model, uint32_t l, const kernels::KvCodecLayer& kv, int32_t max_position);
  // The same for a native MLA latent layer.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const kernels::gpu::DeviceLayer>> LatentLayer(
      const Digest& model, uint32_t l, const kernels::LatentLayout& layout);

 private:
  // A page (layer = kPayload) or one layer's matrices in one mode.
  struct Key {
    Digest id;
    uint32_t layer;
    Mode mode;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.id, k.layer, k.mode);
    }
  };
  static constexpr uint32_t kPayload = UINT32_MAX;

  struct Entry {
    std::weak_ptr<const Page> page;  // payload entries: the page uploaded
    std::shared_ptr<const kernels::gpu::DeviceBuffer> payload;
    std::shared_ptr<const kernels::gpu::DeviceLayer> layer;
    int32_t max_position = 0;  // slim layers: positions the layer covers
  };

  // The page's payload on the device, uploaded unless resident.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const kernels::gpu::DeviceBuffer>> Payload(
      const std::shared_ptr<const Page>& page);
  // The layer entry at `key` when resident (and, for slim, covering max_position), else one
  // made by `make` and inserted.
  template <typename Make>
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const kernels::gpu::DeviceLayer>> Layer(
      const Key& key, int32_t max_position, Make make);
  // Accounts `entry` at `key` (replacing what is there), evicting colder entries.
  // RESOURCE_EXHAUSTED when `bytes` exceed the budget.
  [[nodiscard]] absl::Status InsertLocked(const Key& key, uint64_t bytes, Entry entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t lru_budget_;  // constant after construction

  mutable std::mutex mu_;
  ByteLru<Key> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t uploads_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace slimkv::cache
