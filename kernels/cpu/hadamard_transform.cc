#include "kernels/cpu/hadamard_transform.h"

#include <immintrin.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

absl::Status ValidateHadamardArgs(const float* x, int64_t rows, int64_t k, int block) {
  if (x == nullptr) return absl::InvalidArgumentError("hadamard: null data");
  if (block < 8 || (block & (block - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hadamard: block=", block, " is not a power of two >= 8"));
  }
  if (rows <= 0 || k <= 0 || k % block != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hadamard: bad shape rows=", rows, " k=", k, " for block=", block));
  }
  return absl::OkStatus();
}

float Normalization(int block) { return 1.0f / std::sqrt(static_cast<float>(block)); }

// Butterfly stage h: (a, b) = (x[j], x[j + h]) -> (a + b, a - b) for the j whose bit h is clear.
void ButterflyScalar(float* x, int block, int h) {
  for (int i = 0; i < block; i += 2 * h) {
    for (int j = i; j < i + h; ++j) {
      const float a = x[j], b = x[j + h];
      x[j] = a + b;
      x[j + h] = a - b;
    }
  }
}

// Stages h = 1, 2, 4 inside one register: `partner` holds each lane's x[j ^ h]; lanes with bit
// h clear take a + b, the others partner - self, i.e. the a - b of their pair.
__attribute__((target("avx2"))) __m256 InRegisterStagesAvx2(__m256 v) {
  __m256 partner = _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1));
  v = _mm256_blend_ps(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v), 0xAA);
  partner = _mm256_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2));
  v = _mm256_blend_ps(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v), 0xCC);
  partner = _mm256_permute2f128_ps(v, v, 0x01);
  return _mm256_blend_ps(_mm256_add_ps(v, partner), _mm256_sub_ps(partner, v), 0xF0);
}

__attribute__((target("avx2"))) void HadamardBlockAvx2(float* x, int block, float norm) {
  for (int j = 0; j < block; j += 8) {
    _mm256_storeu_ps(x + j, InRegisterStagesAvx2(_mm256_loadu_ps(x + j)));
  }
  for (int h = 8; h < block; h *= 2) {
    for (int i = 0; i < block; i += 2 * h) {
      for (int j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
        _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
      }
    }
  }
  for (int j = 0; j < block; j += 8) {
    _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), _mm256_set1_ps(norm)));
  }
}

}  // namespace

absl::Status HadamardTransformReference(float* x, int64_t rows, int64_t k, int block) {
  if (auto s = ValidateHadamardArgs(x, rows, k, block); !s.ok()) return s;
  const float norm = Normalization(block);
  for (float* b = x; b < x + rows * k; b += block) {
    for (int h = 1; h < block; h *= 2) ButterflyScalar(b, block, h);
    for (int j = 0; j < block; ++j) b[j] *= norm;
  }
  return absl::OkStatus();
}

absl::Status HadamardTransform(float* x, int64_t rows, int64_t k, int block, CpuIsa isa) {
  if (ResolveCpuIsa(isa) == CpuIsa::kScalar) return HadamardTransformReference(x, rows, k, block);
  if (auto s = ValidateHadamardArgs(x, rows, k, block); !s.ok()) return s;
  const float norm = Normalization(block);
  for (float* b = x; b < x + rows * k; b += block) HadamardBlockAvx2(b, block, norm);
  return absl::OkStatus();
}

}  // namespace apex4
