#include "engine/planner/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/w4a4_format.h"

namespace apex4 {
namespace {

// CUDA-core operations per (output element, K-group) to fold an int32 partial into the float
// accumulator: int->float conversion, scale multiply, add.
constexpr double kDequantOpsPerGroup = 3.0;

double CostModelSeconds(const NodeProfile& p, const std::string& granularity, int64_t m,
                        int64_t n, int64_t k) {
  const int64_t group = granularity == kGroup128 ? kGroupSize128 : k;
  const double groups = static_cast<double>(k) / group;
  const double bytes = n * k / 2.0 + m * k / 2.0 + 2.0 * m * n +   // int4 operands, 16-bit out
                       4.0 * groups * (n + m);                         // float scales
  const double matrix_rate = std::max(p.throughput.matrix_int4_ops, p.throughput.matrix_int8_ops);
  const double matrix_seconds = matrix_rate > 0 ? 2.0 * m * n * k / matrix_rate : 0.0;
  const double dequant_seconds =
      kDequantOpsPerGroup * m * n * groups / p.throughput.fp32_fma_flops;
  return std::max(bytes / p.throughput.memory_bytes_per_s, matrix_seconds + dequant_seconds);
}

}  // namespace

BucketChoice PredictBucket(const NodeProfile& profile, const std::string& granularity,
                           int64_t m, int64_t n, int64_t k, const std::string& default_kernel) {
  // Per kernel, the timing at this (n, k) whose m is nearest (in log space) to the bucket.
  BucketChoice best{m, default_kernel, std::numeric_limits<double>::infinity(), false};
  for (const KernelTiming& t : profile.timings) {
    if (t.granularity != granularity || t.n != n || t.k != k) continue;
    double nearest_distance = std::numeric_limits<double>::infinity();
    const KernelTiming* nearest = nullptr;
    for (const KernelTiming& u : profile.timings) {
      if (u.kernel != t.kernel || u.granularity != granularity || u.n != n || u.k != k) continue;
      const double distance = std::fabs(std::log(double(u.m) / m));
      if (distance < nearest_distance) nearest_distance = distance, nearest = &u;
    }
    // Above the timed m the work grows linearly; below it the kernel is bound by the weights.
    const double seconds = nearest->seconds * std::max(1.0, double(m) / nearest->m);
    if (seconds < best.predicted_seconds) {
      best = {m, t.kernel, seconds, true};
    }
  }
  if (!best.measured) best.predicted_seconds = CostModelSeconds(profile, granularity, m, n, k);
  return best;
}

absl::StatusOr<ExecutionPlan> PlanLayers(const NodeProfile& profile,
                                         const std::vector<LayerToPlan>& layers,
                                         const PlannerOptions& options) {
  if (options.m_buckets.empty()) return absl::InvalidArgumentError("planner: no M buckets");
  ExecutionPlan plan;
  plan.rho = profile.rho();
  for (const LayerToPlan& layer : layers) {
    if (!layer.has_per_channel && !layer.has_g128) {
      return absl::InvalidArgumentError(absl::StrCat("planner: layer ", layer.name,
                                                     " has no quantized variant"));
    }
    if (layer.n <= 0 || layer.k <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("planner: layer ", layer.name,
                                                     " has a non-positive shape"));
    }
    LayerPlanDecision decision;
    decision.name = layer.name;
    std::vector<BucketChoice> per_channel, g128;
    double log_slowdown = 0;
    for (int64_t m : options.m_buckets) {
      per_channel.push_back(
          PredictBucket(profile, kPerChannel, m, layer.n, layer.k, options.default_kernel));
      g128.push_back(PredictBucket(profile, kGroup128, m, layer.n, layer.k,
                                   options.default_kernel));
      log_slowdown += std::log(g128.back().predicted_seconds /
                               per_channel.back().predicted_seconds);
    }
    decision.g128_slowdown = std::exp(log_slowdown / options.m_buckets.size());
    const std::string cost = absl::StrFormat("rho=%.1f: group-128 predicted %.2fx per-channel",
                                             plan.rho, decision.g128_slowdown);
    if (!layer.has_per_channel || !layer.has_g128) {
      decision.granularity = layer.has_g128 ? kGroup128 : kPerChannel;
      decision.reason = absl::StrCat("only ", decision.granularity, " in the checkpoint");
    } else if (decision.g128_slowdown <= options.max_g128_slowdown) {
      decision.granularity = kGroup128;
      decision.reason = absl::StrCat(cost, " (within ", options.max_g128_slowdown,
                                     "x): the node hides the group dequantization");
    } else if (layer.per_channel_over_g128 >= options.sensitive_ratio) {
      decision.granularity = kGroup128;
      decision.reason = absl::StrFormat("%s, but per-channel error is %.2fx group-128 (>= %.2f)",
                                        cost, layer.per_channel_over_g128,
                                        options.sensitive_ratio);
    } else {
      decision.granularity = kPerChannel;
      decision.reason = absl::StrFormat("%s; per-channel error only %.2fx group-128", cost,
                                        layer.per_channel_over_g128);
    }
    decision.buckets = decision.granularity == kGroup128 ? g128 : per_channel;
    plan.layers.push_back(std::move(decision));
  }
  return plan;
}

}  // namespace apex4
