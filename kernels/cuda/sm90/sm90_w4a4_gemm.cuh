// sm_90a W4A4 GEMM, swap-AB: weights on wgmma's M side (A from registers), tokens on N (B from
// shared memory). Y[m, n] = Σ_g sx[m, g] · sw[n, g] · Σ_k qx[m, k] · qw[n, k], bf16 out.
//
// One CTA computes 128 channels × kBlockN tokens over a range of K chunks (split-K when the
// grid would not fill the GPU). Three warpgroups:
//   producer   (WG 0): warp 0 bulk-copies prepacked weight chunks (and group scales) into a
//                      ring of kStages shared-memory stages, as far ahead as the ring allows;
//                      warps 1-3 cp.async packed activations into a small private ring, unpack
//                      them to int8 into the stage, then mark it full;
//   consumers  (WG 1, 2): 64 channels each; load their weight fragment (16 bytes = two k32
//                      steps), unpack in registers, issue wgmma s8. Per-channel keeps one chunk
//                      of wgmma in flight; group-128 waits for each chunk's int32 sums and folds
//                      them into float accumulators (promotion) while the other consumer's
//                      wgmma keeps the tensor cores busy.
//
// NOTES: 4-bit → 8-bit without per-nibble shifts: for a word holding nibbles e0..e7 (canonical
// order), (w << 4) & 0xF0F0F0F0 holds 16·e0,16·e2,16·e4,16·e6 and w & 0xF0F0F0F0 holds
// 16·e1,16·e3,16·e5,16·e7 as int8. Activations land in shared memory in that permuted K order
// and the weight prepack (sm90_w4a4_prepack.cc) places weights in the same order, so the dot
// product is unchanged; products carry 16·16 = 256, removed by the epilogue scale.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/programmatic_launch.cuh"
#include "kernels/cuda/ptx/sm90_ptx.cuh"
#include "kernels/cuda/ptx/sm90_wgmma_s8.cuh"
#include "kernels/cuda/sm90/sm90_w4a4_layout.h"

namespace apex4::cuda::sm90 {

inline constexpr int kThreads = 384;
inline constexpr int kConverterThreads = 96;  // producer warps 1-3
// Named barriers: 0 is __syncthreads; 1 both consumers; 2, 3 one consumer each.
inline constexpr int kBarConsumers = 1;
inline constexpr int kProducerRegs = 88;
inline constexpr int kConsumerRegs = 208;
inline constexpr int kEpiloguePitch = 144;  // 64 bf16 channels + 16 bytes: conflict-free rows
inline constexpr uint32_t kNibbleMask = 0xF0F0F0F0u;

struct GemmParams {
  const uint8_t* x;         // m × k/2, canonical
  const float* x_scales;    // m × groups
  const uint8_t* w;         // prepacked: [n/128][k/128][kWeightChunkBytes]
  const float* w_scales;    // per-channel: [n]; group-128: [n/128][k/128][128]
  __nv_bfloat16* y;         // m × n
  int m, n, k;
  int token_tiles, channel_tiles, splits;
  int32_t* tile_counters;   // [tiles], split-K only
  uint32_t* partials;       // [tiles][splits][128 · kBlockN], split-K only
};

template <int kBlockN, bool kGroup128>
struct GemmConfig {
  // NOTES: for 256-token tiles, (stages, lookahead) = (4, 2), (4, 3), (3, 3), (3, 4) ran within
  // run-to-run noise (±10%) of each other on H200.
  static constexpr int kStages = kBlockN >= 256 ? 4 : kBlockN >= 128 ? 6 : kBlockN >= 64 ? 8 : 10;
  static constexpr int kLookahead = kBlockN >= 256 ? 2 : kBlockN >= 128 ? 3 : 4;
  static constexpr int kXSlots = kLookahead + 1;
  static constexpr int kXs8Bytes = kBlockN * kBlockK;  // int8 activations, one stage
  static constexpr int kX4Bytes = kBlockN * kBlockK / 2;

