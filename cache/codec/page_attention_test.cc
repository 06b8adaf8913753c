// Attention over stored pages (cache/codec/page_attention.h): every mode each synthetic geometry
// takes, unquantized (fp32, bf16) and quantized (int8, fp8), over three pages at their prefix
// positions, and a sequence mixing modes — against the float64 reference attention
// (kernels/attention_ref.h) on the K and V that DecodeLayer reconstructs from the same pages.
// Tolerances as the kernels' (kernels/attention_test.cc): o 1e-5 relative Frobenius, lse 5e-6
// relative past 1. Then the GPU dispatch and the GPU tier (cache/codec/gpu_tier.h): without a usable
// GPU every run falls back with the same bits; with one (else GTEST_SKIP), the runs the GPU
// takes meet the same tolerances and pages stay resident under the budget. Last, Get's decode
// dispatch (cache/codec/decode_dispatch.h), the same way.
#include "cache/codec/page_attention.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "cache/codec/decode_dispatch.h"
#include "tests/support/synthetic_codec.h"
#include "tests/support/geometries.h"
#include "cache/codec/page_codec.h"
#include "gtest/gtest.h"
#include "kernels/attention_ref.h"
#include "kernels/gpu.h"

namespace slimkv::cache {
namespace {

using client::SyntheticModel;
using kernels::DType;

constexpr uint32_t kTokens = 16;
constexpr uint32_t kPages = 3;
constexpr uint32_t kLayer = 1;

std::vector<float> Random(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(normal(rng));
  return v;
}

struct Geometry {
  const char* name;
  SyntheticModel model;
};

std::vector<Geometry> Geometries() {
  std::vector<Geometry> out;
  for (const char* name : {"mha_square", "gqa_d2e_q8", "wide_t5", "qwen2_biases", "phi3_partial",
                           "deepseek_mla", "mha2mla_q8"}) {
    out.push_back({name, client::TestGeometry(name)});
  }
  return out;
}

class PageAttentionTest : public ::testing::Test {
 protected:
  void Use(const SyntheticModel& m) {
    loaded_ = testing_util::LoadSynthetic(m);
    input_ = loaded_->codec->is_mla() ? PageInput::kLatent : PageInput::kX;
  }
  const ModelConfig& config() const { return loaded_->config; }

  // Page `index` of a prefix, from random engine input, stored as `mode` + `quant`; its key
  // names the index, mode, quantizer and dtype.
  std::shared_ptr<const Page> MakePage(uint32_t index, Mode mode, Quant quant, DType dtype) {
    const ModelCodec& codec = *loaded_->codec;
    auto page = std::make_shared<Page>();
    page->key = Sha256({std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&index), 4),
                        {reinterpret_cast<const uint8_t*>(&mode), 1},
                        {reinterpret_cast<const uint8_t*>(&quant), 1},
                        {reinterpret_cast<const uint8_t*>(&dtype), 1}});
    page->dtype = dtype;
    const ModelConfig& c = config();
    page->geometry = {kTokens, c.num_layers, c.num_kv_heads, c.k_head_dim, c.v_head_dim};
    const uint64_t n = LayerInputBytes(codec, input_, DType::kF32, kTokens) / 4 * c.num_layers;
    const std::vector<float> values = Random(n, 100 + index);
    std::vector<uint8_t> in(n * kernels::DTypeSize(dtype));
    kernels::ConvertDType(values.data(), DType::kF32, in.data(), dtype, n);
    EncodeOptions o{.mode = mode, .quant = quant, .input = input_, .tolerance = 1.0};
    auto outcomes = EncodePage(codec, o, in.data(), index, page.get());
    EXPECT_TRUE(outcomes.ok()) << outcomes.status();
    return page;
  }

