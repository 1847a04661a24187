// Shared by the W4A4 GEMM driver (w4a4_gemm.cc) and its per-ISA microkernels
// (w4a4_gemm_avx2.cc, w4a4_gemm_avx512.cc). Not part of the public API.
//
// NOTES: the integer core multiplies *biased* weight nibbles u = qw + 8 (0..15, what XOR 0x8
// makes of a two's-complement nibble) by signed int8 activations, because both maddubs (AVX2)
// and dpbusd (VNNI) need one unsigned operand. Σ u·qx = Σ qw·qx + 8·Σ qx, so each 128-block's
// accumulator starts at a correction -8·Σ qx, computed once per activation row. The high
// nibbles are used in place (masked, not shifted: 16·u) and the even-k activations are stored
// times 16 to match (16·qx fits int8: -128..112), so every product, and the block sum, is 16
// times the true one: exact in int32, divided out of the block sums and the activation scales.
#ifndef APEX4_KERNELS_CPU_W4A4_GEMM_INTERNAL_H_
#define APEX4_KERNELS_CPU_W4A4_GEMM_INTERNAL_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace apex4 {
namespace w4a4_internal {

inline constexpr int kBlockK = 128;  // one scale block; every group size is a multiple
inline constexpr int kBlockBytes = kBlockK / 2;
inline constexpr int kTileCols = 4;   // weight rows per microkernel tile
inline constexpr int kSumScale = 16;  // block sums are kSumScale × Σ qw·qx (see NOTES)
// NOTES: decode streams the weights from DRAM in short rows (320 bytes at K = 640) read four at
// a time, which the hardware prefetchers follow poorly: measured on Zen 4, 12 GB/s without
// software prefetch, 20-30 GB/s with it (a plain 2-thread read reaches 35). 8 KiB is about
// 150-200 ns of one core's consumption, a DRAM latency with margin.
inline constexpr int kWeightPrefetchBytes = 8 << 10;

// One GEMM call as the microkernels see it. Activations are unpacked to int8 with each
// 128-block laid out as its 64 even-k values then its 64 odd-k values: the order in which the
// low and high nibbles of 64 packed weight bytes come out of a mask and a shift.
struct GemmProblem {
  const int8_t* x_values;            // [m][blocks][128]: 16·qx at even k, qx at odd k
  const int32_t* x_corrections;      // [m][blocks]: kSumScale · -8 · Σ qx over the block
  const int32_t* x_row_corrections;  // [m]: the sum of the row's block corrections
  const float* x_scales;             // [m][blocks]: sx / kSumScale
  int64_t m = 0;
  const uint8_t* w_packed;  // [n][blocks * 64], canonical layout
  const float* w_scales;
  int64_t w_scale_row_stride = 0;    // scales per weight row
  int64_t w_scale_block_stride = 0;  // 1 for group-128, 0 for per-channel
  int64_t n = 0;
  int64_t blocks = 0;
  bool scales_per_row = false;    // both operands have one scale per row (per-channel/token)
  float* y = nullptr;             // [m][n]; or, when null,
  int32_t* block_sums = nullptr;  // [m][n][blocks], exact Σ qx·qw per block (for tests)
};

// How a tile turns its int32 block sums into output.
enum class Epilogue {
  kBlockSums,      // store each block's exact sum (W4A4GemmBlockSums)
  kScalePerBlock,  // y += sx · sw · sum per block, in float (group-128 on either side)
  kScalePerRow,    // sum over all blocks in int32, scale once (per-channel × per-token)
};

// Rows [n_begin, n_end) of the output for all M; n_begin is a multiple of kTileCols.
void GemmRangeAvx2(const GemmProblem& p, int64_t n_begin, int64_t n_end);
void GemmRangeAvx512Vnni(const GemmProblem& p, int64_t n_begin, int64_t n_end);

// Walks the output in tiles of up to Kernel::kMaxRows activation rows × kTileCols weight rows,
// weight tile outermost so that its bytes stay in L1 while every activation row passes.
// Kernel::Tile<MR, NR, kEpilogue>(p, m0, n0) computes one tile.
template <typename Kernel, int MR, Epilogue kEpilogue>
void RunTile(int64_t rows, int64_t cols, const GemmProblem& p, int64_t m0, int64_t n0) {
  if constexpr (MR > 1) {
    if (rows < MR) return RunTile<Kernel, MR - 1, kEpilogue>(rows, cols, p, m0, n0);
  }
  if (cols == kTileCols) return Kernel::template Tile<MR, kTileCols, kEpilogue>(p, m0, n0);
  for (int64_t j = 0; j < cols; ++j) Kernel::template Tile<MR, 1, kEpilogue>(p, m0, n0 + j);
}

template <typename Kernel>
void RunTiles(const GemmProblem& p, int64_t n_begin, int64_t n_end) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kTileCols) {
    const int64_t cols = std::min<int64_t>(kTileCols, n_end - n0);
    for (int64_t m0 = 0; m0 < p.m; m0 += Kernel::kMaxRows) {
      const int64_t rows = std::min<int64_t>(Kernel::kMaxRows, p.m - m0);
      if (p.block_sums != nullptr) {
        RunTile<Kernel, Kernel::kMaxRows, Epilogue::kBlockSums>(rows, cols, p, m0, n0);
      } else if (p.scales_per_row) {
        RunTile<Kernel, Kernel::kMaxRows, Epilogue::kScalePerRow>(rows, cols, p, m0, n0);
      } else {
        RunTile<Kernel, Kernel::kMaxRows, Epilogue::kScalePerBlock>(rows, cols, p, m0, n0);
      }
    }
  }
}

