// Rotary embedding of q and k, and the KV-cache write (fp16, or INT4 per token and KV head with
// q and k optionally Hadamard-rotated first), in one pass over the fused QKV projection's bf16
// output. One thread per 16-byte chunk (8 elements, 4 rotation pairs) of a token's q | k | v
// columns; grid (num_tokens, chunks / 128); a head's D/8 lanes sit in one warp.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_ROPE_WRITE_KV_CUH_
#define APEX4_KERNELS_CUDA_ATTENTION_ROPE_WRITE_KV_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/attention/attention_primitives.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"

namespace apex4::cuda::attention {

inline constexpr int kRopeThreads = 128;

__device__ __forceinline__ float Bf16Lo(uint32_t w) { return prim::UintAsFloat(w << 16); }
__device__ __forceinline__ float Bf16Hi(uint32_t w) { return prim::UintAsFloat(w & 0xffff0000u); }

// Butterfly stage over elements j and j ^ h of one head (HadamardTransformReference's order):
// the lower index of a pair takes a + b, the upper one a - b.
__device__ __forceinline__ void HadamardStageInRegisters(float (&y)[8], int h) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if ((j & h) == 0) {
      const float a = y[j], b = y[j + h];
      y[j] = prim::AddRn(a, b);
      y[j + h] = prim::SubRn(a, b);
    }
  }
}

// The normalized Walsh-Hadamard transform of one head, kept by the lanes of that head (8
// elements per lane, lanes × 8 = head_dim): stages 1, 2, 4 in registers, then one shuffle stage
// per lane bit. Every lane of the warp must call it (the shuffles are warp-wide).
__device__ __forceinline__ void HadamardOfHead(float (&y)[8], int lanes_per_head, float norm) {
  HadamardStageInRegisters(y, 1);
  HadamardStageInRegisters(y, 2);
  HadamardStageInRegisters(y, 4);
  const int lane = prim::ThreadIdx().x & 31;
  for (int m = 1; m < lanes_per_head; m <<= 1) {
    const bool upper = (lane & m) != 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float partner = prim::ShflXor(y[j], m);
      y[j] = upper ? prim::SubRn(partner, y[j]) : prim::AddRn(y[j], partner);
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) y[j] = prim::MulRn(y[j], norm);
}

// Symmetric INT4 of one head's row as QuantizeInt4Reference (kernels/cpu/w4a4_reference.h) with
// one group: scale = clip · absmax / 7, code = clamp(rint(y · 7 / (clip · absmax)), ±7). Returns
// this lane's 8 codes packed as the cache keeps them (code 2j in nibble j, 2j+1 in nibble j + 4:
// the order the attention kernels convert cheapest) and the scale. Warp-wide.
__device__ __forceinline__ uint32_t QuantizeInt4OfHead(const float (&y)[8], int lanes_per_head, float clip_ratio,
                                                       float* scale) {
  float absmax = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) absmax = fmaxf(absmax, fabsf(y[j]));
  for (int m = 1; m < lanes_per_head; m <<= 1) absmax = fmaxf(absmax, prim::ShflXor(absmax, m));
  const float clipped = prim::MulRn(clip_ratio, absmax);
  const float inv_scale = clipped > 0.0f ? prim::DivRn(7.0f, clipped) : 0.0f;
  *scale = prim::DivRn(clipped, 7.0f);
  uint32_t packed = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float q = fminf(fmaxf(prim::Rint(prim::MulRn(y[j], inv_scale)), -7.0f), 7.0f);
    packed |= (static_cast<uint32_t>(static_cast<int>(q)) & 0xFu) << (4 * ((j >> 1) + 4 * (j & 1)));
  }
  return packed;
}