  static constexpr int kXs8Offset = 0;
  static constexpr int kW4Offset = kXs8Offset + kStages * kXs8Bytes;
  static constexpr int kSwOffset = kW4Offset + kStages * kWeightChunkBytes;
  static constexpr int kSxOffset = kSwOffset + (kGroup128 ? kStages * kBlockM * 4 : 0);
  static constexpr int kX4Offset = kSxOffset + (kGroup128 ? kStages * kBlockN * 4 : 0);
  static constexpr int kSx4Offset = kX4Offset + kXSlots * kX4Bytes;
  static constexpr int kBarOffset = kSx4Offset + (kGroup128 ? kXSlots * kBlockN * 4 : 0);
  static constexpr int kSmemBytes = kBarOffset + 2 * kStages * 8 + 4;

  using Mma = WgmmaS8<kBlockN>;
  static constexpr int kAcc = Mma::kAccumulators;

  // Converting chunk j waits for the stage of chunk j - kStages, released once the consumers
  // issued chunk j - kStages + 1, converted kStages - 1 iterations earlier: any lookahead works.
  static_assert(kStages >= 2, "the producer must not wait on itself");
  static_assert(kXs8Bytes % 1024 == 0, "swizzle atoms need 1024-byte aligned stages");
  static_assert(2 * kBlockN * kEpiloguePitch <= kW4Offset, "epilogue staging reuses the ring");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory");
};

// Which CTA does what: grouped rasterisation keeps a band of token tiles hot in L2 while the
// weight tiles stream past it.
struct TileCoord {
  int channel_tile, token_tile, tile, split;
};
__device__ __forceinline__ TileCoord GetTile(const GemmParams& p) {
  constexpr int kGroup = 8;
  TileCoord c;
  c.split = blockIdx.x % p.splits;
  c.tile = blockIdx.x / p.splits;
  const int per_group = kGroup * p.channel_tiles;
  const int first = (c.tile / per_group) * kGroup;
  const int group_size = min(p.token_tiles - first, kGroup);
  const int in_group = c.tile % per_group;
  c.token_tile = first + in_group % group_size;
  c.channel_tile = in_group / group_size;
  return c;
}

template <int kBlockN, bool kGroup128>
struct Sm90Mainloop {
  using Cfg = GemmConfig<kBlockN, kGroup128>;

  uint8_t* smem;
  uint64_t* full;
  uint64_t* empty;

  __device__ uint8_t* Xs8(int stage) const { return smem + Cfg::kXs8Offset + stage * Cfg::kXs8Bytes; }
  __device__ uint8_t* W4(int stage) const { return smem + Cfg::kW4Offset + stage * kWeightChunkBytes; }
  __device__ float* Sw(int stage) const {
    return reinterpret_cast<float*>(smem + Cfg::kSwOffset) + stage * kBlockM;
  }
  __device__ float* Sx(int stage) const {
    return reinterpret_cast<float*>(smem + Cfg::kSxOffset) + stage * kBlockN;
  }
  __device__ uint8_t* X4(int slot) const { return smem + Cfg::kX4Offset + slot * Cfg::kX4Bytes; }
  __device__ float* Sx4(int slot) const {
    return reinterpret_cast<float*>(smem + Cfg::kSx4Offset) + slot * kBlockN;
  }

  // Producer warp 0, one lane: weight chunks (and group-128 weight scales) through the bulk
  // copy engine, up to kStages chunks ahead of the consumers.
  __device__ void LoadWeights(const GemmParams& p, const TileCoord& t, int chunk_begin, int chunks) const {
    const int64_t first = int64_t(t.channel_tile) * (p.k / kBlockK) + chunk_begin;
    for (int i = 0; i < chunks; ++i) {
      const int stage = i % Cfg::kStages;
      if (i >= Cfg::kStages) MbarrierWait(&empty[stage], ((i / Cfg::kStages) + 1) & 1);
      // NOTES: arriving (not only expecting) keeps the phase open until the bytes are counted,
      // however far the converters run ahead.
      MbarrierArriveExpectTx(&full[stage], kWeightChunkBytes + (kGroup128 ? kBlockM * 4 : 0));
      BulkCopyG2S(W4(stage), p.w + (first + i) * kWeightChunkBytes, kWeightChunkBytes, &full[stage]);
      if constexpr (kGroup128) {
        BulkCopyG2S(Sw(stage), p.w_scales + (first + i) * kBlockM, kBlockM * 4, &full[stage]);
      }
    }
  }

