// Fused activation quantizer: RMSNorm (optional) → zero padding to k (optional) → 128-wide
// Walsh-Hadamard rotation (optional) → symmetric INT4 per token or per group-128 → canonical
// packing, one pass over each row.
//
// One CTA per token row (decode rows without RMSNorm: a cluster of CTAs, at the end of this
// file). A half-warp owns one 128-wide block (8 elements per lane), so the Hadamard butterflies
// are 3 in-register stages and 4 shuffles, and a group-128 absmax is a 16-lane reduction.
// Per-token rows keep the transformed values in registers (rows of at most two passes) or in
// shared memory until the row's absmax is known. The quantization step is QuantizeInt4Reference's float32 arithmetic
// with explicit rounding intrinsics, so results match it bit for bit. RMSNorm reduces in double
// like engine/llama_ops.cc's RmsNorm (products of floats are exact in double), and the Hadamard
// butterflies run in HadamardTransformReference's order, so the whole chain matches the CPU
// engine's (RmsNorm, pad, HadamardTransform, QuantizeInt4) up to the order of the double sum.
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/programmatic_launch.cuh"

namespace apex4::cuda::quant {

// NOTES: 256 threads per row, except long per-token rows: their shared-memory row cache
// (k · 4 bytes) allows few CTAs per SM, so each gets 1024 threads (k = 28672: 428 → 298 µs at
// M = 8192 on H200; k ≤ 11008 ran faster with 256).
inline constexpr int kMaxThreads = 1024;
// Decode (rows ≤ kFewRows, about one CTA per SM) of rows without RMSNorm (the SwiGLU and attention
// outputs) gets a thread per 8 columns, up to 1024, so a row takes one or two passes instead of
// k / 2048: those results do not depend on the thread count (absmax is a max, the rest is per
// element), so a row quantizes identically in any batch. RMSNorm rows keep the counts above, since
// the order of their double sum follows the thread count.
inline constexpr int64_t kFewRows = 64;
constexpr int ThreadsFor(bool per_token, int k, int64_t rows = kFewRows + 1, bool rmsnorm = true) {
  const int base = per_token && k >= 16384 ? kMaxThreads : 256;
  if (rmsnorm || rows > kFewRows) return base;
  const int wide = (k / 8 + 31) / 32 * 32;
  return wide > base ? (wide < kMaxThreads ? wide : kMaxThreads) : base;
}
inline constexpr float kInvSqrt128 = 0.08838834764831845f;

// Where a row comes from (w4a4_linear.h, W4A4QuantizeArgs): x as is; x += residual, written
// back (x f32); silu(gate) · up of a bf16 gate|up row.
enum class InputMode : int { kPlain = 0, kResidual = 1, kSwiGlu = 2 };

struct QuantizeParams {
  const void* x;
  int64_t x_row_stride;         // elements between rows
  int k_valid;                  // columns >= k_valid are zeros (not read)
  const float* rmsnorm_weight;  // null: no RMSNorm; k_valid floats
  float rmsnorm_eps;
  bool hadamard;
  bool per_token;
  float clip_ratio;
  int k;
  uint8_t* packed;
  float* scales;
  const __nv_bfloat16* residual;  // kResidual only
  int64_t residual_stride;
  // Outlier channels (w4a4_linear.h W4A4OutlierColumns): mask null: none.
  const uint8_t* outlier_mask;
  const int16_t* outliers_before;
  int outlier_count;
  int outlier_codes_stride;  // W4A4OutlierCodesStride(outlier_count)
  int8_t* outlier_q8;
  float* outlier_scales;
};

template <typename T>
__device__ __forceinline__ void Load8(const T* src, float (&v)[8]);
template <>
__device__ __forceinline__ void Load8<float>(const float* src, float (&v)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(src), b = *reinterpret_cast<const float4*>(src + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
template <>
__device__ __forceinline__ void Load8<__nv_bfloat16>(const __nv_bfloat16* src, float (&v)[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(src);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}

// Elements [i, i + 8) of a row whose columns >= k_valid are zeros. kVector: 16-byte loads for
// whole valid chunks (the launcher checks the alignment of x and its row stride).
template <bool kVector, typename T>
__device__ __forceinline__ void LoadValid8(const T* row, int i, int k_valid, float (&v)[8]) {
  if (kVector && i + 8 <= k_valid) {
    Load8(row + i, v);
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = i + j < k_valid ? static_cast<float>(row[i + j]) : 0.0f;
}

// SiluMul's expression (ops/llama_elementwise.cu silu_mul_kernel), the same _rn intrinsics and
// device expf, so a fused SwiGLU row is bit for bit SiluMul's float output.
__device__ __forceinline__ float SiluMulValue(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// Elements [i, i + 8) of the row the quantizer reads (columns >= k_valid are zeros).
//  kResidual: x[i..] += residual[i..] (one float add each, as AddResidual), stored back to x when
//  `write` (a thread whose chunk is a repeat of another's must not add twice).
//  kSwiGlu: silu(gate[i..]) · up[i..], gate = row, up = row + k_valid.
template <InputMode kMode, bool kVector, typename T>
__device__ __forceinline__ void LoadInput8(const T* row, const __nv_bfloat16* residual_row, int i, int k_valid,
                                           bool write, float (&v)[8]) {
  if constexpr (kMode == InputMode::kPlain) {
    LoadValid8<kVector>(row, i, k_valid, v);
  } else if constexpr (kMode == InputMode::kResidual) {
    static_assert(sizeof(T) == sizeof(float));
    float* x = const_cast<float*>(reinterpret_cast<const float*>(row));
    if (kVector && i + 8 <= k_valid) {
      float r[8];
      Load8(x + i, v);
      Load8(residual_row + i, r);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = __fadd_rn(v[j], r[j]);
      if (write) {
        *reinterpret_cast<float4*>(x + i) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4*>(x + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
      }
      return;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (i + j < k_valid) {
        v[j] = __fadd_rn(x[i + j], __bfloat162float(residual_row[i + j]));
        if (write) x[i + j] = v[j];
      } else {
        v[j] = 0.0f;
      }
    }
  } else {
    static_assert(kMode == InputMode::kSwiGlu);
    float u[8];
    LoadValid8<kVector>(row, i, k_valid, v);
    LoadValid8<kVector>(row + k_valid, i, k_valid, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = i + j < k_valid ? SiluMulValue(v[j], u[j]) : 0.0f;
  }
}

// Sylvester H128 / sqrt(128) on the 128 values held 8 per lane by 16 consecutive lanes.
__device__ __forceinline__ void Hadamard128(float (&v)[8]) {
#pragma unroll
  for (int h = 1; h < 8; h *= 2) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j & h) continue;
      const float a = v[j], b = v[j + h];
      v[j] = a + b;
      v[j + h] = a - b;
    }
  }
#pragma unroll
  for (int m = 1; m < 16; m *= 2) {
    const bool upper = threadIdx.x & m;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float other = __shfl_xor_sync(0xFFFFFFFFu, v[j], m);
      v[j] = upper ? other - v[j] : v[j] + other;
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] *= kInvSqrt128;
}

__device__ __forceinline__ float HalfWarpMax(float v) {
#pragma unroll
  for (int m = 8; m >= 1; m /= 2) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, m));
  return v;
}

template <typename V, typename Op>
__device__ V BlockReduce(V v, V* scratch, Op op) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, m));
  __syncthreads();  // scratch may still be read by a previous reduction
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < int(blockDim.x) / 32; ++w) v = op(v, scratch[w]);
  return v;
}

