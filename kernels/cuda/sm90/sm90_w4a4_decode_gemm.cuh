// Decode path of the sm_90a W4A4 GEMM (M ≤ 16 tokens): a weight-streaming GEMV on mma.sync
// m16n8k32 s8, reading the same prepacked weights as the wgmma kernel (sm90_w4a4_layout.h).
//
// One CTA per 16-channel strip; its kDecodeWarps (8 or 16) warps take the strip's K chunks
// round-robin (intra-CTA split-K) and sum their partials through shared memory in warp order, so results are
// deterministic and no workspace is needed. Each lane streams its 2 × 16 bytes of every chunk
// (one 16-row wgmma A fragment = one mma.sync A fragment) straight into registers; there is no
// shared-memory stage, so every resident warp keeps its loads in flight.
//
// NOTES: at M ≤ 16 the GEMM is a weight stream (4.8 TB/s ≈ 19 bytes per SM clock); the
// tensor-core work is ~1% of the mma.sync rate, so what matters is bytes in flight and few
// instructions per byte. The weight prefetch is issued before griddepcontrol.wait: launched with
// programmatic dependent launch (programmatic_launch.cuh), the kernel streams its first chunks
// while the activation quantizer before it still runs.
//
// Activations come from the canonical packed rows. mma k32 step s of a 128-wide chunk needs, at
// lane (g, c), words 4s + c/2 and 4s + 2 + c/2 of token g's 16-word chunk row (nibble half c % 2).
// Lane c loads words 4c..4c+3; lanes trade them with xor shuffles. Since only lanes with the same
// c meet in an mma product, instruction r lets each lane use K step c ^ r: the xor shuffle then
// brings exactly that step's words, and the weight fragment of step c ^ r is picked with
// lane-constant selects and shifts instead of a dynamically indexed register array.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/programmatic_launch.cuh"
#include "kernels/cuda/ptx/mma_s8.cuh"
#include "kernels/cuda/sm90/sm90_w4a4_gemm.cuh"
#include "kernels/cuda/sm90/sm90_w4a4_layout.h"

