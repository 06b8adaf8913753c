// The GetLayerFactors RPC (slimkv.v1.Cache.GetLayerFactors): the matrices one layer's mode
// needs, so that an engine rebuilds K and V from raw pages on its own device (SPEC §8,
// docs/api.md "Engine-side reconstruction").
//
// Thread-safety: stateless functions; the cache and the model's codec are internally
// synchronized.
#pragma once

#include <cstdint>
#include <vector>

#include <grpcpp/support/server_callback.h>

#include "absl/status/statusor.h"
#include "cache/store/kv_cache.h"
#include "daemon/auth.h"
#include "daemon/metrics.h"
#include "slimkv/v1/cache.pb.h"

namespace slimkv::daemon {

// Every message of the answer: the info, then each factor in chunks of at most `chunk_bytes`
// data bytes, each factor's first chunk with its name, dtype, shape and CRC32C.
// INVALID_ARGUMENT names layer, mode or dtype; NOT_FOUND: model_id not registered;
// FAILED_PRECONDITION: no weights, factors not ready, or the layer cannot take the mode.
[[nodiscard]] absl::StatusOr<std::vector<v1::GetLayerFactorsResponse>> BuildLayerFactors(
    cache::KvCache& cache, const v1::GetLayerFactorsRequest& request, uint32_t chunk_bytes);

// The server side of the stream: authenticates (UNAUTHENTICATED as every call), builds the
// answer and writes it message by message; records the call in `metrics` as method
// "GetLayerFactors". The reactor deletes itself when done.
grpc::ServerWriteReactor<v1::GetLayerFactorsResponse>* StartLayerFactorsStream(
    grpc::CallbackServerContext* ctx, const Authenticator& auth, Metrics* metrics,
    cache::KvCache& cache, const v1::GetLayerFactorsRequest& request, uint32_t chunk_bytes);

}  // namespace slimkv::daemon
