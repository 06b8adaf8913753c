// The bad-input matrix: every malformed request gets its documented status code with a message
// naming the field, and leaves the store exactly as it was.
#include <functional>

#include <gtest/gtest.h>

#include "tests/support/synthetic_model.h"
#include "kernels/crc32c.h"
#include "tests/daemon_process.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

using Stream = std::vector<v1::PutRequest>;

// Members are public: the case table's lambdas drive the fixture directly.
class BadInput : public ::testing::Test {
 public:
  void SetUp() override {
    auto d = DaemonProcess::Start();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = *std::move(d);
    client_ = daemon_->NewClient();
    ASSERT_TRUE(client::SyntheticModel{}.Write(daemon_->dir() + "/model").ok());
    model_ = *client_->RegisterModelDir(daemon_->dir() + "/model", 16);
    stored_ = Tokens(1, 32);
    ASSERT_TRUE(client_->Put(model_, stored_, 0, MakePages(model_, stored_)).ok());
    fresh_ = Tokens(2, 32);
  }

  // A valid Put stream for pages [0, 2) of fresh_: header, then one message per tensor.
  Stream Valid() const {
    Stream s(1);
    v1::PutHeader* h = s[0].mutable_header();
    h->set_model_id(model_.model_id);
    h->mutable_tokens()->Add(fresh_.begin(), fresh_.end());
    const auto pages = MakePages(model_, fresh_);
    for (uint32_t p = 0; p < pages.size(); ++p) {
      for (uint32_t l = 0; l < model_.num_layers; ++l) {
        for (auto role : {v1::TENSOR_ROLE_K, v1::TENSOR_ROLE_V}) {
          const uint8_t* data = pages[p].bytes.data() + model_.TensorOffset(l, role, kernels::DType::kBF16);
          const size_t size = model_.TensorElems(role) * 2;
          v1::TensorChunk* c = s.emplace_back().add_chunks();
          c->set_page(p);
          c->set_layer(l);
          c->set_role(role);
          c->mutable_header()->set_dtype(v1::DTYPE_BF16);
          for (int64_t d : {model_.page_tokens, model_.num_kv_heads, model_.k_head_dim}) c->mutable_header()->add_shape(d);
          c->mutable_header()->set_crc32c(kernels::Crc32c(0, data, size));
          c->set_data(data, size);
        }
      }
    }
    return s;
  }