// QuantizeInt4Reference's rule: scale = clipped / 7, q = clamp(rint(x · (7 / clipped)), -7, 7).
struct Int4Quantizer {
  float inv_scale, scale;
  __device__ explicit Int4Quantizer(float absmax, float clip_ratio) {
    const float clipped = __fmul_rn(clip_ratio, absmax);
    inv_scale = clipped > 0.0f ? __fdiv_rn(7.0f, clipped) : 0.0f;
    scale = __fdiv_rn(clipped, 7.0f);
  }
  __device__ uint32_t Pack8(const float (&v)[8]) const {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float q = fminf(fmaxf(rintf(__fmul_rn(v[j], inv_scale)), -7.0f), 7.0f);
      word |= (static_cast<uint32_t>(static_cast<int>(q)) & 0xFu) << (4 * j);
    }
    return word;
  }
};

// NOTES: a held residual row (below) also carries its residual and the write-back of x; under
// the 64 registers of a 1024-thread bound it spilled on sm_80, so held residual kernels take at
// most 256 threads (the engine's residual rows are RMSNorm rows: 256 threads, ThreadsFor).
template <InputMode kMode, int kHeldPasses>
inline constexpr int kQuantizeMaxThreads = kHeldPasses > 0 && kMode == InputMode::kResidual ? 256 : kMaxThreads;

