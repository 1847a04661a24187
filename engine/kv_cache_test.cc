#include "engine/kv_cache.h"

#include <set>

#include "engine/kv_block_allocator.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

constexpr KvCacheShape kShape{/*num_layers=*/2, /*num_kv_heads=*/3, /*head_dim=*/4};
// Keys and values of 16 tokens, 2 layers, 3 heads, 4 floats each.
constexpr int64_t kBlockBytes = 2 * 2 * 3 * 4 * 16 * sizeof(float);

TEST(PagedKvCacheTest, SizesThePoolFromTheBudget) {
  auto cache = PagedKvCache::Create(kShape, 3 * kBlockBytes + kBlockBytes - 1);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->num_blocks(), 3);
  EXPECT_EQ((*cache)->bytes_per_block(), kBlockBytes);
  EXPECT_EQ(PagedKvCache::Create(kShape, kBlockBytes - 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PagedKvCache::Create({0, 3, 4}, kBlockBytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PagedKvCacheTest, ReservesAtStartAndTakesBlocksAsTokensArrive) {
  auto cache = *PagedKvCache::Create(kShape, 4 * kBlockBytes);
  auto a = cache->AddSequence(33);  // 3 blocks reserved
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(cache->reserved_blocks(), 3);
  EXPECT_EQ(cache->Usage().blocks_in_use, 0);
  // Only one unreserved block is left.
  EXPECT_EQ(cache->AddSequence(17).status().code(), absl::StatusCode::kResourceExhausted);
  auto b = cache->AddSequence(16);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);

  EXPECT_EQ(*cache->Append(*a, 16), 0);
  EXPECT_EQ(cache->Usage().blocks_in_use, 1);
  EXPECT_EQ(*cache->Append(*a, 1), 16);
  EXPECT_EQ(cache->Usage().blocks_in_use, 2);
  EXPECT_EQ(*cache->Append(*a, 16), 17);
  EXPECT_EQ(cache->Length(*a), 33);
  EXPECT_EQ(cache->BlockTable(*a).size(), 3u);
  EXPECT_EQ(cache->Append(*a, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Append(999, 1).status().code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(*cache->Append(*b, 5), 0);
  const KvCacheUsage usage = cache->Usage();
  EXPECT_EQ(usage.blocks_in_use, 4);
  EXPECT_EQ(usage.blocks_total, 4);
  EXPECT_EQ(usage.bytes_in_use, 4 * kBlockBytes);
  std::set<int32_t> blocks(cache->BlockTable(*a).begin(), cache->BlockTable(*a).end());
  blocks.insert(cache->BlockTable(*b).begin(), cache->BlockTable(*b).end());
  EXPECT_EQ(blocks.size(), 4u) << "sequences share no block";

  cache->RemoveSequence(*a);
  EXPECT_EQ(cache->Usage().blocks_in_use, 1);
  EXPECT_EQ(cache->reserved_blocks(), 1);
  EXPECT_FALSE(cache->Contains(*a));
  EXPECT_TRUE(cache->BlockTable(*a).empty());
  cache->RemoveSequence(*a);  // unknown ids are ignored
  EXPECT_TRUE(cache->AddSequence(48).ok()) << "freed blocks are available at once";
}

TEST(PagedKvCacheTest, SlabsOfDifferentBlocksLayersAndHeadsDoNotOverlap) {
  auto cache = *PagedKvCache::Create(kShape, 2 * kBlockBytes);
  const int64_t slab = PagedKvCache::kBlockTokens * kShape.head_dim;
  // Tag every float of every slab with its owner, then check that each slab kept its tag.
  auto tag = [&](int block, int layer, int head, int kv) {
    return static_cast<float>(((block * 2 + layer) * 3 + head) * 2 + kv);
  };
  for (int block = 0; block < 2; ++block)
    for (int layer = 0; layer < 2; ++layer)
      for (int head = 0; head < 3; ++head) {
        std::fill_n(cache->keys(block, layer, head), slab, tag(block, layer, head, 0));
        std::fill_n(cache->values(block, layer, head), slab, tag(block, layer, head, 1));
      }
  for (int block = 0; block < 2; ++block)
    for (int layer = 0; layer < 2; ++layer)
      for (int head = 0; head < 3; ++head)
        for (int64_t i = 0; i < slab; ++i) {
          ASSERT_EQ(cache->keys(block, layer, head)[i], tag(block, layer, head, 0));
          ASSERT_EQ(cache->values(block, layer, head)[i], tag(block, layer, head, 1));
        }
}

TEST(KvBlockAllocatorTest, TruncateUndoesAppendsAndKeepsTheReservation) {
  KvBlockAllocator allocator(4);
  const int64_t a = *allocator.AddSequence(40);  // 3 blocks reserved
  ASSERT_EQ(*allocator.Append(a, 20), 0);         // 2 blocks taken
  ASSERT_EQ(allocator.free_blocks(), 2);
  const std::vector<int32_t> first_block = {allocator.BlockTable(a)[0]};
  ASSERT_EQ(*allocator.Append(a, 10), 20);  // a failed step's append: still 2 blocks
  allocator.Truncate(a, 20);
  EXPECT_EQ(allocator.Length(a), 20);
  EXPECT_EQ(*allocator.Append(a, 10), 20);  // the retry writes the same positions
  allocator.Truncate(a, 5);                 // back into the first block
  EXPECT_EQ(allocator.Length(a), 5);
  EXPECT_EQ(allocator.BlockTable(a), first_block);
  EXPECT_EQ(allocator.free_blocks(), 3);
  EXPECT_EQ(allocator.reserved_blocks(), 3);
  EXPECT_EQ(allocator.AddSequence(40).status().code(), absl::StatusCode::kResourceExhausted);
  allocator.Truncate(a, 9);     // longer than it is: nothing changes
  allocator.Truncate(999, 0);   // unknown: ignored
  EXPECT_EQ(allocator.Length(a), 5);
  EXPECT_TRUE(allocator.CheckAppend(a, 35).ok());
  EXPECT_FALSE(allocator.CheckAppend(a, 36).ok());
}

}  // namespace
}  // namespace apex4
