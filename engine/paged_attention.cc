#include "engine/paged_attention.h"

#include <algorithm>
#include <cmath>

namespace apex4 {
namespace {

float Dot(const float* a, const float* b, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// One query head of one token; `scores` has room for position + 1 floats.
void AttendOneHead(const float* q, const AttentionToken& token, const PagedKvCache& cache,
                   int layer, int kv_head, float* scores, float* out) {
  const int head_dim = cache.shape().head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int32_t length = token.position + 1;
  float max_score = -INFINITY;
  for (int32_t j = 0; j < length; ++j) {
    const int32_t block = (*token.block_table)[j / PagedKvCache::kBlockTokens];
    const float* key = cache.keys(block, layer, kv_head) +
                       (j % PagedKvCache::kBlockTokens) * head_dim;
    scores[j] = Dot(q, key, head_dim) * scale;
    max_score = std::max(max_score, scores[j]);
  }
  double total = 0;
  for (int32_t j = 0; j < length; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    total += scores[j];
  }
  const float inv_total = static_cast<float>(1.0 / total);
  std::fill(out, out + head_dim, 0.0f);
  for (int32_t j = 0; j < length; ++j) {
    const int32_t block = (*token.block_table)[j / PagedKvCache::kBlockTokens];
    const float* value = cache.values(block, layer, kv_head) +
                         (j % PagedKvCache::kBlockTokens) * head_dim;
    const float weight = scores[j] * inv_total;
    for (int i = 0; i < head_dim; ++i) out[i] += weight * value[i];
  }
}

}  // namespace

void PagedAttention(const float* q, const std::vector<AttentionToken>& tokens,
                    const PagedKvCache& cache, int layer, int num_heads, float* out,
                    ThreadPool* pool) {
  const int head_dim = cache.shape().head_dim;
  const int heads_per_kv = num_heads / cache.shape().num_kv_heads;
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / num_heads;
      const int h = static_cast<int>(task % num_heads);
      scores.resize(tokens[t].position + 1);
      const int64_t offset = (t * num_heads + h) * head_dim;
      AttendOneHead(q + offset, tokens[t], cache, layer, h / heads_per_kv, scores.data(),
                    out + offset);
    }
  };
  const int64_t tasks = static_cast<int64_t>(tokens.size()) * num_heads;
  if (pool == nullptr) {
    run(0, tasks);
  } else {
    pool->ParallelFor(tasks, 1, run);
  }
}

}  // namespace apex4