  // Checks AttendLayer on `pages` against the reference on their decoded K, V.
  void Check(const std::vector<std::shared_ptr<const Page>>& pages, AttendCalls* calls,
             GpuTier* gpu = nullptr) {
    const ModelConfig& c = config();
    const int h_q = static_cast<int>(c.num_q_heads);
    const std::vector<float> q = Random(size_t{c.num_q_heads} * c.k_head_dim, 7, 2.0);
    std::vector<float> o(size_t{c.num_q_heads} * c.v_head_dim), lse(h_q);
    const absl::Status s = AttendLayer(*loaded_->codec, pages, kLayer, q.data(),
                                       {o.data(), lse.data()}, calls, gpu);
    ASSERT_TRUE(s.ok()) << s;

    const uint64_t nk = uint64_t{kTokens} * c.num_kv_heads * c.k_head_dim;
    const uint64_t nv = uint64_t{kTokens} * c.num_kv_heads * c.v_head_dim;
    std::vector<double> k_all, v_all;
    for (size_t i = 0; i < pages.size(); ++i) {
      std::vector<float> k(nk), v(nv);
      ASSERT_TRUE(DecodeLayer(*loaded_->codec, *pages[i], kLayer, static_cast<uint32_t>(i),
                              DType::kF32, k.data(), v.data())
                      .ok());
      k_all.insert(k_all.end(), k.begin(), k.end());
      v_all.insert(v_all.end(), v.begin(), v.end());
    }
    const std::vector<double> qd(q.begin(), q.end());
    std::vector<double> o_ref(o.size()), lse_ref(h_q);
    ASSERT_TRUE(kernels::AttendRef({static_cast<int>(c.num_kv_heads), static_cast<int>(c.k_head_dim),
                                    static_cast<int>(c.v_head_dim)},
                                   int64_t{kTokens} * static_cast<int64_t>(pages.size()),
                                   k_all.data(), v_all.data(), qd.data(), AttentionParamsOf(c),
                                   o_ref.data(), lse_ref.data())
                    .ok());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      ASSERT_TRUE(std::isfinite(o[i]));
      diff += (o[i] - o_ref[i]) * (o[i] - o_ref[i]);
      norm += o_ref[i] * o_ref[i];
    }
    EXPECT_LE(std::sqrt(diff / norm), 1e-5);
    for (int i = 0; i < h_q; ++i) {
      EXPECT_LE(std::abs(lse[i] - lse_ref[i]), 5e-6 * std::max(1.0, std::abs(lse_ref[i])));
    }
  }

  // Check on three pages of every geometry × mode it takes × stored dtype and quantizer, with
  // `gpu`; `expect` checks the one run each makes.
  void CheckEveryModeAndQuantizer(
      GpuTier* gpu, const std::function<void(const ModelCodec&, Mode, const AttendRun&)>& expect) {
    for (const Geometry& g : Geometries()) {
      SCOPED_TRACE(g.name);
      Use(g.model);
      for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
        if (!loaded_->codec->Supports(mode, input_).ok()) continue;
        for (auto [quant, dtype] : {std::pair{Quant::kNone, DType::kF32},
                                    std::pair{Quant::kNone, DType::kBF16},
                                    std::pair{Quant::kInt8, DType::kBF16},
                                    std::pair{Quant::kFp8, DType::kF16},
                                    std::pair{Quant::kInt4, DType::kBF16}}) {
          SCOPED_TRACE(absl::StrCat(ModeName(mode), " ", QuantName(quant), " ",
                                    kernels::DTypeName(dtype)));
          std::vector<std::shared_ptr<const Page>> pages;
          for (uint32_t i = 0; i < kPages; ++i) pages.push_back(MakePage(i, mode, quant, dtype));
          const Mode stored = pages[0]->layers[kLayer].mode;
          EXPECT_EQ(stored, mode) << "tolerance 1: nothing falls back";
          AttendCalls calls;
          Check(pages, &calls, gpu);
          ASSERT_EQ(calls.runs.size(), 1u) << "one kernel call per run";
          EXPECT_EQ(calls.runs[0].mode, stored);
          EXPECT_EQ(calls.runs[0].pages, kPages);
          expect(*loaded_->codec, mode, calls.runs[0]);
        }
      }
    }
  }

  // Five pages of a Llama-like model: full, slim, slim int8, xcache, full.
  std::vector<std::shared_ptr<const Page>> MixedPages() {
    Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
    return {MakePage(0, Mode::kFull, Quant::kNone, DType::kBF16),
            MakePage(1, Mode::kSlim, Quant::kNone, DType::kBF16),
            MakePage(2, Mode::kSlim, Quant::kInt8, DType::kBF16),
            MakePage(3, Mode::kXcache, Quant::kNone, DType::kBF16),
            MakePage(4, Mode::kFull, Quant::kNone, DType::kBF16)};
  }

  std::unique_ptr<testing_util::LoadedModel> loaded_;
  PageInput input_ = PageInput::kX;
};

