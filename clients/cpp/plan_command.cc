#include "clients/cpp/plan_command.h"

#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/model/model_config.h"
#include "cache/model/safetensors.h"
#include "cache/codec/planner.h"
#include "nlohmann/json.hpp"

namespace slimkv::client {
namespace {

using cache::LayerPlan;
using cache::ModelPlan;
using cache::ModePlan;
using cache::PlanMode;
using cache::PlanQuant;
using json = nlohmann::ordered_json;

constexpr char kUsage[] =
    "usage: slimkv plan MODEL_DIR [--json] [--tolerance X] [--rank R | --energy F]\n"
    "                   [--store_dtype bf16|fp16|fp32] [--data_dir DIR] [--no_cache]\n"
    "       slimkv plan --capacity MODEL_DIR... [--store_dtype bf16|fp16|fp32]\n";

const char* DTypeLabel(kernels::DType t) {
  switch (t) {
    case kernels::DType::kF32: return "fp32";
    case kernels::DType::kF16: return "fp16";
    case kernels::DType::kBF16: return "bf16";
  }
  return "?";
}

json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json ModeJson(const ModePlan& m, bool with_weights) {
  json j;
  j["applicable"] = m.applicable;
  j["reason"] = m.reason;
  j["elements"] = m.elements;
  json bytes, ratio;
  for (int q = 0; q < cache::kNumPlanQuants; ++q) {
    bytes[cache::PlanQuantName(static_cast<PlanQuant>(q))] = m.bytes[q];
    ratio[cache::PlanQuantName(static_cast<PlanQuant>(q))] = m.ratio[q];
  }
  j["bytes"] = bytes;
  j["ratio_to_full"] = ratio;
  j["bytes_4bit_no_scales"] = m.bytes_4bit;
  if (with_weights) {
    j["kappa"] = Num(m.kappa);
    json err;
    for (size_t t = 0; t < cache::kPlanDTypes.size(); ++t) {
      err[DTypeLabel(cache::kPlanDTypes[t])] = Num(m.predicted_error[t]);
    }
    j["predicted_error"] = err;
  }
  return j;
}

json PlanJson(const ModelPlan& p) {
  const cache::ModelConfig& c = p.config;
  json j;
  j["model"] = {{"architecture", c.architecture},
                {"num_layers", c.num_layers},
                {"hidden_size", c.hidden_size},
                {"num_q_heads", c.num_q_heads},
                {"num_kv_heads", c.num_kv_heads},
                {"k_head_dim", c.k_head_dim},
                {"v_head_dim", c.v_head_dim},
                {"cross_attention", c.cross_attention},
                {"mla", c.mla ? cache::LatentLayoutName(c.mla->layout) : "none"}};
  j["options"] = {{"tolerance", p.options.tolerance},
                  {"store_dtype", DTypeLabel(p.options.store_dtype)},
                  {"rank", p.options.rank.fixed_rank},
                  {"energy", p.options.rank.energy}};
  j["has_weights"] = p.has_weights;
  json layers = json::array();
  for (const LayerPlan& l : p.layers) {
    json lj;
    lj["layer"] = l.layer;
    json modes;
    for (int m = 0; m < cache::kNumPlanModes; ++m) {
      modes[cache::PlanModeName(static_cast<PlanMode>(m))] = ModeJson(l.modes[m], p.has_weights);
    }
    lj["modes"] = modes;
    lj["projected_rank"] = l.projected_rank;
    if (p.has_weights) {
      lj["analyzed"] = l.analyzed;
      lj["from_cache"] = l.from_cache;
      lj["kappa"] = {{"k", Num(l.kappa_k)}, {"v", Num(l.kappa_v)}, {"kv", Num(l.kappa_kv)}};
      json chosen;
      for (size_t t = 0; t < cache::kPlanDTypes.size(); ++t) {
        chosen[DTypeLabel(cache::kPlanDTypes[t])] = cache::PlanModeName(l.chosen[t]);
      }
      lj["mode"] = chosen;
    }
    layers.push_back(lj);
  }
  j["layers"] = layers;
  json totals;
  for (int m = 0; m < cache::kNumPlanModes; ++m) {
    json t;
    for (int q = 0; q < cache::kNumPlanQuants; ++q) {
      t[cache::PlanQuantName(static_cast<PlanQuant>(q))] = Num(p.total_bytes[m][q]);
    }
    totals[cache::PlanModeName(static_cast<PlanMode>(m))] = t;
  }
  j["bytes_per_token_all_layers"] = totals;
  if (p.has_weights) {
    json chosen;
    for (size_t t = 0; t < cache::kPlanDTypes.size(); ++t) {
      chosen[DTypeLabel(cache::kPlanDTypes[t])] = p.chosen_bytes[t];
    }
    j["chosen_bytes_per_token_all_layers"] = chosen;
  }
  return j;
}

std::string Bytes(double b) {
  if (!std::isfinite(b)) return "-";
  if (b == std::floor(b)) return absl::StrFormat("%.0f", b);
  return absl::StrFormat("%.2f", b);
}

std::string Sci(double v) {
  if (std::isnan(v)) return "-";
  if (std::isinf(v)) return "inf";
  return absl::StrFormat("%.2g", v);
}

std::string Human(double b) {
  if (b >= 1 << 20) return absl::StrFormat("%.2f MiB", b / (1 << 20));
  if (b >= 1 << 10) return absl::StrFormat("%.1f KiB", b / (1 << 10));
  return absl::StrFormat("%.0f B", b);
}

void PrintSizes(std::ostream& out, const LayerPlan& l, const std::string& title) {
  out << title << "\n";
  out << absl::StrFormat("  %-10s %-4s %9s %9s %9s %9s %9s %9s %9s\n", "mode", "ok", "elements",
                         "none", "fp8", "int8", "int4", "4bit-raw", "vs full");
  for (int m = 0; m < cache::kNumPlanModes; ++m) {
    const ModePlan& mp = l.modes[m];
    const char* name = cache::PlanModeName(static_cast<PlanMode>(m));
    if (mp.elements == 0) {
      out << absl::StrFormat("  %-10s %-4s %s\n", name, "no", mp.reason);
      continue;
    }
    const double vs = mp.ratio[0];
    out << absl::StrFormat("  %-10s %-4s %9d %9s %9s %9s %9s %9s %8.2fx", name,
                           mp.applicable ? "yes" : "no", mp.elements, Bytes(mp.bytes[0]),
                           Bytes(mp.bytes[1]), Bytes(mp.bytes[2]), Bytes(mp.bytes[3]),
                           Bytes(mp.bytes_4bit), 1 / vs);
    if (vs != 1) out << absl::StrFormat(" (%+.2f%%)", 100 * (vs - 1));
    if (!mp.reason.empty()) out << "  " << mp.reason;
    out << "\n";
  }
}

void PrintTable(std::ostream& out, const ModelPlan& p) {
  const cache::ModelConfig& c = p.config;
  out << absl::StrFormat("model: %s, %u layers, d=%u, %u query heads, %u KV heads x %u",
                         c.architecture, c.num_layers, c.hidden_size, c.num_q_heads,
                         c.num_kv_heads, c.k_head_dim);
  if (c.v_head_dim != c.k_head_dim) out << absl::StrFormat(" (V %u)", c.v_head_dim);
  if (c.mla) out << ", MLA " << cache::LatentLayoutName(c.mla->layout);
  if (c.cross_attention) out << ", cross-attention";
  out << "\n";
  // Sizes are the same on every layer unless the projected rank varies.
  bool alike = true;
  for (const LayerPlan& l : p.layers) alike &= l.projected_rank == p.layers[0].projected_rank;
  const std::string unit = absl::StrCat("bytes per token per layer (unquantized ",
                                        DTypeLabel(p.options.store_dtype),
                                        "; fp8/int8/int4 with their scales)");
  if (alike || p.layers.empty()) {
    if (!p.layers.empty()) PrintSizes(out, p.layers[0], absl::StrCat("\n", unit, ", every layer:"));
  } else {
    PrintSizes(out, p.layers[0], absl::StrCat("\n", unit, ", layer 0 (projected rank varies):"));
  }
  out << absl::StrFormat("\nper token, all %u layers:", c.num_layers);
  for (int m = 0; m < cache::kNumPlanModes; ++m) {
    const double b = p.total_bytes[m][0];
    if (std::isfinite(b)) {
      out << absl::StrFormat("  %s %s", cache::PlanModeName(static_cast<PlanMode>(m)), Human(b));
    }
  }
  out << "\n";
  if (!p.has_weights) {
    out << "\n(config.json only: add the *.safetensors to get kappa, predicted errors and the "
           "mode per layer)\n";
    return;
  }
  if (c.mla) {
    out << "\nMLA: every layer stores its native latent as sent (exact, predicted error 0).\n";
    return;
  }
  out << absl::StrFormat(
      "\nper layer: condition numbers, predicted relative error (fp32/fp16/bf16 input) and the "
      "mode under tolerance %g\n",
      p.options.tolerance);
  out << absl::StrFormat("  %5s %9s %9s %9s  %-26s %-26s %5s %-s\n", "layer", "k(W_K)", "k(W_V)",
                         "k([K V])", "slim error", "xcache(K,V) error", "R", "mode fp32/fp16/bf16");
  for (const LayerPlan& l : p.layers) {
    const ModePlan& s = l.modes[static_cast<int>(PlanMode::kSlim)];
    const ModePlan& x = l.modes[static_cast<int>(PlanMode::kXcache)];
    auto errs = [](const ModePlan& m) {
      if (!m.applicable) return std::string("n/a");
      return absl::StrCat(Sci(m.predicted_error[0]), "/", Sci(m.predicted_error[1]), "/",
                          Sci(m.predicted_error[2]));
    };
    out << absl::StrFormat("  %5u %9s %9s %9s  %-26s %-26s %5s %s/%s/%s%s\n", l.layer,
                           Sci(l.kappa_k), Sci(l.kappa_v), Sci(l.kappa_kv), errs(s), errs(x),
                           l.projected_rank ? absl::StrCat(l.projected_rank) : "-",
                           cache::PlanModeName(l.chosen[0]), cache::PlanModeName(l.chosen[1]),
                           cache::PlanModeName(l.chosen[2]), l.from_cache ? "  (cached)" : "");
  }
  out << "\nper token, all layers, in the chosen modes:";
  for (size_t t = 0; t < cache::kPlanDTypes.size(); ++t) {
    out << absl::StrFormat("  %s input %s", DTypeLabel(cache::kPlanDTypes[t]),
                           Human(p.chosen_bytes[t]));
  }
  out << absl::StrFormat("  (full %s)\n",
                         Human(p.total_bytes[static_cast<int>(PlanMode::kFull)][0]));
}

// The capacity table (docs/benchmarks.md): tokens of context one GiB holds, all layers, per
// mode and quantizer, from config.json sizes. Markdown, one row per model and mode.
void PrintCapacityHeader(std::ostream& out, kernels::DType store) {
  out << absl::StrFormat(
      "| model | layers | mode | elements/token/layer | %s | fp8 | int8 | int4 | int4 vs full %s |\n",
      DTypeLabel(store), DTypeLabel(store));
  out << "|---|---|---|---|---|---|---|---|---|\n";
}

void PrintCapacityRows(std::ostream& out, const std::string& name, const ModelPlan& p) {
  const double full = p.total_bytes[static_cast<int>(PlanMode::kFull)][0];
  for (int m = 0; m < cache::kNumPlanModes; ++m) {
    const ModePlan& mp = p.layers.empty() ? ModePlan{} : p.layers[0].modes[m];
    if (mp.elements == 0) continue;  // not planned (projected without a rank) or no such mode
    out << absl::StrFormat("| %s | %u | %s | %d |", name, p.config.num_layers,
                           cache::PlanModeName(static_cast<PlanMode>(m)), mp.elements);
    const std::array<double, cache::kNumPlanQuants>& total = p.total_bytes[m];
    for (int q = 0; q < cache::kNumPlanQuants; ++q) {
      if (std::isfinite(total[q]) && total[q] > 0) {
        out << absl::StrFormat(" %.0f |", std::floor(static_cast<double>(1u << 30) / total[q]));
      } else {
        out << " n/a |";
      }
    }
    const double int4 = total[static_cast<int>(PlanQuant::kInt4)];
    if (std::isfinite(int4) && std::isfinite(full)) {
      out << absl::StrFormat(" %.2fx |", full / int4);
    } else {
      out << absl::StrFormat(" n/a: %s |", mp.reason);
    }
    out << "\n";
  }
}

absl::StatusOr<cache::ModelConfig> ReadConfig(const std::string& model_dir) {
  std::ifstream in(model_dir + "/config.json");
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", model_dir, "/config.json"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<cache::ModelConfig> config = cache::ParseModelConfig(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(model_dir, "/config.json: ", config.status().message()));
  }
  return config;
}

int RunCapacity(const std::vector<std::string>& model_dirs, const cache::PlanOptions& options) {
  PrintCapacityHeader(std::cout, options.store_dtype);
  for (const std::string& dir : model_dirs) {
    absl::StatusOr<cache::ModelConfig> config = ReadConfig(dir);
    if (!config.ok()) {
      std::cerr << "slimkv plan: " << config.status().message() << "\n";
      return 1;
    }
    absl::StatusOr<ModelPlan> plan = cache::PlanFromConfig(*config, options);
    if (!plan.ok()) {
      std::cerr << "slimkv plan: " << dir << ": " << plan.status() << "\n";
      return 1;
    }
    // The directory's own name ("models/llama-2-7b/" -> "llama-2-7b").
    const std::filesystem::path path = std::filesystem::path(dir).lexically_normal();
    const std::string name = (path.has_filename() ? path : path.parent_path()).filename().string();
    PrintCapacityRows(std::cout, name, *plan);
  }
  return 0;
}

bool HasSafetensors(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") return true;
  }
  return false;
}

