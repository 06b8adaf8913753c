// ByteLru (cache/codec/internal/byte_lru.h): the GPU tier's budget and eviction order, without
// a device.
#include "cache/codec/internal/byte_lru.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace slimkv::cache {
namespace {

TEST(ByteLruTest, EvictsLeastRecentlyUsedUntilTheNewEntryFits) {
  ByteLru<std::string> lru(100);
  std::vector<std::string> evicted;
  ASSERT_TRUE(lru.Insert("a", 40, &evicted));
  ASSERT_TRUE(lru.Insert("b", 30, &evicted));
  ASSERT_TRUE(lru.Insert("c", 20, &evicted));
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ(lru.used_bytes(), 90u);
  EXPECT_TRUE(lru.Touch("a"));  // b is now the coldest
  ASSERT_TRUE(lru.Insert("d", 50, &evicted));
  EXPECT_EQ(evicted, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(lru.used_bytes(), 90u);
  EXPECT_TRUE(lru.Contains("a"));
  EXPECT_FALSE(lru.Contains("b"));
  EXPECT_EQ(lru.size(), 2u);
}

TEST(ByteLruTest, RefusesWhatExceedsTheWholeBudgetAndChangesNothing) {
  ByteLru<std::string> lru(100);
  std::vector<std::string> evicted;
  ASSERT_TRUE(lru.Insert("a", 60, &evicted));
  EXPECT_FALSE(lru.Insert("big", 101, &evicted));
  EXPECT_TRUE(evicted.empty());
  EXPECT_TRUE(lru.Contains("a"));
  EXPECT_EQ(lru.used_bytes(), 60u);
  EXPECT_TRUE(lru.Insert("exact", 100, &evicted));
  EXPECT_EQ(evicted, (std::vector<std::string>{"a"}));
}

TEST(ByteLruTest, ReplacingAKeyReleasesItsOldBytesWithoutAnEviction) {
  ByteLru<std::string> lru(100);
  std::vector<std::string> evicted;
  ASSERT_TRUE(lru.Insert("a", 60, &evicted));
  ASSERT_TRUE(lru.Insert("b", 30, &evicted));
  ASSERT_TRUE(lru.Insert("a", 70, &evicted));  // a slim layer re-made for longer sequences
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ(lru.used_bytes(), 100u);
  EXPECT_TRUE(lru.Erase("a"));
  EXPECT_FALSE(lru.Erase("a"));
  EXPECT_FALSE(lru.Touch("a"));
  EXPECT_EQ(lru.used_bytes(), 30u);
}

TEST(ByteLruTest, ZeroBudgetHoldsNothing) {
  ByteLru<std::string> lru(0);
  std::vector<std::string> evicted;
  EXPECT_FALSE(lru.Insert("a", 1, &evicted));
  EXPECT_EQ(lru.size(), 0u);
}

}  // namespace
}  // namespace slimkv::cache