TEST_F(PageAttentionTest, EveryModeAndQuantizerMatchesTheReferenceOnDecodedPages) {
  CheckEveryModeAndQuantizer(nullptr, [](const ModelCodec&, Mode, const AttendRun& run) {
    EXPECT_EQ(run.device, KernelDevice::kCpu);
  });
}

TEST_F(PageAttentionTest, MixedModesAreAttendedPerRunAndMerged) {
  const std::vector<std::shared_ptr<const Page>> pages = MixedPages();
  AttendCalls calls;
  Check(pages, &calls);
  ASSERT_EQ(calls.runs.size(), 4u);
  EXPECT_EQ(calls.runs[0].mode, Mode::kFull);
  EXPECT_EQ(calls.runs[1].mode, Mode::kSlim);
  EXPECT_EQ(calls.runs[1].pages, 2u) << "one run of two pages";
  EXPECT_EQ(calls.runs[2].mode, Mode::kXcache);
  EXPECT_EQ(calls.runs[3].mode, Mode::kFull);

}

// The slim run mixes a bf16 page with an int8 one (float32 once dequantized on the device).
TEST_F(PageAttentionTest, GpuRunsMixedModesAndDtypesPerRun) {
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  const std::vector<std::shared_ptr<const Page>> pages = MixedPages();
  GpuTier tier(64 << 20);
  AttendCalls gpu_calls;
  Check(pages, &gpu_calls, &tier);
  ASSERT_EQ(gpu_calls.runs.size(), 4u);
  for (size_t i : {0, 1, 3}) {
    EXPECT_EQ(gpu_calls.runs[i].device, KernelDevice::kGpu)
        << i << " " << GpuFallbackName(gpu_calls.runs[i].fallback);
  }
  EXPECT_EQ(gpu_calls.runs[2].fallback, GpuFallback::kUnsupported);
}

TEST_F(PageAttentionTest, NoPagesBadLayerAndCorruptPages) {
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const ModelConfig& c = config();
  const std::vector<float> q = Random(size_t{c.num_q_heads} * c.k_head_dim, 3);
  std::vector<float> o(size_t{c.num_q_heads} * c.v_head_dim, 7.0f), lse(c.num_q_heads, 7.0f);
  ASSERT_TRUE(AttendLayer(*loaded_->codec, {}, 0, q.data(), {o.data(), lse.data()}).ok());
  for (float x : o) EXPECT_EQ(x, 0.0f);
  for (float x : lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());

  std::fill(o.begin(), o.end(), 7.0f);
  std::vector<std::shared_ptr<const Page>> pages = {
      MakePage(0, Mode::kSlim, Quant::kNone, DType::kBF16)};
  const absl::Status bad_layer =
      AttendLayer(*loaded_->codec, pages, c.num_layers, q.data(), {o.data(), lse.data()});
  EXPECT_EQ(bad_layer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_layer.message().find("layer"), std::string::npos);
  auto corrupt = std::make_shared<Page>(*pages[0]);
  corrupt->payload[corrupt->LayerOffset(kLayer) + 3] ^= 0x40;
  pages.push_back(corrupt);
  EXPECT_EQ(AttendLayer(*loaded_->codec, pages, kLayer, q.data(), {o.data(), lse.data()}).code(),
            absl::StatusCode::kDataLoss);
  for (float x : o) EXPECT_EQ(x, 7.0f) << "nothing written on error";
}