namespace apex4::cuda::sm90 {

inline constexpr int kStripChannels = 16;
inline constexpr int kDecodeMaxTokens = 16;  // two n8 token tiles

__device__ __forceinline__ uint32_t LoadWord(const int8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint4 LoadStreaming(const uint8_t* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

// What one lane holds of one K chunk: its two weight units and, per token tile, its 16 bytes of
// the token's packed activations (plus the group-128 scales).
template <int kTiles, bool kGroup128>
struct DecodeChunk {
  uint4 w[2];
  uint4 x[kTiles];
  float sw[kGroup128 ? 2 : 1];
  float sx[kGroup128 ? kTiles : 1][2];
};

// kOutliers: the layer has Atom-style outlier channels (p.outlier_*); a template argument, so that
// layers without them run the kernel as it was (a run-time branch cost ~0.5 µs a call at M = 1).
template <int kTiles, bool kGroup128, int kDecodeWarps, bool kOutliers>
__global__ void __launch_bounds__(32 * kDecodeWarps)
    sm90_w4a4_decode_gemm_kernel(const __grid_constant__ GemmParams p) {
  using Chunk = DecodeChunk<kTiles, kGroup128>;
  constexpr int kAcc = 4 * kTiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = lane % 4;
  const int strip_in_tile = blockIdx.x % 8;  // 8 strips of 16 channels per 128-channel tile
  const int channel_tile = blockIdx.x / 8;
  const int k_chunks = p.k / kBlockK;
  const int chunks = (k_chunks - warp + kDecodeWarps - 1) / kDecodeWarps;  // warp, warp + W, ...
  // sm90_w4a4_layout.h: [wg][unit][thread][16 B]; this strip is warp strip % 4 of warpgroup strip / 4.
  const uint8_t* w_lane = p.w + int64_t(channel_tile) * k_chunks * kWeightChunkBytes +
                          ((strip_in_tile / 4) * 256 + (strip_in_tile % 4) * 32 + lane) * 16;
  const float* sw_lane = p.w_scales + int64_t(channel_tile) * k_chunks * kBlockM + strip_in_tile * 16 + g;

  auto load_weights = [&](Chunk& ch, int i) {
    const int chunk = warp + i * kDecodeWarps;
    const uint8_t* src = w_lane + int64_t(chunk) * kWeightChunkBytes;
    ch.w[0] = LoadStreaming(src);
    ch.w[1] = LoadStreaming(src + 128 * 16);
    if constexpr (kGroup128) {
      ch.sw[0] = __ldg(sw_lane + chunk * kBlockM);
      ch.sw[1] = __ldg(sw_lane + chunk * kBlockM + 8);
    }
  };
  // This lane's activation rows (and, group-128, its two scale rows) from its first chunk on. A
  // token past p.m reads row p.m - 1 instead: it only feeds its own output column, which is never
  // stored, and the loads need neither a predicate nor a zero.
  constexpr int kChunkVectors = kBlockK / 2 / 16;  // 16-byte vectors of one token's chunk
  const uint4* x_lane[kTiles];
  const float* sx_lane[kGroup128 ? kTiles : 1][2];
#pragma unroll
  for (int t = 0; t < kTiles; ++t) {
    const int token = min(8 * t + g, p.m - 1);
    x_lane[t] = reinterpret_cast<const uint4*>(p.x + int64_t(token) * (p.k / 2)) + warp * kChunkVectors + c;
    if constexpr (kGroup128) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {  // the C fragment's two token columns
        sx_lane[t][j] = p.x_scales + int64_t(min(8 * t + 2 * c + j, p.m - 1)) * k_chunks + warp;
      }
    }
  }
  auto load_activations = [&](Chunk& ch, int i) {
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      ch.x[t] = __ldg(x_lane[t] + i * kDecodeWarps * kChunkVectors);
      if constexpr (kGroup128) {
        ch.sx[t][0] = __ldg(sx_lane[t][0] + i * kDecodeWarps);
        ch.sx[t][1] = __ldg(sx_lane[t][1] + i * kDecodeWarps);
      }
    }
  };

  // Lane constants of the c ^ r step order (see the file comment).
  const bool c_hi = (c >> 1) != 0;
  const int shift_even_r = (c & 1) ? 0 : 4;  // step bit 0 = c & 1 when r is even
  const int shift_odd_r = 4 - shift_even_r;

  int32_t acc[kAcc];
  float facc[kGroup128 ? kAcc : 1];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = 0;
#pragma unroll
  for (int i = 0; i < (kGroup128 ? kAcc : 1); ++i) facc[i] = 0.0f;

  auto consume = [&](const Chunk& ch) {
    // Weight unit u holds steps 2u (low nibbles) and 2u + 1 (high); step c ^ r uses unit
    // (c >> 1) ^ (r >> 1).
    const uint4 unit_near = c_hi ? ch.w[1] : ch.w[0];  // r = 0, 1
    const uint4 unit_far = c_hi ? ch.w[0] : ch.w[1];   // r = 2, 3
    int32_t part[kGroup128 ? kAcc : 1];
    if constexpr (kGroup128) {
#pragma unroll
      for (int i = 0; i < kAcc; ++i) part[i] = 0;
    }
    // Activation words each source lane s sends: components (s ^ r) >> 1 and 2 + that.
    uint32_t send_lo[kTiles][2], send_hi[kTiles][2];  // [tile][r >> 1]
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
      send_lo[t][0] = c_hi ? ch.x[t].y : ch.x[t].x;
      send_hi[t][0] = c_hi ? ch.x[t].w : ch.x[t].z;
      send_lo[t][1] = c_hi ? ch.x[t].x : ch.x[t].y;
      send_hi[t][1] = c_hi ? ch.x[t].z : ch.x[t].w;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const uint4 u = r < 2 ? unit_near : unit_far;
      const int shift = (r & 1) ? shift_odd_r : shift_even_r;
      const uint32_t a[4] = {(u.x << shift) & kNibbleMask, (u.y << shift) & kNibbleMask,
                             (u.z << shift) & kNibbleMask, (u.w << shift) & kNibbleMask};
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
        // r = 0: the lane's own words (no shuffle).
        const uint32_t b0 = r == 0 ? send_lo[t][0] : __shfl_xor_sync(0xFFFFFFFFu, send_lo[t][r >> 1], r);
        const uint32_t b1 = r == 0 ? send_hi[t][0] : __shfl_xor_sync(0xFFFFFFFFu, send_hi[t][r >> 1], r);
        const int b_shift = (c & 1) ? 0 : 4;  // half c % 2 of each 8-block
        const uint32_t lo = (b0 << b_shift) & kNibbleMask, hi = (b1 << b_shift) & kNibbleMask;
        if constexpr (kGroup128) {
          MmaS8(a, lo, hi, part[4 * t], part[4 * t + 1], part[4 * t + 2], part[4 * t + 3]);
        } else {
          MmaS8(a, lo, hi, acc[4 * t], acc[4 * t + 1], acc[4 * t + 2], acc[4 * t + 3]);
        }
      }
    }
    if constexpr (kGroup128) {
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          facc[4 * t + e] += float(part[4 * t + e]) * (ch.sw[e >> 1] * ch.sx[t][e & 1]);
        }
      }
    }
  };

  // One chunk in flight per warp: consume it, then load the next. NOTES: on H200, keeping 2 or 3
  // chunks in flight per warp (a register ring) and CTAs of 2 or 4 strips sharing activations
  // were all slower: more registers, fewer resident warps (kernels/cuda/RESULTS.md).
  Chunk chunk;
  if (chunks > 0) load_weights(chunk, 0);
  StartAfterPrerequisiteGrids();
  if (chunks > 0) load_activations(chunk, 0);
  for (int i = 0; i < chunks; ++i) {
    consume(chunk);
    if (i + 1 < chunks) {
      load_weights(chunk, i + 1);
      load_activations(chunk, i + 1);
    }
  }

  // Warp partials → warp 0, summed in warp order.
  __shared__ uint32_t partials[kDecodeWarps - 1][kAcc][32];
  if (warp > 0) {
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      partials[warp - 1][i][lane] = kGroup128 ? __float_as_uint(facc[i]) : uint32_t(acc[i]);
    }
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    for (int w = 0; w < kDecodeWarps - 1; ++w) {
      if constexpr (kGroup128) {
        facc[i] += __uint_as_float(partials[w][i][lane]);
      } else {
        acc[i] += int32_t(partials[w][i][lane]);
      }
    }
  }
  // The wgmma kernel's epilogue arithmetic (StoreOutput), so both paths give the same bits for
  // per-channel layers: 1/256 undoes the 16·16 of the nibble unpack.
  const int channel = channel_tile * kBlockM + strip_in_tile * kStripChannels + g;
  // Atom-style outlier channels: their INT8 product on mma.sync (this strip's 16 channels as A,
  // the tokens as B), added before the rounding, as the CPU's W4A4Linear adds it to its output.
  int32_t outlier_acc[kOutliers ? kAcc : 1];
