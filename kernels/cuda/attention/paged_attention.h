// Attention side of apex4's GPU LLaMA runner: rotary embedding + paged KV-cache write, and
// paged attention over the cache (decode: split-KV flash-decoding; prefill / mixed batches:
// FlashAttention-2 style tensor-core kernel). Raw device pointers, a cudaStream_t, CudaStatus
// back; no Abseil, gRPC or model knowledge. Design, dispatch and limits: kernels/cuda/README.md.
//
// Every launch is capturable in a CUDA graph: grids, shared memory and the workspace size depend
// only on (num_seqs, num_tokens, heads, head_dim, max_query_len, max_context_len), never on the
// values of the device arrays, and no call synchronises or allocates.
// Thread safety: every function is reentrant; calls on one stream run in order.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_
#define APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

// KV cache layout: per layer, a pool of blocks of kKvBlockTokens=16 tokens, for K and for V (two
// pools, or one with K and V interleaved: any base pointers and stride that keep blocks apart).
// Block b of a layer's K starts at k + b * block_stride bytes and holds, by format:
//   kFp16: [num_kv_heads][16][head_dim] halfs;
//   kInt4: [num_kv_heads][16][head_dim / 2] bytes of symmetric INT4 codes in [-7, 7] (two's
//          complement nibbles; each little-endian 32-bit word holds elements 8w..8w+7 of the row,
//          element 8w+2j in nibble j and 8w+2j+1 in nibble j+4), then [num_kv_heads][16] float
//          scales; an element is code * scale (the attention kernels keep the scales in float).
// V the same.
inline constexpr int kKvBlockTokens = 16;

enum class KvCacheFormat { kFp16, kInt4 };

// Bytes of one block of K (or of V) of one layer.
constexpr int64_t KvCacheBlockBytes(KvCacheFormat format, int num_kv_heads, int head_dim) {
  return int64_t{num_kv_heads} * kKvBlockTokens * (format == KvCacheFormat::kInt4 ? head_dim / 2 + 4 : head_dim * 2);
}

// One layer's cache. block_stride: a multiple of 16, at least KvCacheBlockBytes.
struct KvCacheLayer {
  KvCacheFormat format = KvCacheFormat::kFp16;
  void* k = nullptr;  // 16-byte aligned
  void* v = nullptr;
  int64_t block_stride = 0;  // bytes
};

// How RopeAndWriteKv fills a kInt4 cache (ignored for kFp16). Per (token, KV head):
// scale = clip_ratio * absmax / 7, code = clamp(rint(x / scale), -7, 7) — QuantizeInt4Reference
// with one group of head_dim. rotate_keys: after RoPE, q and k (every head) are multiplied by the
// normalized Walsh-Hadamard matrix of size head_dim (q·k unchanged; outliers spread before the
// keys are rounded), as engine/llama_model.cc and tools/quantizer do for a 4-bit cache.
struct KvInt4Options {
  float key_clip_ratio = 1.0f;  // (0, 1]
  float value_clip_ratio = 1.0f;
  bool rotate_keys = false;
};

// Per step, device arrays describing the batch ("varlen" layout): sequences s = 0..num_seqs-1,
// each appending query_len[s] = query_start[s+1]-query_start[s] tokens (query rows
// query_start[s]..query_start[s+1]-1 of q), its context after the append being context_len[s]
// tokens (so query row i of sequence s sits at position context_len[s]-query_len[s]+(i-query_start[s])
// and attends causally to positions 0..that position, all already in the cache).
//
// A max_query_len above num_tokens or max_context_len is tightened to them (no sequence can
// exceed either), not rejected.
// Preconditions on the device values (not checkable without a sync; violating them gives wrong
// results, never out-of-bounds accesses of the cache beyond what the block tables name):
// 0 <= query_len[s] <= max_query_len, query_len[s] <= context_len[s] <= max_context_len,
// query_start[num_seqs] <= num_tokens, and block_tables[s][0 .. ceil(context_len[s]/16)) are
// valid block ids. Table entries past that are never read. Rows of q past query_start[num_seqs]
// are left alone (not written by RopeAndWriteKv, their output rows untouched by PagedAttention).
struct AttentionBatch {
  const int32_t* query_start = nullptr;   // device [num_seqs + 1]
  const int32_t* context_len = nullptr;   // device [num_seqs]
  const int32_t* block_tables = nullptr;  // device [num_seqs, block_table_stride] block ids
  int32_t block_table_stride = 0;
  int32_t num_seqs = 0;
  int64_t num_tokens = 0;                 // rows of q = query_start[num_seqs]
  // Host-side upper bounds that size the grids. Grids depend ONLY on (num_seqs, num_tokens,
  // heads, these bounds), never on the device arrays' values, so a CUDA graph captured once
  // stays valid while lengths change below the bounds (decode steps are graph-replayed).
  int32_t max_query_len = 0;
  int32_t max_context_len = 0;
};

