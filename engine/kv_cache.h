// The CPU engine's paged KV cache: FP32 keys and values in host memory, a fixed pool of blocks
// sized once from a byte budget, managed by a KvBlockAllocator (engine/kv_block_allocator.h).
#ifndef APEX4_ENGINE_KV_CACHE_H_
#define APEX4_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/inference_engine.h"
#include "engine/kv_block_allocator.h"

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
  static constexpr int kBlockTokens = kKvBlockTokens;

  // As many blocks as fit in `budget_bytes`; INVALID_ARGUMENT if not even one does.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvCacheShape& shape,
                                                              int64_t budget_bytes);

  // Sequence bookkeeping: see KvBlockAllocator.
  absl::StatusOr<int64_t> AddSequence(int32_t max_tokens) {
    return allocator_.AddSequence(max_tokens);
  }
  void RemoveSequence(int64_t id) { allocator_.RemoveSequence(id); }
  bool Contains(int64_t id) const { return allocator_.Contains(id); }
  int32_t Length(int64_t id) const { return allocator_.Length(id); }
  absl::Status CheckAppend(int64_t id, int32_t num_tokens) const {
    return allocator_.CheckAppend(id, num_tokens);
  }
  absl::StatusOr<int32_t> Append(int64_t id, int32_t num_tokens) {
    return allocator_.Append(id, num_tokens);
  }
  const std::vector<int32_t>& BlockTable(int64_t id) const { return allocator_.BlockTable(id); }
  const KvBlockAllocator& allocator() const { return allocator_; }

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
  int64_t num_blocks() const { return allocator_.num_blocks(); }
  int64_t bytes_per_block() const { return block_floats_ * sizeof(float); }
  int64_t free_blocks() const { return allocator_.free_blocks(); }
  int64_t reserved_blocks() const { return allocator_.reserved_blocks(); }
  KvCacheUsage Usage() const;

 private:
  PagedKvCache(const KvCacheShape& shape, int64_t num_blocks);
  float* Slab(int32_t block, int layer, int kv_head, int kv) const {
    const int64_t slab_floats = int64_t{kBlockTokens} * shape_.head_dim;
    return storage_.get() + block * block_floats_ +
           ((int64_t{layer} * 2 + kv) * shape_.num_kv_heads + kv_head) * slab_floats;
  }

  KvCacheShape shape_;
  KvBlockAllocator allocator_;
  int64_t block_floats_;  // keys and values of kBlockTokens tokens over all layers and heads
  // Not value-initialised: pages are touched only when a block is first written.
  std::unique_ptr<float[]> storage_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_KV_CACHE_H_