#pragma unroll
  for (int i = 0; i < (kOutliers ? kAcc : 1); ++i) outlier_acc[i] = 0;
  if constexpr (kOutliers) {
    const int8_t* w_row = p.outlier_w + int64_t(channel) * p.outlier_stride + 4 * c;  // and + 8 rows
    for (int k = 0; k < p.outlier_stride; k += 32) {
      const uint32_t a[4] = {LoadWord(w_row + k), LoadWord(w_row + 8 * p.outlier_stride + k),
                             LoadWord(w_row + k + 16), LoadWord(w_row + 8 * p.outlier_stride + k + 16)};
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
        const int token = 8 * t + g;
        const int8_t* x_row = p.outlier_x + int64_t(token) * p.outlier_stride + 4 * c + k;
        MmaS8(a, token < p.m ? LoadWord(x_row) : 0u, token < p.m ? LoadWord(x_row + 16) : 0u, outlier_acc[4 * t],
              outlier_acc[4 * t + 1], outlier_acc[4 * t + 2], outlier_acc[4 * t + 3]);
      }
    }
  }
  float sw[2] = {1.0f / 256.0f, 1.0f / 256.0f};
  if constexpr (!kGroup128) {
    sw[0] *= p.w_scales[channel];
    sw[1] *= p.w_scales[channel + 8];
  }
#pragma unroll
  for (int t = 0; t < kTiles; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int token = 8 * t + 2 * c + (e & 1);
      if (token >= p.m) continue;
      const float sx = kGroup128 ? 1.0f : p.x_scales[token];
      float v = kGroup128 ? facc[4 * t + e] * sw[e >> 1] : float(acc[4 * t + e]) * (sw[e >> 1] * sx);
      if constexpr (kOutliers) {
        v = __fadd_rn(v, __fmul_rn(float(outlier_acc[4 * t + e]),
                                   __fmul_rn(p.outlier_x_scales[token], p.outlier_w_scales[channel + 8 * (e >> 1)])));
      }
      p.y[int64_t(token) * p.n + channel + 8 * (e >> 1)] = __float2bfloat16_rn(v);
    }
  }
}

}  // namespace apex4::cuda::sm90
