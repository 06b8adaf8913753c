// The one place where the cache's enums meet the wire's (slimkv.v1): each cache enumerator has
// the value of its wire twin, pinned here by static_assert, so a conversion is a cast that
// cannot drift. The wire's *_UNSPECIFIED (0) has no cache twin: callers resolve it first.
//
// Thread-safety: stateless functions.
#pragma once

#include "cache/store/page.h"
#include "kernels/dtype.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

static_assert(int(cache::Mode::kFull) == v1::MODE_FULL &&
              int(cache::Mode::kSlim) == v1::MODE_SLIM &&
              int(cache::Mode::kXcache) == v1::MODE_XCACHE &&
              int(cache::Mode::kLatent) == v1::MODE_LATENT && v1::Mode_MAX == v1::MODE_LATENT);
static_assert(int(cache::Quant::kNone) == v1::QUANT_NONE &&
              int(cache::Quant::kFp8) == v1::QUANT_FP8 &&
              int(cache::Quant::kInt8) == v1::QUANT_INT8 &&
              int(cache::Quant::kInt4) == v1::QUANT_INT4 && v1::Quant_MAX == v1::QUANT_INT4);
static_assert(int(cache::PageInput::kKv) == v1::PAGE_INPUT_KV &&
              int(cache::PageInput::kX) == v1::PAGE_INPUT_X &&
              int(cache::PageInput::kLatent) == v1::PAGE_INPUT_LATENT &&
              v1::PageInput_MAX == v1::PAGE_INPUT_LATENT);
static_assert(int(cache::Tier::kGpu) == v1::TIER_GPU &&
              int(cache::Tier::kHost) == v1::TIER_HOST &&
              int(cache::Tier::kDisk) == v1::TIER_DISK && v1::Tier_MAX == v1::TIER_DISK);
static_assert(int(kernels::DType::kF32) == v1::DTYPE_FP32 &&
              int(kernels::DType::kF16) == v1::DTYPE_FP16 &&
              int(kernels::DType::kBF16) == v1::DTYPE_BF16 && v1::DType_MAX == v1::DTYPE_BF16);

inline v1::Mode ToWire(cache::Mode m) { return static_cast<v1::Mode>(m); }
inline v1::Quant ToWire(cache::Quant q) { return static_cast<v1::Quant>(q); }
inline v1::Tier ToWire(cache::Tier t) { return static_cast<v1::Tier>(t); }
inline v1::DType ToWire(kernels::DType t) { return static_cast<v1::DType>(t); }

// REQUIRES: the value is a valid, specified wire enumerator (checked by the caller).
inline cache::Mode FromWire(v1::Mode m) { return static_cast<cache::Mode>(m); }
inline cache::Quant FromWire(v1::Quant q) { return static_cast<cache::Quant>(q); }
inline cache::PageInput FromWire(v1::PageInput i) { return static_cast<cache::PageInput>(i); }
inline kernels::DType FromWire(v1::DType t) { return static_cast<kernels::DType>(t); }

}  // namespace slimkv::daemon
