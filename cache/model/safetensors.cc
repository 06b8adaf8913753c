#include "cache/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace slimkv::cache {
namespace {

using Json = nlohmann::json;

// A header larger than this is not a checkpoint we should parse (the safetensors library
// itself refuses headers over 100 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

// Element size of a safetensors dtype string; 0 when unknown.
size_t ElementSize(const std::string& dtype) {
  static const std::pair<const char*, size_t> kSizes[] = {
      {"F64", 8},     {"F32", 4},     {"F16", 2},  {"BF16", 2}, {"I64", 8},
      {"U64", 8},     {"I32", 4},     {"U32", 4},  {"I16", 2},  {"U16", 2},
      {"I8", 1},      {"U8", 1},      {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"F8_E8M0", 1},
  };
  for (const auto& [name, size] : kSizes) {
    if (dtype == name) return size;
  }
  return 0;
}

std::optional<kernels::DType> ReadableDType(const std::string& dtype) {
  if (dtype == "F32") return kernels::DType::kF32;
  if (dtype == "F16") return kernels::DType::kF16;
  if (dtype == "BF16") return kernels::DType::kBF16;
  return std::nullopt;
}

absl::Status Errno(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

// Reads a whole small file (the index); the errno-derived status on failure.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Errno(errno, absl::StrCat("open ", path));
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxHeaderBytes) {
      std::fclose(f);
      return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", kMaxHeaderBytes));
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return absl::DataLossError(absl::StrCat("read ", path));
  return data;
}

// prod(shape) with overflow detection; nullopt on overflow or a negative dim.
std::optional<uint64_t> NumElements(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d)) return std::nullopt;
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

// Writes the concatenation of `parts` to a new file at `path`.
absl::Status WriteParts(const std::string& path, const std::vector<absl::string_view>& parts) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return Errno(errno, absl::StrCat("create ", path));
  bool ok = true;
  for (absl::string_view p : parts) {
    ok = ok && std::fwrite(p.data(), 1, p.size(), f) == p.size();
  }
  const int write_err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!ok) return Errno(write_err, absl::StrCat("write ", path));
  if (!closed) return Errno(errno, absl::StrCat("close ", path));
  return absl::OkStatus();
}

bool IsShardName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != ".." &&
         absl::EndsWith(name, ".safetensors");
}

}  // namespace

struct SafetensorsDir::Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr != nullptr) munmap(addr, len);
  }
};

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsDir::SafetensorsDir() = default;
SafetensorsDir::~SafetensorsDir() = default;

absl::Status SafetensorsDir::AddFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Errno(err, absl::StrCat("stat ", path));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated (", file_size, " bytes, no header length)"));
  }
  void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) return Errno(map_err, absl::StrCat("mmap ", path));
  auto mapping = std::make_unique<Mapping>();
  mapping->addr = addr;
  mapping->len = file_size;
  const auto* base = static_cast<const uint8_t*>(addr);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len < 2 || header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": header length ", header_len, " is not in [2, min(", kMaxHeaderBytes,
        ", file size - 8 = ", file_size - 8, ")]"));
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  Json header;
  try {
    header = Json::parse(header_begin, header_begin + header_len);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not a JSON object"));
  }

  const uint8_t* data_begin = base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  std::map<std::string, Entry, std::less<>> added;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": __metadata__ is not an object"));
      }
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": __metadata__.", k, " is not a string"));
        }
        metadata_.emplace(k, v.get<std::string>());
      }
      continue;
    }
    const std::string where = absl::StrCat(path, ": tensor ", name);
    if (!value.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": entry is not an object"));
    }
    auto dtype_it = value.find("dtype");
    auto shape_it = value.find("shape");
    auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || !dtype_it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": dtype missing or not a string"));
    }
    if (shape_it == value.end() || !shape_it->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shape missing or not an array"));
    }
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": data_offsets must be two non-negative integers"));
    }
    Entry e;
    e.dtype = dtype_it->get<std::string>();
    for (const Json& d : *shape_it) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 62)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": shape holds ", d.dump(), ", not a dimension"));
      }
      e.shape.push_back(d.get<int64_t>());
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                                     ") outside the data section of ",
                                                     data_size, " bytes"));
    }
    const size_t elem = ElementSize(e.dtype);
    const std::optional<uint64_t> n = NumElements(e.shape);
    // Unknown dtypes are kept (Find refuses them) but their size cannot be checked.
    if (elem != 0 && (!n || *n > UINT64_MAX / elem || *n * elem != end - begin)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", end - begin, " bytes for shape [", absl::StrJoin(e.shape, ", "), "] of ",
          e.dtype));
    }
    if (entries_.count(name) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": name appears in more than one file"));
    }
    e.data = data_begin + begin;
    e.bytes = end - begin;
    auto [it, inserted] = added.emplace(name, std::move(e));
    ranges.push_back({begin, end, &it->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensors ", *ranges[i - 1].name,
                                                     " and ", *ranges[i].name, " overlap"));
    }
  }
  entries_.merge(added);
  mappings_.push_back(std::move(mapping));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsDir>> SafetensorsDir::OpenFile(
    const std::string& path) {
  std::unique_ptr<SafetensorsDir> dir(new SafetensorsDir());
  if (absl::Status s = dir->AddFile(path); !s.ok()) return s;
  return dir;
}

