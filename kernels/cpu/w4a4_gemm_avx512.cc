// AVX-512 VNNI microkernels of the W4A4 GEMM: the shared tile (w4a4_gemm_tile.inc) over
// dpbusd, which multiplies biased weight nibbles by int8 activations four at a time straight
// into int32, seeded with the block's bias correction.
#include <immintrin.h>

#include "kernels/cpu/w4a4_gemm_internal.h"

// GCC 12.2's AVX-512 intrinsics self-initialise their _mm512_undefined_* placeholders and so
// trip -Wuninitialized in every caller (GCC PR 105593, fixed in 12.3).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace apex4 {
namespace w4a4_internal {
namespace {

#define APEX4_TARGET_AVX512_VNNI \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

// 256-bit dpbusd (AVX512-VL) on Avx2Block's unpacked weights: four dpbusd replace four
// maddubs, three adds and a madd.
struct Vnni256Block : Avx2Block {
  APEX4_TARGET_AVX512_VNNI static Sums Dot(const Weights& w, const int8_t* x, Sums seed) {
    const __m256i* xv = reinterpret_cast<const __m256i*>(x);
    __m256i sum = _mm256_dpbusd_epi32(seed, w.low0, _mm256_loadu_si256(xv));
    sum = _mm256_dpbusd_epi32(sum, w.low1, _mm256_loadu_si256(xv + 1));
    sum = _mm256_dpbusd_epi32(sum, w.high0, _mm256_loadu_si256(xv + 2));
    return _mm256_dpbusd_epi32(sum, w.high1, _mm256_loadu_si256(xv + 3));
  }
};

// One 64-byte load holds a row's whole 128-block.
struct Vnni512Block {
  struct Weights {
    __m512i low, high;  // u of even k, 16·u of odd k
  };
  using Sums = __m512i;
  using Acc = __m512;

  APEX4_TARGET_AVX512_VNNI static Weights Unpack(const uint8_t* w) {
    const __m512i biased =
        _mm512_xor_si512(_mm512_loadu_si512(w), _mm512_set1_epi8(static_cast<char>(0x88)));
    return {_mm512_and_si512(biased, _mm512_set1_epi8(0x0F)),
            _mm512_and_si512(biased, _mm512_set1_epi8(static_cast<char>(0xF0)))};
  }
  APEX4_TARGET_AVX512_VNNI static Sums Seed(int32_t correction) {
    return _mm512_zextsi128_si512(_mm_cvtsi32_si128(correction));
  }
  APEX4_TARGET_AVX512_VNNI static Sums Dot(const Weights& w, const int8_t* x, Sums seed) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(seed, w.low, _mm512_loadu_si512(x)), w.high,
                               _mm512_loadu_si512(x + kBlockBytes));
  }
  APEX4_TARGET_AVX512_VNNI static Acc Zero() { return _mm512_setzero_ps(); }
  APEX4_TARGET_AVX512_VNNI static Acc Accumulate(Sums sums, float scale, Acc acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(scale), acc);
  }
  APEX4_TARGET_AVX512_VNNI static float ReduceAdd(Acc v) { return _mm512_reduce_add_ps(v); }
  APEX4_TARGET_AVX512_VNNI static int32_t ReduceAdd(Sums v) { return _mm512_reduce_add_epi32(v); }
};

#define APEX4_W4A4_TILE_TARGET APEX4_TARGET_AVX512_VNNI
#include "kernels/cpu/w4a4_gemm_tile.inc"
#undef APEX4_W4A4_TILE_TARGET

struct Avx512VnniKernel {
  // 4 × 4 zmm accumulators leave room for weights and temporaries in the 32 registers.
  static constexpr int kMaxRows = 4;

  // NOTES: with one activation row (decode) the 256-bit kernel is faster: on Zen 4, 512-bit
  // unpacking and epilogue cost two 256-bit issues each and nothing amortizes them (measured
  // 1.4 vs 2.0 ns per 128-block and row). With several rows the 512-bit kernel wins.
  template <int MR, int NR, Epilogue kEpilogue>
  static void Tile(const GemmProblem& p, int64_t m0, int64_t n0) {
    if constexpr (MR == 1) {
      BlockTile<Vnni256Block, MR, NR, kEpilogue>(p, m0, n0);
    } else {
      BlockTile<Vnni512Block, MR, NR, kEpilogue>(p, m0, n0);
    }
  }
};

}  // namespace

void GemmRangeAvx512Vnni(const GemmProblem& p, int64_t n_begin, int64_t n_end) {
  RunTiles<Avx512VnniKernel>(p, n_begin, n_end);
}

}  // namespace w4a4_internal
}  // namespace apex4
