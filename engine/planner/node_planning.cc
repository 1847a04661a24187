#include "engine/planner/node_planning.h"

#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/planner/cpu_probe.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

// CPU batches stay small (a few concurrent streams, prefill chunks of at most a few hundred
// tokens), and timing larger ones would slow every start-up that has to probe.
const std::vector<int64_t> kCpuMBuckets = {1, 8, 64, 256};

}  // namespace

absl::StatusOr<NodePlan> PlanAndApply(InferenceEngine& engine,
                                      const NodePlanningOptions& options) {
  const std::string& backend = engine.info().backend;
  if (!absl::StartsWith(backend, "cpu")) {
    return absl::UnimplementedError(
        absl::StrCat("node planning for backend '", backend, "' is not implemented"));
  }
  const std::vector<LayerToPlan> layers = engine.PlannableLayers();
  std::set<std::pair<int64_t, int64_t>> distinct;
  for (const LayerToPlan& layer : layers) distinct.insert({layer.n, layer.k});
  std::vector<GemmShape> shapes;
  for (const auto& [n, k] : distinct) shapes.push_back({n, k});

  PlannerOptions planner = options.planner;
  planner.m_buckets = kCpuMBuckets;
  planner.default_kernel = "cpu_w4a4";

  NodePlan result;
  ASSIGN_OR_RETURN(result.resolved,
                   ResolveNodeProfile(options.profile_path, CpuIdentity(),
                                      [&]() -> absl::StatusOr<NodeProfile> {
                                        return ProbeCpuNode(shapes, planner.m_buckets,
                                                            options.threads);
                                      }));
  ASSIGN_OR_RETURN(result.plan, PlanLayers(result.resolved.profile, layers, planner));
  RETURN_IF_ERROR(engine.ApplyPlan(result.plan));
  return result;
}

}  // namespace apex4