// kHeldPasses > 0: the row fits in that many passes of the CTA (blocks ≤ kHeldPasses · threads / 16)
// and stays in registers from its one load to its store: no second read of the row after the
// RMSNorm sum, no shared-memory row cache. Each thread holds the same elements in every phase
// (i = pass · threads · 8 + thread · 8), so both forms do the same arithmetic in the same order
// and give the same bits. 0: the row is read twice and cached in shared memory (any k).
template <typename T, bool kVector, InputMode kMode, int kHeldPasses>
__global__ void __launch_bounds__(kQuantizeMaxThreads<kMode, kHeldPasses>)
    w4a4_quantize_activations_kernel(const QuantizeParams p) {
  constexpr bool kHeld = kHeldPasses > 0;
  extern __shared__ float row_cache[];  // per-token rows not held: k floats; then the outlier values
  __shared__ float scratch[kMaxThreads / 32];
  float* const outlier_values = row_cache + (p.per_token && !kHeld ? p.k : 0);
  const int threads = blockDim.x, blocks_per_pass = threads / 16;  // 128-wide blocks per pass
  const int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.x_row_stride;
  const __nv_bfloat16* residual = kMode == InputMode::kResidual ? p.residual + row * p.residual_stride : nullptr;
  const int half_warp = threadIdx.x / 16, sub = threadIdx.x % 16;
  const int blocks = p.k / 128;

  // Held residual rows (≤ 256 threads: registers to spare) also hold their RMSNorm weights, loaded
  // before the PDL wait (they are constant), so that after it only the row itself is a round trip.
  constexpr bool kHeldGamma = kHeld && kMode == InputMode::kResidual;
  float gamma[kHeldGamma ? kHeldPasses : 1][8];
  if constexpr (kHeldGamma) {
    if (p.rmsnorm_weight != nullptr) {
#pragma unroll
      for (int q = 0; q < kHeldPasses; ++q) {
        const int i = (q * blocks_per_pass + half_warp) * 128 + sub * 8;
        LoadValid8<kVector>(p.rmsnorm_weight, i < p.k ? i : 0, p.k_valid, gamma[q]);
      }
    }
  }
  // Launched with PDL (programmatic_launch.cuh); the decode GEMM after it may start now and
  // stream its weights while this row is quantized.
  StartAfterPrerequisiteGrids();

  float held[kHeld ? kHeldPasses : 1][8];
  if constexpr (kHeld) {
#pragma unroll
    for (int q = 0; q < kHeldPasses; ++q) {
      const int i = (q * blocks_per_pass + half_warp) * 128 + sub * 8;
      LoadInput8<kMode, kVector>(x, residual, i < p.k ? i : 0, p.k_valid, i < p.k, held[q]);
    }
  }

  float rstd = 1.0f;
  if (p.rmsnorm_weight != nullptr) {
    // RmsNorm's arithmetic: exact squares summed in double, 1 / sqrt(sum / n + eps) in double,
    // rounded once to float.
    __shared__ double dscratch[kMaxThreads / 32];
    double sum = 0.0;
    if constexpr (kHeld) {
#pragma unroll
      for (int q = 0; q < kHeldPasses; ++q) {
        if (q * threads * 8 + threadIdx.x * 8 >= p.k_valid) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) sum = fma(double(held[q][j]), double(held[q][j]), sum);
      }
    } else {
      // With a residual this pass adds it and writes x back; thread t's chunks here are the ones
      // it reads in the pass below (i = b0 · 128 + t · 8 there too), so it rereads its own stores.
      for (int i = threadIdx.x * 8; i < p.k_valid; i += threads * 8) {
        float v[8];
        LoadInput8<kMode, kVector>(x, residual, i, p.k_valid, true, v);
#pragma unroll
        for (int j = 0; j < 8; ++j) sum = fma(double(v[j]), double(v[j]), sum);
      }
    }
    sum = BlockReduce(sum, dscratch, [](double a, double b) { return a + b; });
    rstd = static_cast<float>(1.0 / sqrt(sum / p.k_valid + double(p.rmsnorm_eps)));
  }

  float absmax = 0.0f;
  constexpr int kUnroll = kHeld ? kHeldPasses : 1;  // held rows: registers need constant indices
