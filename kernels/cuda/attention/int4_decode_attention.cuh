// Decode attention over an INT4 KV cache on the INT8 tensor cores (mma.sync m16n8k32, sm_80+).
//
// The fp16 decode kernel (paged_attention_kernels.cuh) on an INT4 cache had to turn every code
// into fp16 on CUDA cores (~1.1 instructions a code) and ran issue-bound at a third of the
// memory's speed. Here the codes stay integers: a two's-complement nibble moved to the top of
// its byte is the signed byte 16·code, one LOP3 for high nibbles (SHF + LOP3 for low ones), and
// both products run on s8 mma with the factor 16 folded into the float scales (a power of two,
// so the results are the bits the unscaled products would give):
//
//  S^T = K · Q^T   A = 16·K codes (16 keys × 32 dims, ldmatrix rows = keys), B = Q^T as s8. q is
//                  quantised per head to 16 bits (scale absmax / 32639) and split into two s8
//                  columns, hi and lo (q = 256·hi + lo), so the integer scores are exact:
//                  16·S = 256·S_hi + S_lo.
//  O^T = V^T · P^T A = 16·V codes transposed (16 dims × 32 keys): ldmatrix.trans gives each
//                  thread one 16-bit unit (4 dims) of 2+2 keys, PRMT gathers a byte of 4 keys, the
//                  nibble split gives 4 keys × 1 dim. B = P^T: p · v_scale / ref as 16-bit fixed
//                  point, again split into hi / lo u8 columns.
//
// Split-KV: a CTA covers one partition of the context. With kClusterMerge (sm_90) the grid's
// partitions of one (sequence, row tile) form a thread block cluster: each CTA leaves its
// partial result in its own shared memory and the cluster merges them through distributed
// shared memory (MergeSplitKv, partitions in order), so no reduce kernel follows. Otherwise the
// partials go to the workspace for AttentionReduceKernel.
//
// Columns (n = 8) are (head, hi/lo) pairs: column 2h + part. A CTA takes one sequence, one
// partition of its context and up to kInt4DecodeHeads query heads of one KV head; thread
// (gid, tig) of the mma layout owns head tig's scores and outputs. Each of the W (kInt4DecodeThreads / 32) warps streams its
// own 32-key steps (warp w takes steps w, w + W, ...) through a private cp.async ring of
// kInt4DecodeStages, so the main loop has no CTA barrier; the warps merge at the end.
//
// The integer P·V accumulators keep their scale between steps; they are converted and added to
// the float output ("flushed") only when a head's running max or the largest value scale seen
// (`ref`, the fixed-point unit) grows — a few times a context —, every kMaxUnflushedSteps steps
// and at the end.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_INT4_DECODE_ATTENTION_CUH_
#define APEX4_KERNELS_CUDA_ATTENTION_INT4_DECODE_ATTENTION_CUH_

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention/attention_primitives.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.cuh"