struct AttentionShape { int num_heads, num_kv_heads, head_dim; };  // head_dim 64 or 128; GQA

// Rotary embedding + cache write. qkv: bf16 [num_tokens, ld_qkv] from the fused QKV projection,
// columns [0, H*D) = q, [H*D, H*D+KV*D) = k, then v. Applies llama.cpp's "normal" RoPE (pairs
// (2i, 2i+1) of each head rotate by angle pos * theta^(-2i/D)) to q and k, using a cos/sin table
// rope_cos_sin (device float [max_positions][D/2][2], built on the host in double as the CPU
// engine does — see engine/llama_ops.cc ApplyRope), writes rotated q to q_out (fp16 [num_tokens,
// H*D]) and rotated k and v into the cache slot of each token's position (fp16, or INT4 as
// `int4` says, from the float values).
//
// Needs: qkv, q_out and rope_cos_sin 16-byte aligned, ld_qkv % 8 == 0 and ld_qkv >= (H + 2*KV)*D,
// the cache as KvCacheLayer says, max_positions >= max_context_len, block_table_stride*16 >=
// max_context_len. A token whose position falls outside [0, max_positions) (a violated
// precondition) is skipped.
CudaStatus RopeAndWriteKv(const __nv_bfloat16* qkv, int64_t ld_qkv, const AttentionBatch& batch,
    const AttentionShape& shape, const float* rope_cos_sin, int32_t max_positions,
    __half* q_out, const KvCacheLayer& cache, const KvInt4Options& int4, cudaStream_t stream);

// out[t, h, :] = softmax(q[t,h]·K^T * scale over the causal context) · V, written as bf16
// [num_tokens, H*D] (row stride ld_out). workspace: for split-KV partial results;
// size from PagedAttentionWorkspaceBytes(batch bounds) — must also depend only on the bounds.
//
// Needs: q (fp16 [num_tokens, H*D], contiguous) 16-byte aligned; the cache as KvCacheLayer says;
// out 4-byte aligned, ld_out even and >= H*D; workspace 16-byte
// aligned and non-null when its size is non-zero (it needs no zeroing). The size ignores the
// device arrays (they may be null when sizing), num_tokens and max_query_len, and never decreases
// as num_seqs or max_context_len grow: sizing once for the largest bounds covers every launch
// below them. Columns of out past
// H*D are not written. Softmax and both products accumulate in fp32; the probabilities enter
// the P·V product as fp16 (FlashAttention-2 style).
//
// Launched with programmatic dependent launch, the INT4-cache decode kernel reads the batch's
// device arrays and the cache rows of positions before each sequence's newest token before it
// waits for the kernel launched just before it (RopeAndWriteKv in the engine): that kernel may
// write q and the newest token's K/V, nothing else PagedAttention reads.
size_t PagedAttentionWorkspaceBytes(const AttentionBatch& batch, const AttentionShape& shape);
CudaStatus PagedAttention(const __half* q, const KvCacheLayer& cache, const AttentionBatch& batch,
    const AttentionShape& shape, float scale, void* workspace, __nv_bfloat16* out, int64_t ld_out,
    cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_ATTENTION_PAGED_ATTENTION_H_
