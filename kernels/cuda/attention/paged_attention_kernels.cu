// Launchers of the attention kernels (paged_attention_kernels.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>

#include "kernels/cuda/attention/int4_decode_attention.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.cuh"
#include "kernels/cuda/attention/paged_attention_kernels.h"
#include "kernels/cuda/programmatic_launch.cuh"

namespace apex4::cuda::attention {
namespace {

static_assert(Int4StagingBytes(128) == 2 * kTileKeys * 128 / 32 * 16 + 2 * kTileKeys * 4 &&
                  Int4StagingBytes(64) == 2 * kTileKeys * 64 / 32 * 16 + 2 * kTileKeys * 4,
              "AttentionKernel's kStagingBytes");
static_assert(Int4DecodeStageBytes(128) == 2 * 32 * 64 + 2 * 32 * 4 && Int4DecodeStageBytes(64) == 2 * 32 * 32 + 2 * 32 * 4 &&
                  Int4DecodeWarpBytes(128) == kInt4DecodeStages * Int4DecodeStageBytes(128) + 256,
              "Int4DecodeAttentionKernel's kStageBytes and kWarpBytes");

// Opts the kernel into its dynamic shared memory (64 KB for D = 128, 66 KB for INT4 prefill)
// once per device, so that steady-state launches (and CUDA graph captures) make no attribute calls.
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

template <int D, bool kDecode, bool kInt4>
CudaStatus Launch(const AttentionParams& params, cudaStream_t stream) {
  auto* kernel = &AttentionKernel<D, kDecode, kInt4>;
  constexpr int kSmemBytes = AttentionSmemBytes(D, kInt4);
  static std::atomic<uint64_t> configured{0};
  APEX4_CUDA_RETURN_IF_NOT_OK(ConfigureOnce(kernel, kSmemBytes, &configured));
  const dim3 grid =
      kDecode ? dim3(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions)
              : dim3(params.num_kv_heads, params.num_seqs, params.num_row_tiles);
  return LaunchProgrammatic(kernel, grid, dim3(kAttentionThreads), kSmemBytes, stream, params);
}

CudaStatus LaunchReduce(const AttentionParams& params, int head_dim, cudaStream_t stream) {
  const dim3 grid(params.num_heads, params.num_seqs);
  return head_dim == 64 ? LaunchProgrammatic(&AttentionReduceKernel<64>, grid, dim3(64), 0, stream, params)
                        : LaunchProgrammatic(&AttentionReduceKernel<128>, grid, dim3(128), 0, stream, params);
}

// Split-KV partitions merge inside their cluster on sm_90 (up to the portable cluster size of 8),
// through the workspace and the reduce kernel elsewhere.
bool MergesInCluster(const AttentionParams& params) {
  int major = 0;
  return PartitionsFitOneCluster(params) && CurrentDeviceMajor(&major).ok() && major >= 9;
}

template <int D>
CudaStatus LaunchInt4Decode(const AttentionParams& params, cudaStream_t stream) {
  constexpr int kSmemBytes = Int4DecodeSmemBytes(D);
  const dim3 grid(params.num_kv_heads * params.num_row_tiles, params.num_seqs, params.num_partitions);
  if (MergesInCluster(params)) {
    auto* kernel = &Int4DecodeAttentionKernel<D, true>;
    static std::atomic<uint64_t> configured{0};
    APEX4_CUDA_RETURN_IF_NOT_OK(ConfigureOnce(kernel, kSmemBytes, &configured));
    return LaunchProgrammaticInClusters(kernel, grid, dim3(kInt4DecodeThreads), kSmemBytes, stream,
                                        dim3(1, 1, params.num_partitions), params);
  }
  auto* kernel = &Int4DecodeAttentionKernel<D, false>;
  static std::atomic<uint64_t> configured{0};
  APEX4_CUDA_RETURN_IF_NOT_OK(ConfigureOnce(kernel, kSmemBytes, &configured));
  APEX4_CUDA_RETURN_IF_NOT_OK(
      LaunchProgrammatic(kernel, grid, dim3(kInt4DecodeThreads), kSmemBytes, stream, params));
  return params.partition_keys > 0 ? LaunchReduce(params, D, stream) : OkCudaStatus();
}

}  // namespace

CudaStatus LaunchDecodeAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t stream) {
  if (int4) return head_dim == 64 ? LaunchInt4Decode<64>(params, stream) : LaunchInt4Decode<128>(params, stream);
  const CudaStatus decoded =
      head_dim == 64 ? Launch<64, true, false>(params, stream) : Launch<128, true, false>(params, stream);
  APEX4_CUDA_RETURN_IF_NOT_OK(decoded);
  return params.partition_keys > 0 ? LaunchReduce(params, head_dim, stream) : OkCudaStatus();
}

CudaStatus LaunchPrefillAttention(const AttentionParams& params, int head_dim, bool int4, cudaStream_t stream) {
  if (head_dim == 64) {
    return int4 ? Launch<64, false, true>(params, stream) : Launch<64, false, false>(params, stream);
  }
  return int4 ? Launch<128, false, true>(params, stream) : Launch<128, false, false>(params, stream);
}

}  // namespace apex4::cuda::attention
