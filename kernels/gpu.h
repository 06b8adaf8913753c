// The GPU backend of the kernels: device discovery, device memory, decode attention on pages
// resident in device memory (the GPU side of attention.h) and reconstruction of K, V from them
// (the GPU side of codecs.h's decoders). Built from CUDA sources
// (gpu_*.cu, C++17, sm_90) when the build finds nvcc, else from gpu_absent.cc, whose functions
// all answer UNAVAILABLE — so callers never need #if, and the daemon behaves the same on a
// machine without CUDA, without a driver, or without a GPU: Device().usable is false and every
// op falls back to the CPU.
//
// Every op answers Supports* first (OK, or a status whose message names the reason), and the
// process may use the GPU path only once SelfTest() has passed: a known-answer check of every
// op against the CPU reference (attention_ref.h) on small fixed cases.
//
// Ops take device pointers for pages and matrices, host pointers for q and the outputs, run on
// the calling thread's stream (cudaStreamPerThread) and return when the outputs are on the
// host. Scratch is stream-ordered (cudaMallocAsync), so concurrent callers on different
// threads run concurrently and need no lock.
//
// Errors: UNAVAILABLE when there is no usable GPU or a CUDA call fails (the caller falls back
// to the CPU); INVALID_ARGUMENT / FAILED_PRECONDITION as the CPU op for bad shapes;
// RESOURCE_EXHAUSTED when device memory runs out. Nothing is written unless OK.
//
// Thread-safety: all functions are safe to call concurrently; a DeviceBuffer or DeviceLayer
// is used read-only by ops, and may be shared by concurrent calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention.h"
#include "kernels/codec_layer.h"
#include "kernels/quant_format.h"

namespace slimkv::kernels::gpu {

// What the process can use, probed once (first call).
struct DeviceInfo {
  bool usable = false;
  // Why not, when !usable: "built without CUDA", "no CUDA driver", "no GPU",
  // "compute capability X.Y (kernels are built for 9.0)".
  std::string reason;
  std::string name;  // "NVIDIA H200"
  int sm_count = 0;
  int64_t memory_bytes = 0;
};
const DeviceInfo& Device();

// The known-answer check, run once (first call) and remembered: every attention op on small
// fixed pages (fp32 and bf16, several pages, a partial tile) against AttendRef, and the
// reconstruction ops against K and V computed in float64. OK, or the first op that failed or
// disagreed. UNAVAILABLE when !Device().usable.
[[nodiscard]] absl::Status SelfTest();

// Device memory owned by the buffer, from the device's stream-ordered pool (so a release never
// synchronizes the device). Usable by any thread once Allocate returns. Move-only.
class DeviceBuffer {
 public:
  // RESOURCE_EXHAUSTED when the device has no room; UNAVAILABLE without a usable GPU.
  [[nodiscard]] static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  // Host → device / device → host of `bytes` at `offset`; synchronous.
  // REQUIRES: offset + bytes <= this->bytes().
  [[nodiscard]] absl::Status Upload(const void* host, size_t bytes, size_t offset = 0);
  [[nodiscard]] absl::Status Download(void* host, size_t bytes, size_t offset = 0) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Device memory this process holds through DeviceBuffer (all buffers, all callers).
int64_t DeviceBytesInUse();

// Dequantizes a quantized part (quant_format.h) of `rows` × `cols` values at `src` (device)
// into float32 [rows, cols] at `dst` (device), bit-identical to QuantDecode. Synchronous.
[[nodiscard]] absl::Status Dequantize(const QuantParams& p, const void* src, int64_t rows,
                                      int64_t cols, float* dst);

// What an attention op reads besides its pages, copied to the device once per layer and
// reused by every call: slim's W_KV and folded bias with the RoPE cos/sin table, or native
// MLA's W_UK, W_UV and rope placement.
class DeviceLayer {
 public:
  // Slim (KvCodecLayer with w_kv; rope may be null). `max_position`: positions the cos/sin
  // table covers, [0, max_position); a call with a later position answers FAILED_PRECONDITION.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DeviceLayer>> ForSlim(
      const KvCodecLayer& l, int32_t max_position);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DeviceLayer>> ForLatent(
      const LatentLayout& l);
  ~DeviceLayer();

  size_t bytes() const;  // device memory held
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit DeviceLayer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A page of one layer on the device, unquantized ([tokens, stored columns] in dtype, the
// mode's layout exactly as attention.h's StoredPage; dequantize a quantized layer first).
struct DevicePage {
  const void* data = nullptr;  // device memory
  DType dtype = DType::kF32;
  int64_t tokens = 0;
  int32_t first_position = 0;
};

// Whether the GPU runs attention in this mode for this geometry: OK, UNAVAILABLE (no usable
// GPU, or the self-test failed) or OUT_OF_RANGE (a value row too wide for one block's shared
// memory). xcache and projected latent have no GPU op: they run on the CPU.
[[nodiscard]] absl::Status SupportsAttendFull(const KvHeads& heads, int h_q);
[[nodiscard]] absl::Status SupportsAttendSlim(const KvCodecLayer& l, int h_q);
[[nodiscard]] absl::Status SupportsAttendLatent(const LatentLayout& l, int h_q);

// Same contracts and results as attention.h's ops (o [h_q, d_v], lse [h_q] on the host; no
// tokens: o = 0, lse = −inf), pages and the DeviceLayer on the device, q on the host.
// `layer` must have been made from the same KvCodecLayer / LatentLayout.
[[nodiscard]] absl::Status AttendFull(const KvHeads& heads, std::span<const DevicePage> pages,
                                      const float* q, const AttentionParams& p,
                                      AttentionOut out);
[[nodiscard]] absl::Status AttendSlim(const KvCodecLayer& l, const DeviceLayer& layer,
                                      std::span<const DevicePage> pages, const float* q,
                                      const AttentionParams& p, AttentionOut out);
[[nodiscard]] absl::Status AttendLatent(const LatentLayout& l, const DeviceLayer& layer,
                                        std::span<const DevicePage> pages, const float* q,
                                        const AttentionParams& p, AttentionOut out);

// Reconstruction (Get's side): one page layer's stored rows on the device (unquantized) into
// engine-form K [tokens, h_kv, d_k] and V [tokens, h_kv, d_v] in device memory of dtype `out`,
// as the CPU codecs (codecs.h DecodeSlim, DecodeLatentNative) compute them, in float32:
//   slim    K = R_p·K_raw (positions page.first_position, ...), V = K_raw·W_KV + b_V − b_K·W_KV;
//   latent  K_h = c·W_UK,h at the nope places and k_rope at the rope places, V_h = c·W_UV,h.
// `layer` as for the attention ops. Synchronous. k and v must not overlap the page.
[[nodiscard]] absl::Status DecodeSlim(const KvCodecLayer& l, const DeviceLayer& layer,
                                      const DevicePage& page, DType out, void* k, void* v);
[[nodiscard]] absl::Status DecodeLatent(const LatentLayout& l, const DeviceLayer& layer,
                                        const DevicePage& page, DType out, void* k, void* v);

}  // namespace slimkv::kernels::gpu