// The AVX2 block policy of w4a4_gemm_tile.inc, here because the VNNI kernels reuse its unpacking
// and float epilogue (AVX-512 implies AVX2). A 128-block of one weight row is four ymm of
// biased nibbles; maddubs products are at most 15·128 (low nibble × 16·qx) or 240·8 (16 × high
// nibble × qx), so four maddubs outputs (at most 4·3840 per int16 lane) add without saturating
// before one widening madd.
#define APEX4_TARGET_AVX2 __attribute__((target("avx2,fma")))

struct Avx2Block {
  struct Weights {
    __m256i low0, high0, low1, high1;  // u of even k, 16·u of odd k: bytes 0..31, then 32..63
  };
  using Sums = __m256i;
  using Acc = __m256;

  APEX4_TARGET_AVX2 static Weights Unpack(const uint8_t* w) {
    Weights u;
    UnpackHalf(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)), &u.low0, &u.high0);
    UnpackHalf(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32)), &u.low1, &u.high1);
    return u;
  }

  // 32 packed bytes -> the biased low nibbles u (0..15) and high nibbles in place (16·u).
  APEX4_TARGET_AVX2 static void UnpackHalf(__m256i packed, __m256i* low, __m256i* high) {
    const __m256i biased = _mm256_xor_si256(packed, _mm256_set1_epi8(static_cast<char>(0x88)));
    *low = _mm256_and_si256(biased, _mm256_set1_epi8(0x0F));
    *high = _mm256_and_si256(biased, _mm256_set1_epi8(static_cast<char>(0xF0)));
  }

  // The correction in lane 0: what a block's sum starts from.
  APEX4_TARGET_AVX2 static Sums Seed(int32_t correction) {
    return _mm256_zextsi128_si256(_mm_cvtsi32_si128(correction));
  }

  // Lane sums of the block's products plus `seed`: exact int32.
  APEX4_TARGET_AVX2 static Sums Dot(const Weights& w, const int8_t* x, Sums seed) {
    const __m256i* xv = reinterpret_cast<const __m256i*>(x);
    __m256i sum16 = _mm256_maddubs_epi16(w.low0, _mm256_loadu_si256(xv));
    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w.low1, _mm256_loadu_si256(xv + 1)));
    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w.high0, _mm256_loadu_si256(xv + 2)));
    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(w.high1, _mm256_loadu_si256(xv + 3)));
    return _mm256_add_epi32(_mm256_madd_epi16(sum16, _mm256_set1_epi16(1)), seed);
  }

  APEX4_TARGET_AVX2 static Acc Zero() { return _mm256_setzero_ps(); }
  APEX4_TARGET_AVX2 static Acc Accumulate(Sums sums, float scale, Acc acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(scale), acc);
  }
  APEX4_TARGET_AVX2 static float ReduceAdd(Acc v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  APEX4_TARGET_AVX2 static int32_t ReduceAdd(Sums v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
  }
};

}  // namespace w4a4_internal
}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_W4A4_GEMM_INTERNAL_H_