  // Producer warps 1-3: chunk i's activation loads are issued kLookahead iterations before its
  // conversion. Each thread converts exactly the 16-byte pieces it loaded, so cp.async's own
  // wait suffices between the two.
  __device__ void ConvertActivations(const GemmParams& p, const TileCoord& t, int chunk_begin, int chunks,
                                     int tid) const {
    constexpr int kL = Cfg::kLookahead;
    constexpr int kPieces = kBlockN * 4;  // 16-byte packed pieces per chunk
    constexpr int kPiecesPerThread = (kPieces + kConverterThreads - 1) / kConverterThreads;
    constexpr int kBatch = 4;  // pieces loaded before the first is converted (more spill at BN 256)
    const int k_chunks = p.k / kBlockK;
    for (int i = 0; i < chunks + kL; ++i) {
      if (i < chunks) {
        const int chunk = chunk_begin + i;
        uint8_t* x4 = X4(i % Cfg::kXSlots);
#pragma unroll
        for (int u = 0; u < kPiecesPerThread; ++u) {
          const int c = tid + u * kConverterThreads;
          if (c >= kPieces) break;
          const int token = t.token_tile * kBlockN + c / 4;
          const bool valid = token < p.m;
          const uint8_t* src = p.x + int64_t(valid ? token : 0) * (p.k / 2) + chunk * (kBlockK / 2) +
                               (c % 4) * 16;
          CpAsync16(x4 + c * 16, src, valid ? 16 : 0);
        }
        if constexpr (kGroup128) {
          for (int r = tid; r < kBlockN; r += kConverterThreads) {
            const int token = t.token_tile * kBlockN + r;
            const bool valid = token < p.m;
            CpAsync4(Sx4(i % Cfg::kXSlots) + r, p.x_scales + int64_t(valid ? token : 0) * k_chunks + chunk,
                     valid ? 4 : 0);
          }
        }
      }
      CpAsyncCommit();
      const int j = i - kL;
      if (j < 0) continue;
      CpAsyncWait<kL>();
      const int stage = j % Cfg::kStages;
      if (j >= Cfg::kStages) MbarrierWait(&empty[stage], ((j / Cfg::kStages) + 1) & 1);
      const uint8_t* x4 = X4(j % Cfg::kXSlots);
      uint8_t* xs8 = Xs8(stage);
#pragma unroll
      for (int u0 = 0; u0 < kPiecesPerThread; u0 += kBatch) {
        uint4 q[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int c = tid + (u0 + u) * kConverterThreads;
          if (u0 + u < kPiecesPerThread && c < kPieces) q[u] = *reinterpret_cast<const uint4*>(x4 + c * 16);
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int c = tid + (u0 + u) * kConverterThreads;
          if (u0 + u >= kPiecesPerThread || c >= kPieces) break;
          const int row = c / 4, part = c % 4;
          // 32 nibbles → 32 int8 in K order (even nibbles of each word, then its odd ones),
          // stored into 16-byte chunks 2·part and 2·part+1 of the row, 128-byte swizzled.
          const uint4 lo = make_uint4((q[u].x << 4) & kNibbleMask, q[u].x & kNibbleMask,
                                      (q[u].y << 4) & kNibbleMask, q[u].y & kNibbleMask);
          const uint4 hi = make_uint4((q[u].z << 4) & kNibbleMask, q[u].z & kNibbleMask,
                                      (q[u].w << 4) & kNibbleMask, q[u].w & kNibbleMask);
          uint8_t* dst_row = xs8 + row * kBlockK;
          *reinterpret_cast<uint4*>(dst_row + (((2 * part) ^ (row % 8)) * 16)) = lo;
          *reinterpret_cast<uint4*>(dst_row + (((2 * part + 1) ^ (row % 8)) * 16)) = hi;
        }
      }
      if constexpr (kGroup128) {
        for (int r = tid; r < kBlockN; r += kConverterThreads) Sx(stage)[r] = Sx4(j % Cfg::kXSlots)[r];
      }
      FenceProxyAsync();
      MbarrierArrive(&full[stage]);
    }
  }

