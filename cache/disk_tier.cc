#include "cache/disk_tier.h"

#include <chrono>
#include <cstring>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include "absl/strings/str_cat.h"
#include "cache/disk_record.h"
#include "cache/internal/disk_tier_rocksdb.h"

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
    : options_(std::move(options)), db_(std::move(db)) {}

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
      AddLocked(meta->key, k.size() + v.size(), meta->logical_bytes, meta->tenant);
      ++rebuild_.records;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "rebuilding the index");
  }
  while (used_bytes_ > options_.budget_bytes) {
    const PageKey victim = lru_.back();
    deletes.Delete(AsSlice(victim));
    RemoveLocked(victim, /*evicted=*/true);
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
  if (bytes > options_.budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("page of ", bytes,
                                                     " bytes exceeds the disk budget of ",
                                                     options_.budget_bytes, " bytes"));
  }
  if (Touch(page.key)) return InsertResult::kAlreadyPresent;  // spares the encoding
  const std::string record = EncodeRecord(page);

  std::lock_guard<std::mutex> write_lock(write_mu_);
  rocksdb::WriteBatch batch;
  std::vector<PageKey> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(page.key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return InsertResult::kAlreadyPresent;
    }
    // Terminates: bytes <= budget, so the loop stops before it runs out of pages.
    uint64_t freed = 0;
    for (auto it = lru_.rbegin(); used_bytes_ - freed + bytes > options_.budget_bytes; ++it) {
      victims.push_back(*it);
      freed += index_.at(*it).bytes;
    }
  }
  for (const PageKey& v : victims) batch.Delete(AsSlice(v));
  batch.Put(AsSlice(page.key), record);
  rocksdb::Status s = db_->Write(internal::DiskTierWriteOptions(options_), &batch);
  if (!s.ok()) return FromRocks(s, "insert");

  std::lock_guard<std::mutex> lock(mu_);
  for (const PageKey& v : victims) RemoveLocked(v, /*evicted=*/true);
  AddLocked(page.key, bytes, page.LogicalBytes(), page.tenant);
  return InsertResult::kInserted;
}

absl::StatusOr<std::shared_ptr<const Page>> DiskTier::Get(const PageKey& key) {
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    generation = it->second.generation;
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
    auto it = index_.find(key);
    // Otherwise erased, evicted or replaced by a fresh insert while we read: nothing to drop.
    if (it == index_.end() || it->second.generation != generation) return;
    ++checksum_failures_;
  }
  // On a write error the entry stays indexed and accounted; the next Get tries again.
  if (!db_->Delete(internal::DiskTierWriteOptions(options_), AsSlice(key)).ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  RemoveLocked(key, /*evicted=*/false);
}

bool DiskTier::Touch(const PageKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return true;
}

bool DiskTier::Contains(const PageKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.contains(key);
}

absl::StatusOr<bool> DiskTier::Erase(const PageKey& key) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (!Contains(key)) return false;
  rocksdb::Status s = db_->Delete(internal::DiskTierWriteOptions(options_), AsSlice(key));
  if (!s.ok()) return FromRocks(s, "erase");
  std::lock_guard<std::mutex> lock(mu_);
  RemoveLocked(key, /*evicted=*/false);
  return true;
}

uint64_t DiskTier::used_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_bytes_;
}

uint64_t DiskTier::page_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

std::map<std::string, TenantUsage> DiskTier::UsageByTenant() const {
  std::lock_guard<std::mutex> lock(mu_);
  return usage_;
}

uint64_t DiskTier::checksum_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checksum_failures_;
}

void DiskTier::AddLocked(const PageKey& key, uint64_t bytes, uint64_t logical_bytes,
                         const std::string& tenant) {
  auto [usage, unused] = usage_.try_emplace(tenant);
  TenantUsage& u = usage->second;
  u.Add(bytes, logical_bytes);
  used_bytes_ += bytes;
  lru_.push_front(key);
  index_.emplace(key, Entry{.lru = lru_.begin(), .bytes = bytes, .logical_bytes = logical_bytes,
                            .tenant = &usage->first, .generation = ++next_generation_});
}

void DiskTier::RemoveLocked(const PageKey& key, bool evicted) {
  auto it = index_.find(key);
  const Entry& e = it->second;
  TenantUsage& u = usage_.at(*e.tenant);
  u.Remove(e.bytes, e.logical_bytes, evicted);
  used_bytes_ -= e.bytes;
  lru_.erase(e.lru);
  index_.erase(it);
}

}  // namespace slimkv::cache
