// Times apex4's CUDA W4A4 GEMM backends (Hopper wgmma, portable INT4 mma.sync) at each
// granularity on the served model's GEMM shapes and M buckets, for the node profile.
#ifndef APEX4_ENGINE_PLANNER_CUDA_KERNEL_TIMINGS_H_
#define APEX4_ENGINE_PLANNER_CUDA_KERNEL_TIMINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/planner/cpu_probe.h"
#include "engine/planner/node_profile.h"

namespace apex4 {

// Kernel names as they appear in profiles and plans.
inline constexpr char kSm90KernelName[] = "sm90_w4a4_gemm";
inline constexpr char kPortableKernelName[] = "sm80_w4a4_gemm_mma_s4";

// Appends one timing per (shape, granularity, backend built for this device, M) to `timings`:
// the median over `repeats` launches of random operands (never zeros). Shapes need n and k
// multiples of 128. Returns false with `error` (statement, file, line) on a CUDA failure.
bool TimeCudaW4A4Kernels(int device, const std::vector<GemmShape>& shapes,
                         const std::vector<int64_t>& m_buckets, int repeats,
                         std::vector<KernelTiming>* timings, std::string* error);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_CUDA_KERNEL_TIMINGS_H_
