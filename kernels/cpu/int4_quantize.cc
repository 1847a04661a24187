#include "kernels/cpu/int4_quantize.h"

#include <immintrin.h>

#include "kernels/cpu/w4a4_reference.h"
#include "kernels/w4a4_format.h"

namespace apex4 {
namespace {

constexpr int kFloatsPerStep = 32;  // four ymm of floats -> 16 packed bytes

__attribute__((target("avx2"))) float GroupAbsMaxAvx2(const float* x, int group_size) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 absmax = _mm256_setzero_ps();
  // max_ps returns its second operand when the first is NaN: NaNs are skipped, as by the
  // reference's std::max(absmax, |x|).
  for (int i = 0; i < group_size; i += 8) {
    absmax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), absmax);
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(absmax), _mm256_extractf128_ps(absmax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// 32 floats -> 16 bytes of nibble pairs, with the reference's float rounding and clamping.
__attribute__((target("avx2"))) __m128i QuantizePack32Avx2(const float* x, __m256 inv_scale) {
  const __m256 lo = _mm256_set1_ps(-kInt4SymmetricMax);
  const __m256 hi = _mm256_set1_ps(kInt4SymmetricMax);
  __m256i q[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 scaled = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), inv_scale);
    const __m256 rounded = _mm256_round_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // Bounds first: a NaN passes through both and converts to INT_MIN, whose nibble is 0, which
    // is what the reference's clamp and cast give on x86.
    q[i] = _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, rounded)));
  }
  // Saturating packs work per 128-bit lane; the permute restores element order.
  const __m256i bytes = _mm256_permutevar8x32_epi32(
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])),
      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  // Each 16-bit lane holds (even, odd): keep the even's low nibble, move the odd's up to 4..7.
  const __m256i pairs =
      _mm256_or_si256(_mm256_and_si256(bytes, _mm256_set1_epi16(0x000F)),
                      _mm256_and_si256(_mm256_srli_epi16(bytes, 4), _mm256_set1_epi16(0x00F0)));
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
  return _mm256_castsi256_si128(packed);
}

__attribute__((target("avx2"))) void QuantizeInt4Avx2(const float* x, int64_t rows, int64_t k,
                                                      int group_size, float clip_ratio,
                                                      uint8_t* packed, float* scales) {
  const int64_t groups = k / group_size;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * k + g * group_size;
      const float clipped = clip_ratio * GroupAbsMaxAvx2(src, group_size);
      const float inv_scale = clipped > 0.0f ? kInt4SymmetricMax / clipped : 0.0f;
      scales[r * groups + g] = clipped / kInt4SymmetricMax;
      uint8_t* dst = packed + r * PackedRowBytes(k) + g * group_size / 2;
      for (int i = 0; i < group_size; i += kFloatsPerStep) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i / 2),
                         QuantizePack32Avx2(src + i, _mm256_set1_ps(inv_scale)));
      }
    }
  }
}

}  // namespace

absl::Status QuantizeInt4(const float* x, int64_t rows, int64_t k, int group_size, float clip_ratio,
                          uint8_t* packed, float* scales, CpuIsa isa) {
  const bool fast =
      ResolveCpuIsa(isa) != CpuIsa::kScalar && group_size > 0 && group_size % kFloatsPerStep == 0;
  if (!fast) return QuantizeInt4Reference(x, rows, k, group_size, clip_ratio, packed, scales);
  // Bad arguments go to the reference, which rejects them before writing anything: both paths
  // fail with the same message.
  if (x == nullptr || packed == nullptr || scales == nullptr || rows <= 0 || k <= 0 ||
      k % group_size != 0 || !(clip_ratio > 0.0f && clip_ratio <= 1.0f)) {
    return QuantizeInt4Reference(x, rows, k, group_size, clip_ratio, packed, scales);
  }
  QuantizeInt4Avx2(x, rows, k, group_size, clip_ratio, packed, scales);
  return absl::OkStatus();
}

}  // namespace apex4