absl::StatusOr<std::unique_ptr<SafetensorsDir>> SafetensorsDir::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  }
  std::unique_ptr<SafetensorsDir> out(new SafetensorsDir());
  const fs::path root(dir);

  if (fs::exists(root / kIndexFile, ec)) {
    const std::string index_path = (root / kIndexFile).string();
    absl::StatusOr<std::string> text = ReadSmallFile(index_path);
    if (!text.ok()) return text.status();
    Json index;
    try {
      index = Json::parse(*text);
    } catch (const Json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": not valid JSON: ", e.what()));
    }
    if (!index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map missing or not an object"));
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string() || !IsShardName(file.get<std::string>())) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": weight_map.", name, " = ", file.dump(),
            " is not a .safetensors file name in the same directory"));
      }
      shards.insert(file.get<std::string>());
    }
    if (shards.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is empty"));
    }
    for (const std::string& shard : shards) {
      if (absl::Status s = out->AddFile((root / shard).string()); !s.ok()) return s;
    }
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!out->Contains(name)) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor ", name,
                                                       " is not in ", file.get<std::string>()));
      }
    }
    return out;
  }

  std::vector<std::string> files;
  if (fs::exists(root / kSingleFile, ec)) {
    files.push_back((root / kSingleFile).string());
  } else {
    for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
      if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") {
        files.push_back(e.path().string());
      }
    }
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat(dir, ": no *.safetensors file"));
  }
  for (const std::string& f : files) {
    if (absl::Status s = out->AddFile(f); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<TensorView> SafetensorsDir::Find(absl::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", name, " not in the checkpoint"));
  }
  const Entry& e = it->second;
  std::optional<kernels::DType> dtype = ReadableDType(e.dtype);
  if (!dtype) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", name, " has dtype ", e.dtype, "; SlimKV reads F32, F16 and BF16"));
  }
  TensorView v;
  v.name = std::string(name);
  v.dtype = *dtype;
  v.shape = e.shape;
  v.data = e.data;
  v.bytes = e.bytes;
  return v;
}

bool SafetensorsDir::Contains(absl::string_view name) const {
  return entries_.find(name) != entries_.end();
}

std::vector<std::string> SafetensorsDir::Names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, e] : entries_) names.push_back(name);
  return names;
}

const char* SafetensorsDTypeName(kernels::DType t) {
  switch (t) {
    case kernels::DType::kF32: return "F32";
    case kernels::DType::kF16: return "F16";
    case kernels::DType::kBF16: return "BF16";
  }
  return "?";
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor name ", t.name, " repeats"));
    }
    const std::optional<uint64_t> n = NumElements(t.shape);
    if (!n || *n * kernels::DTypeSize(t.dtype) != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", t.name, ": ", t.data.size(),
                                                     " bytes for shape [",
                                                     absl::StrJoin(t.shape, ", "), "]"));
    }
    header[t.name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  // The data section starts 8-byte aligned, as the reference writer does.
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');

  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  std::vector<absl::string_view> parts = {prefix, text};
  for (const TensorToWrite& t : tensors) parts.push_back(t.data);
  return WriteParts(path, parts);
}

absl::Status WriteSafetensorsIndex(const std::string& dir,
                                   const std::map<std::string, std::string>& weight_map) {
  const Json index = {{"weight_map", weight_map}};
  const std::string text = index.dump(2);
  return WriteParts((std::filesystem::path(dir) / kIndexFile).string(), {text});
}

}  // namespace slimkv::cache
