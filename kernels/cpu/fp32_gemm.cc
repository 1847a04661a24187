#include "kernels/cpu/fp32_gemm.h"

#include <immintrin.h>

#include <algorithm>

namespace apex4 {
namespace {

// X rows that share one pass over W: each W load feeds this many FMAs.
constexpr int kRowsPerPass = 4;
// W rows per parallel grain: 16 rows of K = 1536 floats (96 KiB) stay in L2 across X blocks.
constexpr int64_t kWeightRowsPerGrain = 16;

// Columns [n_begin, n_end) of Y for R consecutive X rows.
template <int R>
void GemmRowsScalar(const float* x, const float* w, int64_t n_begin, int64_t n_end, int64_t n,
                    int64_t k, float* y) {
  for (int64_t j = n_begin; j < n_end; ++j) {
    const float* w_row = w + j * k;
    float acc[R] = {};
    for (int64_t kk = 0; kk < k; ++kk) {
      for (int r = 0; r < R; ++r) acc[r] += x[r * k + kk] * w_row[kk];
    }
    for (int r = 0; r < R; ++r) y[r * n + j] = acc[r];
  }
}

__attribute__((target("avx2,fma"))) inline float HorizontalSum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

// One R × C tile of Y: R rows of X against C rows of W, R·C accumulators in registers, so that
// every load feeds several FMAs and enough independent FMA chains cover their latency.
template <int R, int C>
__attribute__((target("avx2,fma"))) inline void GemmTileAvx2(const float* x, const float* w,
                                                             int64_t j, int64_t n, int64_t k,
                                                             float* y) {
  const int64_t k_vec = k / 8 * 8;
  __m256 acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < k_vec; kk += 8) {
    __m256 w_vec[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) w_vec[c] = _mm256_loadu_ps(w + (j + c) * k + kk);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 x_vec = _mm256_loadu_ps(x + r * k + kk);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(x_vec, w_vec[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float sum = HorizontalSum(acc[r][c]);
      for (int64_t kk = k_vec; kk < k; ++kk) sum += x[r * k + kk] * w[(j + c) * k + kk];
      y[r * n + j + c] = sum;
    }
  }
}

// Tiles of up to 8 accumulators. One X row (decode) is bound by reading W, and one W row at a
// time streams fastest there (measured: 4 interleaved rows cost 25% more on the 113 MB LM head).
template <int R>
__attribute__((target("avx2,fma"))) void GemmRowsAvx2(const float* x, const float* w,
                                                      int64_t n_begin, int64_t n_end, int64_t n,
                                                      int64_t k, float* y) {
  constexpr int kCols = R == 1 ? 1 : (R == 2 ? 4 : 2);
  int64_t j = n_begin;
  for (; j + kCols <= n_end; j += kCols) GemmTileAvx2<R, kCols>(x, w, j, n, k, y);
  for (; j < n_end; ++j) GemmTileAvx2<R, 1>(x, w, j, n, k, y);
}

using GemmRowsFn = void (*)(const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                            float*);

// The microkernel for `rows` (1..kRowsPerPass) X rows.
GemmRowsFn SelectKernel(CpuIsa isa, int rows) {
  static constexpr GemmRowsFn kAvx2[] = {GemmRowsAvx2<1>, GemmRowsAvx2<2>, GemmRowsAvx2<3>,
                                         GemmRowsAvx2<4>};
  static constexpr GemmRowsFn kScalar[] = {GemmRowsScalar<1>, GemmRowsScalar<2>,
                                           GemmRowsScalar<3>, GemmRowsScalar<4>};
  static_assert(sizeof(kAvx2) / sizeof(kAvx2[0]) == kRowsPerPass, "one kernel per row count");
  return isa == CpuIsa::kScalar ? kScalar[rows - 1] : kAvx2[rows - 1];
}

}  // namespace

void Fp32Gemm(const float* x, int64_t m, const float* w, int64_t n, int64_t k, float* y,
              const Fp32GemmOptions& options) {
  // The AVX-512 level implies AVX2/FMA; this GEMM has no wider kernel.
  const CpuIsa isa = ResolveCpuIsa(options.isa) == CpuIsa::kScalar ? CpuIsa::kScalar
                                                                    : CpuIsa::kAvx2;
  // A thread's range is cut into grains so that each grain's W rows are read from memory once
  // and from cache by every further block of X rows.
  auto columns = [&](int64_t n_begin, int64_t n_end) {
    for (int64_t grain = n_begin; grain < n_end; grain += kWeightRowsPerGrain) {
      const int64_t grain_end = std::min(grain + kWeightRowsPerGrain, n_end);
      for (int64_t i = 0; i < m; i += kRowsPerPass) {
        const int rows = static_cast<int>(std::min<int64_t>(kRowsPerPass, m - i));
        SelectKernel(isa, rows)(x + i * k, w, grain, grain_end, n, k, y + i * n);
      }
    }
  };
  if (options.pool == nullptr) {
    columns(0, n);
  } else {
    options.pool->ParallelFor(n, kWeightRowsPerGrain, columns);
  }
}

}  // namespace apex4
