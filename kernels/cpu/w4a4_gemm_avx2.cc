// AVX2 microkernel of the W4A4 GEMM: _mm256_maddubs_epi16 on biased weight nibbles (see
// w4a4_gemm_internal.h). Each product is at most 15·8, so four maddubs outputs (at most 960 per
// int16 lane) add without saturating before one widening _mm256_madd_epi16 per block.
#include <immintrin.h>

#include "kernels/cpu/w4a4_gemm_internal.h"

namespace apex4 {
namespace w4a4_internal {
namespace {

__attribute__((target("avx2"))) inline int32_t ReduceAddAvx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2"))) inline float ReduceAddAvx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

struct Avx2Kernel {
  // MR × NR float accumulators plus four unpacked weight registers fit the 16 ymm registers.
  static constexpr int kMaxRows = 2;

  template <int MR, int NR, bool kBlockSums>
  __attribute__((target("avx2,fma"))) static void Tile(const GemmProblem& p, int64_t m0,
                                                       int64_t n0) {
    const int64_t row_bytes = p.blocks * kBlockBytes;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MR][NR];
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < p.blocks; ++b) {
      for (int j = 0; j < NR; ++j) {
        const uint8_t* w = p.w_packed + (n0 + j) * row_bytes + b * kBlockBytes;
        __m256i low0, high0, low1, high1;
        UnpackBiasedNibblesAvx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)), &low0,
                                &high0);
        UnpackBiasedNibblesAvx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32)), &low1,
                                &high1);
        const float w_scale =
            p.w_scales[(n0 + j) * p.w_scale_row_stride + b * p.w_scale_block_stride];
        for (int i = 0; i < MR; ++i) {
          const int64_t xb = (m0 + i) * p.blocks + b;
          const __m256i* x = reinterpret_cast<const __m256i*>(p.x_values + xb * kBlockK);
          // x[0], x[1]: even k of the block; x[2], x[3]: odd k (w4a4_gemm_internal.h).
          __m256i sum16 = _mm256_maddubs_epi16(low0, _mm256_loadu_si256(x));
          sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(low1, _mm256_loadu_si256(x + 1)));
          sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(high0, _mm256_loadu_si256(x + 2)));
          sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(high1, _mm256_loadu_si256(x + 3)));
          const __m256i sum32 =
              _mm256_add_epi32(_mm256_madd_epi16(sum16, ones),
                               _mm256_zextsi128_si256(_mm_cvtsi32_si128(p.x_corrections[xb])));
          if constexpr (kBlockSums) {
            p.block_sums[((m0 + i) * p.n + n0 + j) * p.blocks + b] = ReduceAddAvx2(sum32);
          } else {
            acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum32),
                                        _mm256_set1_ps(p.x_scales[xb] * w_scale), acc[i][j]);
          }
        }
      }
    }
    if constexpr (!kBlockSums) {
      for (int i = 0; i < MR; ++i) {
        for (int j = 0; j < NR; ++j) p.y[(m0 + i) * p.n + n0 + j] = ReduceAddAvx2(acc[i][j]);
      }
    }
  }
};

}  // namespace

void GemmRangeAvx2(const GemmProblem& p, int64_t n_begin, int64_t n_end) {
  RunTiles<Avx2Kernel>(p, n_begin, n_end);
}

}  // namespace w4a4_internal
}  // namespace apex4
