// model_codec_bench: what registering a model with weights costs — the time to derive every
// layer's matrices (κ, W_KV, the joint SVD, pinv, the projected basis; cold FactorStore, as on
// first registration) and the process's resident memory after Build and after each mode's
// first page — on a synthetic Llama-geometry model.
//
//   model_codec_bench [--d N] [--heads N] [--head_dim N] [--layers N] [--eager]
//
// Defaults: Llama-2-7B's layer (d = 4096, 32 heads × 128), 2 layers. --eager also builds the
// codec without a FactorStore, which keeps every derived matrix resident (what every codec did
// before they were read back on first use; W_K, W_V are still read on first use). Resident
// memory is VmRSS from /proc/self/status,
// split into anonymous (heap: the codec's matrices) and file-backed (the mapped checkpoint).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cache/model/factor_store.h"
#include "cache/model/model_config.h"
#include "tests/support/model_test_util.h"
#include "cache/model/safetensors.h"
#include "cache/model/model_codec.h"
#include "cache/codec/page_codec.h"
#include "tests/support/synthetic_model.h"

namespace slimkv::cache {
namespace {

struct Rss {
  double anon_mib = 0, file_mib = 0;
};

Rss ReadRss() {
  Rss r;
  std::ifstream in("/proc/self/status");
  std::string key;
  double kib;
  std::string unit;
  while (in >> key) {
    if (key == "RssAnon:" && in >> kib >> unit) r.anon_mib = kib / 1024;
    else if (key == "RssFile:" && in >> kib >> unit) r.file_mib = kib / 1024;
    else in.ignore(1 << 20, '\n');
  }
  return r;
}

void Report(const char* what, const ModelCodec* codec) {
  const Rss r = ReadRss();
  std::printf("  %-34s RSS anon %8.1f MiB  file %8.1f MiB", what, r.anon_mib, r.file_mib);
  if (codec != nullptr) {
    std::printf("  matrices resident %8.1f MiB", codec->ResidentMatrixBytes() / 1048576.0);
  }
  std::printf("\n");
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int Main(int argc, char** argv) {
  client::SyntheticModel m;
  m.arch = "llama";
  m.hidden_size = 4096;
  m.num_heads = m.num_kv_heads = 32;
  m.head_dim = 128;
  m.num_layers = 2;
  bool eager = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() { return static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10)); };
    if (a == "--d" && i + 1 < argc) m.hidden_size = next();
    else if (a == "--heads" && i + 1 < argc) m.num_heads = m.num_kv_heads = next();
    else if (a == "--head_dim" && i + 1 < argc) m.head_dim = next();
    else if (a == "--layers" && i + 1 < argc) m.num_layers = next();
    else if (a == "--eager") eager = true;
    else {
      std::fprintf(stderr, "usage: model_codec_bench [--d N] [--heads N] [--head_dim N] [--layers N] [--eager]\n");
      return 2;
    }
  }
  testing_util::ScratchDir model_dir, factor_dir;
  if (absl::Status s = m.Write(model_dir.path()); !s.ok()) {
    std::fprintf(stderr, "write model: %s\n", s.ToString().c_str());
    return 1;
  }
  absl::StatusOr<ModelConfig> config = ParseModelConfig(m.ConfigJson());
  absl::StatusOr<std::unique_ptr<SafetensorsDir>> opened = SafetensorsDir::Open(model_dir.path());
  if (!config.ok() || !opened.ok()) {
    std::fprintf(stderr, "load model: %s %s\n", config.status().ToString().c_str(),
                 opened.status().ToString().c_str());
    return 1;
  }
  const std::shared_ptr<const SafetensorsDir> weights = *std::move(opened);
  absl::StatusOr<Fingerprint> fp = ModelFingerprint(*config, weights.get());
  if (!fp.ok()) return 1;
  std::printf("synthetic llama: %u layers, d = %u, %u heads x %u (e = %u)\n", m.num_layers,
              m.hidden_size, m.num_heads, m.head_dim, m.e());
  Report("checkpoint opened", nullptr);

  const FactorStore store(factor_dir.path());
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<const ModelCodec>> codec =
      ModelCodec::Build(*config, weights, *fp, &store, {}, nullptr);
  if (!codec.ok()) {
    std::fprintf(stderr, "build: %s\n", codec.status().ToString().c_str());
    return 1;
  }
  const double t_build = Seconds(start);
  std::printf("  Build, cold FactorStore: %.1f s, %.1f s per layer\n", t_build, t_build / m.num_layers);
  Report("after Build (FactorStore)", codec->get());

  // One 16-token page from K,V consistent with the weights, stored in each mode in turn.
  constexpr uint32_t kTokens = 16;
  std::vector<int32_t> positions(kTokens);
  for (uint32_t t = 0; t < kTokens; ++t) positions[t] = static_cast<int32_t>(t);
  std::vector<float> in;
  std::mt19937 rng(1);
  std::normal_distribution<double> normal(0, 1);
  for (uint32_t l = 0; l < m.num_layers; ++l) {
    std::vector<double> x(size_t{kTokens} * m.hidden_size);
    for (double& v : x) v = normal(rng);
    const client::SyntheticModel::Kv kv = m.EngineKvFromX(l, x, positions);
    in.insert(in.end(), kv.k.begin(), kv.k.end());
    in.insert(in.end(), kv.v.begin(), kv.v.end());
  }
  for (Mode mode : {Mode::kFull, Mode::kSlim, Mode::kXcache, Mode::kLatent}) {
    Page page;
    page.dtype = kernels::DType::kF32;
    page.geometry = {kTokens, m.num_layers, m.num_kv_heads, m.head_dim, m.head_dim};
    EncodeOptions o{.mode = mode, .input = PageInput::kKv, .tolerance = 1e-2, .verify = true};
    start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<LayerOutcome>> out =
        EncodePage(**codec, o, reinterpret_cast<const uint8_t*>(in.data()), 0, &page);
    if (!out.ok()) {
      std::fprintf(stderr, "encode %s: %s\n", ModeName(mode), out.status().ToString().c_str());
      return 1;
    }
    const std::string what = std::string("after the first ") + ModeName(mode) + " page (" +
                             std::to_string(static_cast<int>(Seconds(start) * 1000)) + " ms)";
    Report(what.c_str(), codec->get());
  }
  codec->reset();
  Report("codec released", nullptr);

  if (eager) {
    start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<const ModelCodec>> all =
        ModelCodec::Build(*config, weights, *fp, nullptr, {}, nullptr);
    if (!all.ok()) return 1;
    std::printf("  Build, no FactorStore: %.1f s\n", Seconds(start));
    Report("after Build (no FactorStore)", all->get());
  }
  return 0;
}

}  // namespace
}  // namespace slimkv::cache

int main(int argc, char** argv) { return slimkv::cache::Main(argc, argv); }
