// See programmatic_launch_benchmark_kernel.cu.
#ifndef APEX4_KERNELS_CUDA_PROGRAMMATIC_LAUNCH_BENCHMARK_KERNEL_H_
#define APEX4_KERNELS_CUDA_PROGRAMMATIC_LAUNCH_BENCHMARK_KERNEL_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

// One PDL launch (LaunchProgrammaticInClusters) of a kernel of 128-thread CTAs that busies each
// CTA for work_ns after its prerequisite wait.
CudaStatus LaunchPdlChainKernel(dim3 grid, dim3 cluster, int64_t work_ns, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_PROGRAMMATIC_LAUNCH_BENCHMARK_KERNEL_H_