namespace apex4::cuda::attention {

namespace int4_decode {

using prim::IMin;

// Element of a cache word held in nibble n (paged_attention.h: 2j in nibble j, 2j+1 in j + 4).
__host__ __device__ constexpr int NibbleElement(int n) { return n < 4 ? 2 * n : 2 * (n - 4) + 1; }

// Low / high nibbles of a word's four bytes as s8 16·code (the nibble in the top half of its byte).
__device__ __forceinline__ uint32_t LowCodesX16(uint32_t word) { return (word << 4) & 0xF0F0F0F0u; }
__device__ __forceinline__ uint32_t HighCodesX16(uint32_t word) { return word & 0xF0F0F0F0u; }
// The float factor that undoes the 16 of the codes (exact: a power of two).
inline constexpr float kCodeUnit = 1.0f / 16.0f;
// Steps a warp's P·V accumulators may take between flushes: each adds at most 32 keys × 128 ×
// 255 per fixed-point byte, so 2048 steps stay below 2^31 (a flush is forced after that many;
// 65536 keys a warp).
inline constexpr int kMaxUnflushedSteps = 2048;

// Byte offset of 16-byte chunk `chunk` of key row `key` in a stage's [32 keys][D/2] code tile:
// chunks are XOR-swizzled so that the 8 rows an ldmatrix reads fall in distinct banks.
template <int D>
__device__ __forceinline__ int CodeOffset(int key, int chunk) {
  constexpr int kChunks = D / 32;
  constexpr int kRowsPer128B = 8 / kChunks;
  return key * (D / 2) + ((chunk ^ ((key / kRowsPer128B) % kChunks)) << 4);
}

// Position of a step's key (0..31) in the P^T tile: the order in which the V fragments hold keys
// (ldmatrix.trans gives a thread keys 2t, 2t+1 of rows 0-7 and 8-15; PRMT puts them in bytes
// 0-3 of the k quad t).
__device__ __forceinline__ int PKeyIndex(int key) {
  const int q = key & 15;
  return (key & 16) + 4 * ((q & 7) >> 1) + (q >= 8 ? 2 : 0) + (q & 1);
}

}  // namespace int4_decode

// A CTA's partial result for the cluster merge, at the end of the kernel's shared memory (past the
// warps' merge buffer): [kInt4DecodeHeads][D] unnormalised O, then [kInt4DecodeHeads] (max, sum).
template <int D>
inline constexpr int kClusterPartialBytes = kInt4DecodeHeads * (D * 4 + 8);
template <int D>
inline constexpr int kClusterPartialOffset = (kInt4DecodeThreads / 32) * Int4DecodeWarpBytes(D) - kClusterPartialBytes<D>;
template <int D>
__device__ __forceinline__ float* ClusterPartialO(char* smem) {
  return reinterpret_cast<float*>(smem + kClusterPartialOffset<D>);
}
template <int D>
__device__ __forceinline__ float2* ClusterPartialMl(char* smem) {
  return reinterpret_cast<float2*>(ClusterPartialO<D>(smem) + kInt4DecodeHeads * D);
}

// The cluster's merge of its partitions' partials (kClusterMerge): after a cluster barrier, CTA
// rank r takes output elements r·T.., r·T + (P·T).., ... (T threads, P CTAs), reading partition
// i's partial from CTA i's shared memory; a second barrier keeps every CTA's shared memory alive
// until its peers are done reading it. Heads first_head.. of the CTA's row tile.
template <int D>
__device__ void MergeInCluster(const AttentionParams& p, int seq, int q_start, int first_head) {
  char* const smem = reinterpret_cast<char*>(prim::DynamicSmem());
  const float* const partial_o = ClusterPartialO<D>(smem);
  const float2* const partial_ml = ClusterPartialMl<D>(smem);
  const int heads_here = IMin(kInt4DecodeHeads, p.group - first_head % p.group);
  const int used = UsedPartitions(prim::Ldg(p.context_len + seq), p);
  prim::ClusterSync();
  for (int i = prim::ClusterRank() * kInt4DecodeThreads + static_cast<int>(prim::ThreadIdx().x);
       i < heads_here * D; i += p.num_partitions * kInt4DecodeThreads) {
    const int h = i / D;
    prim::Store(p.out + static_cast<int64_t>(q_start) * p.ld_out + static_cast<int64_t>(first_head) * D + i,
                MergeSplitKv(
                    used, [&](int part) { return *prim::PeerSmem(partial_ml + h, part); },
                    [&](int part) { return *prim::PeerSmem(partial_o + i, part); }));
  }
  prim::ClusterSync();
}

// Four resident CTAs per SM (55 KB of shared memory each at D = 128, <= 128 registers): 16 warps
// hide the load latency better than 12 with a deeper ring (H200: 160 vs 172 us for 7B, 64
// sequences × 2048 keys). Grid (num_kv_heads * num_row_tiles, num_seqs, num_partitions),
// kInt4DecodeThreads threads, Int4DecodeSmemBytes(D) of dynamic shared memory; row tile r takes query heads
// r·kInt4DecodeHeads.. of the KV head's group. Output: bf16 rows (no split, or kClusterMerge:
// clusters of (1, 1, num_partitions)), or as AttentionKernel's decode mode, split-KV partials
// (base-2 max, sum, unnormalised O) in the workspace.
template <int D, bool kClusterMerge>
__global__ void __launch_bounds__(kInt4DecodeThreads, 512 / kInt4DecodeThreads)
    Int4DecodeAttentionKernel(const AttentionParams p) {
  using namespace int4_decode;
  static_assert(D == 64 || D == 128, "head_dim");
  static_assert(kInt4DecodeKeys == 32 && kInt4DecodeHeads == 4, "the fragment mapping");
  constexpr int kWarps = kInt4DecodeThreads / 32;
  static_assert(kWarps >= kInt4DecodeHeads, "one warp measures each head's q");
  constexpr int kChunks = D / 32;     // 16-byte chunks of one key's codes = k32 steps of Q·K^T
  constexpr int kDimTiles = D / 16;   // m16 tiles of O^T
  constexpr int kRowBytes = D / 2;
  constexpr int kCodeBytes = kInt4DecodeKeys * kRowBytes;
  constexpr int kStages = kInt4DecodeStages;
  // = Int4DecodeStageBytes(D) and Int4DecodeWarpBytes(D) (host functions; checked in the .cu).
  constexpr int kStageBytes = 2 * kCodeBytes + 2 * kInt4DecodeKeys * 4;
  constexpr int kWarpBytes = kStages * kStageBytes + 8 * kInt4DecodeKeys;

  const int kv_head = prim::BlockIdx().x / p.num_row_tiles;
  const int row_tile = prim::BlockIdx().x % p.num_row_tiles;
  const int seq = prim::BlockIdx().y;
  const int part = prim::BlockIdx().z;
  const int q_start = prim::Ldg(p.query_start + seq);
  const int q_len = prim::Ldg(p.query_start + seq + 1) - q_start;
  // The step description (query_start, context_len, block tables) is copied in before the step
  // and may be read before the prerequisite wait (programmatic_launch.cuh); q and the newest key,
  // which RopeAndWriteKv writes just before this kernel, may not. Every CTA waits before it exits,
  // so that the grid's completion still implies its prerequisites'.
  const int head0 = row_tile * kInt4DecodeHeads;  // first query head of the CTA within the group
  const int ctx = prim::Ldg(p.context_len + seq);
  int key_begin = 0;
  int key_end = ctx;
  if (p.partition_keys > 0) {
    key_begin = part * p.partition_keys;
    key_end = IMin(key_end, key_begin + p.partition_keys);
  }
  // Decode rows only (in a mixed batch the prefill kernel takes the others; the test is the same
  // for every CTA of a cluster); a partition past the sequence's context has nothing to do (the
  // merge skips it), except its share of the cluster's merge.
  if (q_len != 1 || head0 >= p.group || key_begin >= key_end) {
    prim::StartAfterPrerequisiteGrids();
    if constexpr (kClusterMerge) {
      if (q_len == 1 && head0 < p.group) MergeInCluster<D>(p, seq, q_start, kv_head * p.group + head0);
    }
    return;
  }
  const int heads_here = IMin(kInt4DecodeHeads, p.group - head0);

  const int tid = prim::ThreadIdx().x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int gid = lane >> 2;
  const int tig = lane & 3;
  char* const smem = reinterpret_cast<char*>(prim::DynamicSmem());
  char* const warp_smem = smem + warp * kWarpBytes;
  uint8_t* const p_tile = reinterpret_cast<uint8_t*>(warp_smem + kStages * kStageBytes);  // [8 cols][32 keys]
  float* const q_smem = reinterpret_cast<float*>(smem + kWarps * kWarpBytes);               // [4 heads][D]
  float* const q_scale_smem = q_smem + kInt4DecodeHeads * D;  // [4] per head: code unit,
  float* const q_inv_smem = q_scale_smem + kInt4DecodeHeads;   // [4] and its inverse

  // ---- The warp's steps: 32 keys each, steps warp, warp + kWarps, ... of the partition.
  const int num_steps = (key_end - key_begin + kInt4DecodeKeys - 1) / kInt4DecodeKeys;
  const int my_steps = num_steps > warp ? (num_steps - warp + kWarps - 1) / kWarps : 0;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.block_table_stride;
  const char* k_base = p.k_cache + static_cast<int64_t>(kv_head) * kBlockTokens * kRowBytes;
  const char* v_base = p.v_cache + static_cast<int64_t>(kv_head) * kBlockTokens * kRowBytes;
  // The scales follow the codes of all KV heads in each block.
  const int64_t scales_offset = static_cast<int64_t>(p.num_kv_heads - kv_head) * kBlockTokens * kRowBytes +
                                static_cast<int64_t>(kv_head) * kBlockTokens * 4;
  auto step_start = [&](int i) { return key_begin + (warp + i * kWarps) * kInt4DecodeKeys; };
  // Cache block ids, 16 steps at a time in one round trip: lane j holds the id of block j % 2 of
  // step first + j / 2 (0 where no key below key_end is in it); a step takes its two by shuffle.
  int block_ids = 0;
  auto fetch_block_ids = [&](int first) {
    const int pos = step_start(first + lane / 2) + (lane & 1) * kBlockTokens;
    block_ids = pos < key_end ? prim::Ldg(block_table + pos / kBlockTokens) : 0;
  };
  // A key past key_end still addresses its own block or block 0 (the id of a block with no key
  // below key_end), so its copy needs no other source address: cp.async reads nothing of it.
  auto load_step = [&](int i, int stage) {  // warp-uniform, steps in increasing order
    if (i % 16 == 0) fetch_block_ids(i);
    const int blocks[2] = {prim::ShflIdx(block_ids, 2 * (i % 16)), prim::ShflIdx(block_ids, 2 * (i % 16) + 1)};
    const int t0 = step_start(i);
    char* dst = warp_smem + stage * kStageBytes;
    // Codes: unit u = key u / kChunks, chunk u % kChunks; K then V.
#pragma unroll
    for (int r = 0; r < kChunks; ++r) {
      const int u = lane + 32 * r;
      const int key = u / kChunks;
      const int chunk = u % kChunks;
      const bool valid = t0 + key < key_end;
      const int64_t offset = static_cast<int64_t>(key < kBlockTokens ? blocks[0] : blocks[1]) * p.block_stride +
                             (key % kBlockTokens) * kRowBytes + chunk * 16;
      const int at = CodeOffset<D>(key, chunk);
      prim::CpAsync16(prim::ToSmem(dst + at), k_base + offset, valid);
      prim::CpAsync16(prim::ToSmem(dst + kCodeBytes + at), v_base + offset, valid);
    }
    // Scales: lanes 0-7 K, 8-15 V; lane j % 8 takes keys 4j..4j+3.
    if (lane < 16) {
      const bool is_v = lane >= 8;
      const int j = lane & 7;
      const bool valid = t0 + 4 * j < key_end;
      const int64_t offset =
          static_cast<int64_t>(j < 4 ? blocks[0] : blocks[1]) * p.block_stride + scales_offset + (j % 4) * 16;
      const char* base = is_v ? v_base : k_base;
      prim::CpAsync16(prim::ToSmem(dst + 2 * kCodeBytes + lane * 16), base + offset, valid);
    }
  };

  // State of head tig: running max (base-2 scores), this thread's part of the row sum, the float
  // output for dims (tile, row gid / gid + 8), and the integer accumulators since the last flush.
  float m = -INFINITY;
  float l = 0.0f;
  float ref = 0.0f;  // P's fixed-point unit: p · v_scale / ref · 65535
  float to_fixed = 0.0f;  // 65535 / ref (0 while ref is)
  float o[kDimTiles][2];
  int32_t acc[kDimTiles][4];
#pragma unroll
  for (int t = 0; t < kDimTiles; ++t) {
    o[t][0] = o[t][1] = 0.0f;
    acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0;
  }
  auto flush = [&]() {
    const float unit = ref * (1.0f / 65535.0f) * kCodeUnit;
#pragma unroll
    for (int t = 0; t < kDimTiles; ++t) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float value = 256.0f * static_cast<float>(acc[t][2 * r]) + static_cast<float>(acc[t][2 * r + 1]);
        o[t][r] += unit * value;
      }
      acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0;
    }
  };

  // The ring's first steps: those whose keys all precede the newest one (written by earlier
  // steps) load before the wait, overlapping the kernel ahead; the rest after it.
  int preloaded = 0;
  while (preloaded < kStages - 1 && preloaded < my_steps && step_start(preloaded) + kInt4DecodeKeys < ctx) {
    load_step(preloaded, preloaded);
    prim::CpAsyncCommit();
    ++preloaded;
  }
  prim::StartAfterPrerequisiteGrids();
  for (int s = preloaded; s < kStages - 1; ++s) {
    if (s < my_steps) load_step(s, s);
    prim::CpAsyncCommit();
  }

  // ---- Q (while the first steps load): fp16 → smem (float), per-head absmax and 16-bit codes,
  // B fragments.
  const int64_t q_row = static_cast<int64_t>(q_start) * p.num_heads + kv_head * p.group + head0;
  for (int i = tid; i < kInt4DecodeHeads * D; i += kInt4DecodeThreads) {
    const int h = i / D;
    q_smem[i] = h < heads_here ? __half2float(prim::Load(p.q + q_row * D + i)) : 0.0f;
  }
  prim::SyncThreads();
  if (warp < kInt4DecodeHeads) {
    // Warp h measures head h.
    const float* qh = q_smem + warp * D;
    float amax = 0.0f;
    for (int d = lane; d < D; d += 32) amax = fmaxf(amax, fabsf(qh[d]));
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) amax = fmaxf(amax, prim::ShflXor(amax, m));
    const float inv = amax > 0.0f ? 32639.0f / amax : 0.0f;
    if (lane == 0) {
      q_scale_smem[warp] = amax / 32639.0f;
      q_inv_smem[warp] = inv;
    }
  }
  prim::SyncThreads();
  // Thread (gid, tig) holds column gid = (head gid / 2, hi or lo) of Q^T for the dims its K
  // fragments carry: chunk c, word tig, byte j → nibble 2j (b0) and 2j + 1 (b1).
  uint32_t q_frag[kChunks][2];
  {
    const int h = gid >> 1;
    const float inv = q_inv_smem[h];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        uint32_t reg = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int dim = 32 * c + 8 * tig + NibbleElement(2 * j + half);
          const int code = static_cast<int>(prim::Rint(q_smem[h * D + dim] * inv));
          const int hi = (code + 128) >> 8;  // |code| <= 32639: hi, lo in [-128, 127]
          const int part_value = (gid & 1) == 0 ? hi : code - 256 * hi;
          reg |= (static_cast<uint32_t>(part_value) & 0xffu) << (8 * j);
        }
        q_frag[c][half] = reg;
      }
    }
  }
  // This thread's head (tig): the scale of its integer scores (16·S).
  const float score_scale = q_scale_smem[tig] * p.scale_log2 * kCodeUnit;

  for (int i = 0; i < my_steps; ++i) {
    const int ahead = i + kStages - 1;
    if (ahead < my_steps) load_step(ahead, ahead % kStages);
    prim::CpAsyncCommit();
    prim::CpAsyncWait<kStages - 1>();  // step i has landed (this lane's copies)
    prim::SyncWarp();                  // ... and every lane's
    const char* stage = warp_smem + (i % kStages) * kStageBytes;
    const float* k_scales = reinterpret_cast<const float*>(stage + 2 * kCodeBytes);
    const float* v_scales = k_scales + kInt4DecodeKeys;
    const int t0 = step_start(i);

    // S^T = K · Q^T: two m16 tiles of keys; ldmatrix rows = keys, a thread gets word tig of a chunk.
    int32_t s_acc[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      s_acc[mt][0] = s_acc[mt][1] = s_acc[mt][2] = s_acc[mt][3] = 0;
#pragma unroll
      for (int cp = 0; cp < kChunks / 2; ++cp) {
        uint32_t r[4];
        const int key = 16 * mt + (lane & 7) + (lane & 8);
        prim::LdMatrixX4(r, prim::ToSmem(stage + CodeOffset<D>(key, 2 * cp + (lane >> 4))));
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const uint32_t a[4] = {LowCodesX16(r[2 * e]), LowCodesX16(r[2 * e + 1]), HighCodesX16(r[2 * e]),
                                 HighCodesX16(r[2 * e + 1])};
          prim::MmaS8<true>(s_acc[mt], a, q_frag[2 * cp + e][0], q_frag[2 * cp + e][1]);
        }
      }
    }

    // Scores of head tig for keys 16·mt + gid + 8·r, masked past key_end; value scales.
    float s[2][2], v_scale[2][2];
    float step_max = -INFINITY, scale_max = 0.0f;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int key = 16 * mt + gid + 8 * r;
        const bool valid = t0 + key < key_end;
        const int32_t score = 256 * s_acc[mt][2 * r] + s_acc[mt][2 * r + 1];  // 16·S, |16·S| < 2^30
        s[mt][r] = valid ? static_cast<float>(score) * score_scale * k_scales[key] : -INFINITY;
        v_scale[mt][r] = valid ? v_scales[key] : 0.0f;
        step_max = fmaxf(step_max, s[mt][r]);
        scale_max = fmaxf(scale_max, v_scale[mt][r]);
      }
    }
