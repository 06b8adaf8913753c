#include "cache/page.h"

namespace slimkv::cache {

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kFull: return "full";
  }
  return "invalid";
}

const char* TierName(Tier t) {
  switch (t) {
    case Tier::kGpu: return "gpu";
    case Tier::kHost: return "host";
    case Tier::kDisk: return "disk";
  }
  return "invalid";
}

}  // namespace slimkv::cache
