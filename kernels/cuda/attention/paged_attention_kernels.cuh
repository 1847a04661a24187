// Paged attention kernels on tensor cores (mma.sync m16n8k16, fp16 in, fp32 accumulate), sm_80+.
//
// Rows. Query heads of one KV head are packed with the tokens into "rows", token-major: row r of
// sequence s is token r / G, query head kv_head * G + r % G (G = heads per KV head). Every row of
// a CTA shares that CTA's K/V tiles, so GQA reads K/V once per KV head, and a decode step of a
// GQA model (one token, G heads) fills the rows of one m16 tile instead of 1 row of 16.
//
// One warp owns 16 rows (its Q fragments stay in registers) and runs FlashAttention-2's online
// softmax (base 2, fp32) over key tiles of 64 keys that the CTA streams through shared memory,
// two stages of cp.async (zero-filled past the keys the CTA may read, so the never-written slots
// of a cache block are not even loaded). Tiles are swizzled 16-byte chunks (chunk ^ (row & 7)),
// read with ldmatrix (K) and ldmatrix.trans (V) without bank conflicts.
//
// INT4 cache (kInt4, prefill kernel): packed codes and scales land in kInt4AttentionStages staging buffers
// through cp.async (a tile is a quarter of the fp16 bytes, so twice the stages keep as many bytes
// in flight); once a tile has landed, the CTA converts its codes (exact small integers) into one
// swizzled fp16 tile laid out as the fp16 cache's, so the tensor-core part is unchanged. The
// per-key scales stay in fp32 and are folded in where they cost least: key scales multiply the
// scores, value scales the probabilities before P · V (the row sums use the unscaled ones).
//
// Prefill kernel: 4 warps × 16 rows = 64 rows per CTA; every warp sees all 64 keys of a tile.
// Decode kernel: 16 rows (one token's G ≤ 16 heads) per CTA; the 4 warps take 16 keys each of
// every tile and are merged through shared memory at the end. Split-KV: each CTA covers one
// partition of the context; partials (unnormalised O, max, sum) are merged by
// AttentionReduceKernel (MergeSplitKv).
#ifndef APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_CUH_
#define APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention/attention_primitives.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"