#pragma unroll
    for (int mask = 4; mask <= 16; mask <<= 1) {
      step_max = fmaxf(step_max, prim::ShflXor(step_max, mask));
      scale_max = fmaxf(scale_max, prim::ShflXor(scale_max, mask));
    }
    const float new_m = fmaxf(m, step_max);
    if (i % kMaxUnflushedSteps == 0 || prim::AnyInWarp(new_m > m || scale_max > ref)) {
      flush();
      // A head with no key yet keeps max -inf: its (zero) state is scaled by 0, not NaN.
      const float alpha = new_m == -INFINITY ? 1.0f : prim::Exp2(m - new_m);
#pragma unroll
      for (int t = 0; t < kDimTiles; ++t) {
        o[t][0] *= alpha;
        o[t][1] *= alpha;
      }
      l *= alpha;
      m = new_m;
      ref = fmaxf(ref, scale_max);
      to_fixed = ref > 0.0f ? 65535.0f / ref : 0.0f;
    }
    const float base = m == -INFINITY ? 0.0f : m;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float prob = prim::Exp2(s[mt][r] - base);
        l += prob;
        const uint32_t rounded = prim::FloatToUintRn(prob * v_scale[mt][r] * to_fixed);
        const uint32_t fixed = rounded < 65535u ? rounded : 65535u;
        const int at = PKeyIndex(16 * mt + gid + 8 * r);
        p_tile[(2 * tig) * kInt4DecodeKeys + at] = static_cast<uint8_t>(fixed >> 8);
        p_tile[(2 * tig + 1) * kInt4DecodeKeys + at] = static_cast<uint8_t>(fixed & 0xffu);
      }
    }
    prim::SyncWarp();
    const uint32_t p_b0 = *reinterpret_cast<const uint32_t*>(p_tile + gid * kInt4DecodeKeys + 4 * tig);
    const uint32_t p_b1 = *reinterpret_cast<const uint32_t*>(p_tile + gid * kInt4DecodeKeys + 16 + 4 * tig);

    // O^T += V^T · P^T: per chunk, ldmatrix.trans (row = key = lane) gives 16-bit units of keys
    // 2t, 2t+1 (r0: keys 0-7, r1: 8-15, r2: 16-23, r3: 24-31); PRMT collects one byte of 4 keys.
    const char* v_codes = stage + kCodeBytes;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      uint32_t r[4];
      prim::LdMatrixX4Trans(r, prim::ToSmem(v_codes + CodeOffset<D>(lane, c)));
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const uint32_t selector = e == 0 ? 0x6420u : 0x7531u;
        const uint32_t x = prim::BytePerm(r[0], r[1], selector);  // keys of the k quad tig
        const uint32_t y = prim::BytePerm(r[2], r[3], selector);  // the same, 16 keys on
        const uint32_t a[4] = {LowCodesX16(x), HighCodesX16(x), LowCodesX16(y), HighCodesX16(y)};
        prim::MmaS8<false>(acc[2 * c + e], a, p_b0, p_b1);
      }
    }
    prim::SyncWarp();  // the stage and the P tile are rewritten by the next step
  }
  flush();
