// The synthetic model geometries the codec, attention and mode suites run on: one table, each
// entry named for what it exercises (d = hidden size, e = kv_heads × head_dim). Every entry is
// a small 2-layer SyntheticModel with head_dim 16.
//
//   mha_square      llama, 4 q / 4 kv heads, e = d = 64: every mode applies
//   gqa             llama, 4 q / 2 kv heads, e = 32 < d = 48 < 2e: xcache applies, slim not
//   gqa_d2e         llama, 4 q / 2 kv heads, d = 64 = 2e: neither slim nor xcache
//   gqa_d2e_q8      as gqa_d2e with 8 q heads (4 per kv head)
//   wide_t5         t5, e = 64 > d = 32, no RoPE
//   qwen2_biases    qwen2, K/V biases
//   phi3_partial    phi3, fused qkv, partial rotary (rotary_dim 8)
//   deepseek_mla    DeepSeek MLA: native latent
//   mha2mla         MHA2MLA conversion, 4 q / 4 kv heads, d_kv 8, 4 rope dims per head
//   mha2mla_q8      as mha2mla with 8 q heads (two per latent head)
//
// Thread-safety: stateless.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "tests/support/synthetic_model.h"

namespace slimkv::client {

inline SyntheticModel TestGeometry(absl::string_view name) {
  struct Entry {
    const char* name;
    const char* arch;
    uint32_t d, heads, kv_heads;
  };
  static constexpr Entry kTable[] = {
      {"mha_square", "llama", 64, 4, 4},   {"gqa", "llama", 48, 4, 2},
      {"gqa_d2e", "llama", 64, 4, 2},      {"gqa_d2e_q8", "llama", 64, 8, 2},
      {"wide_t5", "t5", 32, 4, 4},         {"qwen2_biases", "qwen2", 64, 4, 4},
      {"phi3_partial", "phi3", 64, 4, 4},  {"deepseek_mla", "deepseek", 64, 4, 4},
      {"mha2mla", "mha2mla", 64, 4, 4},    {"mha2mla_q8", "mha2mla", 64, 8, 4},
  };
  for (const Entry& e : kTable) {
    if (name != e.name) continue;
    SyntheticModel m = SyntheticModel::Small(e.arch, e.d, e.heads, e.kv_heads, 16);
    if (absl::string_view(e.arch) == "mha2mla") {
      m.kv_lora_rank = 8;
      m.rope_dim = 4;
    }
    return m;
  }
  std::fprintf(stderr, "tests/support/geometries.h: no geometry \"%.*s\"\n",
               static_cast<int>(name.size()), name.data());
  std::abort();
}

}  // namespace slimkv::client