TEST_F(PageAttentionTest, WithoutAGpuEveryRunFallsBackWithTheSameBits) {
  if (kernels::gpu::Device().usable) GTEST_SKIP() << "a GPU is usable here";
  GpuTier tier(64 << 20);
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    Use(g.model);
    std::vector<std::shared_ptr<const Page>> pages;
    uint32_t index = 0;
    for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
      if (!loaded_->codec->Supports(mode, input_).ok()) continue;
      pages.push_back(MakePage(index++, mode, Quant::kNone, DType::kBF16));
      pages.push_back(MakePage(index++, mode, Quant::kInt8, DType::kBF16));
    }
    const ModelConfig& c = config();
    const std::vector<float> q = Random(size_t{c.num_q_heads} * c.k_head_dim, 5, 2.0);
    const size_t no = size_t{c.num_q_heads} * c.v_head_dim;
    std::vector<float> o_cpu(no), lse_cpu(c.num_q_heads), o(no), lse(c.num_q_heads);
    AttendCalls cpu_calls, calls;
    ASSERT_TRUE(AttendLayer(*loaded_->codec, pages, kLayer, q.data(),
                            {o_cpu.data(), lse_cpu.data()}, &cpu_calls)
                    .ok());
    ASSERT_TRUE(
        AttendLayer(*loaded_->codec, pages, kLayer, q.data(), {o.data(), lse.data()}, &calls, &tier)
            .ok());
    EXPECT_EQ(std::memcmp(o.data(), o_cpu.data(), no * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(lse.data(), lse_cpu.data(), lse.size() * sizeof(float)), 0);
    ASSERT_EQ(calls.runs.size(), cpu_calls.runs.size());
    ASSERT_FALSE(calls.runs.empty());
    for (const std::vector<AttendRun>* runs : {&calls.runs, &cpu_calls.runs}) {
      for (const AttendRun& r : *runs) {
        EXPECT_EQ(r.device, KernelDevice::kCpu);
        EXPECT_EQ(r.fallback, GpuFallback::kNoGpu) << GpuFallbackName(r.fallback);
      }
    }
    EXPECT_EQ(tier.stats().used_bytes, 0u);
    EXPECT_EQ(tier.stats().uploads, 0u);
  }
}

