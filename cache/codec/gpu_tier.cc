#include "cache/codec/gpu_tier.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cache/codec/page_codec.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {

const char* KernelDeviceName(KernelDevice d) { return d == KernelDevice::kGpu ? "gpu" : "cpu"; }

const char* GpuFallbackName(GpuFallback r) {
  switch (r) {
    case GpuFallback::kNone: return "none";
    case GpuFallback::kNoGpu: return "no_gpu";
    case GpuFallback::kUnsupported: return "unsupported";
    case GpuFallback::kError: return "error";
    case GpuFallback::kNoRoom: return "no_room";
  }
  return "unknown";
}

namespace gpu = kernels::gpu;

GpuFallback GpuPathClosed(const GpuTier* tier) {
  if (!gpu::Device().usable || !gpu::SelfTest().ok()) return GpuFallback::kNoGpu;
  return tier == nullptr ? GpuFallback::kNoRoom : GpuFallback::kNone;
}

GpuFallback FallbackForFailure(const absl::Status& failed, absl::Status* why) {
  *why = failed;
  return absl::IsResourceExhausted(failed) ? GpuFallback::kNoRoom : GpuFallback::kError;
}

namespace {

// Layers start on the device at multiples of this, so that the kernels' typed loads of an
// unquantized layer are aligned whatever the layers before it hold (a quantized layer's bytes
// need not be a multiple of anything; a misaligned device load would poison the CUDA context).
constexpr uint64_t kLayerAlign = 256;

uint64_t AlignUp(uint64_t x) { return (x + kLayerAlign - 1) / kLayerAlign * kLayerAlign; }

// Where layer `l` starts in the device copy; l = layers.size() gives its size.
uint64_t DeviceLayerOffset(const Page& page, size_t l) {
  uint64_t off = 0;
  for (size_t i = 0; i < l; ++i) off += AlignUp(page.layers[i].bytes);
  return off;
}

}  // namespace

uint64_t GpuTier::DeviceBytes(const Page& page) {
  return DeviceLayerOffset(page, page.layers.size());
}

GpuTier::GpuTier(uint64_t budget_bytes) : lru_budget_(budget_bytes), lru_(budget_bytes) {}

GpuTier::Stats GpuTier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {.budget_bytes = lru_budget_,
          .used_bytes = lru_.used_bytes(),
          .entries = lru_.size(),
          .uploads = uploads_,
          .evictions = evictions_};
}

absl::Status GpuTier::InsertLocked(const Key& key, uint64_t bytes, Entry entry) {
  std::vector<Key> evicted;
  if (!lru_.Insert(key, bytes, &evicted)) {
    return absl::ResourceExhaustedError(absl::StrCat("gpu tier: ", bytes,
                                                     " bytes exceed its budget of ", lru_budget_));
  }
  for (const Key& k : evicted) entries_.erase(k);
  evictions_ += evicted.size();
  entries_[key] = std::move(entry);
  ++uploads_;
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const gpu::DeviceBuffer>> GpuTier::Payload(
    const std::shared_ptr<const Page>& page) {
  const Key key{page->key, kPayload, Mode::kFull};
  auto resident = [&]() -> std::shared_ptr<const gpu::DeviceBuffer> {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.page.lock() != page) return nullptr;
    lru_.Touch(key);
    return it->second.payload;
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto buffer = resident()) return buffer;
  }
  // The device copy is trusted from here on, so every layer is checked once, now.
  uint64_t offset = 0;
  for (size_t l = 0; l < page->layers.size(); ++l) {
    const StoredLayer& layer = page->layers[l];
    if (kernels::Crc32c(0, page->payload.data() + offset, layer.bytes) != layer.crc32c) {
      return absl::DataLossError(
          absl::StrCat("page layer ", l, ": stored bytes fail their CRC32C"));
    }
    offset += layer.bytes;
  }
  const uint64_t bytes = DeviceBytes(*page);
  if (bytes > lru_budget_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "gpu tier: a page of ", bytes, " bytes exceeds its budget of ", lru_budget_));
  }
  // The payload with each layer moved to its aligned offset.
  std::vector<uint8_t> staged(bytes);
  for (size_t l = 0, from = 0; l < page->layers.size(); from += page->layers[l++].bytes) {
    std::copy_n(page->payload.data() + from, page->layers[l].bytes,
                staged.data() + DeviceLayerOffset(*page, l));
  }
  absl::StatusOr<gpu::DeviceBuffer> buffer = gpu::DeviceBuffer::Allocate(bytes);
  if (!buffer.ok()) return buffer.status();
  if (absl::Status s = buffer->Upload(staged.data(), bytes); !s.ok()) return s;
  auto shared = std::make_shared<const gpu::DeviceBuffer>(*std::move(buffer));

  std::lock_guard<std::mutex> lock(mu_);
  if (auto raced = resident()) return raced;
  Entry entry;
  entry.page = page;
  entry.payload = shared;
  if (absl::Status s = InsertLocked(key, bytes, std::move(entry)); !s.ok()) return s;
  return shared;
}

