// sm_90a W4A4 GEMM, swap-AB: weights on wgmma's M side (A from registers), tokens on N (B from
// shared memory). Y[m, n] = Σ_g sx[m, g] · sw[n, g] · Σ_k qx[m, k] · qw[n, k], bf16 out.
//
// Two kernels per call:
//   expansion: the packed activations are unpacked once, to int8 in the wgmma B layout (below);
//   GEMM:      persistent CTAs (one per SM) take work units in turn: 128 channels × kBlockN
//              tokens over a range of K chunks (split-K when the tiles would not fill the GPU).
//              The stage ring runs on across units, so the next unit's loads overlap this
//              unit's epilogue. Two roles:
//     producer  (WG 0): one thread bulk-copies, per stage of a kStages ring, the prepacked weight
//               chunk and the token tile's int8 activations (and group-128 scales), as far ahead
//               as the ring allows; warps 1-3 have nothing to do and exit;
//     consumers (WG 1, 2): 64 channels each; load their weight fragment (16 bytes = two k32
//               steps), unpack it in registers, issue wgmma s8. Per-channel keeps one chunk of
//               wgmma in flight; group-128 waits for each chunk's int32 sums and folds them into
//               float accumulators (promotion) while the other consumer's wgmma keeps the tensor
//               cores busy.
//
// NOTES: 4-bit → 8-bit without per-nibble shifts: for a word holding nibbles e0..e7 (canonical
// order), (w << 4) & 0xF0F0F0F0 holds 16·e0,16·e2,16·e4,16·e6 and w & 0xF0F0F0F0 holds
// 16·e1,16·e3,16·e5,16·e7 as int8. Activations are expanded in that permuted K order and the
// weight prepack (sm90_w4a4_prepack.cc) places weights in the same order, so the dot product is
// unchanged; products carry 16·16 = 256, removed by the epilogue scale.
//
// NOTES: why expand once instead of unpacking inside the GEMM (as up to v8, RESULTS.md): a CTA
// tile reads its activations once per 128 channels, so in-kernel unpacking redid the same work
// n/128 times, and it cost shared-memory bandwidth the wgmma B reads need (packed stage write,
// packed read, int8 write: 64 of ~144 KB per 256-token chunk). Expanded once, a stage is one
// bulk copy; the expansion moves m·k·1.5 bytes, well under 1% of a large-M GEMM's time.
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
// Named barriers: 0 is __syncthreads; 1 both consumers; 2, 3 one consumer each.
inline constexpr int kBarConsumers = 1;
inline constexpr int kProducerRegs = 24;
inline constexpr int kConsumerRegs = 240;
inline constexpr uint32_t kNibbleMask = 0xF0F0F0F0u;

struct GemmParams {
  const uint8_t* x;         // m × k/2, canonical (decode kernel)
  const float* x_scales;    // m × groups
  const uint8_t* x8;        // expanded: [k/128][m_pad][128] (expansion kernel below)
  const float* x8_scales;   // group-128 only: [k/128][m_pad]
  int m_pad;                // token_tiles · kBlockN
  const uint8_t* w;         // prepacked: [n/128][k/128][kWeightChunkBytes]
  const float* w_scales;    // per-channel: [n]; group-128: [n/128][k/128][128]
  __nv_bfloat16* y;         // m × n
  int m, n, k;
  int token_tiles, channel_tiles, splits;
  int32_t* tile_counters;   // [tiles], split-K only
  uint32_t* partials;       // [tiles][splits][128 · kBlockN], split-K only
  // Decode kernel only: Atom-style outlier channels (W4A4GemmOutliers); stride 0: none.
  const int8_t* outlier_x;  // m × outlier_stride
  const float* outlier_x_scales;
  const int8_t* outlier_w;  // n × outlier_stride
  const float* outlier_w_scales;
  int outlier_stride;
};

template <int kBlockN, bool kGroup128>
struct GemmConfig {
  static constexpr int kXs8Bytes = kBlockN * kBlockK;  // int8 activations, one stage
  static constexpr int kScaleBytes = kGroup128 ? (kBlockM + kBlockN) * 4 : 0;
  static constexpr int kStageBytes = kXs8Bytes + kWeightChunkBytes + kScaleBytes;
  // Epilogue staging of its own (the ring already holds the next unit's stages): per consumer
  // warpgroup kBlockN tokens × 64 bf16 channels, 128-byte rows.
  static constexpr int kStagingBytes = 2 * kBlockN * 128;
  // As many stages as the rest of shared memory holds, at most 10: 4 for 256-token tiles.
  static constexpr int kRingBudget = 227 * 1024 - 256 - kStagingBytes;
  static constexpr int kStages = kRingBudget / kStageBytes < 10 ? kRingBudget / kStageBytes : 10;

