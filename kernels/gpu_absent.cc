// kernels/gpu.h for a build without CUDA: no device, every op UNAVAILABLE, so callers fall
// back to the CPU without #if.
#include "kernels/gpu.h"

namespace slimkv::kernels::gpu {
namespace {

absl::Status NoCuda() { return absl::UnavailableError("built without CUDA"); }

}  // namespace

struct DeviceLayer::Impl {};

const DeviceInfo& Device() {
  static const DeviceInfo info = [] {
    DeviceInfo i;
    i.reason = "built without CUDA";
    return i;
  }();
  return info;
}

absl::Status SelfTest() { return NoCuda(); }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda(); }
DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept = default;
DeviceBuffer::~DeviceBuffer() = default;
absl::Status DeviceBuffer::Upload(const void*, size_t, size_t) { return NoCuda(); }
absl::Status DeviceBuffer::Download(void*, size_t, size_t) const { return NoCuda(); }
int64_t DeviceBytesInUse() { return 0; }

absl::Status Dequantize(const QuantParams&, const void*, int64_t, int64_t, float*) {
  return NoCuda();
}

DeviceLayer::DeviceLayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceLayer::~DeviceLayer() = default;
size_t DeviceLayer::bytes() const { return 0; }
absl::StatusOr<std::unique_ptr<DeviceLayer>> DeviceLayer::ForSlim(const KvCodecLayer&, int32_t) {
  return NoCuda();
}
absl::StatusOr<std::unique_ptr<DeviceLayer>> DeviceLayer::ForLatent(const LatentLayout&) {
  return NoCuda();
}

absl::Status SupportsAttendFull(const KvHeads&, int) { return NoCuda(); }
absl::Status SupportsAttendSlim(const KvCodecLayer&, int) { return NoCuda(); }
absl::Status SupportsAttendLatent(const LatentLayout&, int) { return NoCuda(); }

absl::Status AttendFull(const KvHeads&, std::span<const DevicePage>, const float*,
                        const AttentionParams&, AttentionOut) {
  return NoCuda();
}
absl::Status AttendSlim(const KvCodecLayer&, const DeviceLayer&, std::span<const DevicePage>,
                        const float*, const AttentionParams&, AttentionOut) {
  return NoCuda();
}
absl::Status AttendLatent(const LatentLayout&, const DeviceLayer&, std::span<const DevicePage>,
                          const float*, const AttentionParams&, AttentionOut) {
  return NoCuda();
}

absl::Status DecodeSlim(const KvCodecLayer&, const DeviceLayer&, const DevicePage&, DType, void*,
                        void*) {
  return NoCuda();
}
absl::Status DecodeLatent(const LatentLayout&, const DeviceLayer&, const DevicePage&, DType,
                          void*, void*) {
  return NoCuda();
}

}  // namespace slimkv::kernels::gpu
