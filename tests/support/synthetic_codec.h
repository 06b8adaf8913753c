// Test helper: a synthetic model (tests/support/synthetic_model.h) written to a scratch
// directory and its ModelCodec built from the files, for cache/ tests that need real codecs.
//
// Thread-safety: external synchronization required (test code only).
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include "tests/support/model_test_util.h"
#include "cache/model/model_codec.h"
#include "tests/support/synthetic_model.h"

namespace slimkv::cache::testing_util {

// A model on disk with its codec.
struct LoadedModel {
  ScratchDir dir;
  ModelConfig config;
  std::shared_ptr<const SafetensorsDir> weights;
  std::unique_ptr<const ModelCodec> codec;
};

inline std::unique_ptr<LoadedModel> LoadSynthetic(const client::SyntheticModel& m,
                                                  CodecOptions options = {}) {
  auto out = std::make_unique<LoadedModel>();
  EXPECT_TRUE(m.Write(out->dir.path()).ok());
  auto config = ParseModelConfig(m.ConfigJson());
  EXPECT_TRUE(config.ok()) << config.status();
  out->config = *config;
  auto weights = SafetensorsDir::Open(out->dir.path());
  EXPECT_TRUE(weights.ok()) << weights.status();
  out->weights = *std::move(weights);
  auto codec = ModelCodec::Build(out->config, out->weights, Fingerprint{}, nullptr, options,
                                 nullptr);
  EXPECT_TRUE(codec.ok()) << codec.status();
  out->codec = *std::move(codec);
  return out;
}

}  // namespace slimkv::cache::testing_util
