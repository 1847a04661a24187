// What the server does with the node profile at start-up, in one call: resolve the profile
// (read this device's, or probe), plan the engine's 4-bit layers from it, apply the plan.
// Backends: "cpu" (the CPU probe) and "cuda:<device>" (the CUDA probe on that GPU).
#ifndef APEX4_ENGINE_PLANNER_NODE_PLANNING_H_
#define APEX4_ENGINE_PLANNER_NODE_PLANNING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/inference_engine.h"
#include "engine/planner/cpu_probe.h"
#include "engine/planner/planner.h"
#include "engine/planner/profile_resolver.h"

namespace apex4 {

struct NodePlanningOptions {
  std::string profile_path;  // may be empty: probe, save nothing
  int threads = 0;           // CPU probe threads (0: all cores)
  PlannerOptions planner;  // its M buckets and default kernel are replaced by the backend's own
};

struct NodePlan {
  ResolvedProfile resolved;
  ExecutionPlan plan;
};

// The device behind an engine's backend name, as planning needs it.
struct PlanningDevice {
  DeviceIdentity identity;          // what a profile file must have been measured on
  std::vector<int64_t> m_buckets;   // the backend's batch sizes: profiled and planned
  std::string kernel;               // the W4A4 kernel the engine runs there
  // Measures the device, timing the kernels on `shapes` at m_buckets.
  std::function<absl::StatusOr<NodeProfile>(const std::vector<GemmShape>&)> probe;
};

// "cpu" (or "cpu..."): this CPU, `cpu_threads` probe threads. "cuda:<n>": GPU n, which must be
// usable (FAILED_PRECONDITION saying why not: no driver, no device, no kernels built for it).
// INVALID_ARGUMENT for a malformed device index, UNIMPLEMENTED for other backends.
absl::StatusOr<PlanningDevice> PlanningDeviceFor(const std::string& backend, int cpu_threads);

// Not thread-safe with the engine's Step: call before serving.
absl::StatusOr<NodePlan> PlanAndApply(InferenceEngine& engine,
                                      const NodePlanningOptions& options);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_NODE_PLANNING_H_
