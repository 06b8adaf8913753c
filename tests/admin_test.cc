// The Admin service through a real slimkvd: who may call it, changes that persist across a
// restart, bad changes refused with nothing changed, a tenant's mode switched under load with
// every request succeeding and every get right, and share groups.
#include <atomic>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/synthetic_model.h"
#include "tests/daemon_process.h"
#include "tests/support/model_pages.h"
#include "tests/support/test_pages.h"

namespace slimkv::testing {
namespace {

constexpr char kAdminToken[] = "admin-secret";

std::string Config(const std::string& extra_tenants = "") {
  return absl::StrCat("admin_token_sha256: \"", TokenSha256(kAdminToken), "\"\n",
                      TenantBlock("alpha"), TenantBlock("beta"), extra_tenants);
}

std::unique_ptr<client::Client> As(const DaemonProcess& d, const std::string& token) {
  client::ClientOptions o;
  o.token = token;
  return d.NewClient(o);
}

v1::TenantInfo Find(const v1::ListTenantsResponse& r, const std::string& tenant) {
  for (const auto& t : r.tenants()) {
    if (t.tenant() == tenant) return t;
  }
  ADD_FAILURE() << tenant << " not listed";
  return {};
}

TEST(Admin, OnlyTheAdminTokenMayCallIt) {
  auto d = DaemonProcess::Start(Config());
  ASSERT_TRUE(d.ok()) << d.status();
  auto code = [&](const std::string& token) {
    return As(**d, token)->ListTenants().status().code();
  };
  EXPECT_EQ(code(""), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(code("wrong"), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(code(TenantToken("alpha")), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(code(kAdminToken), absl::StatusCode::kOk);
  v1::SetTenantRequest set;
  set.set_tenant("beta");
  set.mutable_policy()->set_mode(v1::MODE_SLIM);
  EXPECT_EQ(As(**d, TenantToken("alpha"))->SetTenant(set).status().code(),
            absl::StatusCode::kPermissionDenied);
  // The admin token is not a tenant's.
  EXPECT_EQ(As(**d, kAdminToken)->Stats().status().code(), absl::StatusCode::kUnauthenticated);

  auto list = As(**d, kAdminToken)->ListTenants();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->tenants_size(), 2);
  EXPECT_EQ(Find(*list, "beta").policy().mode(), v1::MODE_FULL) << "the refused set changed nothing";
}

TEST(Admin, WithTenantsButNoAdminTokenTheServiceIsDisabled) {
  auto d = DaemonProcess::Start(TenantBlock("alpha"));
  ASSERT_TRUE(d.ok()) << d.status();
  auto r = As(**d, TenantToken("alpha"))->ListTenants();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("admin_token_sha256"), std::string::npos) << r.status();
}

TEST(Admin, ChangesPersistAcrossARestartAndBadOnesChangeNothing) {
  auto d = DaemonProcess::Start(Config());
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  auto admin = As(daemon, kAdminToken);

  v1::SetTenantRequest bad;
  bad.set_tenant("alpha");
  bad.mutable_policy()->set_mode(v1::MODE_SLIM);
  bad.mutable_policy()->set_error_tolerance(2);
  auto refused = admin->SetTenant(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("policy.error_tolerance"), std::string::npos)
      << refused.status();
  bad.set_tenant("nobody");
  bad.mutable_policy()->set_error_tolerance(0.01);
  EXPECT_EQ(admin->SetTenant(bad).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Find(*admin->ListTenants(), "alpha").policy().mode(), v1::MODE_FULL);

  v1::SetTenantRequest set;
  set.set_tenant("alpha");
  set.mutable_policy()->set_mode(v1::MODE_SLIM);
  set.mutable_policy()->set_quant(v1::QUANT_INT8);
  set.mutable_quotas()->set_host_quota_bytes(1 << 20);
  auto changed = admin->SetTenant(set);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->previous().policy().mode(), v1::MODE_FULL);
  EXPECT_EQ(changed->current().policy().mode(), v1::MODE_SLIM);
  EXPECT_TRUE(changed->current().overridden());

  ASSERT_EQ(daemon.Stop(), 0);
  ASSERT_TRUE(daemon.Restart().ok());
  admin = As(daemon, kAdminToken);
  v1::TenantInfo alpha = Find(*admin->ListTenants(), "alpha");
  EXPECT_EQ(alpha.policy().mode(), v1::MODE_SLIM);
  EXPECT_EQ(alpha.policy().quant(), v1::QUANT_INT8);
  EXPECT_EQ(alpha.quotas().host_quota_bytes(), 1u << 20);
  EXPECT_EQ(alpha.stats().tiers(0).quota_bytes(), 1u << 20) << "applied to the host tier";
  EXPECT_TRUE(alpha.overridden());

  v1::SetTenantRequest reset;
  reset.set_tenant("alpha");
  reset.set_reset(true);
  ASSERT_TRUE(admin->SetTenant(reset).ok());
  alpha = Find(*admin->ListTenants(), "alpha");
  EXPECT_EQ(alpha.policy().mode(), v1::MODE_FULL);
  EXPECT_FALSE(alpha.overridden());
}

TEST(Admin, AQuotaSetAtRunTimeHoldsWhenTheDiskTierReopens) {
  auto d = DaemonProcess::Start(Config() + "disk { sync: true }\n");
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  ASSERT_TRUE(client::SyntheticModel{}.Write(daemon.dir() + "/model").ok());
  auto alpha = As(daemon, TenantToken("alpha"));
  const auto model = *alpha->RegisterModelDir(daemon.dir() + "/model", 16);
  const auto tokens = Tokens(9, 4 * 16);
  ASSERT_TRUE(alpha->Put(model, tokens, 0, MakePages(model, tokens)).ok());  // 4 pages on disk

  // Room for two of alpha's records (a record is its page's 64 KiB payload plus under 1 KiB).
  v1::SetTenantRequest set;
  set.set_tenant("alpha");
  set.mutable_quotas()->set_disk_quota_bytes(2 * (65536 + 1024));
  ASSERT_TRUE(As(daemon, kAdminToken)->SetTenant(set).ok());
  ASSERT_EQ(daemon.Stop(), 0);
  ASSERT_TRUE(daemon.Restart().ok());
  auto scrape = ScrapeMetrics(daemon.metrics_port());
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, R"(slimkv_stored_pages{tenant="alpha",tier="disk"})"), 2)
      << daemon.Log();
  EXPECT_NE(daemon.Log().find("2 evicted to fit the budget and quotas"), std::string::npos)
      << daemon.Log();
}

