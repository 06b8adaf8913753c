#include "cache/model/modes.h"

namespace slimkv::cache {

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kFull: return "full";
    case Mode::kSlim: return "slim";
    case Mode::kXcache: return "xcache";
    case Mode::kLatent: return "latent";
  }
  return "invalid";
}

const char* QuantName(Quant q) {
  switch (q) {
    case Quant::kNone: return "none";
    case Quant::kFp8: return "fp8";
    case Quant::kInt8: return "int8";
    case Quant::kInt4: return "int4";
  }
  return "invalid";
}

bool IsValidMode(int m) { return m >= 1 && m <= 4; }
bool IsValidQuant(int q) { return q >= 1 && q <= 4; }

}  // namespace slimkv::cache