namespace apex4::cuda::attention {

using prim::IMin;

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][D] fp16 tile.
template <int D>
__device__ __forceinline__ int Swizzle(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// block_ids[b] with b known only at run time, without a local-memory array.
template <int N>
__device__ __forceinline__ int32_t SelectBlock(const int32_t (&block_ids)[N], int b) {
  int32_t id = block_ids[0];
#pragma unroll
  for (int i = 1; i < N; ++i) id = b == i ? block_ids[i] : id;
  return id;
}

// A word of eight INT4 codes of a cache row (paged_attention.h: code 2j in nibble j, 2j+1 in
// nibble j + 4, two's complement) → four fp16 pairs, (code 0, code 1) first. Each pair's nibbles
// go under the fp16 exponent of 1024 (0x6400) with their sign bit flipped, as 1024 + (nibble ^ 8)
// for nibbles 0-3 of a half word and 1024 + 16 · (nibble ^ 8) for nibbles 4-7: one LOP3 and one
// exact HSUB2 / HFMA2 per pair, 9 instructions per word.
__device__ __forceinline__ uint4 Int4WordToHalfs(uint32_t word) {
  const uint32_t high = word >> 8;
  return make_uint4(prim::UnbiasCodes((word & 0x000F000Fu) ^ 0x64086408u),
                    prim::UnbiasCodesTimes16((word & 0x00F000F0u) ^ 0x64806480u),
                    prim::UnbiasCodes((high & 0x000F000Fu) ^ 0x64086408u),
                    prim::UnbiasCodesTimes16((high & 0x00F000F0u) ^ 0x64806480u));
}

// Two resident CTAs per SM. Decode steps on an INT4 cache run Int4DecodeAttentionKernel
// (int4_decode_attention.cuh) instead.
template <int D, bool kDecode, bool kInt4>
__global__ void __launch_bounds__(kAttentionThreads, 2) AttentionKernel(const AttentionParams p) {
  static_assert(!(kDecode && kInt4), "INT4 decode: Int4DecodeAttentionKernel");
  prim::StartAfterPrerequisiteGrids();
  constexpr int kRowWarps = kDecode ? 1 : 4;                 // warps along rows
  constexpr int kKeySplits = 4 / kRowWarps;                  // warps along the keys of a tile
  constexpr int kWarpKeys = kTileKeys / kKeySplits;          // keys per warp per tile: 64 or 16
  constexpr int kRows = 16 * kRowWarps;                      // rows per CTA
  constexpr int kChunks = D / 8;                             // 16-byte chunks per K/V/Q row
  constexpr int kRowsPerPass = kAttentionThreads / kChunks;  // 8 (D=128) or 16 (D=64)
  constexpr int kLoadPasses = kTileKeys / kRowsPerPass;
  constexpr int kStageHalfs = 2 * kTileKeys * D;  // K tile then V tile
  constexpr int kCacheRowBytes = kInt4 ? D / 2 : D * 2;  // one token of one KV head
  constexpr int kCodeUnits = kTileKeys * D / 32;         // 16-byte units of a tile's K (or V) codes
  constexpr int kStagingBytes = 2 * kCodeUnits * 16 + 2 * kTileKeys * 4;  // = Int4StagingBytes(D)
  static_assert(2 * kCodeUnits % kAttentionThreads == 0 && kCodeUnits % kAttentionThreads == 0, "INT4 mapping");
  static_assert(D == 64 || D == 128, "head_dim");
  static_assert(kRowsPerPass <= kBlockTokens && kBlockTokens % kRowsPerPass == 0, "load mapping");
  static_assert(kRows <= kTileKeys, "Q is staged in stage 1's K buffer");
  // Pipeline stages (cp.async groups in flight) and fp16 tiles.
  constexpr int kStages = kInt4 ? kInt4AttentionStages : kAttentionStages;
  constexpr int kFp16Tiles = kInt4 ? 1 : kAttentionStages;
  static_assert(kStages >= 2, "the loop waits for the oldest of kStages - 1 groups");

  __half* smem = prim::DynamicSmem();

  int kv_head, seq, row_tile, part;
  if constexpr (kDecode) {
    kv_head = prim::BlockIdx().x / p.num_row_tiles;
    row_tile = prim::BlockIdx().x % p.num_row_tiles;
    seq = prim::BlockIdx().y;
    part = prim::BlockIdx().z;
  } else {
    kv_head = prim::BlockIdx().x;
    seq = prim::BlockIdx().y;
    // Causal: the last rows have the most keys; start them first.
    row_tile = prim::GridDim().z - 1 - prim::BlockIdx().z;
    part = 0;
  }

  const int q_start = prim::Ldg(p.query_start + seq);
  const int q_len = prim::Ldg(p.query_start + seq + 1) - q_start;
  if (q_len <= 0 || q_len < p.min_query_len || q_len > p.max_query_len) return;
  const int group = p.group;
  const int num_rows = q_len * group;
  const int row0 = row_tile * kRows;
  if (row0 >= num_rows) return;
  const int rows_here = IMin(kRows, num_rows - row0);
  const int ctx = prim::Ldg(p.context_len + seq);
  const int pos_base = ctx - q_len;  // position of the sequence's first new token
  const int first_pos = pos_base + row0 / group;
  const int last_pos = pos_base + (row0 + rows_here - 1) / group;
  int key_begin = 0;
  int key_end = IMin(ctx, last_pos + 1);
  if (p.partition_keys > 0) {
    key_begin = part * p.partition_keys;
    key_end = IMin(key_end, key_begin + p.partition_keys);
    if (key_begin >= key_end) return;  // past this sequence's context: the reduce skips it
  }
  const int num_tiles = key_end > key_begin ? (key_end - key_begin + kTileKeys - 1) / kTileKeys : 0;

  const int tid = prim::ThreadIdx().x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int num_heads = p.num_heads;

  // Q rows → stage 1's K buffer (unused until tile 1 is loaded). Rows past the sequence are zero.
  // (INT4: the V half of the one fp16 tile, written first by tile 0's dequantization after Q is read.)
  __half* q_smem = smem + (kInt4 ? kTileKeys * D : kStageHalfs);
  static_assert(kRows * kChunks % kAttentionThreads == 0, "Q load mapping");
#pragma unroll
  for (int i = 0; i < kRows * kChunks / kAttentionThreads; ++i) {
    const int c = tid + i * kAttentionThreads;
    const int r = c / kChunks;
    const int chunk = c % kChunks;
    const bool valid = r < rows_here;
    const __half* src = p.q;
    if (valid) {
      const int row = row0 + r;
      src += (static_cast<int64_t>(q_start + row / group) * num_heads + kv_head * group + row % group) * D +
             chunk * 8;
    }
    prim::CpAsync16(prim::ToSmem(q_smem + Swizzle<D>(r, chunk)), src, valid);
  }
  prim::CpAsyncCommit();

  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.block_table_stride;
  const char* k_base = p.k_cache + static_cast<int64_t>(kv_head) * kBlockTokens * kCacheRowBytes;
  const char* v_base = p.v_cache + static_cast<int64_t>(kv_head) * kBlockTokens * kCacheRowBytes;
  // INT4: the scales follow the codes of all KV heads in each block.
  const int64_t scales_offset = static_cast<int64_t>(p.num_kv_heads - kv_head) * kBlockTokens * kCacheRowBytes +
                                static_cast<int64_t>(kv_head) * kBlockTokens * 4;
  char* const staging_base = reinterpret_cast<char*>(smem + kFp16Tiles * kStageHalfs);
  // Block ids of the next tile to load; a block holding no key below key_end is not looked up.
  int blocks[kTileKeys / kBlockTokens];
  auto fetch_blocks = [&](int tile) {
    const int t0 = key_begin + tile * kTileKeys;
#pragma unroll
    for (int b = 0; b < kTileKeys / kBlockTokens; ++b) {
      const int pos = t0 + b * kBlockTokens;
      blocks[b] = pos < key_end ? prim::Ldg(block_table + pos / kBlockTokens) : 0;
    }
  };
  const int load_row = tid / kChunks;
  const int load_chunk = tid % kChunks;
  auto load_tile = [&](int tile, int stage) {
    const int t0 = key_begin + tile * kTileKeys;
    if constexpr (!kInt4) {
      __half* k_smem = smem + stage * kStageHalfs;
      __half* v_smem = k_smem + kTileKeys * D;
#pragma unroll
      for (int i = 0; i < kLoadPasses; ++i) {
        const int r = load_row + i * kRowsPerPass;
        const int b = (i * kRowsPerPass) / kBlockTokens;  // compile-time: load_row < kRowsPerPass
        const bool valid = t0 + r < key_end;
        const int64_t offset = static_cast<int64_t>(blocks[b]) * p.block_stride + (r % kBlockTokens) * kCacheRowBytes +
                               load_chunk * 16;
        const int dst = Swizzle<D>(r, load_chunk);
        prim::CpAsync16(prim::ToSmem(k_smem + dst), valid ? k_base + offset : k_base, valid);
        prim::CpAsync16(prim::ToSmem(v_smem + dst), valid ? v_base + offset : v_base, valid);
      }
    } else {
      // Staging: K codes, V codes (unit w of a tensor = key w / (D/32), bytes (w % (D/32))·16 on),
      // then K and V scales (unit j = keys 4j..4j+3).
      char* staging = staging_base + stage * kStagingBytes;
#pragma unroll
      for (int i = 0; i < 2 * kCodeUnits / kAttentionThreads; ++i) {
        const int u = tid + i * kAttentionThreads;
        const bool is_v = i * kAttentionThreads >= kCodeUnits;  // compile-time
        const int w = u - (is_v ? kCodeUnits : 0);
        const int r = w / (D / 32);
        const bool valid = t0 + r < key_end;
        const int64_t offset = static_cast<int64_t>(SelectBlock(blocks, r / kBlockTokens)) * p.block_stride +
                               (r % kBlockTokens) * kCacheRowBytes + (w % (D / 32)) * 16;
        const char* base = is_v ? v_base : k_base;
        prim::CpAsync16(prim::ToSmem(staging + u * 16), valid ? base + offset : base, valid);
      }
      constexpr int kScaleUnits = kTileKeys / 4;
      if (tid < 2 * kScaleUnits) {
        const bool is_v = tid >= kScaleUnits;
        const int j = tid - (is_v ? kScaleUnits : 0);
        const bool valid = t0 + 4 * j < key_end;
        const int64_t offset = static_cast<int64_t>(SelectBlock(blocks, j / 4)) * p.block_stride + scales_offset +
                               (j % 4) * 16;
        const char* base = is_v ? v_base : k_base;
        prim::CpAsync16(prim::ToSmem(staging + 2 * kCodeUnits * 16 + tid * 16), valid ? base + offset : base, valid);
      }
    }
  };
  // INT4: the landed stage's codes → the fp16 K and V tile (codes of keys past key_end were
  // zero-filled; their scales, which may be anything, are never used: see KeyScale).
  auto convert_tile = [&](int stage) {
    const char* staging = staging_base + stage * kStagingBytes;
#pragma unroll
    for (int i = 0; i < 2 * kCodeUnits / kAttentionThreads; ++i) {
      const int u = tid + i * kAttentionThreads;
      const bool is_v = i * kAttentionThreads >= kCodeUnits;
      const int w = u - (is_v ? kCodeUnits : 0);
      const int r = w / (D / 32);
      const uint4 codes = *reinterpret_cast<const uint4*>(staging + u * 16);
      __half* tile_smem = smem + (is_v ? kTileKeys * D : 0);
      const uint32_t words[4] = {codes.x, codes.y, codes.z, codes.w};
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        *reinterpret_cast<uint4*>(tile_smem + Swizzle<D>(r, (w % (D / 32)) * 4 + c)) = Int4WordToHalfs(words[c]);
      }
    }
  };
  // INT4: the scale of tile key `key` (0..kTileKeys-1) of K (is_v false) or V; 0 past key_end.
  auto key_scale = [&](int stage, int t0, int key, bool is_v) {
    const float* scales = reinterpret_cast<const float*>(staging_base + stage * kStagingBytes + 2 * kCodeUnits * 16);
    return t0 + key < key_end ? scales[(is_v ? kTileKeys : 0) + key] : 0.0f;
  };

  // This thread's two rows (CTA-local): gid and gid + 8 of its warp's 16. A row may read keys
  // up to its own position (causal) and below key_end; rows past the sequence take key_end - 1
  // (harmless, never written).
  const int gid = lane >> 2;
  const int tig = lane & 3;
  const int warp_row = kDecode ? 0 : warp * 16;
  const int warp_key = kDecode ? warp * kWarpKeys : 0;
  auto row_limit = [&](int r) {
    return r < rows_here ? IMin(pos_base + (row0 + r) / group, key_end - 1) : key_end - 1;
  };
  const int limit0 = row_limit(warp_row + gid);
  const int limit1 = row_limit(warp_row + gid + 8);
  const int cta_min_limit = IMin(first_pos, key_end - 1);

  // Groups: Q, then tiles 0 .. kStages-2 (empty past the last tile), one each.
  if (num_tiles > 0) fetch_blocks(0);
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      load_tile(t, t);
      if (t + 1 < num_tiles) fetch_blocks(t + 1);
    }
    prim::CpAsyncCommit();
  }
  prim::CpAsyncWait<kStages - 1>();  // Q has landed (the tiles may still be in flight)
  prim::SyncThreads();
  uint32_t q_frag[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    prim::LdMatrixX4(q_frag[kk],
                     prim::ToSmem(q_smem + Swizzle<D>(warp_row + (lane & 15), kk * 2 + (lane >> 4))));
  }
  prim::SyncThreads();  // Q's buffer is about to take a tile

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running row maxima (base-2 scaled scores)
  float l0 = 0.0f, l1 = 0.0f;            // this thread's part of the running row sums
  const float scale_log2 = p.scale_log2;

  for (int tile = 0; tile < num_tiles; ++tile) {
    // The stage tile - 1 used was released by the previous iteration's final barrier.
    const int ahead = tile + kStages - 1;
    if (ahead < num_tiles) {
      load_tile(ahead, ahead % kStages);
      if (ahead + 1 < num_tiles) fetch_blocks(ahead + 1);
    }
    prim::CpAsyncCommit();
    prim::CpAsyncWait<kStages - 1>();  // tile `tile` has landed
    prim::SyncThreads();
    if constexpr (kInt4) {
      convert_tile(tile % kStages);
      prim::SyncThreads();
    }

    const int t0 = key_begin + tile * kTileKeys;
    const __half* k_smem = smem + (kInt4 ? 0 : (tile % kStages) * kStageHalfs);
    const __half* v_smem = k_smem + kTileKeys * D;

    // S = Q · K^T for this warp's 16 rows × kWarpKeys keys.
    float sc[kWarpKeys / 8][4];
#pragma unroll
    for (int j = 0; j < kWarpKeys / 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kWarpKeys / 16; ++np) {
        uint32_t b[4];
        prim::LdMatrixX4(
            b, prim::ToSmem(k_smem + Swizzle<D>(warp_key + np * 16 + ((lane >> 4) << 3) + (lane & 7),
                                                kk * 2 + ((lane >> 3) & 1))));
        prim::MmaF16(sc[2 * np], q_frag[kk], b[0], b[1]);
        prim::MmaF16(sc[2 * np + 1], q_frag[kk], b[2], b[3]);
      }
    }

    // Scale to base 2, mask (causal and key_end), online softmax.
    const bool need_mask = t0 + kTileKeys - 1 > cta_min_limit;
    float max0 = -INFINITY, max1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kWarpKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = sc[j][e] * scale_log2;
        if constexpr (kInt4) x *= key_scale(tile % kStages, t0, warp_key + j * 8 + 2 * tig + (e & 1), false);
        if (need_mask) {
          const int key = t0 + warp_key + j * 8 + 2 * tig + (e & 1);
          if (key > (e < 2 ? limit0 : limit1)) x = -INFINITY;
        }
        sc[j][e] = x;
      }
      max0 = fmaxf(max0, fmaxf(sc[j][0], sc[j][1]));
      max1 = fmaxf(max1, fmaxf(sc[j][2], sc[j][3]));
    }
    max0 = fmaxf(max0, prim::ShflXor(max0, 1));
    max0 = fmaxf(max0, prim::ShflXor(max0, 2));
    max1 = fmaxf(max1, prim::ShflXor(max1, 1));
    max1 = fmaxf(max1, prim::ShflXor(max1, 2));
    const float new_m0 = fmaxf(m0, max0);
    const float new_m1 = fmaxf(m1, max1);
    // A row with no key yet keeps max -inf; subtract 0 then so that exp2 gives 0, not NaN.
    const float base0 = new_m0 == -INFINITY ? 0.0f : new_m0;
    const float base1 = new_m1 == -INFINITY ? 0.0f : new_m1;
    const float alpha0 = prim::Exp2(m0 - base0);
    const float alpha1 = prim::Exp2(m1 - base1);
    m0 = new_m0;
    m1 = new_m1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < kWarpKeys / 8; ++j) {
      sc[j][0] = prim::Exp2(sc[j][0] - base0);
      sc[j][1] = prim::Exp2(sc[j][1] - base0);
      sc[j][2] = prim::Exp2(sc[j][2] - base1);
      sc[j][3] = prim::Exp2(sc[j][3] - base1);
      sum0 += sc[j][0] + sc[j][1];
      sum1 += sc[j][2] + sc[j][3];
      if constexpr (kInt4) {  // value scales, after the row sums
#pragma unroll
        for (int e = 0; e < 4; ++e) sc[j][e] *= key_scale(tile % kStages, t0, warp_key + j * 8 + 2 * tig + (e & 1), true);
      }
    }
    l0 = l0 * alpha0 + sum0;
    l1 = l1 * alpha1 + sum1;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= alpha0;
      o[i][1] *= alpha0;
      o[i][2] *= alpha1;
      o[i][3] *= alpha1;
    }

    // O += P · V: the S accumulators of two key octets are the A fragment of one k16 step.
