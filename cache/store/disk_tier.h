// The disk tier: pages in a RocksDB database under a byte budget and per-tenant quotas, with
// least-recently-used eviction in which a tenant only ever evicts its own pages (tenant_lru.h).
//
// RocksDB key = the 32-byte page key, value = the page's record (disk_record.h). An in-memory
// index (key → bytes, tenant, LRU position) answers Contains and drives eviction without touching
// the disk; Open rebuilds it by iterating the database and checking every record's head (magic,
// version, sizes, header CRC), deleting and counting records that fail. The payload's CRC is
// checked on every Get: a corrupt record is deleted, counted and reported absent, never served.
//
// Budget accounting counts DiskBytes (key + record) per page. That is the logical size of what
// is stored; RocksDB's files may briefly take more (deleted records linger until compaction and
// blob garbage collection reclaim them).
//
// Durability: with `sync`, every write (insert, eviction, erase) is synced to RocksDB's WAL
// before the call returns, so an acknowledged insert survives kill -9 or power loss; without it,
// a process crash loses nothing but a machine crash may lose the latest writes. A record is one
// RocksDB value written in one batch, so it is either wholly present after a crash or absent.
//
// After Open, the LRU order of rebuilt pages is the database's key order (last use is not
// persisted, to keep Gets read-only on disk): the first evictions after a restart pick pages
// arbitrarily among those not used since. When the database holds more than the budget or a
// tenant more than its quota, Open evicts down to them (TenantLru::Overflow).
//
// Thread-safety: internally synchronized. Reads run concurrently; writes (Insert, Erase, the
// eviction and deletion of corrupt records) are serialized among themselves, and no lock is held
// by a reader while it waits for RocksDB.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/store/page.h"
#include "cache/store/page_store.h"
#include "cache/store/tenant_lru.h"

namespace rocksdb {
class DB;
}

namespace slimkv::cache {

struct DiskTierOptions {
  // Directory of the RocksDB database; created when missing.
  std::string path;
  // Byte budget over DiskBytes of all pages. Open evicts down to it when the database holds more.
  uint64_t budget_bytes = 64ull << 30;
  // Sync every write to the WAL before acknowledging it (RocksDB WriteOptions::sync): acknowledged
  // inserts survive kill -9 and power loss, at the price of one fsync per write (milliseconds on
  // most disks, so inserts serialize at the device's sync rate).
  bool sync = true;
  // Per-tenant quotas in effect from Open (SetQuota changes them later).
  std::map<std::string, TenantQuota> quotas;
};

struct DiskRebuildStats {
  uint64_t records = 0;  // valid records indexed
  uint64_t dropped = 0;  // records that failed their check and were deleted
  uint64_t evicted = 0;  // records evicted because the database held more than the budget
  double seconds = 0;    // wall time of the rebuild
};

class DiskTier {
 public:
  using InsertResult = PageStore::InsertResult;

  // Opens (or creates) the database at options.path and rebuilds the index.
  // UNAVAILABLE when RocksDB cannot open it (held by another process, I/O error); DATA_LOSS when
  // RocksDB reports its own files corrupt.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DiskTier>> Open(DiskTierOptions options);
  ~DiskTier();
  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // Sets a tenant's quota; takes effect at its next insert.
  void SetQuota(const std::string& tenant, TenantQuota quota);
  TenantQuota Quota(const std::string& tenant) const;

  // Writes `page` as its tenant's most recently used, in the same RocksDB batch as the deletion
  // of the tenant's least-recently-used pages it displaces (TenantLru::PlanRoom). A present key is
  // not rewritten (kAlreadyPresent; it becomes most recent). INVALID_ARGUMENT when the page
  // cannot be recorded (CheckRecordable); RESOURCE_EXHAUSTED when it cannot be made room for
  // (PlanRoom); UNAVAILABLE on a write error. Nothing changes on error.
  [[nodiscard]] absl::StatusOr<InsertResult> Insert(const Page& page);

  // Reads the page under `key` and verifies its record, marking it most recently used. nullptr
  // when absent — including when the record failed its check, in which case it is deleted and
  // counted in checksum_failures(). UNAVAILABLE on a read error (the page stays).
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const Page>> Get(const PageKey& key);

  // True when `key` is indexed; marks it most recently used. No disk access.
  bool Touch(const PageKey& key);

  // True when `key` is indexed; leaves the LRU order. No disk access.
  bool Contains(const PageKey& key) const;

  // Deletes the page: true when it was present, false when absent; UNAVAILABLE on a write
  // error (the page stays).
  [[nodiscard]] absl::StatusOr<bool> Erase(const PageKey& key);

  uint64_t budget_bytes() const { return options_.budget_bytes; }
  uint64_t used_bytes() const;
  uint64_t page_count() const;
  std::map<std::string, TenantUsage> UsageByTenant() const;
  // Records that failed their check since Open, at rebuild and at Get; each was deleted.
  uint64_t checksum_failures() const;
  const DiskRebuildStats& rebuild_stats() const { return rebuild_; }

  // What `page` costs against the budget: its key and record.
  static uint64_t DiskBytes(const Page& page);

 private:
  DiskTier(DiskTierOptions options, std::unique_ptr<rocksdb::DB> db);
  absl::Status Rebuild();
  // Deletes the record under `key` if its index entry is still `generation`.
  void DropCorrupt(const PageKey& key, uint64_t generation);

  // Constant after construction.
  const DiskTierOptions options_;
  const std::unique_ptr<rocksdb::DB> db_;
  DiskRebuildStats rebuild_;  // written by Open only

  // Serializes writers, so that an insert's choice of victims still holds when its batch
  // commits. Acquired before mu_; never held by readers. std::mutex rather than absl::Mutex:
  // see page_store.h.
  std::mutex write_mu_;

  mutable std::mutex mu_;
  TenantLru lru_ ABSL_GUARDED_BY(mu_);
  uint64_t checksum_failures_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace slimkv::cache
