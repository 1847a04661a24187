// The APEX4 planner: from a node's profile (measured rates, ρ, kernel timings) and the
// quantizer's per-layer sensitivity, choose for every linear layer its weight/activation
// granularity and, per batch-size bucket, the kernel that runs it, and say why.
//
// APEX4's finding drives the rule: group-128 keeps accuracy but costs CUDA-core work per group
// (int32 -> float, scale, accumulate) that grows with ρ. Where the node can hide that work, every
// layer takes group-128; where it cannot, only the layers whose per-channel error is much worse
// keep group-128 and the rest run per-channel (a mixed plan).
#ifndef APEX4_ENGINE_PLANNER_PLANNER_H_
#define APEX4_ENGINE_PLANNER_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/planner/node_profile.h"

namespace apex4 {

inline constexpr char kPerChannel[] = "per_channel";
inline constexpr char kGroup128[] = "g128";

// A quantized linear layer as the checkpoint describes it.
struct LayerToPlan {
  std::string name;        // "blk.3.ffn_down"
  int64_t n = 0, k = 0;    // Y[m, n] = X[m, k] W[n, k]^T (k padded)
  bool has_per_channel = false;
  bool has_g128 = false;
  // Relative output error of per-channel over group-128 on calibration data (>= 1 typically);
  // 0 when the checkpoint recorded none.
  double per_channel_over_g128 = 0;
};

struct PlannerOptions {
  std::vector<int64_t> m_buckets = {1, 16, 64, 256, 1024, 4096};
  // Group-128 is taken when it costs at most this factor over per-channel (geometric mean over
  // the buckets).
  double max_g128_slowdown = 1.10;
  // Layers whose per-channel error is at least this factor above group-128 keep group-128.
  double sensitive_ratio = 1.5;
  // Kernel name reported for estimates where the profile timed nothing comparable.
  std::string default_kernel = "w4a4";
};

struct BucketChoice {
  int64_t m = 0;
  std::string kernel;
  double predicted_seconds = 0;
  bool measured = false;   // from a timing at this (n, k) rather than the cost model
};

struct LayerPlanDecision {
  std::string name;
  std::string granularity;     // kPerChannel or kGroup128
  double g128_slowdown = 0;    // predicted cost of group-128 over per-channel on this node
  std::vector<BucketChoice> buckets;
  std::string reason;
};

struct ExecutionPlan {
  double rho = 0;
  std::vector<LayerPlanDecision> layers;
};

// Predicted time of `granularity` at (m, n, k): the fastest timed kernel of that granularity at
// this (n, k), scaled from the nearest timed m; otherwise APEX4's cost model over the measured
// rates: max(bytes / bandwidth, matrix work / matrix rate + dequantization / FP32 rate).
BucketChoice PredictBucket(const NodeProfile& profile, const std::string& granularity,
                           int64_t m, int64_t n, int64_t k, const std::string& default_kernel);

absl::StatusOr<ExecutionPlan> PlanLayers(const NodeProfile& profile,
                                         const std::vector<LayerToPlan>& layers,
                                         const PlannerOptions& options = {});

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_PLANNER_H_