int Usage(const std::string& why) {
  std::cerr << "slimkv plan: " << why << "\n" << kUsage;
  return 2;
}

}  // namespace

int RunPlan(const std::vector<std::string>& args) {
  std::string model_dir, data_dir = "./slimkv-data";
  std::vector<std::string> model_dirs;
  bool as_json = false, use_cache = true, capacity = false;
  cache::PlanOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--json") {
      as_json = true;
    } else if (a == "--capacity") {
      capacity = true;
    } else if (a == "--no_cache" || a == "--no-cache") {
      use_cache = false;
    } else if (a == "--tolerance") {
      if (!value(&v) || !absl::SimpleAtod(v, &options.tolerance)) return Usage("--tolerance X");
    } else if (a == "--rank") {
      if (!value(&v) || !absl::SimpleAtoi(v, &options.rank.fixed_rank)) return Usage("--rank R");
    } else if (a == "--energy") {
      if (!value(&v) || !absl::SimpleAtod(v, &options.rank.energy)) return Usage("--energy F");
    } else if (a == "--store_dtype" || a == "--store-dtype") {
      if (!value(&v)) return Usage("--store_dtype bf16|fp16|fp32");
      if (v == "bf16") options.store_dtype = kernels::DType::kBF16;
      else if (v == "fp16") options.store_dtype = kernels::DType::kF16;
      else if (v == "fp32") options.store_dtype = kernels::DType::kF32;
      else return Usage("--store_dtype bf16|fp16|fp32");
    } else if (a == "--data_dir" || a == "--data-dir") {
      if (!value(&data_dir)) return Usage("--data_dir DIR");
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage(absl::StrCat("unknown option ", a));
    } else {
      model_dirs.push_back(a);
    }
  }
  if (model_dirs.empty()) return Usage("MODEL_DIR missing");
  if (capacity) {
    if (as_json) return Usage("--capacity prints a table; --json is for one model");
    return RunCapacity(model_dirs, options);
  }
  if (model_dirs.size() > 1) return Usage(absl::StrCat("unexpected argument ", model_dirs[1]));
  model_dir = model_dirs[0];

  absl::StatusOr<cache::ModelConfig> config = ReadConfig(model_dir);
  if (!config.ok()) {
    std::cerr << "slimkv plan: " << config.status().message() << "\n";
    return 1;
  }

  absl::StatusOr<ModelPlan> plan;
  if (HasSafetensors(model_dir)) {
    const auto start = std::chrono::steady_clock::now();
    auto progress = [&](absl::string_view what, uint32_t, uint32_t) {
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << absl::StrFormat("[%7.1fs] %s\n", s, what) << std::flush;
    };
    progress("opening the checkpoint", 0, 0);
    absl::StatusOr<std::unique_ptr<cache::SafetensorsDir>> weights =
        cache::SafetensorsDir::Open(model_dir);
    if (!weights.ok()) {
      std::cerr << "slimkv plan: " << weights.status() << "\n";
      return 1;
    }
    plan = cache::PlanWithWeights(*config, **weights, options,
                                  use_cache ? data_dir + "/factors" : std::string(), progress);
  } else {
    plan = cache::PlanFromConfig(*config, options);
  }
  if (!plan.ok()) {
    std::cerr << "slimkv plan: " << plan.status() << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << PlanJson(*plan).dump(2) << "\n";
  } else {
    PrintTable(std::cout, *plan);
  }
  return 0;
}

}  // namespace slimkv::client