TEST_F(PageAttentionTest, GpuTierRefusesAPageOverItsBudgetOrFailingItsChecksum) {
  // Checked before any device call, so this holds with or without a GPU.
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const std::shared_ptr<const Page> page = MakePage(0, Mode::kFull, Quant::kNone, DType::kBF16);
  GpuTier small(GpuTier::DeviceBytes(*page) - 1);
  auto over = small.ReadLayer(*loaded_->codec, page, kLayer, 0);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  auto corrupt = std::make_shared<Page>(*page);
  corrupt->payload[corrupt->LayerOffset(0) + 1] ^= 0x10;  // a layer other than the one read
  GpuTier tier(64 << 20);
  auto bad = tier.ReadLayer(*loaded_->codec, corrupt, kLayer, 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_EQ(tier.stats().uploads, 0u);
}

// The GPU takes full, slim and native latent runs and meets the CPU's tolerances; xcache and
// projected latent fall back as unsupported.
TEST_F(PageAttentionTest, GpuRunsEveryModeItSupportsWithinTheReferenceTolerances) {
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  ASSERT_TRUE(kernels::gpu::SelfTest().ok()) << kernels::gpu::SelfTest();
  GpuTier tier(256 << 20);
  CheckEveryModeAndQuantizer(&tier, [](const ModelCodec& codec, Mode mode, const AttendRun& run) {
    const bool on_gpu = mode == Mode::kFull || mode == Mode::kSlim ||
                        (mode == Mode::kLatent && codec.is_mla());
    if (on_gpu) {
      EXPECT_EQ(run.device, KernelDevice::kGpu) << GpuFallbackName(run.fallback);
    } else {
      EXPECT_EQ(run.fallback, GpuFallback::kUnsupported) << GpuFallbackName(run.fallback);
    }
  });
  EXPECT_GT(tier.stats().uploads, 0u);
}

TEST_F(PageAttentionTest, GpuTierKeepsPagesResidentAndEvictsTheLeastRecentlyUsed) {
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const std::shared_ptr<const Page> a = MakePage(0, Mode::kFull, Quant::kNone, DType::kBF16);
  const std::shared_ptr<const Page> b = MakePage(1, Mode::kFull, Quant::kNone, DType::kBF16);
  const std::shared_ptr<const Page> c = MakePage(2, Mode::kFull, Quant::kNone, DType::kBF16);
  const uint64_t page_bytes = GpuTier::DeviceBytes(*a);
  GpuTier tier(page_bytes * 2 + page_bytes / 2);
  const ModelCodec& codec = *loaded_->codec;
  ASSERT_TRUE(tier.ReadLayer(codec, a, kLayer, 0).ok());
  ASSERT_TRUE(tier.ReadLayer(codec, b, kLayer, 16).ok());
  auto again = tier.ReadLayer(codec, a, 0, 0);  // another layer of a resident page
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(tier.stats().uploads, 2u) << "a is reused";
  // The device copy holds the stored bytes of the layer read.
  const StoredLayer& l0 = a->layers[0];
  std::vector<uint8_t> back(l0.bytes);
  ASSERT_TRUE(again->payload->Download(back.data(), back.size()).ok());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), a->payload.begin()));

  ASSERT_TRUE(tier.ReadLayer(codec, c, kLayer, 32).ok());  // evicts b, the coldest
  GpuTier::Stats s = tier.stats();
  EXPECT_EQ(s.uploads, 3u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.used_bytes, 2 * page_bytes);
  EXPECT_LE(s.used_bytes, s.budget_bytes);
  ASSERT_TRUE(tier.ReadLayer(codec, a, kLayer, 0).ok());
  EXPECT_EQ(tier.stats().uploads, 3u) << "a stayed resident";
  ASSERT_TRUE(tier.ReadLayer(codec, b, kLayer, 16).ok());
  EXPECT_EQ(tier.stats().uploads, 4u) << "b was evicted";

  // The same key put again as a new page object is not trusted by key.
  auto a2 = std::make_shared<const Page>(*a);
  ASSERT_TRUE(tier.ReadLayer(codec, a2, kLayer, 0).ok());
  EXPECT_EQ(tier.stats().uploads, 5u);
}

// A page whose layers differ in quantizer (a layer that fell back to full, unquantized): each
// layer starts 256-byte aligned on the device whatever its payload offset (an int4 layer's bytes
// need not be a multiple of the next layer's element size).
TEST_F(PageAttentionTest, GpuAttendsAnUnquantizedLayerAfterAQuantizedOne) {
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const std::shared_ptr<const Page> int4 = MakePage(0, Mode::kFull, Quant::kInt4, DType::kF32);
  const std::shared_ptr<const Page> plain = MakePage(0, Mode::kFull, Quant::kNone, DType::kF32);
  auto mixed = std::make_shared<Page>(*plain);
  mixed->quant = Quant::kInt4;
  mixed->payload.clear();
  for (uint32_t l = 0; l < mixed->geometry.num_layers; ++l) {
    const Page& from = l < kLayer ? *int4 : *plain;
    mixed->layers[l] = from.layers[l];
    const uint8_t* bytes = from.payload.data() + from.LayerOffset(l);
    mixed->payload.insert(mixed->payload.end(), bytes, bytes + from.layers[l].bytes);
  }
  EXPECT_EQ(GpuTier::DeviceBytes(*mixed) % 256, 0u);
  EXPECT_GE(GpuTier::DeviceBytes(*mixed), mixed->payload.size());
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  GpuTier tier(64 << 20);
  auto dev = tier.ReadLayer(*loaded_->codec, mixed, kLayer, 0);
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(dev->page.data) % 256, 0u);
  std::vector<uint8_t> back(mixed->layers[kLayer].bytes);
  const auto offset = static_cast<size_t>(static_cast<const uint8_t*>(dev->page.data) -
                                          static_cast<const uint8_t*>(dev->payload->data()));
  ASSERT_TRUE(dev->payload->Download(back.data(), back.size(), offset).ok());
  EXPECT_TRUE(std::equal(back.begin(), back.end(),
                         mixed->payload.begin() + mixed->LayerOffset(kLayer)));
  AttendCalls calls;
  Check({mixed}, &calls, &tier);
  ASSERT_EQ(calls.runs.size(), 1u);
  EXPECT_EQ(calls.runs[0].device, KernelDevice::kGpu) << GpuFallbackName(calls.runs[0].fallback);
}