#pragma unroll kUnroll
  for (int q = 0; kHeld ? q < kHeldPasses : q * blocks_per_pass < blocks; ++q) {
    // NOTES: all lanes take part in every pass so the Hadamard shuffles stay warp-uniform.
    const int b = q * blocks_per_pass + half_warp;
    const int i = (b < blocks ? b : 0) * 128 + sub * 8;
    float v[8];
    if constexpr (kHeld) {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = held[q][j];
    } else if (kMode == InputMode::kResidual && p.rmsnorm_weight != nullptr) {
      LoadValid8<kVector>(x, i, p.k_valid, v);  // updated by the RMSNorm pass
    } else {
      LoadInput8<kMode, kVector>(x, residual, i, p.k_valid, b < blocks, v);
    }
    if (p.rmsnorm_weight != nullptr) {
      float g[8];
      if constexpr (kHeldGamma) {
#pragma unroll
        for (int j = 0; j < 8; ++j) g[j] = gamma[q][j];
      } else {
        LoadValid8<kVector>(p.rmsnorm_weight, i, p.k_valid, g);
      }
      // NOTES: __fmul_rn keeps these products out of FMA contraction with the Hadamard's adds,
      // so they round as RmsNorm's x · scale · weight does.
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = i + j < p.k_valid ? __fmul_rn(__fmul_rn(v[j], rstd), g[j]) : 0.0f;
    }
    if (p.outlier_mask != nullptr) {  // copied aside and zeroed, as W4A4Linear's ExtractOutliers
      const uint32_t outliers = p.outlier_mask[i / 8];
      if (outliers != 0 && b < blocks) {
        int slot = p.outliers_before[i / 8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (outliers >> j & 1u) outlier_values[slot++] = v[j];
        }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = (outliers >> j & 1u) ? 0.0f : v[j];
    }
    if (p.hadamard) Hadamard128(v);
    float local = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) local = fmaxf(local, fabsf(v[j]));
    if (p.per_token) {
      if (b < blocks) {
        absmax = fmaxf(absmax, local);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if constexpr (kHeld) {
            held[q][j] = v[j];
          } else {
            row_cache[i + j] = v[j];
          }
        }
      }
      continue;
    }
    const Int4Quantizer quantizer(HalfWarpMax(local), p.clip_ratio);
    if (b < blocks) {
      reinterpret_cast<uint32_t*>(p.packed + row * (p.k / 2) + i / 2)[0] = quantizer.Pack8(v);
      if (sub == 0) p.scales[row * blocks + b] = quantizer.scale;
    }
  }
  if (p.outlier_mask != nullptr) {
    // W4A4Linear's INT8 rule: scale = absmax / 127, q = clamp(rint(v / scale), ±127).
    __syncthreads();  // every outlier value is in shared memory
    float outlier_max = 0.0f;
    for (int c = threadIdx.x; c < p.outlier_count; c += threads) outlier_max = fmaxf(outlier_max, fabsf(outlier_values[c]));
    outlier_max = BlockReduce(outlier_max, scratch, [](float a, float b) { return fmaxf(a, b); });
    const float outlier_scale = __fdiv_rn(outlier_max, 127.0f);
    const int stride = p.outlier_codes_stride;
    for (int c = threadIdx.x; c < stride; c += threads) {
      const float q = c < p.outlier_count && outlier_max > 0.0f
                          ? fminf(fmaxf(rintf(__fdiv_rn(outlier_values[c], outlier_scale)), -127.0f), 127.0f)
                          : 0.0f;
      p.outlier_q8[row * stride + c] = static_cast<int8_t>(q);
    }
    if (threadIdx.x == 0) p.outlier_scales[row] = outlier_scale;
  }
  if (!p.per_token) return;

  const Int4Quantizer quantizer(BlockReduce(absmax, scratch, [](float a, float b) { return fmaxf(a, b); }),
                                p.clip_ratio);
  if constexpr (kHeld) {
#pragma unroll
    for (int q = 0; q < kHeldPasses; ++q) {
      const int i = q * threads * 8 + threadIdx.x * 8;
      if (i < p.k) reinterpret_cast<uint32_t*>(p.packed + row * (p.k / 2) + i / 2)[0] = quantizer.Pack8(held[q]);
    }
  } else {
    for (int i = threadIdx.x * 8; i < p.k; i += threads * 8) {
      float v[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = row_cache[i + j];
      reinterpret_cast<uint32_t*>(p.packed + row * (p.k / 2) + i / 2)[0] = quantizer.Pack8(v);
    }
  }
  if (threadIdx.x == 0) p.scales[row] = quantizer.scale;
}