  // Consumer warpgroup `wg` (0 or 1), 64 channels: waits for chunk i's stage, unpacks its
  // weight fragments and issues the four k32 wgmmas of the chunk into `acc`.
  __device__ void IssueChunk(int i, int wg, int tid, int32_t (&acc)[Cfg::kAcc], bool accumulate) const {
    const int stage = i % Cfg::kStages;
    MbarrierWait(&full[stage], (i / Cfg::kStages) & 1);
    const uint8_t* w4 = W4(stage) + wg * (kWeightChunkBytes / 2) + tid * 16;
    const uint4 p0 = *reinterpret_cast<const uint4*>(w4);
    const uint4 p1 = *reinterpret_cast<const uint4*>(w4 + kWeightChunkBytes / 4);
    uint32_t a[4][4] = {
        {(p0.x << 4) & kNibbleMask, (p0.y << 4) & kNibbleMask, (p0.z << 4) & kNibbleMask, (p0.w << 4) & kNibbleMask},
        {p0.x & kNibbleMask, p0.y & kNibbleMask, p0.z & kNibbleMask, p0.w & kNibbleMask},
        {(p1.x << 4) & kNibbleMask, (p1.y << 4) & kNibbleMask, (p1.z << 4) & kNibbleMask, (p1.w << 4) & kNibbleMask},
        {p1.x & kNibbleMask, p1.y & kNibbleMask, p1.z & kNibbleMask, p1.w & kNibbleMask}};
    const uint64_t desc = SmemDescSw128(Xs8(stage));
#pragma unroll
    for (int s = 0; s < 4; ++s) WgmmaFenceOperands(a[s]);
    WgmmaFence();
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      // k32 step s starts 32 bytes further along the swizzled 128-byte rows (desc counts 16 B).
      Cfg::Mma::Mma(a[s], desc + 2 * s, acc, s > 0 || accumulate);
    }
    WgmmaCommit();
  }

  __device__ void Release(int i) const { MbarrierArrive(&empty[i % Cfg::kStages]); }

  // Group-128 promotion of chunk i's int32 sums: facc += sum · sw[channel] · sx[token].
  __device__ void Promote(int i, int wg, int tid, int32_t (&acc)[Cfg::kAcc], float (&facc)[Cfg::kAcc]) const {
    const int stage = i % Cfg::kStages;
    const int warp = tid / 32, lane = tid % 32;
    const int row = wg * 64 + warp * 16 + lane / 4;
    const float sw0 = Sw(stage)[row], sw1 = Sw(stage)[row + 8];
    const float* sx = Sx(stage) + 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
      const float2 s = *reinterpret_cast<const float2*>(sx + 8 * j);
      facc[4 * j + 0] += float(acc[4 * j + 0]) * (sw0 * s.x);
      facc[4 * j + 1] += float(acc[4 * j + 1]) * (sw0 * s.y);
      facc[4 * j + 2] += float(acc[4 * j + 2]) * (sw1 * s.x);
      facc[4 * j + 3] += float(acc[4 * j + 3]) * (sw1 * s.y);
    }
  }

  // Per-channel: int32 over the whole K range, one chunk of wgmma kept in flight while the next
  // loads; a stage is released once the wgmma reading it has completed.
  __device__ void ConsumePerChannel(int chunks, int wg, int tid, int32_t (&acc)[Cfg::kAcc]) const {
    for (int i = 0; i < chunks; ++i) {
      IssueChunk(i, wg, tid, acc, i > 0);
      WgmmaWait<1>();
      if (i > 0) Release(i - 1);
    }
    WgmmaWait<0>();
    WgmmaFenceOperands(acc);
  }

  // Group-128: each chunk's int32 sums are promoted as soon as its wgmma completes; the other
  // consumer warpgroup's wgmma keeps the tensor cores busy meanwhile. NOTES: overlapping inside
  // one warpgroup too (promote a copy of chunk i while chunk i + 1 runs) measured the same on
  // H200, and a second wgmma accumulator set made ptxas 13.0 serialize every wgmma (C7514).
  __device__ void ConsumeGroup128(int chunks, int wg, int tid, int32_t (&acc)[Cfg::kAcc],
                                  float (&facc)[Cfg::kAcc]) const {
    for (int i = 0; i < chunks; ++i) {
      IssueChunk(i, wg, tid, acc, false);
      WgmmaWait<0>();
      WgmmaFenceOperands(acc);
      Promote(i, wg, tid, acc, facc);
      Release(i);
    }
  }
};