TEST(Admin, ModeSwitchUnderLoadFailsNoRequestAndEveryGetIsRight) {
  // Full rank for the projected latent, so that every mode is exact to fp32 rounding and "right"
  // is a 1e-5 bound (the lossy ranks are PageCodec's and Modes' tests).
  auto d = DaemonProcess::Start(Config() + "latent_rank: 4096\n");
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  const client::SyntheticModel weights = client::SyntheticModel::Small("llama", 64, 4, 4, 16);
  ASSERT_TRUE(weights.Write(daemon.dir() + "/mha").ok());
  auto registered = RegisterWithFactors(*As(daemon, TenantToken("alpha")), daemon.dir() + "/mha", 16);
  ASSERT_TRUE(registered.ok()) << registered.status();
  const client::ModelHandle model = *registered;

  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, failures{0}, wrong{0};
  std::mutex mu;
  std::set<v1::Mode> stored_modes;
  std::vector<std::thread> clients;
  for (uint32_t c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      auto client = As(daemon, TenantToken("alpha"));
      for (uint32_t i = 0; !stop; ++i) {
        const uint32_t seed = 1000 * (c + 1) + i;
        const auto tokens = Tokens(seed, 16);
        const EnginePage page = KvPageFromX(weights, model, 0, seed);
        auto put = client->Put(model, tokens, 0, std::vector{page.data});
        auto got = client->Get(model, tokens, 0, kernels::DType::kF32);
        requests += 2;
        if (!put.ok() || !got.ok() || got->size() != 1) {
          ++failures;
          ADD_FAILURE() << put.status() << " / " << got.status();
          continue;
        }
        if (PageError((*got)[0], model, page) > 1e-5) ++wrong;
        std::lock_guard<std::mutex> lock(mu);
        stored_modes.insert((*got)[0].mode);
      }
    });
  }
  auto admin = As(daemon, kAdminToken);
  for (v1::Mode mode : {v1::MODE_SLIM, v1::MODE_LATENT, v1::MODE_FULL}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    v1::SetTenantRequest set;
    set.set_tenant("alpha");
    set.mutable_policy()->set_mode(mode);
    ASSERT_TRUE(admin->SetTenant(set).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_GT(requests, 20);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(stored_modes, (std::set<v1::Mode>{v1::MODE_FULL, v1::MODE_SLIM, v1::MODE_LATENT}));
}

TEST(Admin, ShareGroupMembersFindEachOthersPagesOutsidersDoNot) {
  auto d = DaemonProcess::Start(Config(TenantBlock("g1", "share_group: \"team\"") +
                                       TenantBlock("g2", "share_group: \"team\"")));
  ASSERT_TRUE(d.ok()) << d.status();
  DaemonProcess& daemon = **d;
  ASSERT_TRUE(client::SyntheticModel{}.Write(daemon.dir() + "/model").ok());
  auto g1 = As(daemon, TenantToken("g1")), g2 = As(daemon, TenantToken("g2")),
       alpha = As(daemon, TenantToken("alpha"));
  const auto model = *g1->RegisterModelDir(daemon.dir() + "/model", 16);
  const auto tokens = Tokens(5, 32);
  ASSERT_TRUE(g1->Put(model, tokens, 0, MakePages(model, tokens)).ok());
  EXPECT_EQ(g2->Lookup(model, tokens)->hit_tokens(), 32u);
  auto got = g2->Get(model, tokens, 0);
  ASSERT_TRUE(got.ok() && got->size() == 2);
  EXPECT_TRUE((*got)[1].bytes == MakePage(model, tokens, 1).bytes);
  EXPECT_EQ(alpha->Lookup(model, tokens)->hit_tokens(), 0u);
  auto explained = alpha->Explain(model.model_id, tokens);
  ASSERT_TRUE(explained.ok());
  EXPECT_EQ(explained->reason(), v1::ExplainResponse::REASON_ABSENT) << "reveals nothing";
}

}  // namespace
}  // namespace slimkv::testing
