#include "cache/store/disk_tier.h"

#include <chrono>
#include <cstring>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include "absl/strings/str_cat.h"
#include "cache/store/disk_record.h"
#include "cache/store/internal/disk_tier_rocksdb.h"

namespace slimkv::cache {
namespace {

// The one conversion of rocksdb::Status, chosen by what the caller should do.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("disk tier: ", what, ": ", s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNotSupported()) return absl::UnimplementedError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain() ||
      s.IsShutdownInProgress() || s.IsIncomplete()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsAborted()) return absl::AbortedError(msg);
  return absl::InternalError(msg);
}

rocksdb::Slice AsSlice(const PageKey& key) {
  return {reinterpret_cast<const char*>(key.data()), key.size()};
}

}  // namespace

namespace internal {

rocksdb::Options DiskTierDbOptions(const DiskTierOptions& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  // KV tensors are float mantissas: general-purpose compression gains little and costs CPU.
  o.compression = rocksdb::kNoCompression;
  // Pages are kilobytes to megabytes: kept in blob files, they are written once instead of being
  // rewritten by every compaction level; the LSM tree holds only keys and blob references.
  o.enable_blob_files = true;
  o.min_blob_size = 4096;
  o.blob_compression_type = rocksdb::kNoCompression;
  o.enable_blob_garbage_collection = true;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 4;
  return o;
}

rocksdb::WriteOptions DiskTierWriteOptions(const DiskTierOptions& options) {
  rocksdb::WriteOptions w;
  w.sync = options.sync;
  return w;
}

}  // namespace internal

DiskTier::DiskTier(DiskTierOptions options, std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)), lru_("disk", options_.budget_bytes) {
  for (const auto& [tenant, quota] : options_.quotas) lru_.SetQuota(tenant, quota);
}

DiskTier::~DiskTier() = default;

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(DiskTierOptions options) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(internal::DiskTierDbOptions(options), options.path, &raw);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open ", options.path));
  std::unique_ptr<DiskTier> tier(new DiskTier(std::move(options), std::unique_ptr<rocksdb::DB>(raw)));
  if (absl::Status st = tier->Rebuild(); !st.ok()) return st;
  return tier;
}

uint64_t DiskTier::DiskBytes(const Page& page) { return sizeof(PageKey) + RecordBytes(page); }

absl::Status DiskTier::Rebuild() {
  const auto start = std::chrono::steady_clock::now();
  rocksdb::WriteBatch deletes;
  std::lock_guard<std::mutex> lock(mu_);
  {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;  // a one-off scan: keep the block cache for Gets
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Slice k = it->key(), v = it->value();
      absl::StatusOr<DiskRecordMeta> meta = DecodeRecordMeta({v.data(), v.size()});
      if (k.size() != sizeof(PageKey) || !meta.ok() ||
          std::memcmp(meta->key.data(), k.data(), sizeof(PageKey)) != 0) {
        deletes.Delete(k);
        ++rebuild_.dropped;
        continue;
      }
      lru_.Add(meta->key, meta->tenant, k.size() + v.size(), meta->logical_bytes);
      ++rebuild_.records;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "rebuilding the index");
  }
  for (const PageKey& victim : lru_.Overflow()) {
    deletes.Delete(AsSlice(victim));
    lru_.Remove(victim, /*evicted=*/true);
    ++rebuild_.evicted;
  }
  checksum_failures_ = rebuild_.dropped;
  if (deletes.Count() > 0) {
    rocksdb::Status s = db_->Write(internal::DiskTierWriteOptions(options_), &deletes);
    if (!s.ok()) return FromRocks(s, "deleting records at rebuild");
  }
  rebuild_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

absl::StatusOr<DiskTier::InsertResult> DiskTier::Insert(const Page& page) {
  if (absl::Status s = CheckRecordable(page); !s.ok()) return s;
  const uint64_t bytes = DiskBytes(page);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = lru_.CheckAdmissible(page.tenant, bytes); !s.ok()) return s;
  }
  if (Touch(page.key)) return InsertResult::kAlreadyPresent;  // spares the encoding
  const std::string record = EncodeRecord(page);

  std::lock_guard<std::mutex> write_lock(write_mu_);
  rocksdb::WriteBatch batch;
  std::vector<PageKey> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lru_.Touch(page.key)) return InsertResult::kAlreadyPresent;
    absl::StatusOr<std::vector<PageKey>> plan = lru_.PlanRoom(page.tenant, bytes);
    if (!plan.ok()) return plan.status();
    victims = *std::move(plan);
  }
  for (const PageKey& v : victims) batch.Delete(AsSlice(v));
  batch.Put(AsSlice(page.key), record);
  rocksdb::Status s = db_->Write(internal::DiskTierWriteOptions(options_), &batch);
  if (!s.ok()) return FromRocks(s, "insert");

  // Writers are serialized by write_mu_, so the plan still holds.
  std::lock_guard<std::mutex> lock(mu_);
  for (const PageKey& v : victims) lru_.Remove(v, /*evicted=*/true);
  lru_.Add(page.key, page.tenant, bytes, page.LogicalBytes());
  return InsertResult::kInserted;
}

absl::StatusOr<std::shared_ptr<const Page>> DiskTier::Get(const PageKey& key) {
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lru_.Touch(key)) return nullptr;
    generation = lru_.Generation(key);
  }
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), AsSlice(key),
                               &value);
  if (s.IsNotFound()) return nullptr;  // erased or evicted since the index said present
  if (!s.ok() && !s.IsCorruption()) return FromRocks(s, "read");
  if (s.ok()) {
    absl::StatusOr<std::shared_ptr<Page>> page = DecodeRecord({value.data(), value.size()});
    if (page.ok() && (*page)->key == key) return std::shared_ptr<const Page>(*std::move(page));
  }
  DropCorrupt(key, generation);
  return nullptr;
}

void DiskTier::DropCorrupt(const PageKey& key, uint64_t generation) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Otherwise erased, evicted or replaced by a fresh insert while we read: nothing to drop.
    if (lru_.Generation(key) != generation) return;
    ++checksum_failures_;
  }
  // On a write error the entry stays indexed and accounted; the next Get tries again.
  if (!db_->Delete(internal::DiskTierWriteOptions(options_), AsSlice(key)).ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  lru_.Remove(key, /*evicted=*/false);
}

bool DiskTier::Touch(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Touch(key);
}

bool DiskTier::Contains(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Contains(key);
}

void DiskTier::SetQuota(const std::string& tenant, TenantQuota quota) {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.SetQuota(tenant, quota);
}

TenantQuota DiskTier::Quota(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.Quota(tenant);
}

absl::StatusOr<bool> DiskTier::Erase(const PageKey& key) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (!Contains(key)) return false;
  rocksdb::Status s = db_->Delete(internal::DiskTierWriteOptions(options_), AsSlice(key));
  if (!s.ok()) return FromRocks(s, "erase");
  std::lock_guard<std::mutex> lock(mu_);
  lru_.Remove(key, /*evicted=*/false);
  return true;
}

uint64_t DiskTier::used_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.used_bytes();
}

uint64_t DiskTier::page_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.page_count();
}

std::map<std::string, TenantUsage> DiskTier::UsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.UsageByTenant();
}

uint64_t DiskTier::checksum_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checksum_failures_;
}

}  // namespace slimkv::cache