TEST_F(PageAttentionTest, GpuTierDequantizesLikeTheCpuAndGrowsSlimLayers) {
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  Use(SyntheticModel::Small("llama", 64, 4, 4, 16));
  const ModelCodec& codec = *loaded_->codec;
  GpuTier tier(64 << 20);
  for (Quant quant : {Quant::kInt8, Quant::kFp8, Quant::kInt4}) {
    SCOPED_TRACE(QuantName(quant));
    const std::shared_ptr<const Page> page = MakePage(0, Mode::kSlim, quant, DType::kBF16);
    absl::StatusOr<StoredLayerValues> cpu = ReadStoredLayer(codec, *page, kLayer);
    ASSERT_TRUE(cpu.ok());
    auto dev = tier.ReadLayer(codec, page, kLayer, 0);
    ASSERT_TRUE(dev.ok()) << dev.status();
    EXPECT_EQ(dev->page.dtype, DType::kF32);
    std::vector<float> back(cpu->owned.size());
    ASSERT_EQ(dev->scratch.bytes(), back.size() * sizeof(float));
    ASSERT_TRUE(dev->scratch.Download(back.data(), dev->scratch.bytes()).ok());
    EXPECT_EQ(std::memcmp(back.data(), cpu->owned.data(), dev->scratch.bytes()), 0)
        << "bit-identical to QuantDecode";
  }
  auto kv = codec.kv(kLayer, kernels::CodecMode::kSlim);
  ASSERT_TRUE(kv.ok());
  const Digest model{};
  auto short_layer = tier.SlimLayer(model, kLayer, *kv, 48);
  ASSERT_TRUE(short_layer.ok()) << short_layer.status();
  auto same = tier.SlimLayer(model, kLayer, *kv, 64);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->get(), short_layer->get()) << "64 is covered by the power of two above 48";
  auto longer = tier.SlimLayer(model, kLayer, *kv, 65);
  ASSERT_TRUE(longer.ok());
  EXPECT_NE(longer->get(), short_layer->get()) << "re-made to cover position 64";
  EXPECT_EQ(tier.SlimLayer(model, kLayer, *kv, 10)->get(), longer->get());
}

}  // namespace
}  // namespace slimkv::cache