// Split-K: every split stores its accumulators (fragment order, so stores are coalesced and
// layout-free); the last split to finish sums all of them in split order (deterministic) and
// runs the epilogue. The tile's counter is reset for the next launch.
template <int kAcc, typename Acc>
__device__ bool ReduceSplits(const GemmParams& p, const TileCoord& t, int ctid, Acc (&acc)[kAcc],
                             int* flag) {
  uint32_t* tile_partials = p.partials + int64_t(t.tile) * p.splits * kAcc * 256;
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    __stcg(tile_partials + (int64_t(t.split) * kAcc + i) * 256 + ctid, reinterpret_cast<uint32_t&>(acc[i]));
  }
  __threadfence();
  NamedBarrierSync(kBarConsumers, 256);
  if (ctid == 0) {
    const int last = atomicAdd(&p.tile_counters[t.tile], 1) == p.splits - 1;
    if (last) p.tile_counters[t.tile] = 0;
    *flag = last;
  }
  NamedBarrierSync(kBarConsumers, 256);
  if (!*flag) return false;
  __threadfence();
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = Acc(0);
  for (int s = 0; s < p.splits; ++s) {
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      const uint32_t v = __ldcg(tile_partials + (int64_t(s) * kAcc + i) * 256 + ctid);
      acc[i] += reinterpret_cast<const Acc&>(v);
    }
  }
  return true;
}

// Scales, converts to bf16 and writes Y through shared memory: the accumulators hold
// [channel][token] and Y is [token][channel], so each warpgroup stages its 64 × kBlockN block
// transposed and then writes 128-byte rows.
template <int kBlockN, int kAcc, typename Acc>
__device__ void StoreOutput(const GemmParams& p, const TileCoord& t, uint8_t* smem, int wg, int tid,
                            const Acc (&acc)[kAcc]) {
  const int warp = tid / 32, lane = tid % 32;
  const int row = warp * 16 + lane / 4;  // channel within the warpgroup's 64
  const int channel = t.channel_tile * kBlockM + wg * 64 + row;
  // NOTES: 1/256 undoes the 16·16 of the nibble unpack; exact in float.
  float sw0 = 1.0f / 256.0f, sw1 = 1.0f / 256.0f;
  if constexpr (std::is_same_v<Acc, int32_t>) {
    sw0 *= p.w_scales[channel];
    sw1 *= p.w_scales[channel + 8];
  }
  uint8_t* staging = smem + wg * kBlockN * kEpiloguePitch;
#pragma unroll
  for (int j = 0; j < kBlockN / 8; ++j) {
    const int col = 8 * j + 2 * (lane % 4);
    float sx0 = 1.0f, sx1 = 1.0f;
    if constexpr (std::is_same_v<Acc, int32_t>) {
      const int token = t.token_tile * kBlockN + col;
      sx0 = token < p.m ? p.x_scales[token] : 0.0f;
      sx1 = token + 1 < p.m ? p.x_scales[token + 1] : 0.0f;
    }
    const float v[4] = {float(acc[4 * j]) * (sw0 * sx0), float(acc[4 * j + 1]) * (sw0 * sx1),
                        float(acc[4 * j + 2]) * (sw1 * sx0), float(acc[4 * j + 3]) * (sw1 * sx1)};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      *reinterpret_cast<__nv_bfloat16*>(staging + (col + (e & 1)) * kEpiloguePitch +
                                        (row + 8 * (e >> 1)) * 2) = __float2bfloat16_rn(v[e]);
    }
  }
  NamedBarrierSync(2 + wg, 128);
  for (int c = tid; c < kBlockN * 8; c += 128) {
    const int token = t.token_tile * kBlockN + c / 8;
    if (token >= p.m) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(staging + (c / 8) * kEpiloguePitch + (c % 8) * 16);
    *reinterpret_cast<uint4*>(p.y + int64_t(token) * p.n + t.channel_tile * kBlockM + wg * 64 +
                              (c % 8) * 8) = v;
  }
}

