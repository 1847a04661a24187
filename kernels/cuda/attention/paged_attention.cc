#include "kernels/cuda/attention/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cuda/attention/paged_attention_kernels.h"

namespace apex4::cuda {
namespace {

using attention::kDecodeRowsPerCta;
using attention::kInt4DecodeHeads;
using attention::kPrefillRowsPerCta;
using attention::kTileKeys;

// Decode CTAs wanted before the context is split further: about one per SM (H100/H200: 132).
// Beyond that the SM's CTAs share its bandwidth, so a split adds merge work and little else.
// H200, decode attention alone at batch 1-16 × 512-4096 keys, against the 512 used before
// (kernels/cuda/results/2026-11-28_h200_decode_split_target.txt): geomean 0.91× the time for the
// INT4 kernel (with its cluster merge), 0.95× for fp16; a 512-CTA grid of 4-CTA clusters ran
// 5-15% slower than with the reduce kernel.
constexpr int64_t kDecodeTargetCtas = 128;
constexpr int kMaxPartitionKeys = 512;
// The INT4 kernel's warps stream their own 32-key steps; a partition must give each several
// steps to fill its cp.async ring, so it starts from longer partitions (H200: 7B 64 × 2048 keys
// 160 µs with 2048, 215 with 512). Small batches still split down to 128 keys: a 512 minimum
// sped up the kernel alone at 4096 keys but cost the 7B engine 5% at batch 1 (~576 keys).
constexpr int kInt4MaxPartitionKeys = 2048;
constexpr int kMinPartitionKeys = 128;

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Which kernels run and how the decode kernel splits the context. A function of the bounds only.
struct Plan {
  bool run_prefill = false;   // query_len >= 2 (or every sequence, when the decode kernel is off)
  bool run_decode = false;    // query_len == 1
  int32_t max_query_len = 0;  // the bound, tightened by num_tokens and max_context_len
  int prefill_row_tiles = 0;
  int decode_row_tiles = 0;
  int partition_keys = 0;  // 0: the decode kernel covers whole contexts and writes out directly
  int num_partitions = 1;
  size_t workspace_bytes = 0;
};

// No sequence appends more tokens than the step has or than its context holds, so a looser bound
// is harmless: it is tightened (still a function of the bounds and num_tokens only).
int32_t EffectiveMaxQueryLen(const AttentionBatch& batch) {
  return static_cast<int32_t>(
      std::min<int64_t>({int64_t{batch.max_query_len}, batch.num_tokens, int64_t{batch.max_context_len}}));
}

// Query heads of one KV head that one decode CTA takes: the fp16 kernel's 16 rows, the INT4
// kernel's 4 heads.
int DecodeRowTiles(const AttentionShape& shape, KvCacheFormat format) {
  const int group = shape.num_heads / shape.num_kv_heads;
  return static_cast<int>(CeilDiv(group, format == KvCacheFormat::kInt4 ? kInt4DecodeHeads : kDecodeRowsPerCta));
}

Plan MakePlan(const AttentionBatch& batch, const AttentionShape& shape, KvCacheFormat format) {
  Plan plan;
  const int group = shape.num_heads / shape.num_kv_heads;
  const int32_t max_query_len = EffectiveMaxQueryLen(batch);
  plan.max_query_len = max_query_len;
  plan.run_prefill = max_query_len > 1;
  // A mixed batch runs both: the decode kernel (split-KV) takes the query_len == 1 sequences.
  // With one sequence there is nothing to share, so the prefill kernel takes it whatever its length.
  plan.run_decode = max_query_len == 1 || batch.num_seqs > 1;
  plan.prefill_row_tiles =
      static_cast<int>(CeilDiv(static_cast<int64_t>(max_query_len) * group, kPrefillRowsPerCta));
  plan.decode_row_tiles = DecodeRowTiles(shape, format);
  if (plan.run_decode) {
    const int64_t ctas = int64_t{batch.num_seqs} * shape.num_kv_heads * plan.decode_row_tiles;
    int keys = format == KvCacheFormat::kInt4 ? kInt4MaxPartitionKeys : kMaxPartitionKeys;
    while (keys > kMinPartitionKeys && ctas * CeilDiv(batch.max_context_len, keys) < kDecodeTargetCtas) {
      keys /= 2;
    }
    const int64_t partitions = CeilDiv(batch.max_context_len, keys);
    if (partitions > 1) {
      plan.partition_keys = keys;
      plan.num_partitions = static_cast<int>(partitions);
      const int64_t slots = int64_t{batch.num_seqs} * partitions * shape.num_heads;
      plan.workspace_bytes = static_cast<size_t>(slots) * (shape.head_dim * sizeof(float) + sizeof(float2));
    }
  }
  return plan;
}

// `with_arrays`: also the device arrays (a launch needs them, sizing the workspace does not).
CudaStatus CheckBatch(const AttentionBatch& batch, const AttentionShape& shape, bool with_arrays = true) {
  APEX4_CUDA_CHECK_ARG(shape.num_heads > 0 && shape.num_kv_heads > 0);
  APEX4_CUDA_CHECK_ARG(shape.num_heads % shape.num_kv_heads == 0);
  APEX4_CUDA_CHECK_ARG(shape.head_dim == 64 || shape.head_dim == 128);
  APEX4_CUDA_CHECK_ARG(shape.num_heads <= 65535);
  APEX4_CUDA_CHECK_ARG(batch.num_seqs >= 0 && batch.num_seqs <= 65535);
  APEX4_CUDA_CHECK_ARG(batch.num_tokens >= 0 && batch.num_tokens <= std::numeric_limits<int32_t>::max());
  if (batch.num_seqs == 0 || batch.num_tokens == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(!with_arrays || (batch.query_start != nullptr && batch.context_len != nullptr &&
                                        batch.block_tables != nullptr));
  APEX4_CUDA_CHECK_ARG(batch.max_query_len >= 1 && batch.max_context_len >= 1);
  const int group = shape.num_heads / shape.num_kv_heads;
  // Prefill row tiles are a grid dimension (<= 65535) and rows an int.
  APEX4_CUDA_CHECK_ARG(CeilDiv(int64_t{EffectiveMaxQueryLen(batch)} * group, kPrefillRowsPerCta) <= 65535);
  APEX4_CUDA_CHECK_ARG(CeilDiv(batch.max_context_len, kMinPartitionKeys) <= 65535);
  APEX4_CUDA_CHECK_ARG(int64_t{batch.block_table_stride} * kKvBlockTokens >= batch.max_context_len);
  return OkCudaStatus();
}

CudaStatus CheckCache(const KvCacheLayer& cache, const AttentionShape& shape) {
  APEX4_CUDA_CHECK_ARG(cache.format == KvCacheFormat::kFp16 || cache.format == KvCacheFormat::kInt4);
  APEX4_CUDA_CHECK_ARG(cache.k != nullptr && cache.v != nullptr);
  APEX4_CUDA_CHECK_ARG(Aligned(cache.k, 16) && Aligned(cache.v, 16));
  APEX4_CUDA_CHECK_ARG(cache.block_stride % 16 == 0);
  APEX4_CUDA_CHECK_ARG(cache.block_stride >= KvCacheBlockBytes(cache.format, shape.num_kv_heads, shape.head_dim));
  return OkCudaStatus();
}

// The workspace promised for these bounds: enough for the plan of any launch with at most
// num_seqs sequences and max_context_len context, whatever partition size each picks, so that an
// engine can size it once for its largest bounds. The plan takes the largest P of 512, 256, 128
// (INT4: from 2048) with ctas·⌈ctx/P⌉ ≥ T, or 128 (ctas = num_seqs·KV·row_tiles,
// T = kDecodeTargetCtas); at P ≥ 512 its slots are at most num_seqs·⌈ctx/512⌉; below, the
// doubled P fell short, ctas·⌈ctx/2P⌉ < T, so its slots num_seqs·⌈ctx/P⌉ ≤ 2·num_seqs·⌈ctx/2P⌉
// < 2T / (KV·row_tiles). Hence slots ≤ num_seqs·⌈ctx/512⌉ + ⌈2T / (KV·row_tiles)⌉: monotone in
// num_seqs and max_context_len, independent of num_tokens and max_query_len; the fp16 kernel's
// row tiles are the fewest, so its bound covers both formats. 0 when no context can be split
// (max_context_len ≤ 128).
size_t WorkspaceBound(const AttentionBatch& batch, const AttentionShape& shape) {
  if (batch.max_context_len <= kMinPartitionKeys) return 0;
  const int64_t row_tiles = DecodeRowTiles(shape, KvCacheFormat::kFp16);
  const int64_t slots = int64_t{batch.num_seqs} * CeilDiv(batch.max_context_len, kMaxPartitionKeys) +
                        CeilDiv(2 * kDecodeTargetCtas, shape.num_kv_heads * row_tiles);
  return static_cast<size_t>(slots * shape.num_heads) * (shape.head_dim * sizeof(float) + sizeof(float2));
}

}  // namespace

CudaStatus RopeAndWriteKv(const __nv_bfloat16* qkv, int64_t ld_qkv, const AttentionBatch& batch,
                          const AttentionShape& shape, const float* rope_cos_sin, int32_t max_positions,
                          __half* q_out, const KvCacheLayer& cache, const KvInt4Options& int4,
                          cudaStream_t stream) {
  APEX4_CUDA_RETURN_IF_NOT_OK(CheckBatch(batch, shape));
  if (batch.num_seqs == 0 || batch.num_tokens == 0) return OkCudaStatus();
  APEX4_CUDA_RETURN_IF_NOT_OK(CheckCache(cache, shape));
  const bool quantize = cache.format == KvCacheFormat::kInt4;
  if (quantize) {
    APEX4_CUDA_CHECK_ARG(int4.key_clip_ratio > 0.0f && int4.key_clip_ratio <= 1.0f);
    APEX4_CUDA_CHECK_ARG(int4.value_clip_ratio > 0.0f && int4.value_clip_ratio <= 1.0f);
  }
  APEX4_CUDA_CHECK_ARG(qkv != nullptr && q_out != nullptr && rope_cos_sin != nullptr);
  APEX4_CUDA_CHECK_ARG(Aligned(qkv, 16) && Aligned(q_out, 16) && Aligned(rope_cos_sin, 16));
  APEX4_CUDA_CHECK_ARG(ld_qkv % 8 == 0);
  APEX4_CUDA_CHECK_ARG(ld_qkv >= int64_t{shape.num_heads + 2 * shape.num_kv_heads} * shape.head_dim);
  APEX4_CUDA_CHECK_ARG(max_positions >= batch.max_context_len);
  const attention::RopeParams params{qkv,
                                     ld_qkv,
                                     batch.query_start,
                                     batch.context_len,
                                     batch.block_tables,
                                     batch.block_table_stride,
                                     batch.num_seqs,
                                     batch.num_tokens,
                                     shape.num_heads,
                                     shape.num_kv_heads,
                                     shape.head_dim,
                                     rope_cos_sin,
                                     max_positions,
                                     q_out,
                                     static_cast<char*>(cache.k),
                                     static_cast<char*>(cache.v),
                                     cache.block_stride,
                                     quantize ? 1 : 0,
                                     int4.key_clip_ratio,
                                     int4.value_clip_ratio,
                                     quantize && int4.rotate_keys ? 1 : 0,
                                     // As kernels/cpu/hadamard_transform.cc's Normalization.
                                     1.0f / std::sqrt(static_cast<float>(shape.head_dim))};
  return attention::LaunchRopeAndWriteKv(params, stream);
}

size_t PagedAttentionWorkspaceBytes(const AttentionBatch& batch, const AttentionShape& shape) {
  if (!CheckBatch(batch, shape, /*with_arrays=*/false).ok() || batch.num_seqs == 0 || batch.num_tokens == 0) {
    return 0;
  }
  // The bound covers the plan (see WorkspaceBound); the max only guards that argument.
  return std::max(WorkspaceBound(batch, shape), std::max(MakePlan(batch, shape, KvCacheFormat::kFp16).workspace_bytes,
                                                         MakePlan(batch, shape, KvCacheFormat::kInt4).workspace_bytes));
}


CudaStatus PagedAttention(const __half* q, const KvCacheLayer& cache, const AttentionBatch& batch,
                          const AttentionShape& shape, float scale, void* workspace, __nv_bfloat16* out,
                          int64_t ld_out, cudaStream_t stream) {
  APEX4_CUDA_RETURN_IF_NOT_OK(CheckBatch(batch, shape));
  if (batch.num_seqs == 0 || batch.num_tokens == 0) return OkCudaStatus();
  APEX4_CUDA_RETURN_IF_NOT_OK(CheckCache(cache, shape));
  APEX4_CUDA_CHECK_ARG(q != nullptr && Aligned(q, 16));
  APEX4_CUDA_CHECK_ARG(out != nullptr && Aligned(out, 4));
  APEX4_CUDA_CHECK_ARG(ld_out % 2 == 0 && ld_out >= int64_t{shape.num_heads} * shape.head_dim);
  APEX4_CUDA_CHECK_ARG(std::isfinite(scale));
  const Plan plan = MakePlan(batch, shape, cache.format);
  if (plan.workspace_bytes > 0) APEX4_CUDA_CHECK_ARG(workspace != nullptr && Aligned(workspace, 16));

  attention::AttentionParams params{};
  params.q = q;
  params.k_cache = static_cast<const char*>(cache.k);
  params.v_cache = static_cast<const char*>(cache.v);
  params.block_stride = cache.block_stride;
  const bool int4 = cache.format == KvCacheFormat::kInt4;
  params.query_start = batch.query_start;
  params.context_len = batch.context_len;
  params.block_tables = batch.block_tables;
  params.block_table_stride = batch.block_table_stride;
  params.num_seqs = batch.num_seqs;
  params.num_heads = shape.num_heads;
  params.num_kv_heads = shape.num_kv_heads;
  params.group = shape.num_heads / shape.num_kv_heads;
  params.scale_log2 = static_cast<float>(scale * 1.4426950408889634);  // log2(e)
  params.out = out;
  params.ld_out = ld_out;

  if (plan.run_prefill) {
    attention::AttentionParams prefill = params;
    prefill.min_query_len = plan.run_decode ? 2 : 1;
    prefill.max_query_len = plan.max_query_len;
    prefill.num_row_tiles = plan.prefill_row_tiles;
    prefill.partition_keys = 0;
    prefill.num_partitions = 1;
    APEX4_CUDA_RETURN_IF_NOT_OK(attention::LaunchPrefillAttention(prefill, shape.head_dim, int4, stream));
  }
  if (plan.run_decode) {
    attention::AttentionParams decode = params;
    decode.min_query_len = 1;
    decode.max_query_len = 1;
    decode.num_row_tiles = plan.decode_row_tiles;
    decode.partition_keys = plan.partition_keys;
    decode.num_partitions = plan.num_partitions;
    if (plan.partition_keys > 0) {
      const size_t o_bytes = static_cast<size_t>(batch.num_seqs) * plan.num_partitions * shape.num_heads *
                             shape.head_dim * sizeof(float);
      decode.ws_o = static_cast<float*>(workspace);
      decode.ws_ml = reinterpret_cast<float2*>(static_cast<char*>(workspace) + o_bytes);
    }
    APEX4_CUDA_RETURN_IF_NOT_OK(attention::LaunchDecodeAttention(decode, shape.head_dim, int4, stream));
  }
  return OkCudaStatus();
}

}  // namespace apex4::cuda

static_assert(apex4::cuda::kKvBlockTokens == 16, "the kernels assume 16-token blocks");
static_assert(apex4::cuda::attention::kTileKeys % apex4::cuda::kKvBlockTokens == 0,
              "tiles hold whole blocks");