// Decode rows without RMSNorm, residual or outlier channels (the SwiGLU and attention outputs),
// each split over a cluster of kSplitCtas CTAs (sm_90+): a CTA holds whole 128-wide blocks of its
// slice in registers, one 8-element chunk a thread, and the slices' absmax meet in distributed
// shared memory. Nothing in these rows depends on how they are split (the absmax is a max, the
// rest is per element), so they quantize to the bits of the one-CTA kernel.
//
// NOTES: one CTA per row leaves a decode row's work on one SM: at batch 1 the 7B SwiGLU row
// (11008 columns, silu's expf and division per element) is issue-bound there for ~2 µs while the
// next GEMM waits; 256 threads instead of 1024 for these rows cost the 7B engine step 0.14 ms
// (engine/cuda/results/2026-11-27_h200_decode_step_ablations.txt).
inline constexpr int kSplitCtas = 4;
__host__ __device__ constexpr int SplitBlocksPerCta(int k) { return (k / 128 + kSplitCtas - 1) / kSplitCtas; }
constexpr int SplitThreads(int k) { return (SplitBlocksPerCta(k) * 16 + 31) / 32 * 32; }

template <typename T, bool kVector, InputMode kMode>
__global__ void __launch_bounds__(kMaxThreads) w4a4_quantize_split_rows_kernel(const QuantizeParams p) {
  static_assert(kMode != InputMode::kResidual, "a split row cannot write its residual sum back");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  __shared__ float scratch[kMaxThreads / 32];
  __shared__ float slice_absmax;
  StartAfterPrerequisiteGrids();
  const int rank = static_cast<int>(cluster.block_rank());
  const int64_t row = blockIdx.x / kSplitCtas;
  const int blocks = p.k / 128, half_warp = threadIdx.x / 16, sub = threadIdx.x % 16;
  const int b = rank * SplitBlocksPerCta(p.k) + half_warp;
  const bool valid = half_warp < SplitBlocksPerCta(p.k) && b < blocks;
  const int i = (valid ? b : 0) * 128 + sub * 8;
  float v[8];
  LoadInput8<kMode, kVector>(static_cast<const T*>(p.x) + row * p.x_row_stride, nullptr, i, p.k_valid, false, v);
  if (p.hadamard) Hadamard128(v);  // every lane: the shuffles stay warp-uniform
  float local = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) local = fmaxf(local, fabsf(v[j]));
  uint32_t* const packed = reinterpret_cast<uint32_t*>(p.packed + row * (p.k / 2) + i / 2);
  if (!p.per_token) {
    const Int4Quantizer quantizer(HalfWarpMax(local), p.clip_ratio);
    if (valid) {
      packed[0] = quantizer.Pack8(v);
      if (sub == 0) p.scales[row * blocks + b] = quantizer.scale;
    }
    return;
  }
  const float cta_absmax =
      BlockReduce(valid ? local : 0.0f, scratch, [](float a, float c) { return fmaxf(a, c); });
  if (threadIdx.x == 0) slice_absmax = cta_absmax;
  cluster.sync();
  float absmax = 0.0f;
  for (int r = 0; r < kSplitCtas; ++r) absmax = fmaxf(absmax, *cluster.map_shared_rank(&slice_absmax, r));
  cluster.sync();  // no CTA leaves while a peer may still read its slice_absmax
  const Int4Quantizer quantizer(absmax, p.clip_ratio);
  if (valid) packed[0] = quantizer.Pack8(v);
  if (rank == 0 && threadIdx.x == 0) p.scales[row] = quantizer.scale;
#endif
}

}  // namespace apex4::cuda::quant
