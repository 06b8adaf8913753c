// kernels/gpu.h on CUDA, the device side of the host code: probing the device, device buffers
// and layers, and the one cudaError_t → absl::Status conversion (STYLE.md). The ops' host sides
// are attention_ops.cc, dequant_ops.cc and reconstruct_ops.cc; the known-answer check is
// known_answer_check.cc.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/internal/host.h"
#include "kernels/gpu.h"
#include "kernels/internal/codec_util.h"

namespace slimkv::kernels::gpu {

namespace {

std::atomic<int64_t> g_bytes_in_use{0};

DeviceInfo Probe() {
  DeviceInfo info;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice || count == 0) {
    info.reason = e == cudaErrorInsufficientDriver ? "no CUDA driver" : "no GPU";
    return info;
  }
  if (e != cudaSuccess) {
    info.reason = absl::StrCat("CUDA: ", cudaGetErrorString(e));
    return info;
  }
  cudaDeviceProp prop;
  if (const cudaError_t pe = cudaGetDeviceProperties(&prop, 0); pe != cudaSuccess) {
    info.reason = absl::StrCat("CUDA: ", cudaGetErrorString(pe));
    return info;
  }
  info.name = prop.name;
  info.sm_count = prop.multiProcessorCount;
  info.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  if (prop.major < 9) {
    info.reason = absl::StrCat("compute capability ", prop.major, ".", prop.minor,
                               " (kernels are built for 9.0)");
    return info;
  }
  info.usable = true;
  return info;
}

absl::StatusOr<DeviceBuffer> UploadFloats(const float* src, size_t n) {
  absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(sizeof(float) * n);
  if (!b.ok()) return b.status();
  if (absl::Status s = b->Upload(src, sizeof(float) * n); !s.ok()) return s;
  return b;
}

}  // namespace

absl::Status Cuda(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::UnavailableError(msg);
}

absl::Status Usable() {
  const DeviceInfo& d = Device();
  return d.usable ? absl::OkStatus() : absl::UnavailableError(absl::StrCat("no usable GPU: ", d.reason));
}

size_t SharedMemoryLimit() {
  static const size_t limit = [] {
    int v = 0;
    return cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess
               ? static_cast<size_t>(v)
               : size_t{48 * 1024};
  }();
  return limit;
}

const DeviceInfo& Device() {
  static const DeviceInfo info = Probe();
  return info;
}

// ---- DeviceBuffer ----

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  if (absl::Status s = Usable(); !s.ok()) return s;
  DeviceBuffer b;
  if (bytes == 0) return b;
  // Stream-ordered, from the device's pool: cudaFree would synchronize the whole device on
  // every release, stalling every other caller's kernels. Synchronized once here so that any
  // thread's stream may use the buffer at once.
  if (absl::Status s = Cuda(cudaMallocAsync(&b.data_, bytes, kStream), "device buffer"); !s.ok()) {
    return s;
  }
  if (absl::Status s = Cuda(cudaStreamSynchronize(kStream), "device buffer"); !s.ok()) {
    (void)cudaFreeAsync(b.data_, kStream);
    b.data_ = nullptr;
    return s;
  }
  b.bytes_ = bytes;
  g_bytes_in_use += static_cast<int64_t>(bytes);
  return b;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    this->~DeviceBuffer();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ == nullptr) return;
  // Every op synchronizes its stream before returning, so no work still reads the buffer.
  (void)cudaFreeAsync(data_, kStream);
  g_bytes_in_use -= static_cast<int64_t>(bytes_);
  data_ = nullptr;
  bytes_ = 0;
}

absl::Status DeviceBuffer::Upload(const void* host, size_t bytes, size_t offset) {
  if (bytes == 0) return absl::OkStatus();
  if (absl::Status s = Cuda(cudaMemcpyAsync(static_cast<uint8_t*>(data_) + offset, host, bytes,
                                            cudaMemcpyHostToDevice, kStream),
                            "upload");
      !s.ok()) {
    return s;
  }
  return Cuda(cudaStreamSynchronize(kStream), "upload");
}

absl::Status DeviceBuffer::Download(void* host, size_t bytes, size_t offset) const {
  if (bytes == 0) return absl::OkStatus();
  if (absl::Status s = Cuda(cudaMemcpyAsync(host, static_cast<const uint8_t*>(data_) + offset,
                                            bytes, cudaMemcpyDeviceToHost, kStream),
                            "download");
      !s.ok()) {
    return s;
  }
  return Cuda(cudaStreamSynchronize(kStream), "download");
}

int64_t DeviceBytesInUse() { return g_bytes_in_use.load(); }

// ---- DeviceLayer ----

DeviceLayer::DeviceLayer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceLayer::~DeviceLayer() = default;

