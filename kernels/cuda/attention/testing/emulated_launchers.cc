// The launchers of paged_attention_kernels.h over the CTA emulator: the kernels' real source
// (the .cuh files) compiled as host C++, with the grids and shared memory of the CUDA launchers
// (paged_attention_kernels.cu, rope_write_kv.cu). Linked instead of the CUDA library into
// paged_attention_emulation_test, so paged_attention.cc's checks and dispatch run unchanged.
#ifndef APEX4_ATTENTION_EMULATION
#error "compile with -DAPEX4_ATTENTION_EMULATION"
#endif

#include "kernels/cuda/attention/paged_attention_kernels.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"
#include "kernels/cuda/attention/rope_write_kv.cuh"
#include "kernels/cuda/attention/testing/cta_emulator.h"

namespace apex4::cuda::attention {
namespace {

template <int D, bool kDecode>
CudaStatus Launch(const AttentionParams& params) {
  const dim3 grid =
      kDecode ? dim3(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions)
              : dim3(params.num_kv_heads, params.num_seqs, params.num_row_tiles);
  apex4_emu::Launch(grid, dim3(kAttentionThreads), AttentionSmemBytes(D),
                    [&] { AttentionKernel<D, kDecode>(params); });
  return OkCudaStatus();
}

}  // namespace

CudaStatus LaunchRopeAndWriteKv(const RopeParams& params, cudaStream_t) {
  const int chunks = (params.num_heads + 2 * params.num_kv_heads) * params.head_dim / 8;
  const dim3 grid(static_cast<unsigned>(params.num_tokens), (chunks + kRopeThreads - 1) / kRopeThreads);
  apex4_emu::Launch(grid, dim3(kRopeThreads), 0, [&] { RopeAndWriteKvKernel(params); });
  return OkCudaStatus();
}

CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, cudaStream_t) {
  return head_dim == 64 ? Launch<64, true>(params) : Launch<128, true>(params);
}

CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, cudaStream_t) {
  return head_dim == 64 ? Launch<64, false>(params) : Launch<128, false>(params);
}

CudaStatus LaunchAttentionReduce(const AttentionParams& params, int head_dim, cudaStream_t) {
  const dim3 grid(params.num_heads, params.num_seqs);
  if (head_dim == 64) {
    apex4_emu::Launch(grid, dim3(64), 0, [&] { AttentionReduceKernel<64>(params); });
  } else {
    apex4_emu::Launch(grid, dim3(128), 0, [&] { AttentionReduceKernel<128>(params); });
  }
  return OkCudaStatus();
}

}  // namespace apex4::cuda::attention
