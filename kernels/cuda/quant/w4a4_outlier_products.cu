// The INT8 product of Atom-style outlier channels, added to the INT4 GEMM's bf16 output
// (w4a4_linear.h AddW4A4OutlierProducts): a small GEMM (K = the channel count, ≤ 1024) on
// mma.sync m16n8k32 s8. A CTA of 4 warps covers 64 tokens × 64 columns, each warp 16 tokens ×
// 64 columns; K runs in 128-byte chunks that the CTA copies into shared memory with 16-byte loads
// (rows padded by 16 bytes, so a fragment's eight rows fall in different banks). The products go
// through shared memory so that each warp then updates whole 128-byte rows of the output.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/programmatic_launch.cuh"
#include "kernels/cuda/ptx/mma_s8.cuh"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kTokens = 16 * kWarps;  // per CTA
constexpr int kColumns = 64;          // per CTA: 8 n8 fragments per warp
constexpr int kChunk = 128;           // K bytes per shared-memory stage
constexpr int kRowBytes = kChunk + 16;

// Rows [first, first + count) of a codes matrix (rows of `stride` bytes, `limit` rows), bytes
// [k, k + width) of each, into `tile` (kRowBytes per row; zeros past the matrix or the width).
__device__ __forceinline__ void LoadChunk(const int8_t* codes, int64_t stride, int64_t limit, int64_t first, int count,
                                          int64_t k, int width, uint8_t* tile) {
  for (int unit = threadIdx.x; unit < count * (kChunk / 16); unit += 32 * kWarps) {
    const int r = unit / (kChunk / 16), byte = unit % (kChunk / 16) * 16;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (first + r < limit && byte < width) v = *reinterpret_cast<const uint4*>(codes + (first + r) * stride + k + byte);
    *reinterpret_cast<uint4*>(tile + r * kRowBytes + byte) = v;
  }
}

__global__ void __launch_bounds__(32 * kWarps) add_outlier_products_kernel(const W4A4OutlierProductArgs a) {
  // The code tiles, then (reused) the CTA's products.
  constexpr int kProductStride = kColumns + 1;  // floats per product row
  constexpr int kTileBytes = (kTokens + kColumns) * kRowBytes;
  static_assert(kTokens * kProductStride * 4 <= kTileBytes, "products fit in the tiles' space");
  __shared__ __align__(16) uint8_t tiles[kTileBytes];
  uint8_t* const x_tile = tiles;
  uint8_t* const w_tile = tiles + kTokens * kRowBytes;
  float* const products = reinterpret_cast<float*>(tiles);
  StartAfterPrerequisiteGrids();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row group and thread in group
  const int64_t token0 = int64_t{blockIdx.y} * kTokens, column0 = int64_t{blockIdx.x} * kColumns;
  int32_t acc[kColumns / 8][4] = {};
  for (int64_t k = 0; k < a.codes_stride; k += kChunk) {
    const int width = static_cast<int>(a.codes_stride - k < kChunk ? a.codes_stride - k : kChunk);
    __syncthreads();  // the previous chunk is consumed
    LoadChunk(a.x_q8, a.codes_stride, a.rows, token0, kTokens, k, width, x_tile);
    LoadChunk(a.weights, a.codes_stride, a.n, column0, kColumns, k, width, w_tile);
    __syncthreads();
    for (int kk = 0; kk < width; kk += 32) {
      // A: rows g and g + 8 of this warp's 16, bytes kk + 4t and kk + 16 + 4t.
      const uint8_t* xa = x_tile + (warp * 16 + g) * kRowBytes + kk + 4 * t;
      const uint32_t frag[4] = {*reinterpret_cast<const uint32_t*>(xa),
                                *reinterpret_cast<const uint32_t*>(xa + 8 * kRowBytes),
                                *reinterpret_cast<const uint32_t*>(xa + 16),
                                *reinterpret_cast<const uint32_t*>(xa + 8 * kRowBytes + 16)};
#pragma unroll
      for (int f = 0; f < kColumns / 8; ++f) {  // B: column g of fragment f
        const uint8_t* wb = w_tile + (8 * f + g) * kRowBytes + kk + 4 * t;
        MmaS8(frag, *reinterpret_cast<const uint32_t*>(wb), *reinterpret_cast<const uint32_t*>(wb + 16), acc[f][0],
              acc[f][1], acc[f][2], acc[f][3]);
      }
    }
  }
  // W4A4Linear::AddOutlierProducts' float expression: products · (x scale · weight scale); zero
  // scales past the rows and columns (their products are never added).
  float x_scale[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = token0 + warp * 16 + g + 8 * h;
    x_scale[h] = row < a.rows ? a.x_scales[row] : 0.0f;
  }
  __syncthreads();  // the tiles are consumed
#pragma unroll
  for (int f = 0; f < kColumns / 8; ++f) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int c = 8 * f + 2 * t + j;
      const float w_scale = column0 + c < a.n ? a.weight_scales[column0 + c] : 0.0f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        products[(warp * 16 + g + 8 * h) * kProductStride + c] =
            __fmul_rn(static_cast<float>(acc[f][2 * h + j]), __fmul_rn(x_scale[h], w_scale));
      }
    }
  }
  __syncthreads();
  // Added to the bf16 output a row at a time: lane l takes columns 2l and 2l + 1.
  const int64_t rows_here = a.rows - token0 < kTokens ? a.rows - token0 : kTokens;
  const int64_t column = column0 + 2 * lane;
  const bool both = column + 1 < a.n, paired = both && a.ldy % 2 == 0, first = column < a.n;
  __nv_bfloat16* y = a.y + (token0 + warp) * a.ldy + column;
  for (int r = warp; r < rows_here; r += kWarps, y += kWarps * a.ldy) {
    const float* p = products + r * kProductStride + 2 * lane;
    if (paired) {
      const float2 old = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(y));
      *reinterpret_cast<__nv_bfloat162*>(y) = __floats2bfloat162_rn(__fadd_rn(old.x, p[0]), __fadd_rn(old.y, p[1]));
    } else {
      if (first) y[0] = __float2bfloat16_rn(__fadd_rn(__bfloat162float(y[0]), p[0]));
      if (both) y[1] = __float2bfloat16_rn(__fadd_rn(__bfloat162float(y[1]), p[1]));
    }
  }
}

}  // namespace

CudaStatus AddW4A4OutlierProducts(const W4A4OutlierProductArgs& args, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(args.rows >= 0 && args.n > 0 && args.ldy >= args.n);
  APEX4_CUDA_CHECK_ARG(args.count > 0 && args.count <= kMaxW4A4Outliers);
  APEX4_CUDA_CHECK_ARG(args.codes_stride == W4A4OutlierCodesStride(args.count));
  if (args.rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(args.x_q8 && args.x_scales && args.weights && args.weight_scales && args.y);
  APEX4_CUDA_CHECK_ARG(reinterpret_cast<uintptr_t>(args.x_q8) % 16 == 0 && reinterpret_cast<uintptr_t>(args.weights) % 16 == 0);
  APEX4_CUDA_CHECK_ARG((args.rows + kTokens - 1) / kTokens < 65536);
  const dim3 grid(static_cast<unsigned>((args.n + kColumns - 1) / kColumns),
                  static_cast<unsigned>((args.rows + kTokens - 1) / kTokens));
  return LaunchProgrammatic(add_outlier_products_kernel, grid, dim3(32 * kWarps), 0, stream, args);
}

}  // namespace apex4::cuda
