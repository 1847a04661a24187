#include "engine/planner/node_planning.h"

#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/planner/cuda_probe.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

// CPU batches stay small (a few concurrent streams, prefill chunks of at most a few hundred
// tokens), and timing larger ones would slow every start-up that has to probe.
const std::vector<int64_t> kCpuMBuckets = {1, 8, 64, 256};
constexpr char kCpuKernel[] = "cpu_w4a4";
constexpr char kCudaPrefix[] = "cuda:";

}  // namespace

absl::StatusOr<PlanningDevice> PlanningDeviceFor(const std::string& backend, int cpu_threads) {
  PlanningDevice device;
  if (absl::StartsWith(backend, "cpu")) {
    device.identity = CpuIdentity();
    device.m_buckets = kCpuMBuckets;
    device.kernel = kCpuKernel;
    device.probe = [buckets = device.m_buckets, cpu_threads](
                       const std::vector<GemmShape>& shapes) -> absl::StatusOr<NodeProfile> {
      return ProbeCpuNode(shapes, buckets, cpu_threads);
    };
    return device;
  }
  if (absl::StartsWith(backend, kCudaPrefix)) {
    int index = -1;
    const absl::string_view digits = absl::string_view(backend).substr(sizeof(kCudaPrefix) - 1);
    if (!absl::SimpleAtoi(digits, &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("backend '", backend, "' does not name a CUDA device (cuda:<index>)"));
    }
    ASSIGN_OR_RETURN(const CudaDeviceFacts facts, FindUsableCudaDevice(index));
    device.identity = CudaIdentity(facts);
    device.m_buckets = CudaMBuckets();
    device.kernel = CudaW4A4KernelFor(facts.compute_capability);
    device.probe = [buckets = device.m_buckets, index](
                       const std::vector<GemmShape>& shapes) -> absl::StatusOr<NodeProfile> {
      return ProbeCudaNode(index, shapes, buckets);
    };
    return device;
  }
  return absl::UnimplementedError(
      absl::StrCat("node planning for backend '", backend, "' is not implemented"));
}

absl::StatusOr<NodePlan> PlanAndApply(InferenceEngine& engine,
                                      const NodePlanningOptions& options) {
  ASSIGN_OR_RETURN(const PlanningDevice device,
                   PlanningDeviceFor(engine.info().backend, options.threads));
  const std::vector<LayerToPlan> layers = engine.PlannableLayers();
  std::set<std::pair<int64_t, int64_t>> distinct;
  for (const LayerToPlan& layer : layers) distinct.insert({layer.n, layer.k});
  std::vector<GemmShape> shapes;
  for (const auto& [n, k] : distinct) shapes.push_back({n, k});

  PlannerOptions planner = options.planner;
  planner.m_buckets = device.m_buckets;
  planner.default_kernel = device.kernel;

  NodePlan result;
  ASSIGN_OR_RETURN(result.resolved,
                   ResolveNodeProfile(options.profile_path, device.identity,
                                      [&]() { return device.probe(shapes); }));
  // A GPU profile also times kernels the engine does not run there (the portable mma.sync
  // kernel on Hopper): plan with the engine's own kernel, so that predictions and the kernel the
  // plan names are what will run. CPU profiles time each ISA the engine may pick: keep them all.
  NodeProfile planning_profile = result.resolved.profile;
  if (device.identity.backend == "cuda") {
    std::vector<KernelTiming> own;
    for (const KernelTiming& timing : planning_profile.timings) {
      if (timing.kernel == device.kernel) own.push_back(timing);
    }
    planning_profile.timings = std::move(own);
  }
  ASSIGN_OR_RETURN(result.plan, PlanLayers(planning_profile, layers, planner));
  RETURN_IF_ERROR(engine.ApplyPlan(result.plan));
  return result;
}

}  // namespace apex4
