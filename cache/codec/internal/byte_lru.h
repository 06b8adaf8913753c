// ByteLru: least-recently-used order and byte accounting of keyed entries under one byte
// budget — the bookkeeping of the GPU tier (cache/codec/gpu_tier.h), kept apart from device memory so
// that it can be tested without a device. It holds no values: the owner keeps those, keyed the
// same way, and drops the ones Insert reports evicted.
//
// Thread-safety: none; the owner serializes calls under its own lock.
#pragma once

#include <cstdint>
#include <list>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace slimkv::cache {

template <typename Key, typename Hash = typename absl::flat_hash_map<Key, int>::hasher>
class ByteLru {
 public:
  explicit ByteLru(uint64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  uint64_t budget_bytes() const { return budget_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  size_t size() const { return index_.size(); }
  bool Contains(const Key& key) const { return index_.contains(key); }

  // Makes `key` the most recently used; false when absent.
  bool Touch(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    order_.splice(order_.end(), order_, it->second.pos);
    return true;
  }

  // Accounts `key` with `bytes` as the most recently used, first evicting the least recently
  // used entries until it fits; appends those to *evicted (oldest first). A key already present
  // is replaced (its old bytes released, not reported evicted). False, changing nothing, when
  // `bytes` exceeds the whole budget.
  bool Insert(const Key& key, uint64_t bytes, std::vector<Key>* evicted) {
    if (bytes > budget_bytes_) return false;
    Erase(key);
    while (used_bytes_ + bytes > budget_bytes_) {
      const Key victim = order_.front();
      Erase(victim);
      evicted->push_back(victim);
    }
    order_.push_back(key);
    index_.emplace(key, Entry{bytes, std::prev(order_.end())});
    used_bytes_ += bytes;
    return true;
  }

  // Forgets `key`; false when absent.
  bool Erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    used_bytes_ -= it->second.bytes;
    order_.erase(it->second.pos);
    index_.erase(it);
    return true;
  }

 private:
  struct Entry {
    uint64_t bytes;
    typename std::list<Key>::iterator pos;
  };

  const uint64_t budget_bytes_;
  uint64_t used_bytes_ = 0;
  std::list<Key> order_;  // least recently used first
  absl::flat_hash_map<Key, Entry, Hash> index_;
};

}  // namespace slimkv::cache
