// Measures the CPU as apex4_probe measures a GPU, in the same units, so that the CPU backend goes
// through the same profile -> planner path: SIMD int8 dot products stand in for tensor cores,
// SIMD FMA for CUDA cores.
#ifndef APEX4_ENGINE_PLANNER_CPU_PROBE_H_
#define APEX4_ENGINE_PLANNER_CPU_PROBE_H_

#include <cstdint>
#include <vector>

#include "engine/planner/node_profile.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// Model name, core count and widest int8-dot ISA; the uuid hashes them.
DeviceIdentity CpuIdentity();

// Peak rates over `threads` threads (0: all cores). Each measurement runs about `seconds_each`.
DeviceThroughput MeasureCpuThroughput(int threads, double seconds_each = 0.1);

// One linear layer's GEMM: Y[m, n] = X[m, k] W[n, k]^T, k a multiple of 128.
struct GemmShape {
  int64_t n = 0, k = 0;
};

// Times the CPU W4A4 kernels this machine supports (AVX2, AVX-512 VNNI), per-channel and
// group-128, on random operands of each shape and M bucket: the timings the planner prefers over
// its cost model. About 20 ms per (shape, M, ISA, granularity).
std::vector<KernelTiming> TimeCpuW4A4Kernels(const std::vector<GemmShape>& shapes,
                                             const std::vector<int64_t>& m_buckets,
                                             ThreadPool* pool);

// The whole CPU probe: identity, rates over `threads` threads (0: all cores) and kernel timings
// on `shapes`. Bounded: about 0.6 s plus 20 ms per timing.
NodeProfile ProbeCpuNode(const std::vector<GemmShape>& shapes,
                         const std::vector<int64_t>& m_buckets, int threads);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_CPU_PROBE_H_
