// Paged KV cache: a fixed pool of blocks of kBlockTokens tokens, sized once from a byte budget,
// and a block table per sequence (vLLM's PagedAttention layout). A sequence reserves room for
// its longest length when it starts, so appending never fails half-way through a batch; blocks
// are taken from the pool as tokens arrive and all return to it when the sequence ends.
#ifndef APEX4_ENGINE_KV_CACHE_H_
#define APEX4_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/inference_engine.h"

namespace apex4 {

struct KvCacheShape {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// Not thread-safe: one writer (the engine's step) at a time. Pointers returned by keys() and
// values() stay valid for the cache's lifetime.
class PagedKvCache {
 public:
  static constexpr int kBlockTokens = 16;

  // As many blocks as fit in `budget_bytes`; INVALID_ARGUMENT if not even one does.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvCacheShape& shape,
                                                              int64_t budget_bytes);

  // A new, empty sequence that may grow to `max_tokens`. RESOURCE_EXHAUSTED when the blocks not
  // yet reserved by other sequences cannot hold it.
  absl::StatusOr<int64_t> AddSequence(int32_t max_tokens);
  // Returns the sequence's blocks and reservation to the pool. Unknown ids are ignored.
  void RemoveSequence(int64_t id);

  bool Contains(int64_t id) const { return sequences_.contains(id); }
  // Tokens stored; 0 for unknown ids.
  int32_t Length(int64_t id) const;
  // OK when `id` exists and can take `num_tokens` more within its reservation.
  absl::Status CheckAppend(int64_t id, int32_t num_tokens) const;
  // Takes the blocks for `num_tokens` more tokens and returns the position of the first one.
  // The caller writes their keys and values at positions [returned, returned + num_tokens).
  absl::StatusOr<int32_t> Append(int64_t id, int32_t num_tokens);

  // Block ids holding the sequence's tokens in order (position p is in block p / kBlockTokens,
  // slot p % kBlockTokens). Empty for unknown ids.
  const std::vector<int32_t>& BlockTable(int64_t id) const;

  // The kBlockTokens × head_dim keys (values) of one block, layer and KV head.
  float* keys(int32_t block, int layer, int kv_head) { return Slab(block, layer, kv_head, 0); }
  float* values(int32_t block, int layer, int kv_head) { return Slab(block, layer, kv_head, 1); }
  const float* keys(int32_t block, int layer, int kv_head) const {
    return Slab(block, layer, kv_head, 0);
  }
  const float* values(int32_t block, int layer, int kv_head) const {
    return Slab(block, layer, kv_head, 1);
  }

  const KvCacheShape& shape() const { return shape_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t bytes_per_block() const { return block_floats_ * sizeof(float); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  // Blocks promised to live sequences, taken or not.
  int64_t reserved_blocks() const { return reserved_blocks_; }
  KvCacheUsage Usage() const;

 private:
  struct Sequence {
    int32_t max_tokens = 0;
    int32_t length = 0;
    std::vector<int32_t> blocks;
  };

  PagedKvCache(const KvCacheShape& shape, int64_t num_blocks);
  float* Slab(int32_t block, int layer, int kv_head, int kv) const {
    const int64_t slab_floats = int64_t{kBlockTokens} * shape_.head_dim;
    return storage_.get() + block * block_floats_ +
           ((int64_t{layer} * 2 + kv) * shape_.num_kv_heads + kv_head) * slab_floats;
  }
  static int64_t BlocksFor(int32_t tokens) { return (tokens + kBlockTokens - 1) / kBlockTokens; }

  KvCacheShape shape_;
  int64_t num_blocks_;
  int64_t block_floats_;  // keys and values of kBlockTokens tokens over all layers and heads
  // Not value-initialised: pages are touched only when a block is first written.
  std::unique_ptr<float[]> storage_;
  std::vector<int32_t> free_blocks_;  // used as a stack
  int64_t reserved_blocks_ = 0;
  int64_t next_id_ = 1;
  absl::flat_hash_map<int64_t, Sequence> sequences_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_KV_CACHE_H_
