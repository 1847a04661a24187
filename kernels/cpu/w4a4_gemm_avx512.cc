// AVX-512 VNNI microkernel of the W4A4 GEMM: one 64-byte load holds a row's 128-block, and
// _mm512_dpbusd_epi32 multiplies its biased nibbles (see w4a4_gemm_internal.h) by the int8
// activations four at a time straight into int32, seeded with the block's bias correction.
#include <immintrin.h>

// GCC 12.2's AVX-512 intrinsics self-initialise their _mm512_undefined_* placeholders and so
// trip -Wuninitialized in every caller (GCC PR 105593, fixed in 12.3).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/w4a4_gemm_internal.h"

namespace apex4 {
namespace w4a4_internal {
namespace {

#define APEX4_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

struct Avx512VnniKernel {
  // 4 × 4 accumulators + 8 unpacked weight registers leave room in the 32 zmm registers.
  static constexpr int kMaxRows = 4;

  template <int MR, int NR, bool kBlockSums>
  APEX4_TARGET_AVX512_VNNI static void Tile(const GemmProblem& p, int64_t m0, int64_t n0) {
    const int64_t row_bytes = p.blocks * kBlockBytes;
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x88));
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < p.blocks; ++b) {
      __m512i low[NR], high[NR];
      float w_scale[NR];
      for (int j = 0; j < NR; ++j) {
        const __m512i biased = _mm512_xor_si512(
            _mm512_loadu_si512(p.w_packed + (n0 + j) * row_bytes + b * kBlockBytes), bias);
        low[j] = _mm512_and_si512(biased, mask);
        high[j] = _mm512_and_si512(_mm512_srli_epi16(biased, 4), mask);
        w_scale[j] = p.w_scales[(n0 + j) * p.w_scale_row_stride + b * p.w_scale_block_stride];
      }
      for (int i = 0; i < MR; ++i) {
        const int64_t xb = (m0 + i) * p.blocks + b;
        const int8_t* x = p.x_values + xb * kBlockK;
        const __m512i x_even = _mm512_loadu_si512(x);
        const __m512i x_odd = _mm512_loadu_si512(x + kBlockBytes);
        const __m512i correction = _mm512_zextsi128_si512(_mm_cvtsi32_si128(p.x_corrections[xb]));
        for (int j = 0; j < NR; ++j) {
          const __m512i sum32 =
              _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(correction, low[j], x_even), high[j], x_odd);
          if constexpr (kBlockSums) {
            p.block_sums[((m0 + i) * p.n + n0 + j) * p.blocks + b] = _mm512_reduce_add_epi32(sum32);
          } else {
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum32),
                                        _mm512_set1_ps(p.x_scales[xb] * w_scale[j]), acc[i][j]);
          }
        }
      }
    }
    if constexpr (!kBlockSums) {
      for (int i = 0; i < MR; ++i) {
        for (int j = 0; j < NR; ++j) p.y[(m0 + i) * p.n + n0 + j] = _mm512_reduce_add_ps(acc[i][j]);
      }
    }
  }
};

#undef APEX4_TARGET_AVX512_VNNI

}  // namespace

void GemmRangeAvx512Vnni(const GemmProblem& p, int64_t n_begin, int64_t n_end) {
  RunTiles<Avx512VnniKernel>(p, n_begin, n_end);
}

}  // namespace w4a4_internal
}  // namespace apex4
