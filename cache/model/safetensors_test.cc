#include "cache/model/safetensors.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/support/model_test_util.h"
#include "gtest/gtest.h"

namespace slimkv::cache {
namespace {

using kernels::DType;
using testing_util::Ramp;
using testing_util::ScratchDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file with the given header text (length prefix computed) and `data_bytes` zero bytes.
std::string RawSafetensors(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

TEST(SafetensorsTest, SingleFileRoundTrip) {
  ScratchDir dir;
  std::vector<TensorToWrite> tensors = {Ramp("a.weight", {3, 5}, DType::kF32, 1),
                                        Ramp("b.weight", {7}, DType::kF16, 2),
                                        Ramp("c.weight", {2, 3, 4}, DType::kBF16, 0.5)};
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), tensors, {{"format", "pt"}}).ok());

  // Real format: LE header length, and the data section 8-byte aligned.
  const std::string raw = ReadAll(dir.File("model.safetensors"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  EXPECT_EQ(raw[8], '{');

  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ((*st)->Names(), (std::vector<std::string>{"a.weight", "b.weight", "c.weight"}));
  EXPECT_EQ((*st)->metadata().at("format"), "pt");
  for (const TensorToWrite& t : tensors) {
    absl::StatusOr<TensorView> v = (*st)->Find(t.name);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->name, t.name);
    EXPECT_EQ(v->dtype, t.dtype);
    EXPECT_EQ(v->shape, t.shape);
    ASSERT_EQ(v->bytes, t.data.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v->data), v->bytes), t.data);
  }
  EXPECT_EQ((*st)->Find("a.weight")->num_elements(), 15);
  EXPECT_EQ((*st)->Find("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, ShardedWithIndex) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00001-of-00002.safetensors"),
                               {Ramp("layers.0.k", {4, 4}), Ramp("layers.0.v", {4, 4})})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(dir.File("model-00002-of-00002.safetensors"),
                               {Ramp("layers.1.k", {4, 4}, DType::kBF16)})
                  .ok());
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(),
                                    {{"layers.0.k", "model-00001-of-00002.safetensors"},
                                     {"layers.0.v", "model-00001-of-00002.safetensors"},
                                     {"layers.1.k", "model-00002-of-00002.safetensors"}})
                  .ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ((*st)->Names().size(), 3u);
  absl::StatusOr<TensorView> k1 = (*st)->Find("layers.1.k");
  ASSERT_TRUE(k1.ok());
  EXPECT_EQ(k1->dtype, DType::kBF16);
}

TEST(SafetensorsTest, IndexNamingTensorAbsentFromShard) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("s1.safetensors"), {Ramp("x", {2})}).ok());
  ASSERT_TRUE(
      WriteSafetensorsIndex(dir.path(), {{"x", "s1.safetensors"}, {"y", "s1.safetensors"}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("y"), std::string::npos) << st.status();
}

TEST(SafetensorsTest, IndexEscapingTheDirectoryIsRefused) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"x", "../evil.safetensors"}}).ok());
  EXPECT_EQ(SafetensorsDir::Open(dir.path()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, IndexNamingMissingShard) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"x", "gone.safetensors"}}).ok());
  EXPECT_EQ(SafetensorsDir::Open(dir.path()).status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, SameTensorInTwoShards) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("a.safetensors"), {Ramp("x", {2})}).ok());
  ASSERT_TRUE(WriteSafetensors(dir.File("b.safetensors"), {Ramp("x", {2})}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("more than one file"), std::string::npos);
}

