// The core service end to end: a real slimkvd on loopback, driven through the C++ client.
#include <cmath>
#include <filesystem>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

using kernels::DType;

std::string Bytes(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  for (auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

class EndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    client_ = daemon_->NewClient();
    model_dir_ = daemon_->dir() + "/model";
    ASSERT_TRUE(client::SyntheticModel{}.Write(model_dir_).ok());
    auto m = client_->RegisterModelDir(model_dir_, 16);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = *m;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::Client> client_;
  std::string model_dir_;
  client::ModelHandle model_;
};

TEST_F(EndToEnd, RegisterIsIdempotentAndReportsGeometry) {
  EXPECT_EQ(model_.num_layers, 4u);
  EXPECT_EQ(model_.num_kv_heads, 4u);
  EXPECT_EQ(model_.k_head_dim, 64u);
  auto again = client_->RegisterModelDir(model_dir_, 16);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->model_id, model_.model_id);
  // Different weights, same geometry: a different model.
  client::SyntheticModel other;
  other.seed = 7;
  ASSERT_TRUE(other.Write(daemon_->dir() + "/other").ok());
  auto m2 = client_->RegisterModelDir(daemon_->dir() + "/other", 16);
  ASSERT_TRUE(m2.ok());
  EXPECT_NE(m2->model_id, model_.model_id);
}

TEST_F(EndToEnd, PutLookupGetDeleteExplain) {
  const std::vector<uint32_t> prompt = Tokens(1, 48);
  const auto pages = MakePages(model_, prompt);
  auto put = client_->Put(model_, prompt, 0, pages);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->pages_stored(), 3u);

  // Lookup: longest whole-page prefix, for a longer prompt that diverges in page 2.
  std::vector<uint32_t> longer = prompt;
  longer[40] ^= 1;
  longer.resize(70, 5);
  auto hit = client_->Lookup(model_, longer);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->hit_tokens(), 32u);
  EXPECT_EQ(hit->page_tiers_size(), 2);

  // Get: byte-identical in the stored dtype.
  auto got = client_->Get(model_, prompt);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  for (size_t p = 0; p < 3; ++p) {
    EXPECT_EQ((*got)[p].bytes, pages[p].bytes) << p;
    EXPECT_EQ((*got)[p].mode, v1::MODE_FULL);
    EXPECT_EQ((*got)[p].tier, v1::TIER_HOST);
  }
  // Get from page 1 on, in fp32: bf16 widens exactly.
  auto wide = client_->Get(model_, prompt, 1, DType::kF32);
  ASSERT_TRUE(wide.ok()) << wide.status();
  ASSERT_EQ(wide->size(), 2u);
  const size_t n = model_.PageElems();
  std::vector<float> expect(n);
  kernels::ConvertDType(pages[1].bytes.data(), DType::kBF16, expect.data(), DType::kF32, n);
  ASSERT_EQ((*wide)[0].bytes.size(), n * 4);
  EXPECT_EQ(std::memcmp((*wide)[0].bytes.data(), expect.data(), n * 4), 0);

  // Delete page 1 on: lookup falls back to page 0, explain names page 1 and why.
  auto deleted = client_->Delete(model_, prompt, 1);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2u);
  EXPECT_EQ(client_->Lookup(model_, prompt)->hit_tokens(), 16u);
  auto why = client_->Explain(model_.model_id, prompt);
  ASSERT_TRUE(why.ok());
  EXPECT_EQ(why->reason(), v1::ExplainResponse::REASON_EVICTED);
  EXPECT_EQ(why->first_missing_page(), 1u);
  EXPECT_EQ(why->page_keys_size(), 3);
  EXPECT_NE(why->detail().find("page 1"), std::string::npos) << why->detail();
  auto never = client_->Explain(model_.model_id, Tokens(99, 32));
  EXPECT_EQ(never->reason(), v1::ExplainResponse::REASON_ABSENT);
  EXPECT_EQ(never->first_missing_page(), 0u);
  auto unknown = client_->Explain(std::string(64, 'f'), prompt);
  EXPECT_EQ(unknown->reason(), v1::ExplainResponse::REASON_UNKNOWN_MODEL);
}

