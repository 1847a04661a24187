#include "engine/kv_cache.h"

#include "absl/strings/str_cat.h"

namespace apex4 {

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvCacheShape& shape,
                                                                   int64_t budget_bytes) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache shape must be positive: ", shape.num_layers, " layers, ", shape.num_kv_heads,
        " KV heads, head_dim ", shape.head_dim));
  }
  const int64_t block_bytes = int64_t{2} * shape.num_layers * shape.num_kv_heads *
                              shape.head_dim * kBlockTokens * sizeof(float);
  const int64_t num_blocks = budget_bytes / block_bytes;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache budget of ", budget_bytes,
                                                   " bytes is below one block (", block_bytes,
                                                   " bytes for ", kBlockTokens, " tokens)"));
  }
  return std::unique_ptr<PagedKvCache>(new PagedKvCache(shape, num_blocks));
}

PagedKvCache::PagedKvCache(const KvCacheShape& shape, int64_t num_blocks)
    : shape_(shape),
      allocator_(num_blocks),
      block_floats_(int64_t{2} * shape.num_layers * shape.num_kv_heads * shape.head_dim *
                    kBlockTokens),
      storage_(new float[num_blocks * block_floats_]) {}

KvCacheUsage PagedKvCache::Usage() const {
  KvCacheUsage usage;
  usage.blocks_total = num_blocks();
  usage.blocks_in_use = num_blocks() - free_blocks();
  usage.bytes_in_use = usage.blocks_in_use * bytes_per_block();
  return usage;
}

}  // namespace apex4