#pragma unroll
    for (int kp = 0; kp < kWarpKeys / 16; ++kp) {
      const uint32_t a[4] = {prim::PackHalf2(sc[2 * kp][0], sc[2 * kp][1]),
                             prim::PackHalf2(sc[2 * kp][2], sc[2 * kp][3]),
                             prim::PackHalf2(sc[2 * kp + 1][0], sc[2 * kp + 1][1]),
                             prim::PackHalf2(sc[2 * kp + 1][2], sc[2 * kp + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        prim::LdMatrixX4Trans(
            b, prim::ToSmem(v_smem + Swizzle<D>(warp_key + kp * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                                dp * 2 + (lane >> 4))));
        prim::MmaF16(o[2 * dp], a, b[0], b[1]);
        prim::MmaF16(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    prim::SyncThreads();  // this stage is reloaded by the next iteration's prefetch
  }

  l0 += prim::ShflXor(l0, 1);
  l0 += prim::ShflXor(l0, 2);
  l1 += prim::ShflXor(l1, 1);
  l1 += prim::ShflXor(l1, 2);

  if constexpr (!kDecode) {
    // Every warp saw every key: normalise and store straight from the accumulators.
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f;
    const float inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    const int r0 = warp_row + gid;
    if (r0 < rows_here) {
      const int row = row0 + r0;
      __nv_bfloat16* dst = p.out + static_cast<int64_t>(q_start + row / group) * p.ld_out +
                           static_cast<int64_t>(kv_head * group + row % group) * D + 2 * tig;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        prim::Store(reinterpret_cast<__nv_bfloat162*>(dst + i * 8),
                    __floats2bfloat162_rn(o[i][0] * inv0, o[i][1] * inv0));
      }
    }
    const int r1 = r0 + 8;
    if (r1 < rows_here) {
      const int row = row0 + r1;
      __nv_bfloat16* dst = p.out + static_cast<int64_t>(q_start + row / group) * p.ld_out +
                           static_cast<int64_t>(kv_head * group + row % group) * D + 2 * tig;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        prim::Store(reinterpret_cast<__nv_bfloat162*>(dst + i * 8),
                    __floats2bfloat162_rn(o[i][2] * inv1, o[i][3] * inv1));
      }
    }
  } else {
    // The four warps hold the same 16 rows over different keys: merge them in shared memory.
    constexpr int kLd = D + 8;  // padded float rows
    prim::CpAsyncWait<0>();
    prim::SyncThreads();
    float* o_smem = reinterpret_cast<float*>(smem);                      // [4 warps][16 rows][kLd]
    float2* ml_smem = reinterpret_cast<float2*>(o_smem + 4 * 16 * kLd);  // [4 warps][16 rows]
    static_assert((4 * 16 * kLd + 2 * 4 * 16) * 4 <= kFp16Tiles * kStageHalfs * 2 + (kInt4 ? kStages * kStagingBytes : 0),
                  "merge buffer");
    {
      float* row_a = o_smem + (warp * 16 + gid) * kLd + 2 * tig;
      float* row_b = row_a + 8 * kLd;
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        *reinterpret_cast<float2*>(row_a + i * 8) = make_float2(o[i][0], o[i][1]);
        *reinterpret_cast<float2*>(row_b + i * 8) = make_float2(o[i][2], o[i][3]);
      }
      if (tig == 0) {
        ml_smem[warp * 16 + gid] = make_float2(m0, l0);
        ml_smem[warp * 16 + gid + 8] = make_float2(m1, l1);
      }
    }
    prim::SyncThreads();
    constexpr int kColsPerThread = D / 8;  // 16 rows × 8 threads per row
    const int r = tid >> 3;
    const int c0 = (tid & 7) * kColsPerThread;
    if (r < rows_here) {
      float mx = -INFINITY;
#pragma unroll
      for (int w = 0; w < 4; ++w) mx = fmaxf(mx, ml_smem[w * 16 + r].x);
      float f[4];
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float2 ml = ml_smem[w * 16 + r];
        f[w] = mx == -INFINITY ? 0.0f : prim::Exp2(ml.x - mx);
        sum += f[w] * ml.y;
      }
      const int row = row0 + r;
      const int head = kv_head * group + row % group;
      if (p.partition_keys > 0) {
        const int64_t slot = (static_cast<int64_t>(seq) * p.num_partitions + part) * num_heads + head;
        float* dst = p.ws_o + slot * D + c0;
#pragma unroll
        for (int c = 0; c < kColsPerThread; c += 4) {
          float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float4 v = *reinterpret_cast<const float4*>(o_smem + (w * 16 + r) * kLd + c0 + c);
            acc.x += f[w] * v.x;
            acc.y += f[w] * v.y;
            acc.z += f[w] * v.z;
            acc.w += f[w] * v.w;
          }
          prim::Store(reinterpret_cast<float4*>(dst + c), acc);
        }
        if ((tid & 7) == 0) prim::Store(p.ws_ml + slot, make_float2(mx, sum));
      } else {
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        __nv_bfloat16* dst = p.out + static_cast<int64_t>(q_start + row / group) * p.ld_out +
                             static_cast<int64_t>(head) * D + c0;
#pragma unroll
        for (int c = 0; c < kColsPerThread; c += 2) {
          float a = 0.0f, b = 0.0f;
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const float2 v = *reinterpret_cast<const float2*>(o_smem + (w * 16 + r) * kLd + c0 + c);
            a += f[w] * v.x;
            b += f[w] * v.y;
          }
          prim::Store(reinterpret_cast<__nv_bfloat162*>(dst + c), __floats2bfloat162_rn(a * inv, b * inv));
        }
      }
    }
  }
}