__global__ void __launch_bounds__(kRopeThreads) RopeAndWriteKvKernel(const RopeParams p) {
  prim::StartAfterPrerequisiteGrids();
  const int64_t token = prim::BlockIdx().x;
  const int chunk = prim::BlockIdx().y * kRopeThreads + prim::ThreadIdx().x;
  const int head_dim = p.head_dim;
  const int q_cols = p.num_heads * head_dim;
  const int kv_cols = p.num_kv_heads * head_dim;
  // Lanes past the last column stay until the INT4 path's shuffles are done (they form whole
  // heads of their own, so they never mix into a real head) and store nothing.
  const bool in_range = chunk * 8 < q_cols + 2 * kv_cols;
  const int col = in_range ? chunk * 8 : 0;
  // Uniform over the CTA (one token): the early exits below never split a warp.
  if (token >= prim::Ldg(p.query_start + p.num_seqs)) return;  // padding row: no sequence

  // The sequence holding this token: the last s with query_start[s] <= token.
  int lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (prim::Ldg(p.query_start + mid) <= token) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int seq = lo;
  const int q_start = prim::Ldg(p.query_start + seq);
  const int q_len = prim::Ldg(p.query_start + seq + 1) - q_start;
  const int pos = prim::Ldg(p.context_len + seq) - q_len + static_cast<int>(token - q_start);
  if (pos < 0 || pos >= p.max_positions) return;

  const uint4 raw = prim::Load(reinterpret_cast<const uint4*>(p.qkv + token * p.ld_qkv + col));
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  const bool is_q = col < q_cols;
  const bool is_k = !is_q && col < q_cols + kv_cols;
  float y[8];
  if (is_q || is_k) {
    // q or k: pairs (2i, 2i+1) of the head rotate by the table's (cos, sin) of (pos, i).
    const int d = col % head_dim;
    const float4* cs = reinterpret_cast<const float4*>(
        p.rope_cos_sin + (static_cast<int64_t>(pos) * (head_dim / 2) + d / 2) * 2);
    const float4 cs01 = prim::Load(cs);      // cos0 sin0 cos1 sin1
    const float4 cs23 = prim::Load(cs + 1);  // cos2 sin2 cos3 sin3
    const float cosv[4] = {cs01.x, cs01.z, cs23.x, cs23.z};
    const float sinv[4] = {cs01.y, cs01.w, cs23.y, cs23.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float x0 = Bf16Lo(words[i]);
      const float x1 = Bf16Hi(words[i]);
      // As engine/llama_ops.cc ApplyRope, in float without contraction.
      y[2 * i] = prim::SubRn(prim::MulRn(x0, cosv[i]), prim::MulRn(x1, sinv[i]));
      y[2 * i + 1] = prim::AddRn(prim::MulRn(x0, sinv[i]), prim::MulRn(x1, cosv[i]));
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      y[2 * i] = Bf16Lo(words[i]);
      y[2 * i + 1] = Bf16Hi(words[i]);
    }
  }

  // Where this token's slot of the cache is (q: nowhere).
  const bool is_v = !is_q && !is_k;
  // A position past the block table (a violated precondition) keeps its q but writes no cache.
  const bool writes_cache = !is_q && pos / kBlockTokens < p.block_table_stride;
  const int kv_col = col - q_cols - (is_v ? kv_cols : 0);
  const int kv_head = is_q ? 0 : kv_col / head_dim;
  const int d = col % head_dim;
  char* block_base = nullptr;
  if (writes_cache) {
    const int32_t block =
        prim::Ldg(p.block_tables + static_cast<int64_t>(seq) * p.block_table_stride + pos / kBlockTokens);
    block_base = (is_k ? p.k_cache : p.v_cache) + static_cast<int64_t>(block) * p.block_stride;
  }
  const int slot = pos % kBlockTokens;

  if (p.int4) {  // uniform over the grid
    const int lanes_per_head = head_dim / 8;
    if (p.rotate_keys) {
      float rotated[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) rotated[j] = y[j];
      HadamardOfHead(rotated, lanes_per_head, p.hadamard_norm);
      if (!is_v) {
#pragma unroll
        for (int j = 0; j < 8; ++j) y[j] = rotated[j];
      }
    }
    float scale;
    const float clip_ratio = is_k ? p.key_clip_ratio : p.value_clip_ratio;
    const uint32_t codes = QuantizeInt4OfHead(y, lanes_per_head, clip_ratio, &scale);
    if (!in_range) return;
    if (!is_q) {
      if (!writes_cache) return;
      const int row_bytes = head_dim / 2;
      const int64_t row = static_cast<int64_t>(kv_head) * kBlockTokens + slot;
      prim::Store(reinterpret_cast<uint32_t*>(block_base + row * row_bytes + d / 2), codes);
      if (d == 0) {
        const int64_t scales = static_cast<int64_t>(p.num_kv_heads) * kBlockTokens * row_bytes;
        prim::Store(reinterpret_cast<float*>(block_base + scales + row * 4), scale);
      }
      return;
    }
  }
  if (!in_range || (!is_q && !writes_cache)) return;
  uint4 result;
  uint32_t* out_words = &result.x;
#pragma unroll
  for (int i = 0; i < 4; ++i) out_words[i] = prim::PackHalf2(y[2 * i], y[2 * i + 1]);
  __half* dst = is_q ? p.q_out + token * q_cols + col
                     : reinterpret_cast<__half*>(block_base) +
                           (static_cast<int64_t>(kv_head) * kBlockTokens + slot) * head_dim + d;
  prim::Store(reinterpret_cast<uint4*>(dst), result);
}

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_ROPE_WRITE_KV_CUH_
