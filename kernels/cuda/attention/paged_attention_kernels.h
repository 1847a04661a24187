// Launchers of the attention kernels (paged_attention_kernels.cu, rope_write_kv.cu) and their
// parameter blocks. Internal: the engine calls paged_attention.h, which checks arguments and
// plans the launch; these only launch.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_H_
#define APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda::attention {

inline constexpr int kBlockTokens = 16;  // = kKvBlockTokens of paged_attention.h
// Keys per pipeline stage of the attention kernel (four cache blocks), and stages.
inline constexpr int kTileKeys = 64;
inline constexpr int kAttentionStages = 2;
// Query rows ("rows" = (token, query head of the KV group) pairs, token-major) per CTA.
inline constexpr int kPrefillRowsPerCta = 64;  // 4 warps × 16 rows; all warps see all keys
inline constexpr int kDecodeRowsPerCta = 16;   // 1 row group; the 4 warps split each key tile
inline constexpr int kAttentionThreads = 128;

// Dynamic shared memory of the attention kernels: the K and V tiles of every stage.
constexpr int AttentionSmemBytes(int head_dim) { return kAttentionStages * 2 * kTileKeys * head_dim * 2; }

struct RopeParams {
  const __nv_bfloat16* qkv;
  int64_t ld_qkv;
  const int32_t* query_start;
  const int32_t* context_len;
  const int32_t* block_tables;
  int32_t block_table_stride;
  int32_t num_seqs;
  int64_t num_tokens;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
  const float* rope_cos_sin;
  int32_t max_positions;
  __half* q_out;
  __half* k_cache;
  __half* v_cache;
  int64_t block_stride;
};

CudaStatus LaunchRopeAndWriteKv(const RopeParams& params, cudaStream_t stream);

struct AttentionParams {
  const __half* q;
  const __half* k_cache;
  const __half* v_cache;
  int64_t block_stride;
  const int32_t* query_start;
  const int32_t* context_len;
  const int32_t* block_tables;
  int32_t block_table_stride;
  int32_t num_seqs;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t group;     // num_heads / num_kv_heads
  float scale_log2;  // scale · log2(e): softmax runs in base 2
  // Sequences whose query_len lies outside [min_query_len, max_query_len] are skipped (a mixed
  // batch runs the prefill kernel on query_len >= 2 and the decode kernel on query_len == 1).
  int32_t min_query_len;
  int32_t max_query_len;
  int32_t num_row_tiles;  // CTAs along the rows of one (sequence, KV head)
  // Split-KV (decode kernel only): partition_keys > 0 splits each context into partitions of
  // that many keys (a multiple of kTileKeys), num_partitions of them sized by the bound; the
  // partial results go to ws_o / ws_ml and AttentionReduce combines them.
  int32_t partition_keys;
  int32_t num_partitions;
  float* ws_o;    // [num_seqs][num_partitions][num_heads][head_dim], unnormalised
  float2* ws_ml;  // [num_seqs][num_partitions][num_heads]: (max, sum) in base 2
  __nv_bfloat16* out;
  int64_t ld_out;
};

// Decode kernel: one CTA per (KV head × row tile, sequence, partition); grid (num_kv_heads *
// num_row_tiles, num_seqs, num_partitions).
CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, cudaStream_t stream);
// Prefill kernel: one CTA per (KV head, sequence, row tile); grid (num_kv_heads, num_seqs,
// num_row_tiles), the heaviest (last) row tiles first.
CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, cudaStream_t stream);
// Combines the decode kernel's partitions: grid (num_heads, num_seqs), head_dim threads.
CudaStatus LaunchAttentionReduce(const AttentionParams& params, int head_dim, cudaStream_t stream);

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_H_