  static constexpr int kXs8Offset = 0;
  static constexpr int kW4Offset = kXs8Offset + kStages * kXs8Bytes;
  static constexpr int kSwOffset = kW4Offset + kStages * kWeightChunkBytes;
  static constexpr int kSxOffset = kSwOffset + (kGroup128 ? kStages * kBlockM * 4 : 0);
  static constexpr int kStagingOffset = kSxOffset + (kGroup128 ? kStages * kBlockN * 4 : 0);
  static constexpr int kBarOffset = kStagingOffset + kStagingBytes;
  static constexpr int kSmemBytes = kBarOffset + 2 * kStages * 8 + 4;

  using Mma = WgmmaS8<kBlockN>;
  static constexpr int kAcc = Mma::kAccumulators;

  static_assert(kStages >= 2, "a ring");
  static_assert(kXs8Bytes % 1024 == 0, "swizzle atoms need 1024-byte aligned stages");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory");
};

// Work unit `unit` (CTA b takes units b, b + gridDim.x, ...): grouped rasterisation keeps a
// band of token tiles hot in L2 while the weight tiles stream past it.
struct TileCoord {
  int channel_tile, token_tile, tile, split;
  int chunk_begin, chunks;  // the split's K chunks
};
__device__ __forceinline__ int WorkUnits(const GemmParams& p) {
  return p.token_tiles * p.channel_tiles * p.splits;
}
__device__ __forceinline__ TileCoord GetTile(const GemmParams& p, int unit) {
  constexpr int kGroup = 8;
  TileCoord c;
  c.split = unit % p.splits;
  c.tile = unit / p.splits;
  const int per_group = kGroup * p.channel_tiles;
  const int first = (c.tile / per_group) * kGroup;
  const int group_size = min(p.token_tiles - first, kGroup);
  const int in_group = c.tile % per_group;
  c.token_tile = first + in_group % group_size;
  c.channel_tile = in_group / group_size;
  const int k_chunks = p.k / kBlockK;
  c.chunk_begin = c.split * k_chunks / p.splits;
  c.chunks = (c.split + 1) * k_chunks / p.splits - c.chunk_begin;
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

  // Producer warp 0, one lane, over all of the CTA's units. Per stage: the weight chunk (and
  // group-128 weight scales) and the token tile's expanded activations (and group-128 token
  // scales), one bulk copy each, up to kStages chunks ahead of the consumers. Weights are
  // constant data, so the first unit's first stages go out before griddepcontrol.wait: under
  // PDL they stream while the expansion still runs.
  __device__ void Produce(const GemmParams& p) const {
    constexpr uint32_t kWeightBytes = kWeightChunkBytes + (kGroup128 ? kBlockM * 4 : 0);
    constexpr uint32_t kActivationBytes = Cfg::kXs8Bytes + (kGroup128 ? kBlockN * 4 : 0);
    const auto load_weights = [&](int stage, const TileCoord& t, int chunk) {
      const int64_t weight_chunk = int64_t(t.channel_tile) * (p.k / kBlockK) + chunk;
      MbarrierExpectTx(&full[stage], kWeightBytes);
      BulkCopyG2S(W4(stage), p.w + weight_chunk * kWeightChunkBytes, kWeightChunkBytes, &full[stage]);
      if constexpr (kGroup128) {
        BulkCopyG2S(Sw(stage), p.w_scales + weight_chunk * kBlockM, kBlockM * 4, &full[stage]);
      }
    };
    const TileCoord first = GetTile(p, blockIdx.x);
    const int prologue = first.chunks < Cfg::kStages ? first.chunks : Cfg::kStages;
    for (int i = 0; i < prologue; ++i) load_weights(i, first, first.chunk_begin + i);
    StartAfterPrerequisiteGrids();
    int iteration = 0;  // chunks loaded so far: the ring position
    for (int unit = blockIdx.x; unit < WorkUnits(p); unit += gridDim.x) {
      const TileCoord t = GetTile(p, unit);
      for (int i = 0; i < t.chunks; ++i, ++iteration) {
        const int stage = iteration % Cfg::kStages;
        if (iteration >= Cfg::kStages) MbarrierWait(&empty[stage], ((iteration / Cfg::kStages) + 1) & 1);
        if (iteration >= prologue) load_weights(stage, t, t.chunk_begin + i);
        // The only arrival of the phase: it cannot complete before both copies are counted.
        MbarrierArriveExpectTx(&full[stage], kActivationBytes);
        const int64_t row = int64_t(t.chunk_begin + i) * p.m_pad + int64_t(t.token_tile) * kBlockN;
        BulkCopyG2S(Xs8(stage), p.x8 + row * kBlockK, Cfg::kXs8Bytes, &full[stage]);
        if constexpr (kGroup128) BulkCopyG2S(Sx(stage), p.x8_scales + row, kBlockN * 4, &full[stage]);
      }
    }
  }

  // Consumer warpgroup `wg` (0 or 1), 64 channels: waits for ring iteration i's stage, unpacks its
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

  // Per-channel: int32 over the unit's K range (ring iterations first .. first + chunks - 1),
  // one chunk of wgmma kept in flight while the next loads; a stage is released once the wgmma
  // reading it has completed.
  __device__ void ConsumePerChannel(int first, int chunks, int wg, int tid, int32_t (&acc)[Cfg::kAcc]) const {
    for (int i = 0; i < chunks; ++i) {
      IssueChunk(first + i, wg, tid, acc, i > 0);
      WgmmaWait<1>();
      if (i > 0) Release(first + i - 1);
    }
    WgmmaWait<0>();
    WgmmaFenceOperands(acc);
    Release(first + chunks - 1);
  }

  // Group-128: each chunk's int32 sums are promoted as soon as its wgmma completes; the other
  // consumer warpgroup's wgmma keeps the tensor cores busy meanwhile. NOTES: overlapping inside
  // one warpgroup too (promote a copy of chunk i while chunk i + 1 runs) measured the same on
  // H200, and a second wgmma accumulator set made ptxas 13.0 serialize every wgmma (C7514).
  __device__ void ConsumeGroup128(int first, int chunks, int wg, int tid, int32_t (&acc)[Cfg::kAcc],
                                  float (&facc)[Cfg::kAcc]) const {
    for (int i = first; i < first + chunks; ++i) {
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
// transposed (16-byte units of each 128-byte token row XOR-swizzled by token % 8: conflict-free
// both ways) and then writes 128-byte rows. NOTES: storing bf16 straight from the
// accumulators (2-byte stores, 4 rows per warp instruction) made M = 256 calls 10-25% slower
// on H200 (results/2026-11-27_h200_v10_direct_store_rejected_ab.txt).
template <int kBlockN, int kAcc, typename Acc>
__device__ void StoreOutput(const GemmParams& p, const TileCoord& t, uint8_t* staging, int wg, int tid,
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
  staging += wg * kBlockN * 128;
  // Element e of every j lands at staging + 1024·j + offset[e]: token 8j + (token % 8), and
  // token % 8 = 2·(lane % 4) + (e & 1) does not depend on j.
  int offset[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int token = 2 * (lane % 4) + (e & 1), byte = (row + 8 * (e >> 1)) * 2;
    offset[e] = token * 128 + (((byte / 16) ^ token) * 16) + byte % 16;
  }
  NamedBarrierSync(2 + wg, 128);  // the previous unit's rows have been read out
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
      *reinterpret_cast<__nv_bfloat16*>(staging + 1024 * j + offset[e]) = __float2bfloat16_rn(v[e]);
    }
  }
  NamedBarrierSync(2 + wg, 128);
  for (int c = tid; c < kBlockN * 8; c += 128) {
    const int token = c / 8, unit = c % 8;
    if (t.token_tile * kBlockN + token >= p.m) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(staging + token * 128 + ((unit ^ (token % 8)) * 16));
    *reinterpret_cast<uint4*>(p.y + int64_t(t.token_tile * kBlockN + token) * p.n + t.channel_tile * kBlockM +
                              wg * 64 + unit * 8) = v;
  }
}

template <int kBlockN, bool kGroup128>
__global__ void __launch_bounds__(kThreads, 1)
    sm90_w4a4_bf16_gemm_swapab_kernel(const __grid_constant__ GemmParams p) {
  using Cfg = GemmConfig<kBlockN, kGroup128>;
  extern __shared__ __align__(1024) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Cfg::kBarOffset);
  uint64_t* empty = full + Cfg::kStages;
  int* last_split_flag = reinterpret_cast<int*>(empty + Cfg::kStages);
  const Sm90Mainloop<kBlockN, kGroup128> mainloop{smem, full, empty};

  if (threadIdx.x == 0) {
    for (int s = 0; s < Cfg::kStages; ++s) {
      MbarrierInit(&full[s], 1);  // the loader's arrival; the bytes complete the phase
      MbarrierInit(&empty[s], 256);  // consumer threads
    }
    FenceBarrierInit();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;
  if (wg == 0) {
    SetMaxRegsDec<kProducerRegs>();
    if (tid == 0) mainloop.Produce(p);  // waits for the expansion
    return;
  }
  SetMaxRegsInc<kConsumerRegs>();
  StartAfterPrerequisiteGrids();  // before the epilogue writes what earlier kernels may read
  const int ctid = threadIdx.x - 128;
  int iteration = 0;  // chunks consumed so far: the ring position
  for (int unit = blockIdx.x; unit < WorkUnits(p); unit += gridDim.x) {
    const TileCoord t = GetTile(p, unit);
    int32_t acc[Cfg::kAcc];
    float facc[kGroup128 ? Cfg::kAcc : 1];
#pragma unroll
    for (int i = 0; i < Cfg::kAcc; ++i) acc[i] = 0;
#pragma unroll
    for (int i = 0; i < (kGroup128 ? Cfg::kAcc : 1); ++i) facc[i] = 0.0f;
    if constexpr (kGroup128) {
      mainloop.ConsumeGroup128(iteration, t.chunks, wg - 1, tid, acc, facc);
    } else {
      mainloop.ConsumePerChannel(iteration, t.chunks, wg - 1, tid, acc);
    }
    iteration += t.chunks;
    if constexpr (kGroup128) {
      if (p.splits > 1 && !ReduceSplits(p, t, ctid, facc, last_split_flag)) continue;
      StoreOutput<kBlockN>(p, t, smem + Cfg::kStagingOffset, wg - 1, tid, facc);
    } else {
      if (p.splits > 1 && !ReduceSplits(p, t, ctid, acc, last_split_flag)) continue;
      StoreOutput<kBlockN>(p, t, smem + Cfg::kStagingOffset, wg - 1, tid, acc);
    }
  }
}

// The activations of one GEMM call, unpacked once for every CTA that reads them: packed
// canonical rows (m × k/2) → int8 16·x in the kernel's K order, laid out [k/128][m_pad][128]
// with each 128-byte row swizzled as the wgmma SW128 B tile wants it (16-byte unit u of row r at
// u ^ (r % 8); tiles start at multiples of 8 rows), so that a stage is one contiguous bulk copy.
// Rows m..m_pad-1 are zeros. Group-128 token scales are transposed to [k/128][m_pad] likewise.
struct ExpandParams {
  const uint8_t* x;
  const float* x_scales;  // group-128 only, else null
  uint8_t* x8;
  float* x8_scales;       // group-128 only, else null
  int m, m_pad, k;
};

inline constexpr int kExpandThreads = 256;

__global__ void __launch_bounds__(kExpandThreads)
    sm90_w4a4_expand_activations_kernel(const __grid_constant__ ExpandParams p) {
  StartAfterPrerequisiteGrids();
  const int chunks = p.k / kBlockK;
  const int64_t pieces = int64_t(p.m_pad) * chunks * 4;  // 16 packed bytes = 32 K positions each
  // Consecutive threads read consecutive 16 bytes of a row and fill whole 128-byte rows.
  for (int64_t i = int64_t(blockIdx.x) * kExpandThreads + threadIdx.x; i < pieces;
       i += int64_t(gridDim.x) * kExpandThreads) {
    const int part = static_cast<int>(i % 4);
    const int chunk = static_cast<int>(i / 4 % chunks);
    const int row = static_cast<int>(i / (4 * int64_t(chunks)));
    uint4 q = make_uint4(0, 0, 0, 0);
    if (row < p.m) q = __ldg(reinterpret_cast<const uint4*>(p.x + int64_t(row) * (p.k / 2)) + chunk * 4 + part);
    // 32 nibbles → 32 int8 in K order (even nibbles of each word, then its odd ones): 16-byte
    // units 2·part and 2·part + 1 of the row.
    const uint4 lo = make_uint4((q.x << 4) & kNibbleMask, q.x & kNibbleMask, (q.y << 4) & kNibbleMask,
                                q.y & kNibbleMask);
    const uint4 hi = make_uint4((q.z << 4) & kNibbleMask, q.z & kNibbleMask, (q.w << 4) & kNibbleMask,
                                q.w & kNibbleMask);
    uint8_t* dst_row = p.x8 + (int64_t(chunk) * p.m_pad + row) * kBlockK;
    *reinterpret_cast<uint4*>(dst_row + (((2 * part) ^ (row % 8)) * 16)) = lo;
    *reinterpret_cast<uint4*>(dst_row + (((2 * part + 1) ^ (row % 8)) * 16)) = hi;
    if (p.x8_scales != nullptr && part == 0) {
      p.x8_scales[int64_t(chunk) * p.m_pad + row] = row < p.m ? p.x_scales[int64_t(row) * chunks + chunk] : 0.0f;
    }
  }
}

}  // namespace apex4::cuda::sm90
