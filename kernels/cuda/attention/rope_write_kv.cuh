// Rotary embedding of q and k, and the fp16 KV-cache write, in one pass over the fused QKV
// projection's bf16 output. One thread per 16-byte chunk (8 elements, 4 rotation pairs) of a
// token's q | k | v columns; grid (num_tokens, chunks / 128).
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

__global__ void __launch_bounds__(kRopeThreads) RopeAndWriteKvKernel(const RopeParams p) {
  prim::StartAfterPrerequisiteGrids();
  const int64_t token = prim::BlockIdx().x;
  const int chunk = prim::BlockIdx().y * kRopeThreads + prim::ThreadIdx().x;
  const int head_dim = p.head_dim;
  const int q_cols = p.num_heads * head_dim;
  const int kv_cols = p.num_kv_heads * head_dim;
  const int col = chunk * 8;
  if (col >= q_cols + 2 * kv_cols) return;
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
  uint4 result;
  uint32_t* out_words = &result.x;
  if (col < q_cols + kv_cols) {
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
      const float y0 = prim::SubRn(prim::MulRn(x0, cosv[i]), prim::MulRn(x1, sinv[i]));
      const float y1 = prim::AddRn(prim::MulRn(x0, sinv[i]), prim::MulRn(x1, cosv[i]));
      out_words[i] = prim::PackHalf2(y0, y1);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) out_words[i] = prim::PackHalf2(Bf16Lo(words[i]), Bf16Hi(words[i]));
  }

  __half* dst;
  if (col < q_cols) {
    dst = p.q_out + token * q_cols + col;
  } else {
    if (pos / kBlockTokens >= p.block_table_stride) return;
    const bool is_k = col < q_cols + kv_cols;
    const int kv_col = col - q_cols - (is_k ? 0 : kv_cols);
    const int kv_head = kv_col / head_dim;
    const int d = kv_col % head_dim;
    const int32_t block =
        prim::Ldg(p.block_tables + static_cast<int64_t>(seq) * p.block_table_stride + pos / kBlockTokens);
    dst = (is_k ? p.k_cache : p.v_cache) + static_cast<int64_t>(block) * p.block_stride +
          (static_cast<int64_t>(kv_head) * kBlockTokens + pos % kBlockTokens) * head_dim + d;
  }
  prim::Store(reinterpret_cast<uint4*>(dst), result);
}

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_ROPE_WRITE_KV_CUH_
