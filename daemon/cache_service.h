// CacheService: slimkv.v1.Cache on gRPC's callback API. A thin layer: it validates the wire
// messages, calls the KvCache, translates statuses in one place (grpc_status.h) and records
// every call's metrics. Stream rules live in PutAssembler and GetStreamer.
//
// Every call is authenticated first (auth.h) and acts for its tenant only.
//
// Thread-safety: internally synchronized (gRPC calls it from its own threads).
#pragma once

#include <cstdint>
#include <string>

#include "cache/store/kv_cache.h"
#include "daemon/auth.h"
#include "daemon/metrics.h"
#include "slimkv/v1/cache.grpc.pb.h"

namespace slimkv::daemon {

// The wire form of a tenant's figures (Cache.Stats, Admin.ListTenants).
v1::TenantStats TenantStatsToProto(const std::string& tenant, const cache::TenantStats& stats,
                                   const cache::KvCache& cache);

class CacheService final : public v1::Cache::CallbackService {
 public:
  // `cache`, `auth`, `metrics` and `gpu` must outlive the service. Put verifies one page in
  // `verify_one_in` (cache/codec/page_codec.h). Attend tries the GPU through `gpu` (null: no GPU
  // tier; every Attend runs on the CPU).
  CacheService(cache::KvCache* cache, const Authenticator* auth, Metrics* metrics,
               uint32_t get_chunk_bytes, uint32_t verify_one_in = 16,
               cache::GpuTier* gpu = nullptr);

  grpc::ServerUnaryReactor* RegisterModel(grpc::CallbackServerContext* ctx,
                                          const v1::RegisterModelRequest* request,
                                          v1::RegisterModelResponse* response) override;
  grpc::ServerUnaryReactor* Lookup(grpc::CallbackServerContext* ctx,
                                   const v1::LookupRequest* request,
                                   v1::LookupResponse* response) override;
  grpc::ServerReadReactor<v1::PutRequest>* Put(grpc::CallbackServerContext* ctx,
                                               v1::PutResponse* response) override;
  grpc::ServerWriteReactor<v1::GetResponse>* Get(grpc::CallbackServerContext* ctx,
                                                 const v1::GetRequest* request) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const v1::DeleteRequest* request,
                                   v1::DeleteResponse* response) override;
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* ctx,
                                    const v1::ExplainRequest* request,
                                    v1::ExplainResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* Attend(grpc::CallbackServerContext* ctx,
                                   const v1::AttendRequest* request,
                                   v1::AttendResponse* response) override;
  grpc::ServerWriteReactor<v1::GetLayerFactorsResponse>* GetLayerFactors(
      grpc::CallbackServerContext* ctx, const v1::GetLayerFactorsRequest* request) override;

 private:
  class PutReactor;
  class GetReactor;

  cache::KvCache* const cache_;
  const Authenticator* const auth_;
  Metrics* const metrics_;
  cache::GpuTier* const gpu_;
  const uint32_t get_chunk_bytes_;
  const uint32_t verify_one_in_;
};

}  // namespace slimkv::daemon
