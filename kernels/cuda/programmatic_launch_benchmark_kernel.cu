// The kernel programmatic_launch_benchmark chains: it waits for the kernel before it (PDL),
// lets the next one launch, then keeps its CTAs busy for work_ns (thread 0 spins on the global
// timer; the others wait at the barrier), as a decode-step kernel of that length would.
#include "kernels/cuda/programmatic_launch_benchmark_kernel.h"

#include "kernels/cuda/programmatic_launch.cuh"

namespace apex4::cuda {
namespace {

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void PdlChainKernel(int64_t work_ns) {
  StartAfterPrerequisiteGrids();
  if (threadIdx.x == 0 && work_ns > 0) {
    const uint64_t start = GlobalTimerNs();
    while (GlobalTimerNs() - start < static_cast<uint64_t>(work_ns)) {
    }
  }
  __syncthreads();
}

}  // namespace

CudaStatus LaunchPdlChainKernel(dim3 grid, dim3 cluster, int64_t work_ns, cudaStream_t stream) {
  return LaunchProgrammaticInClusters(&PdlChainKernel, grid, dim3(128), 0, stream, cluster, work_ns);
}

}  // namespace apex4::cuda
