// The node probe on a CUDA GPU, as apex4_probe and the server's start-up planning run it: the
// device's identity (name, UUID, driver), its tensor-core and CUDA-core rates
// (cuda_throughput.h) and the W4A4 kernels timed on the served model's GEMM shapes
// (cuda_kernel_timings.h), in the profile format of node_profile.h.
#ifndef APEX4_ENGINE_PLANNER_CUDA_PROBE_H_
#define APEX4_ENGINE_PLANNER_CUDA_PROBE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/planner/cpu_probe.h"
#include "engine/planner/cuda_throughput.h"
#include "engine/planner/node_profile.h"

namespace apex4 {

// GEMM M buckets the GPU profile times and the planner plans for: decode (1), small and large
// decode batches, prefill chunks.
inline const std::vector<int64_t>& CudaMBuckets() {
  static const std::vector<int64_t> buckets = {1, 16, 64, 256, 1024, 4096};
  return buckets;
}

// Device `device` when this binary can run on it: present, compute capability 8.0 or newer, and
// a kernel image built for it (third_party/cuda.bzl's architectures, or APEX4_CUDA_ARCHS).
// FAILED_PRECONDITION otherwise, saying why (no driver, no device, no image for sm_XY);
// INVALID_ARGUMENT for a negative index.
absl::StatusOr<CudaDeviceFacts> FindUsableCudaDevice(int device);

// The profile identity of a usable device: {"cuda", name, uuid, driver}.
DeviceIdentity CudaIdentity(const CudaDeviceFacts& facts);

// The W4A4 kernel the engines run on a device of this compute capability (sm_90: the wgmma
// kernel; sm_80/86/89: the portable mma.sync one), as named in profiles and plans.
std::string CudaW4A4KernelFor(int compute_capability);

// The whole CUDA probe of `device`: identity, rates and `repeats` launches per kernel timing on
// `shapes` at `m_buckets`. About 3 s plus a few launches per (shape, M, kernel, granularity).
// FAILED_PRECONDITION when the device is not usable, UNAVAILABLE on a CUDA failure.
absl::StatusOr<NodeProfile> ProbeCudaNode(int device, const std::vector<GemmShape>& shapes,
                                          const std::vector<int64_t>& m_buckets, int repeats = 5);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_CUDA_PROBE_H_
