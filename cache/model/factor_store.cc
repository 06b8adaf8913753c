#include "cache/model/factor_store.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "cache/model/sha256.h"
#include "kernels/crc32c.h"

namespace slimkv::cache {
namespace {

constexpr char kMagic[4] = {'S', 'K', 'V', 'F'};
constexpr uint32_t kVersion = 1;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t ReadLe(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(s[at + i])} << (8 * i);
  return v;
}

bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

// Bytes of an entry of `count` values under `name`: header, values, CRC32C.
uint64_t EntryBytes(absl::string_view name, uint64_t count) {
  return 4 + 4 + 4 + 4 + name.size() + 8 + 8 * count + 4;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

std::string FactorStore::PathOf(const Fingerprint& model, uint32_t layer,
                                absl::string_view name) const {
  return absl::StrCat(root_, "/", ToHex(model), "/layer-", layer, ".", name, ".f64");
}

bool FactorStore::Holds(const Fingerprint& model, uint32_t layer, absl::string_view name,
                        uint64_t count) const {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(PathOf(model, layer, name), ec);
  return !ec && size == EntryBytes(name, count);
}

absl::StatusOr<std::vector<double>> FactorStore::Get(const Fingerprint& model, uint32_t layer,
                                                     absl::string_view name) const {
  const std::string path = PathOf(model, layer, name);
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": not cached"));
    return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  std::string data;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.append(buf, got);
  if (std::ferror(f.get())) return absl::ErrnoToStatus(errno, absl::StrCat("read ", path));

  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(path, ": ", why));
  };
  const size_t head = 4 + 4 + 4 + 4 + name.size() + 8;
  if (data.size() < head + 4) return corrupt("truncated");
  const uint32_t crc = static_cast<uint32_t>(ReadLe(data, data.size() - 4, 4));
  if (kernels::Crc32c(0, data.data(), data.size() - 4) != crc) return corrupt("checksum mismatch");
  if (std::memcmp(data.data(), kMagic, 4) != 0 || ReadLe(data, 4, 4) != kVersion ||
      ReadLe(data, 8, 4) != layer || ReadLe(data, 12, 4) != name.size() ||
      data.compare(16, name.size(), name.data(), name.size()) != 0) {
    return corrupt("header does not match the entry");
  }
  const uint64_t count = ReadLe(data, 16 + name.size(), 8);
  if (data.size() != EntryBytes(name, count)) return corrupt("length does not match the count");
  std::vector<double> values(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t bits = ReadLe(data, head + 8 * i, 8);
    std::memcpy(&values[i], &bits, 8);
  }
  return values;
}

absl::Status FactorStore::Put(const Fingerprint& model, uint32_t layer, absl::string_view name,
                              const std::vector<double>& values) const {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("factor name '", name, "' is not [A-Za-z0-9_-]+"));
  }
  std::string data(kMagic, 4);
  PutU32(&data, kVersion);
  PutU32(&data, layer);
  PutU32(&data, static_cast<uint32_t>(name.size()));
  data.append(name.data(), name.size());
  PutU64(&data, values.size());
  for (double v : values) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    PutU64(&data, bits);
  }
  PutU32(&data, kernels::Crc32c(0, data.data(), data.size()));

  const std::string path = PathOf(model, layer, name);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return absl::ErrnoToStatus(ec.value(), absl::StrCat("create directory for ", path));
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
    if (!f) return absl::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
    if (std::fwrite(data.data(), 1, data.size(), f.get()) != data.size() ||
        std::fflush(f.get()) != 0) {
      const int err = errno;
      std::remove(tmp.c_str());
      return absl::ErrnoToStatus(err, absl::StrCat("write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("rename to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> GetOrCompute(
    const FactorStore* store, const Fingerprint& model, uint32_t layer, absl::string_view name,
    size_t expect_count, absl::FunctionRef<absl::StatusOr<std::vector<double>>()> compute,
    bool* from_cache) {
  if (from_cache != nullptr) *from_cache = false;
  if (store != nullptr) {
    absl::StatusOr<std::vector<double>> got = store->Get(model, layer, name);
    if (got.ok() && (expect_count == 0 || got->size() == expect_count)) {
      if (from_cache != nullptr) *from_cache = true;
      return got;
    }
  }
  absl::StatusOr<std::vector<double>> values = compute();
  if (values.ok() && store != nullptr) (void)store->Put(model, layer, name, *values);
  return values;
}

absl::StatusOr<kernels::Conditioning> CachedConditioning(const FactorStore* store,
                                                         const Fingerprint& model,
                                                         uint32_t layer,
                                                         const kernels::KvProjection& p,
                                                         bool* from_cache,
                                                         kernels::JointSvd* joint_svd) {
  if (joint_svd != nullptr) *joint_svd = kernels::JointSvd{};
  // Entry layout: [κ_K, κ_V, κ_KV, σ_KV...].
  const size_t n_sigma = static_cast<size_t>(std::min(p.d, 2 * p.e()));
  absl::StatusOr<std::vector<double>> v = GetOrCompute(
      store, model, layer, "conditioning", 3 + n_sigma,
      [&]() -> absl::StatusOr<std::vector<double>> {
        absl::StatusOr<kernels::Conditioning> c =
            kernels::AnalyzeConditioning(p, kernels::SvdMethod::kAuto, joint_svd);
        if (!c.ok()) return c.status();
        std::vector<double> out = {c->kappa_k, c->kappa_v, c->kappa_kv};
        out.insert(out.end(), c->sigma_kv.begin(), c->sigma_kv.end());
        return out;
      },
      from_cache);
  if (!v.ok()) return v.status();
  kernels::Conditioning c;
  c.kappa_k = (*v)[0];
  c.kappa_v = (*v)[1];
  c.kappa_kv = (*v)[2];
  c.sigma_kv.assign(v->begin() + 3, v->end());
  return c;
}

}  // namespace slimkv::cache