  grpc::Status Put(const Stream& stream) {
    auto ctx = client_->NewContext();
    v1::PutResponse response;
    auto writer = client_->stub()->Put(ctx.get(), &response);
    for (const auto& m : stream) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // What must not change: the store's accounting and the pages of both prompts.
  std::string Snapshot() {
    auto stats = client_->Stats();
    std::string s = stats.ok() ? stats->tenants(0).DebugString() : "stats failed";
    for (const auto* prompt : {&stored_, &fresh_}) {
      auto got = client_->Get(model_, *prompt);
      s += got.ok() ? std::to_string(got->size()) : "get failed";
      if (got.ok()) {
        for (auto& p : *got) s.append(p.bytes.begin(), p.bytes.end());
      }
    }
    // Lookup counters are part of the stats: read them before they move.
    return s;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::Client> client_;
  client::ModelHandle model_;
  std::vector<uint32_t> stored_, fresh_;
};

// Calls a unary method of the stub with `request`, as the fixture's tenant.
template <typename Request, typename Response>
grpc::Status Unary(BadInput& t,
                   grpc::Status (v1::Cache::Stub::*method)(grpc::ClientContext*, const Request&,
                                                           Response*),
                   const Request& request) {
  Response response;
  auto ctx = t.client_->NewContext();
  return (t.client_->stub()->*method)(ctx.get(), request, &response);
}

struct Case {
  std::string name;
  grpc::StatusCode code;
  std::string field;  // the message must contain this
  std::function<grpc::Status(BadInput&)> run;
};

TEST_F(BadInput, Matrix) {
  auto mutate = [](std::function<void(Stream&)> f) {
    return [f](BadInput& t) {
      Stream s = t.Valid();
      f(s);
      return t.Put(s);
    };
  };
  auto chunk = [](Stream& s, size_t i) { return s[i].mutable_chunks(0); };
  const std::vector<Case> cases = {
      {"put without header", grpc::INVALID_ARGUMENT, "header",
       mutate([](Stream& s) { s[0].clear_header(); })},
      {"put header twice", grpc::INVALID_ARGUMENT, "header",
       mutate([](Stream& s) { *s[1].mutable_header() = s[0].header(); })},
      {"put unknown model", grpc::NOT_FOUND, "header.model_id",
       mutate([](Stream& s) { s[0].mutable_header()->set_model_id(std::string(64, 'a')); })},
      {"put malformed model id", grpc::INVALID_ARGUMENT, "header.model_id",
       mutate([](Stream& s) { s[0].mutable_header()->set_model_id("llama"); })},
      {"put empty token list", grpc::INVALID_ARGUMENT, "header.tokens",
       mutate([](Stream& s) { s[0].mutable_header()->clear_tokens(); })},
      {"put tokens not a multiple of page_tokens", grpc::INVALID_ARGUMENT, "header.tokens",
       mutate([](Stream& s) { s[0].mutable_header()->mutable_tokens()->RemoveLast(); })},
      {"put huge first_page", grpc::INVALID_ARGUMENT, "header.first_page",
       mutate([](Stream& s) { s[0].mutable_header()->set_first_page(4000000000u); })},
      {"put wrong shape", grpc::INVALID_ARGUMENT, "chunks.header.shape",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_header()->set_shape(2, 32); })},
      {"put negative shape", grpc::INVALID_ARGUMENT, "chunks.header.shape",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_header()->set_shape(0, -16); })},
      {"put wrong rank", grpc::INVALID_ARGUMENT, "chunks.header.shape",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_header()->mutable_shape()->RemoveLast(); })},
      {"put unknown dtype", grpc::INVALID_ARGUMENT, "chunks.header.dtype",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_header()->set_dtype(static_cast<v1::DType>(9)); })},
      {"put mixed dtypes in a page", grpc::INVALID_ARGUMENT, "chunks.header.dtype",
       mutate([&](Stream& s) { chunk(s, 2)->mutable_header()->set_dtype(v1::DTYPE_FP16); })},
      {"put layer out of range", grpc::INVALID_ARGUMENT, "chunks.layer",
       mutate([&](Stream& s) { chunk(s, 1)->set_layer(4); })},
      {"put role unspecified", grpc::INVALID_ARGUMENT, "chunks.role",
       mutate([&](Stream& s) { chunk(s, 1)->set_role(v1::TENSOR_ROLE_UNSPECIFIED); })},
      {"put tensor bytes exceed the shape", grpc::INVALID_ARGUMENT, "chunks.data",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_data()->append("xx"); })},
      {"put offset gap", grpc::INVALID_ARGUMENT, "chunks.offset",
       mutate([&](Stream& s) {
         auto* c = chunk(s, 1);
         v1::TensorChunk tail = *c;
         c->mutable_data()->resize(100);
         tail.clear_header();
         tail.set_offset(200);
         tail.mutable_data()->erase(0, 200);
         *s[1].add_chunks() = tail;
       })},
      {"put huge offset", grpc::INVALID_ARGUMENT, "chunks.offset",
       mutate([&](Stream& s) {
         v1::TensorChunk extra = *chunk(s, 1);
         extra.clear_header();
         extra.set_offset(1ull << 63);
         *s[1].add_chunks() = extra;
       })},
      {"put checksum mismatch", grpc::DATA_LOSS, "chunks.header.crc32c",
       mutate([&](Stream& s) { (*chunk(s, 1)->mutable_data())[10] ^= 1; })},
      {"put page index out of range", grpc::INVALID_ARGUMENT, "chunks.page",
       mutate([&](Stream& s) { chunk(s, 1)->set_page(1u << 31); })},
      {"put next page before the current one completes", grpc::INVALID_ARGUMENT, "chunks.page",
       mutate([&](Stream& s) { std::swap(s[2], s[9]); })},
      {"put skips a page", grpc::INVALID_ARGUMENT, "chunks.page",
       mutate([](Stream& s) { s.erase(s.begin() + 1, s.begin() + 9); })},
      {"put upper-case model id", grpc::INVALID_ARGUMENT, "header.model_id",
       mutate([](Stream& s) {
         std::string id = s[0].header().model_id();
         for (char& c : id) c = static_cast<char>(std::toupper(c));
         s[0].mutable_header()->set_model_id(id);
       })},
      {"put truncated stream", grpc::INVALID_ARGUMENT, "incomplete",
       mutate([](Stream& s) { s.resize(4); })},
      {"put stream without pages", grpc::INVALID_ARGUMENT, "chunks",
       mutate([](Stream& s) { s.resize(1); })},
      {"put oversized message", grpc::RESOURCE_EXHAUSTED, "larger than max",
       mutate([&](Stream& s) { chunk(s, 1)->mutable_data()->resize(5 << 20); })},
      {"get unknown dtype", grpc::INVALID_ARGUMENT, "dtype",
       [](BadInput& t) {
         v1::GetRequest r;
         r.set_model_id(t.model_.model_id);
         r.mutable_tokens()->Add(t.stored_.begin(), t.stored_.end());
         r.set_dtype(static_cast<v1::DType>(42));
         auto ctx = t.client_->NewContext();
         auto reader = t.client_->stub()->Get(ctx.get(), r);
         v1::GetResponse m;
         while (reader->Read(&m)) {}
         return reader->Finish();
       }},
      {"get first_page beyond the tokens", grpc::INVALID_ARGUMENT, "first_page",
       [](BadInput& t) {
         v1::GetRequest r;
         r.set_model_id(t.model_.model_id);
         r.mutable_tokens()->Add(t.stored_.begin(), t.stored_.end());
         r.set_first_page(2);
         auto ctx = t.client_->NewContext();
         auto reader = t.client_->stub()->Get(ctx.get(), r);
         v1::GetResponse m;
         while (reader->Read(&m)) {}
         return reader->Finish();
       }},
      {"lookup empty token list", grpc::INVALID_ARGUMENT, "tokens",
       [](BadInput& t) {
         v1::LookupRequest r;
         r.set_model_id(t.model_.model_id);
         return Unary(t, &v1::Cache::Stub::Lookup, r);
       }},
      {"lookup unknown model", grpc::NOT_FOUND, "model_id",
       [](BadInput& t) {
         v1::LookupRequest r;
         r.set_model_id(std::string(64, '0'));
         r.add_tokens(1);
         return Unary(t, &v1::Cache::Stub::Lookup, r);
       }},
      {"explain empty token list", grpc::INVALID_ARGUMENT, "tokens",
       [](BadInput& t) {
         v1::ExplainRequest r;
         r.set_model_id(t.model_.model_id);
         return Unary(t, &v1::Cache::Stub::Explain, r);
       }},
      {"register relative model_dir", grpc::INVALID_ARGUMENT, "model_dir",
       [](BadInput& t) {
         v1::RegisterModelRequest r;
         r.set_model_dir("model");
         return Unary(t, &v1::Cache::Stub::RegisterModel, r);
       }},
      {"delete first_page beyond the tokens", grpc::INVALID_ARGUMENT, "first_page",
       [](BadInput& t) {
         v1::DeleteRequest r;
         r.set_model_id(t.model_.model_id);
         r.mutable_tokens()->Add(t.stored_.begin(), t.stored_.end());
         r.set_first_page(5);
         return Unary(t, &v1::Cache::Stub::Delete, r);
       }},
      {"register without a source", grpc::INVALID_ARGUMENT, "source",
       [](BadInput& t) {
         v1::RegisterModelRequest r;
         return Unary(t, &v1::Cache::Stub::RegisterModel, r);
       }},
      {"register page_tokens not a power of two", grpc::INVALID_ARGUMENT, "page_tokens",
       [](BadInput& t) {
         v1::RegisterModelRequest r;
         r.set_model_dir(t.daemon_->dir() + "/model");
         r.set_page_tokens(24);
         return Unary(t, &v1::Cache::Stub::RegisterModel, r);
       }},
      {"register missing directory", grpc::NOT_FOUND, "model_dir",
       [](BadInput& t) {
         v1::RegisterModelRequest r;
         r.set_model_dir(t.daemon_->dir() + "/nope");
         return Unary(t, &v1::Cache::Stub::RegisterModel, r);
       }},
      {"register config with a huge size", grpc::INVALID_ARGUMENT, "num_hidden_layers",
       [](BadInput& t) {
         v1::RegisterModelRequest r;
         r.set_config_json(R"({"model_type": "llama", "num_hidden_layers": 99999999999,
           "hidden_size": 64, "num_attention_heads": 4})");
         v1::RegisterModelResponse resp;
         auto ctx = t.client_->NewContext();
         return t.client_->stub()->RegisterModel(ctx.get(), r, &resp);
       }},
  };

  const std::string before = Snapshot();
  for (const Case& c : cases) {
    const grpc::Status s = c.run(*this);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos)
        << c.name << ": message does not name " << c.field << ": " << s.error_message();
    EXPECT_EQ(Snapshot(), before) << c.name << " changed the store";
  }
  EXPECT_GE(cases.size(), 15u);

  // A duplicate put of stored pages is not an error: it is acknowledged and changes nothing.
  auto dup = client_->Put(model_, stored_, 0, MakePages(model_, stored_));
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_EQ(dup->pages_stored(), 0u);
  EXPECT_EQ(dup->pages_present(), 2u);
  EXPECT_EQ(Snapshot(), before);
}

// Pages are atomic one by one (slimkv.v1.PutRequest): an error after a page completed leaves that
// valid page stored, says so, and stores nothing of the failing page.
TEST_F(BadInput, ErrorAfterACompletePageKeepsOnlyThatPage) {
  Stream s = Valid();
  Stream page0(s.begin() + 1, s.begin() + 9);
  s.resize(9);
  s.insert(s.end(), page0.begin(), page0.end());  // page 0 again instead of page 1
  const grpc::Status status = Put(s);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("chunks.page"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("1 earlier pages were stored"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(client_->Lookup(model_, fresh_)->hit_tokens(), 16u);
  auto got = client_->Get(model_, fresh_);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].bytes, MakePage(model_, fresh_, 0).bytes);
}

}  // namespace
}  // namespace slimkv::testing