#pragma unroll
  for (int mask = 4; mask <= 16; mask <<= 1) l += prim::ShflXor(l, mask);

  // ---- Merge the warps (each saw its own steps) in shared memory.
  constexpr int kLd = D + 4;
  prim::CpAsyncWait<0>();
  prim::SyncThreads();
  float* o_smem = reinterpret_cast<float*>(smem);                                   // [warp][head][kLd]
  float2* ml_smem = reinterpret_cast<float2*>(o_smem + kWarps * kInt4DecodeHeads * kLd);  // [warp][head]
  static_assert((kWarps * kInt4DecodeHeads * kLd + 2 * kWarps * kInt4DecodeHeads) * 4 +
                        kClusterPartialBytes<D> <= kWarps * kWarpBytes,
                "merge buffer and the cluster partial after it");
  {
    float* row = o_smem + (warp * kInt4DecodeHeads + tig) * kLd;
#pragma unroll
    for (int t = 0; t < kDimTiles; ++t) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        // Tile t = 2c + e, row gid + 8r: nibble 2e + r of unit gid of chunk c.
        const int c = t >> 1, e = t & 1;
        const int dim = 32 * c + 8 * (gid >> 1) + NibbleElement(2 * (2 * (gid & 1) + e) + r);
        row[dim] = o[t][r];
      }
    }
    if (gid == 0) ml_smem[warp * kInt4DecodeHeads + tig] = make_float2(m, l);
  }
  prim::SyncThreads();
  for (int i = tid; i < heads_here * D; i += kInt4DecodeThreads) {
    const int h = i / D;
    const int d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, ml_smem[w * kInt4DecodeHeads + h].x);
    float sum = 0.0f, value = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float2 ml = ml_smem[w * kInt4DecodeHeads + h];
      const float f = mx == -INFINITY ? 0.0f : prim::Exp2(ml.x - mx);
      sum += f * ml.y;
      value += f * o_smem[(w * kInt4DecodeHeads + h) * kLd + d];
    }
    const int head = kv_head * p.group + head0 + h;
    if constexpr (kClusterMerge) {
      ClusterPartialO<D>(smem)[h * D + d] = value;
      if (d == 0) ClusterPartialMl<D>(smem)[h] = make_float2(mx, sum);
    } else if (p.partition_keys > 0) {
      const int64_t slot = (static_cast<int64_t>(seq) * p.num_partitions + part) * p.num_heads + head;
      prim::Store(p.ws_o + slot * D + d, value);
      if (d == 0) prim::Store(p.ws_ml + slot, make_float2(mx, sum));
    } else {
      prim::Store(p.out + static_cast<int64_t>(q_start) * p.ld_out + static_cast<int64_t>(head) * D + d,
                  __float2bfloat16_rn(sum > 0.0f ? value / sum : 0.0f));
    }
  }
  if constexpr (kClusterMerge) MergeInCluster<D>(p, seq, q_start, kv_head * p.group + head0);
}

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_INT4_DECODE_ATTENTION_CUH_