// One output element of split-KV decode from its partitions' partial results: partition i left
// (base-2 max, sum) ml_of(i) and the unnormalised value value_of(i);
// out = Σ 2^(m_i − m)·o_i / Σ 2^(m_i − m)·l_i with m = max m_i, in partition order.
template <typename MlOf, typename ValueOf>
__device__ __forceinline__ __nv_bfloat16 MergeSplitKv(int count, MlOf ml_of, ValueOf value_of) {
  float mx = -INFINITY;
  for (int i = 0; i < count; ++i) mx = fmaxf(mx, ml_of(i).x);
  float sum = 0.0f, acc = 0.0f;
  for (int i = 0; i < count; ++i) {
    const float2 ml = ml_of(i);
    const float f = mx == -INFINITY ? 0.0f : prim::Exp2(ml.x - mx);
    sum += f * ml.y;
    acc += f * value_of(i);
  }
  return __float2bfloat16_rn(sum > 0.0f ? acc / sum : 0.0f);
}

// Partitions of a sequence's context that hold keys (the rest of the grid's partitions are empty).
__device__ __forceinline__ int UsedPartitions(int context_len, const AttentionParams& p) {
  return context_len > 0 ? IMin((context_len + p.partition_keys - 1) / p.partition_keys, p.num_partitions) : 0;
}

// Merges the decode kernel's partitions of one (sequence, head) from the workspace: D threads,
// one column each.
template <int D>
__global__ void __launch_bounds__(D) AttentionReduceKernel(const AttentionParams p) {
  prim::StartAfterPrerequisiteGrids();
  const int head = prim::BlockIdx().x;
  const int seq = prim::BlockIdx().y;
  const int q_start = prim::Ldg(p.query_start + seq);
  if (prim::Ldg(p.query_start + seq + 1) - q_start != 1) return;  // decode rows only
  const int64_t first = static_cast<int64_t>(seq) * p.num_partitions * p.num_heads + head;
  const int d = prim::ThreadIdx().x;
  prim::Store(p.out + static_cast<int64_t>(q_start) * p.ld_out + static_cast<int64_t>(head) * D + d,
              MergeSplitKv(
                  UsedPartitions(prim::Ldg(p.context_len + seq), p),
                  [&](int i) { return prim::Load(p.ws_ml + first + static_cast<int64_t>(i) * p.num_heads); },
                  [&](int i) { return prim::Load(p.ws_o + (first + static_cast<int64_t>(i) * p.num_heads) * D + d); }));
}

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_CUH_
