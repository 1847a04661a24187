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
// Keys per pipeline stage of the attention kernel (four cache blocks), and stages: an fp16 cache
// loads straight into two fp16 tiles; an INT4 tile is a quarter of the bytes, so four stages of
// packed tiles stay in flight (as many bytes as two fp16 stages) and one fp16 tile takes the
// dequantized current one.
inline constexpr int kTileKeys = 64;
inline constexpr int kAttentionStages = 2;
inline constexpr int kInt4AttentionStages = 4;
// Query rows ("rows" = (token, query head of the KV group) pairs, token-major) per CTA.
inline constexpr int kPrefillRowsPerCta = 64;  // 4 warps × 16 rows; all warps see all keys
inline constexpr int kDecodeRowsPerCta = 16;   // 1 row group; the 4 warps split each key tile
inline constexpr int kAttentionThreads = 128;

// Decode kernel for an INT4 cache (int4_decode_attention.cuh): query heads per CTA (row tile),
// keys per warp step, and cp.async stages per warp. A stage holds the step's K codes, V codes
// (32 keys × head_dim/2 bytes each), then 32 K and 32 V scales; each warp also has a 256-byte
// P tile, and the CTA a [4 heads][head_dim] float Q buffer plus 2 × 4 per-head floats.
inline constexpr int kInt4DecodeHeads = 4;
// 4 warps, 4 CTAs (16 warps) per SM. 8 warps (2 CTAs per SM) was slower in every case (H200: 7B
// 16 × 512 keys 27.7 vs 21.5 µs: two waves of CTAs).
inline constexpr int kInt4DecodeThreads = 128;
inline constexpr int kInt4DecodeKeys = 32;
inline constexpr int kInt4DecodeStages = 3;
// Split-KV partitions one cluster merges (the portable cluster size).
inline constexpr int kInt4DecodeMaxClusterPartitions = 8;
constexpr int Int4DecodeStageBytes(int head_dim) { return 2 * kInt4DecodeKeys * (head_dim / 2) + 2 * kInt4DecodeKeys * 4; }
constexpr int Int4DecodeWarpBytes(int head_dim) {
  return kInt4DecodeStages * Int4DecodeStageBytes(head_dim) + 8 * kInt4DecodeKeys;
}
constexpr int Int4DecodeSmemBytes(int head_dim) {
  return (kInt4DecodeThreads / 32) * Int4DecodeWarpBytes(head_dim) + kInt4DecodeHeads * (head_dim + 2) * 4;
}

// An INT4 cache tile as it lands in shared memory before dequantization: K codes, V codes
// (kTileKeys × head_dim/2 bytes each), then K and V scales (kTileKeys floats each).
constexpr int Int4StagingBytes(int head_dim) { return 2 * kTileKeys * (head_dim / 2) + 2 * kTileKeys * 4; }

// Dynamic shared memory of the attention kernels: fp16 K and V tiles (one per stage; one in all
// for INT4), then for INT4 the packed tile of every stage.
constexpr int AttentionSmemBytes(int head_dim, bool int4) {
  return int4 ? 2 * kTileKeys * head_dim * 2 + kInt4AttentionStages * Int4StagingBytes(head_dim)
              : kAttentionStages * 2 * kTileKeys * head_dim * 2;
}

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
  char* k_cache;         // block b of K at k_cache + b · block_stride bytes (paged_attention.h)
  char* v_cache;
  int64_t block_stride;  // bytes
  // INT4 cache (0: fp16): per (token, KV head) symmetric INT4 codes + a float scale.
  int32_t int4;
  float key_clip_ratio;
  float value_clip_ratio;
  int32_t rotate_keys;   // q and k rotated by the normalized Hadamard(head_dim) after RoPE
  float hadamard_norm;   // 1 / sqrt(head_dim) as the CPU reference computes it
};

CudaStatus LaunchRopeAndWriteKv(const RopeParams& params, cudaStream_t stream);

struct AttentionParams {
  const __half* q;
  const char* k_cache;   // see RopeParams
  const char* v_cache;
  int64_t block_stride;  // bytes
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
  // partial results go to ws_o / ws_ml and the reduce kernel combines them (the INT4 kernel on
  // sm_90 merges up to kInt4DecodeMaxClusterPartitions in a CTA cluster instead).
  int32_t partition_keys;
  int32_t num_partitions;
  float* ws_o;    // [num_seqs][num_partitions][num_heads][head_dim], unnormalised
  float2* ws_ml;  // [num_seqs][num_partitions][num_heads]: (max, sum) in base 2
  __nv_bfloat16* out;
  int64_t ld_out;
};

// Whether a split-KV decode launch's partitions fit one thread block cluster, so that the INT4
// kernel can merge them itself (on sm_90; the launchers add that condition).
inline bool PartitionsFitOneCluster(const AttentionParams& params) {
  return params.partition_keys > 0 && params.num_partitions <= kInt4DecodeMaxClusterPartitions;
}

// Decode kernel: one CTA per (KV head × row tile, sequence, partition); grid (num_kv_heads *
// num_row_tiles, num_seqs, num_partitions). fp16 cache: AttentionKernel, row tiles of
// kDecodeRowsPerCta rows; INT4 cache (int4): Int4DecodeAttentionKernel, row tiles of
// kInt4DecodeHeads query heads. With split-KV, then the merge of the partitions: in the INT4
// kernel's clusters, or AttentionReduceKernel (grid (num_heads, num_seqs), head_dim threads).
CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t stream);
// Prefill kernel: one CTA per (KV head, sequence, row tile); grid (num_kv_heads, num_seqs,
// num_row_tiles), the heaviest (last) row tiles first.
CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t stream);

}  // namespace apex4::cuda::attention

#endif  // APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_KERNELS_H_