absl::StatusOr<GpuTier::DeviceLayerValues> GpuTier::ReadLayer(
    const ModelCodec& codec, const std::shared_ptr<const Page>& page, uint32_t l,
    int32_t first_position) {
  absl::StatusOr<std::shared_ptr<const gpu::DeviceBuffer>> payload = Payload(page);
  if (!payload.ok()) return payload.status();
  const StoredLayer& layer = page->layers[l];
  const uint32_t tokens = page->geometry.page_tokens;
  const auto* bytes = static_cast<const uint8_t*>((*payload)->data()) + DeviceLayerOffset(*page, l);
  DeviceLayerValues out;
  out.payload = *std::move(payload);
  out.page = {.data = bytes, .dtype = page->dtype, .tokens = tokens,
              .first_position = first_position};
  if (layer.quant == Quant::kNone) return out;

  const std::vector<StoredPart> parts = StoredParts(codec, l, layer.mode);
  int64_t cols = 0;
  for (const StoredPart& p : parts) cols += p.cols;
  absl::StatusOr<gpu::DeviceBuffer> scratch =
      gpu::DeviceBuffer::Allocate(sizeof(float) * tokens * static_cast<uint64_t>(cols));
  if (!scratch.ok()) return scratch.status();
  out.scratch = *std::move(scratch);
  float* dst = static_cast<float*>(out.scratch.data());
  for (const StoredPart& p : parts) {
    const kernels::QuantParams qp = QuantParamsFor(p, layer.quant);
    if (absl::Status s = gpu::Dequantize(qp, bytes, tokens, p.cols, dst); !s.ok()) return s;
    bytes += StoredPartBytes(p, layer.quant, page->dtype, tokens);
    dst += uint64_t{tokens} * p.cols;
  }
  out.page.data = out.scratch.data();
  out.page.dtype = kernels::DType::kF32;
  return out;
}

template <typename Make>
absl::StatusOr<std::shared_ptr<const gpu::DeviceLayer>> GpuTier::Layer(const Key& key,
                                                                       int32_t max_position,
                                                                       Make make) {
  auto resident = [&]() -> std::shared_ptr<const gpu::DeviceLayer> {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.max_position < max_position) return nullptr;
    lru_.Touch(key);
    return it->second.layer;
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto layer = resident()) return layer;
  }
  absl::StatusOr<std::unique_ptr<gpu::DeviceLayer>> made = make();
  if (!made.ok()) return made.status();
  std::shared_ptr<const gpu::DeviceLayer> shared = *std::move(made);

  std::lock_guard<std::mutex> lock(mu_);
  if (auto raced = resident()) return raced;
  Entry entry;
  entry.layer = shared;
  entry.max_position = max_position;
  if (absl::Status s = InsertLocked(key, shared->bytes(), std::move(entry)); !s.ok()) return s;
  return shared;
}

absl::StatusOr<std::shared_ptr<const gpu::DeviceLayer>> GpuTier::SlimLayer(
    const Digest& model, uint32_t l, const kernels::KvCodecLayer& kv, int32_t max_position) {
  // Rounded up so that a growing sequence re-makes the layer a logarithmic number of times.
  const auto wanted = static_cast<uint32_t>(std::max(max_position, 1));
  const int32_t covered = wanted > (1u << 30) ? max_position
                                              : static_cast<int32_t>(std::bit_ceil(wanted));
  return Layer({model, l, Mode::kSlim}, covered,
               [&] { return gpu::DeviceLayer::ForSlim(kv, covered); });
}

absl::StatusOr<std::shared_ptr<const gpu::DeviceLayer>> GpuTier::LatentLayer(
    const Digest& model, uint32_t l, const kernels::LatentLayout& layout) {
  return Layer({model, l, Mode::kLatent}, 0, [&] { return gpu::DeviceLayer::ForLatent(layout); });
}

}  // namespace slimkv::cache
