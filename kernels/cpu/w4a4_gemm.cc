#include "kernels/cpu/w4a4_gemm.h"

#include <immintrin.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/w4a4_gemm_internal.h"
#include "kernels/cpu/w4a4_reference.h"

namespace apex4 {
namespace {

using w4a4_internal::GemmProblem;
using w4a4_internal::kBlockBytes;
using w4a4_internal::kBlockK;
using w4a4_internal::kSumScale;
using w4a4_internal::kTileCols;

// Below this many multiply-adds (about 3 µs on one core) handing half to a second thread costs
// more than it saves: SmolLM2's 192 × 576 k/v projections at M = 1 run faster on one.
constexpr int64_t kMinMacsToSplit = int64_t{1} << 18;

absl::Status ValidateBlockedOperands(const W4A4Operand& x, const W4A4Operand& w) {
  if (auto s = ValidateW4A4Operands(x, w); !s.ok()) return s;
  if (x.k % kBlockK != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("w4a4 gemm: K=", x.k, " is not a multiple of ", kBlockK));
  }
  for (const W4A4Operand* op : {&x, &w}) {
    if (op->group_size != kBlockK && op->group_size != op->k) {
      return absl::InvalidArgumentError(
          absl::StrCat("w4a4 gemm: group_size=", op->group_size, " is neither 128 nor K=", op->k));
    }
  }
  return absl::OkStatus();
}

// The activations in the microkernels' layout, reused across calls on one thread so that decode
// does not allocate.
struct PreparedActivations {
  std::vector<int8_t> values;
  std::vector<int32_t> corrections;
  std::vector<int32_t> row_corrections;
  std::vector<float> scales;
};

// Unpacks each 128-block of x into its even-k (times 16) then odd-k int8 values, with the
// block's and the row's bias correction and the block's scale (see w4a4_gemm_internal.h).
// Every SIMD ISA implies AVX2.
APEX4_TARGET_AVX2 void PrepareActivations(const W4A4Operand& x, PreparedActivations* out) {
  const int64_t blocks = x.k / kBlockK;
  out->values.resize(x.rows * x.k);
  out->corrections.resize(x.rows * blocks);
  out->row_corrections.assign(x.rows, 0);
  out->scales.resize(x.rows * blocks);
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t b = 0; b < blocks; ++b) {
      const auto [low0, high0, low1, high1] =
          w4a4_internal::Avx2Block::Unpack(x.packed + m * PackedRowBytes(x.k) + b * kBlockBytes);
      // Σ (q + 8) over the block, from sums of absolute differences against zero.
      const __m256i zero = _mm256_setzero_si256();
      const __m256i odd0 = _mm256_srli_epi16(high0, 4), odd1 = _mm256_srli_epi16(high1, 4);
      const __m256i sad = _mm256_add_epi64(
          _mm256_add_epi64(_mm256_sad_epu8(low0, zero), _mm256_sad_epu8(low1, zero)),
          _mm256_add_epi64(_mm256_sad_epu8(odd0, zero), _mm256_sad_epu8(odd1, zero)));
      const __m128i sad2 =
          _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      const int64_t biased_sum =
          _mm_cvtsi128_si64(_mm_add_epi64(sad2, _mm_unpackhi_epi64(sad2, sad2)));
      const int64_t xb = m * blocks + b;
      out->corrections[xb] = static_cast<int32_t>(kSumScale * -8 * (biased_sum - 8 * kBlockK));
      out->row_corrections[m] += out->corrections[xb];
      out->scales[xb] = x.scales[m * x.groups() + b * kBlockK / x.group_size] / kSumScale;
      // Even k: 16·u - 128 = 16·q (the shift stays inside each byte); odd k: u - 8 = q.
      __m256i* dst = reinterpret_cast<__m256i*>(out->values.data() + xb * kBlockK);
      const __m256i bias16 = _mm256_set1_epi8(static_cast<char>(0x80));
      _mm256_storeu_si256(dst + 0, _mm256_xor_si256(_mm256_slli_epi16(low0, 4), bias16));
      _mm256_storeu_si256(dst + 1, _mm256_xor_si256(_mm256_slli_epi16(low1, 4), bias16));
      _mm256_storeu_si256(dst + 2, _mm256_sub_epi8(odd0, eight));
      _mm256_storeu_si256(dst + 3, _mm256_sub_epi8(odd1, eight));
    }
  }
}

void RunFastPath(const W4A4Operand& x, const W4A4Operand& w, CpuIsa isa, ThreadPool* pool, float* y,
                 int32_t* block_sums) {
  thread_local PreparedActivations prepared;
  PrepareActivations(x, &prepared);
  GemmProblem p;
  p.x_values = prepared.values.data();
  p.x_corrections = prepared.corrections.data();
  p.x_row_corrections = prepared.row_corrections.data();
  p.x_scales = prepared.scales.data();
  p.m = x.rows;
  p.w_packed = w.packed;
  p.w_scales = w.scales;
  p.w_scale_row_stride = w.groups();
  p.w_scale_block_stride = w.group_size == kBlockK ? 1 : 0;
  p.n = w.rows;
  p.blocks = x.k / kBlockK;
  p.y = y;
  p.block_sums = block_sums;
  p.scales_per_row = x.group_size == x.k && w.group_size == w.k;
  const auto range = isa == CpuIsa::kAvx512Vnni ? w4a4_internal::GemmRangeAvx512Vnni
                                                : w4a4_internal::GemmRangeAvx2;
  if (pool == nullptr || p.m * p.n * x.k < kMinMacsToSplit) {
    range(p, 0, p.n);
  } else {
    pool->ParallelFor(p.n, kTileCols, [&](int64_t begin, int64_t end) { range(p, begin, end); });
  }
}

}  // namespace

absl::Status W4A4Gemm(const W4A4Operand& x, const W4A4Operand& w, float* y,
                      const W4A4GemmOptions& options) {
  if (y == nullptr) return absl::InvalidArgumentError("w4a4 gemm: null output");
  if (auto s = ValidateBlockedOperands(x, w); !s.ok()) return s;
  const CpuIsa isa = ResolveCpuIsa(options.isa);
  if (isa == CpuIsa::kScalar) return W4A4GemmReference(x, w, y);
  RunFastPath(x, w, isa, options.pool, y, nullptr);
  return absl::OkStatus();
}

absl::Status W4A4GemmBlockSums(const W4A4Operand& x, const W4A4Operand& w, int32_t* block_sums,
                               const W4A4GemmOptions& options) {
  if (block_sums == nullptr) return absl::InvalidArgumentError("w4a4 gemm: null output");
  if (auto s = ValidateBlockedOperands(x, w); !s.ok()) return s;
  const CpuIsa isa = ResolveCpuIsa(options.isa);
  if (isa == CpuIsa::kScalar) return W4A4GemmInt32Reference(x, w, kBlockK, block_sums);
  RunFastPath(x, w, isa, options.pool, nullptr, block_sums);
  return absl::OkStatus();
}

}  // namespace apex4
