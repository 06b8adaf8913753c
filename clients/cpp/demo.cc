// slimkv_demo: behaves like an inference engine against a running slimkvd.
//
// It writes a small synthetic model directory (a real config.json and real safetensors with
// k_proj/v_proj weights), registers it, computes the KV pages of several prompts that share a
// system prompt (K = RoPE(x·W_K), V = x·W_V with x a per-token embedding), puts them, then looks
// up a new prompt with the same system prompt, gets the hit pages back and checks them byte for
// byte against what it computed itself. Exit status 0 only if every check holds.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "clients/cpp/slimkv_client.h"
#include "tests/support/synthetic_model.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50551", "slimkvd gRPC address");
ABSL_FLAG(std::string, model_dir, "",
          "Where to write the synthetic model (must be readable by the daemon); default: a "
          "fresh directory under the system temp dir");

namespace slimkv::client {
namespace {

using kernels::DType;

constexpr uint32_t kPageTokens = 16;
const SyntheticModel kModel;  // 4 layers, d = 256, 4 heads × 64
const uint32_t kE = kModel.e(), kHeadDim = kModel.head_dim, kHidden = kModel.hidden_size;

const std::vector<float>& Weights(uint32_t l, int role) {
  static const auto* all = [] {
    auto* w = new std::vector<std::vector<float>>;
    for (uint32_t i = 0; i < 2 * kModel.num_layers; ++i) w->push_back(kModel.Weight(i / 2, i % 2));
    return w;
  }();
  return (*all)[2 * l + role];
}

// The layer input of a token: a deterministic embedding.
std::vector<float> Embedding(uint32_t token, uint32_t l) {
  std::mt19937 rng(token * 2654435761u + l);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kHidden);
  for (float& v : x) v = normal(rng);
  return x;
}

// The engine's KV of one page: per layer K (RoPE'd, half-split pairing) then V, in bf16.
PageData ComputePage(const ModelHandle& m, const std::vector<uint32_t>& tokens, uint32_t page) {
  PageData out;
  out.dtype = DType::kBF16;
  out.bytes.resize(m.PageElems() * 2);
  std::vector<float> k(kE), v(kE);
  for (uint32_t l = 0; l < kModel.num_layers; ++l) {
    auto* kd = reinterpret_cast<uint16_t*>(out.bytes.data() + m.TensorOffset(l, v1::TENSOR_ROLE_K, DType::kBF16));
    auto* vd = reinterpret_cast<uint16_t*>(out.bytes.data() + m.TensorOffset(l, v1::TENSOR_ROLE_V, DType::kBF16));
    for (uint32_t t = 0; t < kPageTokens; ++t) {
      const uint32_t pos = page * kPageTokens + t;
      const std::vector<float> x = Embedding(tokens[pos], l);
      const std::vector<float>&wk = Weights(l, 0), &wv = Weights(l, 1);
      std::fill(k.begin(), k.end(), 0.0f);
      std::fill(v.begin(), v.end(), 0.0f);
      for (uint32_t i = 0; i < kHidden; ++i) {
        for (uint32_t j = 0; j < kE; ++j) k[j] += x[i] * wk[i * kE + j], v[j] += x[i] * wv[i * kE + j];
      }
      for (uint32_t h = 0; h < kModel.num_kv_heads; ++h) {  // rotate_half: dim i pairs with i + d_h/2
        float* kh = &k[h * kHeadDim];
        for (uint32_t i = 0; i < kHeadDim / 2; ++i) {
          const double angle = pos * std::pow(kModel.rope_theta, -2.0 * i / kHeadDim);
          const float a = kh[i], b = kh[i + kHeadDim / 2];
          kh[i] = float(a * std::cos(angle) - b * std::sin(angle));
          kh[i + kHeadDim / 2] = float(b * std::cos(angle) + a * std::sin(angle));
        }
      }
      for (uint32_t j = 0; j < kE; ++j) {
        kd[t * kE + j] = kernels::FloatToBF16(k[j]);
        vd[t * kE + j] = kernels::FloatToBF16(v[j]);
      }
    }
  }
  return out;
}

std::vector<uint32_t> Prompt(const std::vector<uint32_t>& system, uint32_t user_seed, uint32_t n) {
  std::vector<uint32_t> p = system;
  std::mt19937 rng(user_seed);
  for (uint32_t i = 0; i < n; ++i) p.push_back(1000 + rng() % 30000);
  return p;
}

int Run() {
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / absl::StrCat("slimkv-demo-model-", getpid())).string();
  }
  if (auto s = kModel.Write(dir); !s.ok()) {
    std::cerr << "demo: writing the model: " << s << "\n";
    return 1;
  }
  auto client = Client::Connect(absl::GetFlag(FLAGS_target));
  auto model = client->RegisterModelDir(dir, kPageTokens);
  if (!model.ok()) {
    std::cerr << "demo: register " << dir << ": " << model.status() << "\n";
    return 1;
  }
  absl::PrintF("registered %s\n  model_id %s, %u layers, %u KV heads x %u, pages of %u tokens\n",
               dir, model->model_id, model->num_layers, model->num_kv_heads, model->k_head_dim,
               model->page_tokens);

  std::vector<uint32_t> system(64);  // a 4-page system prompt shared by every request
  for (uint32_t i = 0; i < system.size(); ++i) system[i] = 7 + i * 13;
  bool ok = true;
  for (uint32_t user = 1; user <= 3; ++user) {
    std::vector<uint32_t> prompt = Prompt(system, user, 40);
    prompt.resize(prompt.size() / kPageTokens * kPageTokens);  // engines cache whole pages
    std::vector<PageData> pages;
    for (uint32_t p = 0; p < prompt.size() / kPageTokens; ++p) pages.push_back(ComputePage(*model, prompt, p));
    auto put = client->Put(*model, prompt, 0, pages);
    if (!put.ok()) {
      std::cerr << "demo: put: " << put.status() << "\n";
      return 1;
    }
    absl::PrintF("put prompt %u: %u tokens, %u pages stored, %u already cached (%u bytes)\n", user,
                 prompt.size(), put->pages_stored(), put->pages_present(), put->stored_bytes());
    ok &= user == 1 || put->pages_present() == system.size() / kPageTokens;
  }

  const std::vector<uint32_t> fresh = Prompt(system, 99, 25);
  auto hit = client->Lookup(*model, fresh);
  if (!hit.ok()) {
    std::cerr << "demo: lookup: " << hit.status() << "\n";
    return 1;
  }
  absl::PrintF("lookup of a new prompt (%u tokens): %u tokens cached\n", fresh.size(), hit->hit_tokens());
  ok &= hit->hit_tokens() == system.size();

  const std::vector<uint32_t> prefix(fresh.begin(), fresh.begin() + hit->hit_tokens());
  auto got = client->Get(*model, prefix);
  if (!got.ok()) {
    std::cerr << "demo: get: " << got.status() << "\n";
    return 1;
  }
  uint32_t identical = 0;
  for (uint32_t p = 0; p < got->size(); ++p) identical += (*got)[p].bytes == ComputePage(*model, prefix, p).bytes;
  absl::PrintF("get: %u pages back, %u byte-identical to the engine's own KV\n", got->size(), identical);
  ok &= identical == got->size() && got->size() == system.size() / kPageTokens;

  auto explain = client->Explain(model->model_id, fresh);
  if (explain.ok()) absl::PrintF("explain: %s\n", explain->detail());
  std::cout << (ok ? "demo: OK\n" : "demo: FAILED\n");
  std::filesystem::remove_all(dir);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace slimkv::client

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return slimkv::client::Run();
}
