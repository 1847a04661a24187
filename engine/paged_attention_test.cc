#include "engine/paged_attention.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

// head_dim 8 runs the AVX2 path where the CPU has it, 6 the scalar one; grouped-query shapes
// from 1 to 9 query heads per KV head.
struct Geometry {
  int head_dim;
  int heads;
  int kv_heads;
};
constexpr int kLayers = 2;
constexpr int kLayer = 1;

// Keys and values of one sequence kept contiguously: [position][kv_head][head_dim].
struct ContiguousKv {
  std::vector<float> keys, values;
};

// Straight from the definition, in double: softmax(q·k / sqrt(d)) over positions <= position.
std::vector<double> ReferenceAttention(const float* q, const ContiguousKv& kv, int32_t position,
                                       const Geometry& g) {
  const int head_dim = g.head_dim, heads = g.heads, kv_heads = g.kv_heads;
  std::vector<double> out(heads * head_dim, 0.0);
  for (int h = 0; h < heads; ++h) {
    const int kv_head = h / (heads / kv_heads);
    std::vector<double> weights(position + 1);
    double total = 0;
    for (int j = 0; j <= position; ++j) {
      double dot = 0;
      for (int i = 0; i < head_dim; ++i) {
        dot += q[h * head_dim + i] * double{kv.keys[(j * kv_heads + kv_head) * head_dim + i]};
      }
      weights[j] = std::exp(dot / std::sqrt(double{head_dim}));
      total += weights[j];
    }
    for (int j = 0; j <= position; ++j) {
      for (int i = 0; i < head_dim; ++i) {
        out[h * head_dim + i] +=
            weights[j] / total * kv.values[(j * kv_heads + kv_head) * head_dim + i];
      }
    }
  }
  return out;
}

class PagedAttentionTest : public ::testing::TestWithParam<Geometry> {};

TEST_P(PagedAttentionTest, MatchesContiguousAttentionAcrossBlocksAndSequences) {
  const Geometry g = GetParam();
  const int head_dim = g.head_dim, heads = g.heads, kv_heads = g.kv_heads;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto cache = *PagedKvCache::Create({kLayers, kv_heads, head_dim}, 1 << 20);
  const int32_t lengths[2] = {37, 5};  // three blocks (the last partial), and one
  int64_t ids[2];
  ContiguousKv kv[2];
  // Interleave the sequences' appends so that their blocks alternate in the pool.
  for (int s = 0; s < 2; ++s) ids[s] = *cache->AddSequence(lengths[s]);
  for (int32_t p = 0; p < lengths[0]; ++p) {
    for (int s = 0; s < 2; ++s) {
      if (p >= lengths[s]) continue;
      ASSERT_EQ(*cache->Append(ids[s], 1), p);
      const int32_t block = cache->BlockTable(ids[s])[p / PagedKvCache::kBlockTokens];
      for (int h = 0; h < kv_heads; ++h) {
        for (int i = 0; i < head_dim; ++i) {
          const float k = normal(rng), v = normal(rng);
          kv[s].keys.push_back(k);
          kv[s].values.push_back(v);
          const int64_t offset = (p % PagedKvCache::kBlockTokens) * head_dim + i;
          cache->keys(block, kLayer, h)[offset] = k;
          cache->values(block, kLayer, h)[offset] = v;
        }
      }
    }
  }
  // Query rows: the first, a middle and the last position of sequence 0; the last of sequence 1.
  const std::vector<std::pair<int, int32_t>> rows = {{0, 0}, {0, 20}, {1, 4}, {0, 36}};
  std::vector<AttentionToken> tokens;
  std::vector<float> q;
  for (const auto& [s, position] : rows) {
    tokens.push_back({&cache->BlockTable(ids[s]), position});
    for (int i = 0; i < heads * head_dim; ++i) q.push_back(normal(rng));
  }
  ThreadPool pool(2);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> out(q.size(), NAN);
    PagedAttention(q.data(), tokens, *cache, kLayer, heads, out.data(), p);
    for (size_t r = 0; r < rows.size(); ++r) {
      const std::vector<double> expected =
          ReferenceAttention(&q[r * heads * head_dim], kv[rows[r].first], rows[r].second, g);
      for (int i = 0; i < heads * head_dim; ++i) {
        EXPECT_NEAR(out[r * heads * head_dim + i], expected[i], 1e-5) << "row " << r;
      }
    }
  }
  // Position 0 attends only to itself: the output is its value vector.
  std::vector<float> out(q.size());
  PagedAttention(q.data(), tokens, *cache, kLayer, heads, out.data(), nullptr);
  EXPECT_FLOAT_EQ(out[0], kv[0].values[0]);
}

INSTANTIATE_TEST_SUITE_P(Geometries, PagedAttentionTest,
                         ::testing::Values(Geometry{8, 4, 2}, Geometry{6, 4, 2},
                                           Geometry{8, 18, 2}, Geometry{8, 3, 3}));

}  // namespace
}  // namespace apex4