template <int kBlockN, bool kGroup128>
__global__ void __launch_bounds__(kThreads, 1)
    sm90_w4a4_bf16_gemm_swapab_kernel(const __grid_constant__ GemmParams p) {
  using Cfg = GemmConfig<kBlockN, kGroup128>;
  extern __shared__ __align__(1024) uint8_t smem[];
  StartAfterPrerequisiteGrids();  // launched with PDL: only the launch latency overlaps
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Cfg::kBarOffset);
  uint64_t* empty = full + Cfg::kStages;
  int* last_split_flag = reinterpret_cast<int*>(empty + Cfg::kStages);
  const Sm90Mainloop<kBlockN, kGroup128> mainloop{smem, full, empty};

  if (threadIdx.x == 0) {
    for (int s = 0; s < Cfg::kStages; ++s) {
      MbarrierInit(&full[s], kConverterThreads + 1);  // + the weight loader, which adds the bytes
      MbarrierInit(&empty[s], 256);  // consumer threads
    }
    FenceBarrierInit();
  }
  __syncthreads();

  const TileCoord t = GetTile(p);
  const int k_chunks = p.k / kBlockK;
  const int chunk_begin = t.split * k_chunks / p.splits;
  const int chunks = (t.split + 1) * k_chunks / p.splits - chunk_begin;
  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;

  if (wg == 0) {
    SetMaxRegsDec<kProducerRegs>();
    if (tid >= 32) {
      mainloop.ConvertActivations(p, t, chunk_begin, chunks, tid - 32);
    } else if (tid == 0) {
      mainloop.LoadWeights(p, t, chunk_begin, chunks);
    }
    return;
  }
  SetMaxRegsInc<kConsumerRegs>();
  int32_t acc[Cfg::kAcc];
  float facc[kGroup128 ? Cfg::kAcc : 1];
#pragma unroll
  for (int i = 0; i < Cfg::kAcc; ++i) acc[i] = 0;
#pragma unroll
  for (int i = 0; i < (kGroup128 ? Cfg::kAcc : 1); ++i) facc[i] = 0.0f;
  if constexpr (kGroup128) {
    mainloop.ConsumeGroup128(chunks, wg - 1, tid, acc, facc);
  } else {
    mainloop.ConsumePerChannel(chunks, wg - 1, tid, acc);
  }

  const int ctid = threadIdx.x - 128;
  if constexpr (kGroup128) {
    if (p.splits > 1 && !ReduceSplits(p, t, ctid, facc, last_split_flag)) return;
  } else {
    if (p.splits > 1 && !ReduceSplits(p, t, ctid, acc, last_split_flag)) return;
  }
  NamedBarrierSync(kBarConsumers, 256);  // both consumers are done reading the ring that staging reuses
  if constexpr (kGroup128) {
    StoreOutput<kBlockN>(p, t, smem, wg - 1, tid, facc);
  } else {
    StoreOutput<kBlockN>(p, t, smem, wg - 1, tid, acc);
  }
}

}  // namespace apex4::cuda::sm90