namespace slimkv::cache {
namespace {

// Get's decode dispatch (cache/codec/decode_dispatch.h): the K and V bytes of one layer, by
// DecodeLayerDispatched with a GPU tier, and where it ran.
struct Decoded {
  std::vector<uint8_t> k, v;
  DecodeWhere where;
};
Decoded DecodeWith(const ModelCodec& codec, const std::shared_ptr<const Page>& page,
                   uint32_t index, DType out, GpuTier* tier) {
  Decoded d;
  d.k.resize(page->geometry.TensorElems(Role::kK) * kernels::DTypeSize(out));
  d.v.resize(page->geometry.TensorElems(Role::kV) * kernels::DTypeSize(out));
  const absl::Status s = DecodeLayerDispatched(codec, page, kLayer, index, out, d.k.data(),
                                               d.v.data(), tier, &d.where);
  EXPECT_TRUE(s.ok()) << s;
  return d;
}

std::vector<double> Widen(const std::vector<uint8_t>& bytes, DType t) {
  const size_t n = bytes.size() / kernels::DTypeSize(t);
  std::vector<float> f(n);
  kernels::ConvertDType(bytes.data(), t, f.data(), DType::kF32, n);
  return std::vector<double>(f.begin(), f.end());
}

double RelFro(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

TEST_F(PageAttentionTest, WithoutAGpuGetDecodesOnTheCpuWithTheSameBytes) {
  if (kernels::gpu::Device().usable) GTEST_SKIP() << "a GPU is usable here";
  GpuTier tier(64 << 20);
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    Use(g.model);
    for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
      if (!loaded_->codec->Supports(mode, input_).ok()) continue;
      const std::shared_ptr<const Page> page = MakePage(2, mode, Quant::kInt8, DType::kBF16);
      std::vector<uint8_t> k(page->geometry.TensorElems(Role::kK) * 2);
      std::vector<uint8_t> v(page->geometry.TensorElems(Role::kV) * 2);
      ASSERT_TRUE(DecodeLayer(*loaded_->codec, *page, kLayer, 2, DType::kBF16, k.data(), v.data())
                      .ok());
      const Decoded d = DecodeWith(*loaded_->codec, page, 2, DType::kBF16, &tier);
      EXPECT_EQ(d.k, k);
      EXPECT_EQ(d.v, v);
      EXPECT_EQ(d.where.device, KernelDevice::kCpu);
      EXPECT_EQ(d.where.fallback, GpuFallback::kNoGpu) << GpuFallbackName(d.where.fallback);
    }
  }
  EXPECT_EQ(tier.stats().uploads, 0u);
}

// With a GPU: slim and native latent layers (unquantized and quantized, at a later page of the
// prefix) decode on the GPU to DecodeLayer's values within float32 rounding; full and xcache
// stay on the CPU as unsupported.
TEST_F(PageAttentionTest, GpuGetDecodesSlimAndLatentLikeTheCpu) {
  if (!kernels::gpu::Device().usable) {
    GTEST_SKIP() << "no usable GPU: " << kernels::gpu::Device().reason;
  }
  ASSERT_TRUE(kernels::gpu::SelfTest().ok()) << kernels::gpu::SelfTest();
  GpuTier tier(256 << 20);
  for (const Geometry& g : Geometries()) {
    SCOPED_TRACE(g.name);
    Use(g.model);
    for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
      if (!loaded_->codec->Supports(mode, input_).ok()) continue;
      for (Quant quant : {Quant::kNone, Quant::kFp8}) {
        SCOPED_TRACE(absl::StrCat(ModeName(mode), " ", QuantName(quant)));
        const std::shared_ptr<const Page> page = MakePage(2, mode, quant, DType::kBF16);
        std::vector<uint8_t> k(page->geometry.TensorElems(Role::kK) * 4);
        std::vector<uint8_t> v(page->geometry.TensorElems(Role::kV) * 4);
        ASSERT_TRUE(
            DecodeLayer(*loaded_->codec, *page, kLayer, 2, DType::kF32, k.data(), v.data()).ok());
        const Decoded d = DecodeWith(*loaded_->codec, page, 2, DType::kF32, &tier);
        const Mode stored = page->layers[kLayer].mode;
        const bool on_gpu = stored == Mode::kSlim ||
                            (stored == Mode::kLatent && loaded_->codec->is_mla());
        EXPECT_EQ(d.where.device, on_gpu ? KernelDevice::kGpu : KernelDevice::kCpu)
            << GpuFallbackName(d.where.fallback) << " " << d.where.gpu_error;
        EXPECT_LE(RelFro(Widen(d.k, DType::kF32), Widen(k, DType::kF32)), 1e-5);
        EXPECT_LE(RelFro(Widen(d.v, DType::kF32), Widen(v, DType::kF32)), 1e-5);
      }
    }
  }
}

}  // namespace
}  // namespace slimkv::cache
