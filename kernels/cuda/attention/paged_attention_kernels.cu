// Launchers of the attention kernels (paged_attention_kernels.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>

#include "kernels/cuda/attention/paged_attention_kernels.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"

namespace apex4::cuda::attention {
namespace {

// Opts the kernel into its dynamic shared memory (64 KB for D = 128) once per device, so that
// steady-state launches (and CUDA graph captures) make no attribute calls.
template <typename Kernel>
CudaStatus ConfigureOnce(Kernel* kernel, int smem_bytes, std::atomic<uint64_t>* configured) {
  int device = 0;
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (configured->load(std::memory_order_acquire) & bit) != 0) return OkCudaStatus();
  APEX4_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  // Most shared memory, least L1: the tiles bypass L1 (cp.async.cg); 3 CTAs × 64 KB fit on sm_90.
  APEX4_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                                  cudaSharedmemCarveoutMaxShared));
  configured->fetch_or(bit, std::memory_order_release);
  return OkCudaStatus();
}

template <int D, bool kDecode>
CudaStatus Launch(const AttentionParams& params, cudaStream_t stream) {
  auto* kernel = &AttentionKernel<D, kDecode>;
  constexpr int kSmemBytes = AttentionSmemBytes(D);
  static std::atomic<uint64_t> configured{0};
  APEX4_CUDA_RETURN_IF_NOT_OK(ConfigureOnce(kernel, kSmemBytes, &configured));
  const dim3 grid =
      kDecode ? dim3(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions)
              : dim3(params.num_kv_heads, params.num_seqs, params.num_row_tiles);
  return LaunchProgrammatic(kernel, grid, dim3(kAttentionThreads), kSmemBytes, stream, params);
}

}  // namespace

CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, cudaStream_t stream) {
  return head_dim == 64 ? Launch<64, true>(params, stream) : Launch<128, true>(params, stream);
}

CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, cudaStream_t stream) {
  return head_dim == 64 ? Launch<64, false>(params, stream) : Launch<128, false>(params, stream);
}

CudaStatus LaunchAttentionReduce(const AttentionParams& params, int head_dim, cudaStream_t stream) {
  const dim3 grid(params.num_heads, params.num_seqs);
  return head_dim == 64 ? LaunchProgrammatic(&AttentionReduceKernel<64>, grid, dim3(64), 0, stream, params)
                        : LaunchProgrammatic(&AttentionReduceKernel<128>, grid, dim3(128), 0, stream, params);
}

}  // namespace apex4::cuda::attention
