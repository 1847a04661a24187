// Launcher of the RoPE + KV-cache write kernel (rope_write_kv.cuh).
#include "kernels/cuda/attention/paged_attention_kernels.h"
#include "kernels/cuda/attention/rope_write_kv.cuh"

namespace apex4::cuda::attention {

CudaStatus LaunchRopeAndWriteKv(const RopeParams& params, cudaStream_t stream) {
  const int chunks = (params.num_heads + 2 * params.num_kv_heads) * params.head_dim / 8;
  const dim3 grid(static_cast<unsigned>(params.num_tokens), (chunks + kRopeThreads - 1) / kRopeThreads);
  return LaunchProgrammatic(&RopeAndWriteKvKernel, grid, dim3(kRopeThreads), 0, stream, params);
}

}  // namespace apex4::cuda::attention
