// The launchers of paged_attention_kernels.h over the CTA emulator: the kernels' real source
// (the .cuh files) compiled as host C++, with the grids and shared memory of the CUDA launchers
// (paged_attention_kernels.cu, rope_write_kv.cu). Linked instead of the CUDA library into
// paged_attention_emulation_test, so paged_attention.cc's checks and dispatch run unchanged.
#ifndef APEX4_ATTENTION_EMULATION
#error "compile with -DAPEX4_ATTENTION_EMULATION"
#endif

#include "kernels/cuda/attention/int4_decode_attention.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"
#include "kernels/cuda/attention/rope_write_kv.cuh"
#include "kernels/cuda/attention/testing/cta_emulator.h"

namespace apex4::cuda::attention {
namespace {

template <int D, bool kDecode, bool kInt4>
CudaStatus Launch(const AttentionParams& params) {
  const dim3 grid =
      kDecode ? dim3(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions)
              : dim3(params.num_kv_heads, params.num_seqs, params.num_row_tiles);
  apex4_emu::Launch(grid, dim3(kAttentionThreads), AttentionSmemBytes(D, kInt4),
                    [&] { AttentionKernel<D, kDecode, kInt4>(params); });
  return OkCudaStatus();
}

CudaStatus LaunchReduce(const AttentionParams& params, int head_dim) {
  const dim3 grid(params.num_heads, params.num_seqs);
  if (head_dim == 64) {
    apex4_emu::Launch(grid, dim3(64), 0, [&] { AttentionReduceKernel<64>(params); });
  } else {
    apex4_emu::Launch(grid, dim3(128), 0, [&] { AttentionReduceKernel<128>(params); });
  }
  return OkCudaStatus();
}

// As on sm_90: split-KV partitions merge in their cluster up to kInt4DecodeMaxClusterPartitions,
// through the reduce kernel beyond (the fp16 kernel always takes the reduce).
template <int D>
CudaStatus LaunchInt4Decode(const AttentionParams& params) {
  const dim3 grid(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions);
  if (PartitionsFitOneCluster(params)) {
    apex4_emu::LaunchInClusters(grid, dim3(1, 1, params.num_partitions), dim3(kInt4DecodeThreads),
                                Int4DecodeSmemBytes(D), [&] { Int4DecodeAttentionKernel<D, true>(params); });
    return OkCudaStatus();
  }
  apex4_emu::Launch(grid, dim3(kInt4DecodeThreads), Int4DecodeSmemBytes(D),
                    [&] { Int4DecodeAttentionKernel<D, false>(params); });
  return params.partition_keys > 0 ? LaunchReduce(params, D) : OkCudaStatus();
}

}  // namespace

CudaStatus LaunchRopeAndWriteKv(const RopeParams& params, cudaStream_t) {
  const int chunks = (params.num_heads + 2 * params.num_kv_heads) * params.head_dim / 8;
  const dim3 grid(static_cast<unsigned>(params.num_tokens), (chunks + kRopeThreads - 1) / kRopeThreads);
  apex4_emu::Launch(grid, dim3(kRopeThreads), 0, [&] { RopeAndWriteKvKernel(params); });
  return OkCudaStatus();
}

CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t) {
  if (int4) return head_dim == 64 ? LaunchInt4Decode<64>(params) : LaunchInt4Decode<128>(params);
  if (head_dim == 64) {
    Launch<64, true, false>(params);
  } else {
    Launch<128, true, false>(params);
  }
  return params.partition_keys > 0 ? LaunchReduce(params, head_dim) : OkCudaStatus();
}

CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t) {
  if (head_dim == 64) return int4 ? Launch<64, false, true>(params) : Launch<64, false, false>(params);
  return int4 ? Launch<128, false, true>(params) : Launch<128, false, false>(params);
}

}  // namespace apex4::cuda::attention
