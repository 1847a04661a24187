// Programmatic dependent launch (PDL, sm_90+): a kernel launched with LaunchProgrammatic may start
// while the kernel before it in the stream still runs, once every CTA of that kernel has called
// AllowDependentsToLaunch() or exited. Before it reads anything earlier kernels wrote (or writes
// anything they read) it must call WaitForPrerequisiteGrids(), which returns once they have
// completed and their writes are visible; it must call it even if it reads nothing of theirs, so
// that its own completion still implies theirs for the kernels after it. Work that touches only
// constant data (a GEMM's weights) may run before the wait: that is the point of PDL in decode,
// where every kernel is a few microseconds and launch gaps are a large part of a step.
// Both device calls are no-ops for kernels launched without PDL; the attribute is set only on
// devices that support it (compute capability 9.0+).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

__device__ __forceinline__ void WaitForPrerequisiteGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void AllowDependentsToLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The start of a kernel with nothing to do before the wait: wait, then let the next kernel
// launch (its CTAs become resident and wait in turn while this one runs).
__device__ __forceinline__ void StartAfterPrerequisiteGrids() {
  WaitForPrerequisiteGrids();
  AllowDependentsToLaunch();
}

// The current device's compute capability major (9 and up: PDL and thread block clusters).
inline CudaStatus CurrentDeviceMajor(int* major) {
  int device = 0;
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  APEX4_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, device));
  return OkCudaStatus();
}

// A PDL launch (plain on devices before sm_90) whose CTAs form clusters of `cluster` CTAs
// ((1, 1, 1): no clusters; more needs sm_90, and each grid dimension a multiple of the cluster's).
template <typename... KernelArgs, typename... Args>
CudaStatus LaunchProgrammaticInClusters(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem_bytes,
                                        cudaStream_t stream, dim3 cluster, Args&&... args) {
  int major = 0;
  APEX4_CUDA_RETURN_IF_NOT_OK(CurrentDeviceMajor(&major));
  cudaLaunchAttribute attrs[2]{};
  unsigned count = 0;
  if (major >= 9) {
    attrs[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attrs[count].id = cudaLaunchAttributeClusterDimension;
    attrs[count++].val.clusterDim = {cluster.x, cluster.y, cluster.z};
  }
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = attrs;
  config.numAttrs = count;
  APEX4_CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
  return OkCudaStatus();
}

template <typename... KernelArgs, typename... Args>
CudaStatus LaunchProgrammatic(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem_bytes,
                              cudaStream_t stream, Args&&... args) {
  return LaunchProgrammaticInClusters(kernel, grid, block, smem_bytes, stream, dim3(1, 1, 1),
                                      std::forward<Args>(args)...);
}

}  // namespace apex4::cuda
