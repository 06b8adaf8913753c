// `slimkv plan MODEL_DIR`: the capacity planner (cache/codec/planner.h) as a local command — no
// daemon. From config.json alone it prints bytes per token per layer and the ratio to full for
// every mode and quantizer; with *.safetensors in MODEL_DIR also κ, the predicted error per
// input dtype and the mode each layer takes under the tolerance.
//
//   slimkv plan MODEL_DIR [--json] [--tolerance X] [--rank R | --energy F]
//                         [--store_dtype bf16|fp16|fp32] [--data_dir DIR] [--no_cache]
//   slimkv plan --capacity MODEL_DIR... [--store_dtype bf16|fp16|fp32]
//
// --capacity prints, from each config.json, a markdown table of tokens per GiB (all layers)
// per mode and quantizer: docs/benchmarks.md's capacity table.
//
// Factorizations are cached under DATA_DIR/factors (default ./slimkv-data, as slimkvd) by
// model fingerprint. Progress goes to stderr; the table or JSON to stdout.
//
// Thread-safety: stateless function.
#pragma once

#include <string>
#include <vector>

namespace slimkv::client {

// `args` are the words after "plan". Returns the process exit status: 0 on success, 1 when the
// model cannot be planned (message on stderr), 2 on a usage error.
int RunPlan(const std::vector<std::string>& args);

}  // namespace slimkv::client