size_t DeviceLayer::bytes() const {
  return impl_->w.bytes() + impl_->bias.bytes() + impl_->w_uk.bytes() + impl_->cos.bytes() +
         impl_->sin.bytes() + impl_->nope_dst.bytes() + impl_->rope_src.bytes() +
         impl_->rope_dst.bytes();
}

absl::StatusOr<std::unique_ptr<DeviceLayer>> DeviceLayer::ForSlim(const KvCodecLayer& l,
                                                                  int32_t max_position) {
  if (absl::Status s = ValidateCodecLayer(l, CodecMode::kSlim); !s.ok()) return s;
  if (max_position < 0) return absl::InvalidArgumentError("max_position < 0");
  auto impl = std::make_unique<Impl>();
  const int e = l.proj.e();
  absl::StatusOr<DeviceBuffer> w = UploadFloats(l.w_kv, size_t{1} * e * e);
  if (!w.ok()) return w.status();
  impl->w = *std::move(w);
  if (l.proj.b_k != nullptr || l.proj.b_v != nullptr) {
    // Σ_t s = 1, so the biases fold into one per column: b_V − b_K·W_KV.
    std::vector<float> bias(e);
    for (int c = 0; c < e; ++c) {
      double b = l.proj.b_v != nullptr ? l.proj.b_v[c] : 0.0;
      if (l.proj.b_k != nullptr) {
        for (int r = 0; r < e; ++r) b -= double{l.proj.b_k[r]} * l.w_kv[int64_t{r} * e + c];
      }
      bias[c] = static_cast<float>(b);
    }
    absl::StatusOr<DeviceBuffer> b = UploadFloats(bias.data(), bias.size());
    if (!b.ok()) return b.status();
    impl->bias = *std::move(b);
  }
  if (l.rope != nullptr) {
    const int half = l.rope->params().rotary_dim / 2;
    std::vector<float> cos(size_t{1} * max_position * half), sin(cos.size());
    for (int32_t pos = 0; pos < max_position; ++pos) {
      l.rope->CosSin(pos, &cos[size_t{1} * pos * half], &sin[size_t{1} * pos * half]);
    }
    absl::StatusOr<DeviceBuffer> c = UploadFloats(cos.data(), cos.size());
    if (!c.ok()) return c.status();
    absl::StatusOr<DeviceBuffer> s = UploadFloats(sin.data(), sin.size());
    if (!s.ok()) return s.status();
    impl->cos = *std::move(c);
    impl->sin = *std::move(s);
  }
  impl->max_position = max_position;
  return std::unique_ptr<DeviceLayer>(new DeviceLayer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<DeviceLayer>> DeviceLayer::ForLatent(const LatentLayout& l) {
  if (absl::Status s = ValidateLatentLayout(l); !s.ok()) return s;
  auto impl = std::make_unique<Impl>();
  absl::StatusOr<DeviceBuffer> w = UploadFloats(l.w_uv, size_t{1} * l.d_c * l.heads * l.v_head_dim);
  if (!w.ok()) return w.status();
  impl->w = *std::move(w);
  if (l.d_nope() > 0) {
    absl::StatusOr<DeviceBuffer> uk = UploadFloats(l.w_uk, size_t{1} * l.d_c * l.heads * l.d_nope());
    if (!uk.ok()) return uk.status();
    impl->w_uk = *std::move(uk);
  }
  const int dk = l.k_head_dim, dn = l.d_nope(), r = l.rope_dim;
  const std::vector<int> map = internal::LatentHeadMap(l);
  std::vector<int> nope_dst(size_t{1} * l.heads * dn), rope_src, rope_dst;
  for (int h = 0; h < l.heads; ++h) {
    for (int c = 0; c < dk; ++c) {
      const int m = map[h * dk + c];
      if (m >= 0) {
        nope_dst[size_t{1} * h * dn + m] = h * dk + c;
      } else {
        rope_src.push_back(l.d_c + (l.shared_rope ? 0 : h * r) + (-m - 1));
        rope_dst.push_back(h * dk + c);
      }
    }
  }
  for (auto [buffer, host] : {std::pair{&impl->nope_dst, &nope_dst}, std::pair{&impl->rope_src, &rope_src},
                              std::pair{&impl->rope_dst, &rope_dst}}) {
    absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(sizeof(int) * host->size());
    if (!b.ok()) return b.status();
    if (absl::Status s = b->Upload(host->data(), sizeof(int) * host->size()); !s.ok()) return s;
    *buffer = *std::move(b);
  }
  return std::unique_ptr<DeviceLayer>(new DeviceLayer(std::move(impl)));
}

}  // namespace slimkv::kernels::gpu
