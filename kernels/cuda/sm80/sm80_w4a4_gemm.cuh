// Portable W4A4 GEMM for GPUs with INT4 tensor cores (sm_80/86/89): mma.sync m16n8k64 s4·s4,
// operands straight from the canonical packed layout (a 32-bit load is exactly one s4 fragment
// register: 8 nibbles in K order). Hopper runs it too, through slow emulation.
//
// CTA: 64 tokens × 64 channels, four warps of 16 tokens × 64 channels. Group-128 promotes the
// int32 sums of each 128-wide group into float accumulators; per-channel scales once at the end.
// NOTES: fragments come from global memory through L1 without a shared-memory stage: this path
// exists for correctness and portability, the Hopper kernel is the fast one.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace apex4::cuda::sm80 {

inline constexpr int kBlockTokens = 64;
inline constexpr int kBlockChannels = 64;
inline constexpr int kThreads = 128;

struct GemmParams {
  const uint8_t* x;         // m × k/2 canonical
  const float* x_scales;    // m × groups
  const uint8_t* w;         // n × k/2 canonical
  const float* w_scales;    // n × groups
  __nv_bfloat16* y;         // m × n
  int m, n, k;
};

__device__ __forceinline__ void MmaS4(const uint32_t (&a)[4], const uint32_t (&b)[2], int32_t (&d)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <bool kGroup128>
__global__ void __launch_bounds__(kThreads) sm80_w4a4_bf16_gemm_kernel(const GemmParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int token0 = blockIdx.y * kBlockTokens + warp * 16 + g;  // and token0 + 8
  const int channel0 = blockIdx.x * kBlockChannels + g;          // + 8·j
  const int row_bytes = p.k / 2;
  const int groups = kGroup128 ? p.k / 128 : 1;
  const bool valid0 = token0 < p.m, valid1 = token0 + 8 < p.m;
  const uint8_t* x0 = p.x + int64_t(valid0 ? token0 : 0) * row_bytes + 4 * t;
  const uint8_t* x1 = p.x + int64_t(valid1 ? token0 + 8 : 0) * row_bytes + 4 * t;
  const uint8_t* w0 = p.w + int64_t(channel0) * row_bytes + 4 * t;

  int32_t acc[8][4] = {};
  float facc[kGroup128 ? 8 : 1][4] = {};
  for (int kb = 0; kb < row_bytes; kb += 32) {  // 64 K per step
    const uint32_t a[4] = {valid0 ? __ldg(reinterpret_cast<const uint32_t*>(x0 + kb)) : 0u,
                           valid1 ? __ldg(reinterpret_cast<const uint32_t*>(x1 + kb)) : 0u,
                           valid0 ? __ldg(reinterpret_cast<const uint32_t*>(x0 + kb + 16)) : 0u,
                           valid1 ? __ldg(reinterpret_cast<const uint32_t*>(x1 + kb + 16)) : 0u};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint8_t* wj = w0 + int64_t(8 * j) * row_bytes + kb;
      const uint32_t b[2] = {__ldg(reinterpret_cast<const uint32_t*>(wj)),
                             __ldg(reinterpret_cast<const uint32_t*>(wj + 16))};
      MmaS4(a, b, acc[j]);
    }
    if constexpr (kGroup128) {
      if ((kb + 32) % 64 != 0) continue;  // the group ends every second step
      const int group = kb / 64;
      const float sx0 = valid0 ? p.x_scales[int64_t(token0) * groups + group] : 0.0f;
      const float sx1 = valid1 ? p.x_scales[int64_t(token0 + 8) * groups + group] : 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int c = blockIdx.x * kBlockChannels + 8 * j + 2 * t;
        const float sw0 = p.w_scales[int64_t(c) * groups + group];
        const float sw1 = p.w_scales[int64_t(c + 1) * groups + group];
        facc[j][0] += float(acc[j][0]) * (sx0 * sw0);
        facc[j][1] += float(acc[j][1]) * (sx0 * sw1);
        facc[j][2] += float(acc[j][2]) * (sx1 * sw0);
        facc[j][3] += float(acc[j][3]) * (sx1 * sw1);
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] = 0;
      }
    }
  }
  const float sx0 = kGroup128 || !valid0 ? 1.0f : p.x_scales[token0];
  const float sx1 = kGroup128 || !valid1 ? 1.0f : p.x_scales[token0 + 8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = blockIdx.x * kBlockChannels + 8 * j + 2 * t;
    const float sw0 = kGroup128 ? 1.0f : p.w_scales[c];
    const float sw1 = kGroup128 ? 1.0f : p.w_scales[c + 1];
    float v[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) v[e] = kGroup128 ? facc[j][e] : float(acc[j][e]);
    if (valid0) {
      *reinterpret_cast<__nv_bfloat162*>(p.y + int64_t(token0) * p.n + c) =
          __floats2bfloat162_rn(v[0] * (sx0 * sw0), v[1] * (sx0 * sw1));
    }
    if (valid1) {
      *reinterpret_cast<__nv_bfloat162*>(p.y + int64_t(token0 + 8) * p.n + c) =
          __floats2bfloat162_rn(v[2] * (sx1 * sw0), v[3] * (sx1 * sw1));
    }
  }
}

}  // namespace apex4::cuda::sm80
