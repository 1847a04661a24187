// What the server does with the node profile at start-up, in one call: resolve the profile
// (read this device's, or probe), plan the engine's 4-bit layers from it, apply the plan.
#ifndef APEX4_ENGINE_PLANNER_NODE_PLANNING_H_
#define APEX4_ENGINE_PLANNER_NODE_PLANNING_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/inference_engine.h"
#include "engine/planner/planner.h"
#include "engine/planner/profile_resolver.h"

namespace apex4 {

struct NodePlanningOptions {
  std::string profile_path;  // may be empty: probe, save nothing
  int threads = 0;           // CPU probe threads (0: all cores)
  PlannerOptions planner;  // its M buckets are replaced by the backend's own
};

struct NodePlan {
  ResolvedProfile resolved;
  ExecutionPlan plan;
};

// Not thread-safe with the engine's Step: call before serving.
absl::StatusOr<NodePlan> PlanAndApply(InferenceEngine& engine,
                                      const NodePlanningOptions& options);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_NODE_PLANNING_H_
