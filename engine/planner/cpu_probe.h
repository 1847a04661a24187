// Measures the CPU as apex4_probe measures a GPU, in the same units, so that the CPU backend goes
// through the same profile -> planner path: SIMD int8 dot products stand in for tensor cores,
// SIMD FMA for CUDA cores.
#ifndef APEX4_ENGINE_PLANNER_CPU_PROBE_H_
#define APEX4_ENGINE_PLANNER_CPU_PROBE_H_

#include "engine/planner/node_profile.h"

namespace apex4 {

// Model name, core count and widest int8-dot ISA; the uuid hashes them.
DeviceIdentity CpuIdentity();

// Peak rates over `threads` threads (0: all cores). Each measurement runs about `seconds_each`.
DeviceThroughput MeasureCpuThroughput(int threads, double seconds_each = 0.1);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_CPU_PROBE_H_