TEST_F(EndToEnd, GetNarrowsWithinOneRounding) {
  const std::vector<uint32_t> prompt = Tokens(2, 16);
  const auto pages = MakePages(model_, prompt, 0, DType::kF32);
  ASSERT_TRUE(client_->Put(model_, prompt, 0, pages).ok());
  for (DType t : {DType::kF16, DType::kBF16}) {
    auto got = client_->Get(model_, prompt, 0, t);
    ASSERT_TRUE(got.ok()) << got.status();
    const size_t n = model_.PageElems();
    std::vector<float> back(n);
    kernels::ConvertDType((*got)[0].bytes.data(), t, back.data(), DType::kF32, n);
    const auto* orig = reinterpret_cast<const float*>(pages[0].bytes.data());
    const float half_ulp = t == DType::kF16 ? 0x1p-11f : 0x1p-8f;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      // fp16 subnormals round on an absolute grid of 2^-24.
      bad += std::fabs(back[i] - orig[i]) > half_ulp * std::fabs(orig[i]) + 0x1p-25f;
    }
    EXPECT_EQ(bad, 0u) << kernels::DTypeName(t);
  }
}

TEST_F(EndToEnd, StatsCountWhatWasDone) {
  const std::vector<uint32_t> prompt = Tokens(3, 32);
  ASSERT_TRUE(client_->Put(model_, prompt, 0, MakePages(model_, prompt)).ok());
  ASSERT_TRUE(client_->Lookup(model_, prompt).ok());
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->tenants_size(), 1);
  const v1::TenantStats& t = stats->tenants(0);
  EXPECT_EQ(t.pages(), 2u);
  EXPECT_EQ(t.logical_bytes(), 2 * model_.PageElems() * 2);
  EXPECT_EQ(t.hit_tokens(), 32u);
  auto scrape = ScrapeMetrics(daemon_->metrics_port());
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, R"(slimkv_stored_pages{tenant="default",tier="host"})"), 2);
  EXPECT_EQ(MetricValue(*scrape, R"(slimkv_rpcs_total{code="OK",method="Put",tenant="default"})"), 1);
}

// gRPC health checking answers SERVING for the whole server ("").
TEST_F(EndToEnd, HealthCheckServes) {
  auto channel = grpc::CreateChannel(daemon_->target(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty;  // HealthCheckRequest{service: ""} encodes to zero bytes
  grpc::ByteBuffer request(&empty, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> l(mu);
                   status = s;
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Bytes(response), std::string("\x08\x01", 2));  // status: SERVING
}

// Server reflection lists slimkv.v1.Cache. The request is ServerReflectionRequest
// {list_services: ""}, written as raw protobuf bytes: field 7, wire type 2, length 0.
TEST_F(EndToEnd, ReflectionListsTheCacheService) {
  class ListServices : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    ListServices() {
      grpc::Slice slice(std::string("\x3a\x00", 2));
      request_ = grpc::ByteBuffer(&slice, 1);
    }
    void Start() {
      StartWrite(&request_);
      StartRead(&response_);
      StartCall();
    }
    void OnWriteDone(bool) override { StartWritesDone(); }
    void OnReadDone(bool ok) override {
      if (ok) answer_ += Bytes(response_);
    }
    void OnDone(const grpc::Status& s) override {
      std::lock_guard<std::mutex> l(mu_);
      status_ = s;
      done_ = true;
      cv_.notify_one();
    }
    std::string Wait() {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return done_; });
      return status_.ok() ? answer_ : "error: " + status_.error_message();
    }

   private:
    grpc::ByteBuffer request_, response_;
    std::string answer_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
    grpc::Status status_;
  };
  auto channel = grpc::CreateChannel(daemon_->target(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ListServices call;
  stub.PrepareBidiStreamingCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                grpc::StubOptions(), &call);
  call.Start();
  const std::string answer = call.Wait();
  EXPECT_NE(answer.find("slimkv.v1.Cache"), std::string::npos) << answer;
  EXPECT_NE(answer.find("grpc.health.v1.Health"), std::string::npos) << answer;
}

}  // namespace
}  // namespace slimkv::testing