TEST(SafetensorsTest, NoSafetensorsIsNotFound) {
  ScratchDir dir;
  WriteRaw(dir.File("config.json"), "{}");
  EXPECT_EQ(SafetensorsDir::Open(dir.path()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SafetensorsDir::Open(dir.File("nonexistent")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, LoneFileWithAnotherName) {
  ScratchDir dir;
  ASSERT_TRUE(WriteSafetensors(dir.File("weights.safetensors"), {Ramp("x", {2})}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE((*st)->Contains("x"));
}

TEST(SafetensorsTest, UnsupportedDTypeNamesTheTensor) {
  ScratchDir dir;
  WriteRaw(dir.File("model.safetensors"),
           RawSafetensors(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                          R"("w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[16,20]}})",
                          20));
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_TRUE(st.ok()) << st.status();
  for (const char* name : {"ids", "w"}) {
    absl::StatusOr<TensorView> v = (*st)->Find(name);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(v.status().message().find(std::string("tensor ") + name), std::string::npos)
        << v.status();
  }
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  ScratchDir dir;
  TensorToWrite bad = Ramp("x", {4});
  bad.data.pop_back();
  EXPECT_EQ(WriteSafetensors(dir.File("a.safetensors"), {bad}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(dir.File("a.safetensors"), {Ramp("x", {1}), Ramp("x", {1})}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(WriteSafetensors(dir.File("no/such/dir.safetensors"), {Ramp("x", {1})}).ok());
}

struct CorruptCase {
  const char* name;
  std::string bytes;  // the whole file
  const char* expect;  // substring of the message
};

class CorruptFileTest : public testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptFileTest, IsInvalidArgument) {
  ScratchDir dir;
  WriteRaw(dir.File("model.safetensors"), GetParam().bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> st = SafetensorsDir::Open(dir.path());
  ASSERT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << st.status();
  EXPECT_NE(st.status().message().find(GetParam().expect), std::string::npos) << st.status();
  EXPECT_NE(st.status().message().find("model.safetensors"), std::string::npos) << st.status();
}

std::string WithHeaderLength(uint64_t n, const std::string& rest) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + rest;
}

std::string TruncatedValidFile() {
  ScratchDir dir;
  EXPECT_TRUE(WriteSafetensors(dir.File("t.safetensors"), {Ramp("x", {64})}).ok());
  std::string bytes = ReadAll(dir.File("t.safetensors"));
  bytes.resize(bytes.size() - 10);
  return bytes;
}

INSTANTIATE_TEST_SUITE_P(
    Headers, CorruptFileTest,
    testing::Values(
        CorruptCase{"Empty", "", "truncated"},
        CorruptCase{"ShortLength", std::string(5, '\0'), "truncated"},
        CorruptCase{"HeaderPastEnd", WithHeaderLength(1000, "{}"), "header length"},
        CorruptCase{"HeaderHuge", WithHeaderLength(uint64_t{1} << 40, "{}"), "header length"},
        CorruptCase{"HeaderNotJson", RawSafetensors("{not json", 0), "not valid JSON"},
        CorruptCase{"HeaderArray", RawSafetensors("[1,2]", 0), "not a JSON object"},
        CorruptCase{"OffsetsPastEnd",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                   8),
                    "outside the data section"},
        CorruptCase{"OffsetsReversed",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                                   8),
                    "outside the data section"},
        CorruptCase{"OffsetsNegative",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                                   8),
                    "data_offsets"},
        CorruptCase{"OffsetsOneNumber",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 8),
                    "data_offsets"},
        CorruptCase{"SizeNotShape",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
                                   16),
                    "16 bytes for shape [3] of F32"},
        CorruptCase{"SizeOverflow",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[4611686018427387904,)"
                                   R"(4611686018427387904],"data_offsets":[0,16]}})",
                                   16),
                    "bytes for shape"},
        CorruptCase{"ShapeNegative",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                                   4),
                    "not a dimension"},
        CorruptCase{"DTypeMissing", RawSafetensors(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 4),
                    "dtype"},
        CorruptCase{"Overlap",
                    RawSafetensors(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   12),
                    "overlap"},
        CorruptCase{"MetadataNotStrings",
                    RawSafetensors(R"({"__metadata__":{"format":1}})", 0), "__metadata__"},
        CorruptCase{"TruncatedData", TruncatedValidFile(), "outside the data section"}),
    [](const testing::TestParamInfo<CorruptCase>& info) { return info.param.name; });

}  // namespace
}  // namespace slimkv::cache
