#include "engine/paged_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_isa.h"

namespace apex4 {
namespace {

float DotScalar(const float* a, const float* b, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyScalar(float alpha, const float* x, int n, float* y) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

__attribute__((target("avx2,fma"))) inline float HorizontalSum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

// head_dim is a multiple of 8 in every LLaMA-family model; others take the scalar path.
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  }
  return HorizontalSum(acc);
}

__attribute__((target("avx2,fma"))) void AxpyAvx2(float alpha, const float* x, int n, float* y) {
  const __m256 a = _mm256_set1_ps(alpha);
  for (int i = 0; i < n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
}

// x[i] = e^(x[i] - shift) for i < n; returns their sum.
float ShiftedExpScalar(float* x, int n, float shift) {
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return static_cast<float>(sum);
}

// e^x for x <= 0 (softmax arguments), Cephes' single-precision polynomial: x = n·ln2 + r with
// |r| <= ln2/2, e^r from a degree-6 polynomial, 2^n put in the exponent bits. Within 2 ulp of
// std::exp; below -87 (where 2^n leaves the normal range) the result is flushed to 0.
__attribute__((target("avx2,fma"))) __m256 ExpNonPositiveAvx2(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
}

__attribute__((target("avx2,fma"))) float ShiftedExpAvx2(float* x, int n, float shift) {
  const __m256 shift_vec = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = ExpNonPositiveAvx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), shift_vec));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  return HorizontalSum(sum) + ShiftedExpScalar(x + i, n - i, shift);
}

struct VectorOps {
  float (*dot)(const float*, const float*, int);
  void (*axpy)(float, const float*, int, float*);
  float (*shifted_exp)(float*, int, float);
};

VectorOps SelectVectorOps(int head_dim) {
  if (head_dim % 8 == 0 && ResolveCpuIsa(CpuIsa::kBest) != CpuIsa::kScalar) {
    return {DotAvx2, AxpyAvx2, ShiftedExpAvx2};
  }
  return {DotScalar, AxpyScalar, ShiftedExpScalar};
}

// One query head of one token; `scores` has room for position + 1 floats.
void AttendOneHead(const VectorOps& ops, const float* q, const AttentionToken& token,
                   const PagedKvCache& cache, int layer, int kv_head, float* scores, float* out) {
  const int head_dim = cache.shape().head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int32_t length = token.position + 1;
  float max_score = -INFINITY;
  for (int32_t j = 0; j < length; ++j) {
    const int32_t block = (*token.block_table)[j / PagedKvCache::kBlockTokens];
    const float* key = cache.keys(block, layer, kv_head) +
                       (j % PagedKvCache::kBlockTokens) * head_dim;
    scores[j] = ops.dot(q, key, head_dim) * scale;
    max_score = std::max(max_score, scores[j]);
  }
  const float inv_total = 1.0f / ops.shifted_exp(scores, length, max_score);
  std::fill(out, out + head_dim, 0.0f);
  for (int32_t j = 0; j < length; ++j) {
    const int32_t block = (*token.block_table)[j / PagedKvCache::kBlockTokens];
    const float* value = cache.values(block, layer, kv_head) +
                         (j % PagedKvCache::kBlockTokens) * head_dim;
    ops.axpy(scores[j] * inv_total, value, head_dim, out);
  }
}

}  // namespace

void PagedAttention(const float* q, const std::vector<AttentionToken>& tokens,
                    const PagedKvCache& cache, int layer, int num_heads, float* out,
                    ThreadPool* pool) {
  const int head_dim = cache.shape().head_dim;
  const int heads_per_kv = num_heads / cache.shape().num_kv_heads;
  const VectorOps ops = SelectVectorOps(head_dim);
  auto run = [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / num_heads;
      const int h = static_cast<int>(task % num_heads);
      scores.resize(tokens[t].position + 1);
      const int64_t offset = (t * num_heads + h) * head_dim;
      AttendOneHead(ops, q + offset, tokens[t], cache, layer, h / heads_per_kv, scores.data(),
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
