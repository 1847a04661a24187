// Causal grouped-query attention of new tokens over a paged KV cache: each query row attends to
// its own sequence's cached positions up to and including its own.
#ifndef APEX4_ENGINE_PAGED_ATTENTION_H_
#define APEX4_ENGINE_PAGED_ATTENTION_H_

#include <cstdint>
#include <vector>

#include "engine/kv_cache.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// Where one query row's token sits: its sequence's block table and its position there.
struct AttentionToken {
  const std::vector<int32_t>* block_table = nullptr;
  int32_t position = 0;
};

// out[t, h, :] = Σ_{j <= position_t} softmax_j(q[t, h, :] · K[j] / sqrt(head_dim)) V[j], with
// K and V of layer `layer` and KV head h / (num_heads / num_kv_heads). q and out hold
// tokens.size() rows of num_heads × head_dim floats; the cache must already hold the keys and
// values of every attended position. `pool` may be null.
void PagedAttention(const float* q, const std::vector<AttentionToken>& tokens,
                    const PagedKvCache& cache, int layer, int num_heads, float* out,
                    ThreadPool* pool);

}  // namespace apex4

#endif  // APEX4_ENGINE_PAGED_ATTENTION_H_
