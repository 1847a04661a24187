// Checks the APEX4 planner against brute force on a GPU (issue 5's acceptance benchmark):
//  1. probe the device as apex4_probe does (rates + kernel timings at the profile's M buckets);
//  2. time every kernel variant again on a dense M ladder (the ground truth);
//  3. for every (layer shape, M) of the ladder, compare the measured time of the kernel the
//     planner picks (at the granularity it picks for the layer) with the fastest measured
//     variant at that granularity, and report how often it is within 5%.
// Shapes: the linear layers of LLaMA-2-7B, LLaMA-2-70B and LLaMA-3-8B with synthetic random
// weights (speed only). Prints a table; --json writes every number.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/planner/cuda_kernel_timings.h"
#include "engine/planner/cuda_probe.h"
#include "engine/planner/planner.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, json, "", "write all measurements and decisions here");
ABSL_FLAG(int, device, 0, "CUDA device");
ABSL_FLAG(int, repeats, 5, "timed launches per variant (median)");

namespace apex4 {
namespace {

struct NamedShape {
  std::string name;
  GemmShape shape;
};

const std::vector<NamedShape> kShapes = {
    {"llama2-7b qkv", {12288, 4096}},  {"llama2-7b o", {4096, 4096}},
    {"llama2-7b gate_up", {22016, 4096}}, {"llama2-7b down", {4096, 11008}},
    {"llama2-70b qkv", {10240, 8192}}, {"llama2-70b o", {8192, 8192}},
    {"llama2-70b gate_up", {57344, 8192}}, {"llama2-70b down", {8192, 28672}},
    {"llama3-8b qkv", {6144, 4096}},   {"llama3-8b gate_up", {28672, 4096}},
    {"llama3-8b down", {4096, 14336}},
};
const std::vector<int64_t> kProfileBuckets = {1, 16, 64, 256, 1024, 4096};
const std::vector<int64_t> kLadder = {1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                      768, 1024, 1536, 2048, 3072, 4096, 6144, 8192};

using TruthKey = std::tuple<int64_t, int64_t, int64_t, std::string>;  // n, k, m, granularity

int Run() {
  const int device = absl::GetFlag(FLAGS_device);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  std::vector<GemmShape> shapes;
  for (const NamedShape& s : kShapes) shapes.push_back(s.shape);
  absl::StatusOr<NodeProfile> probed = ProbeCudaNode(device, shapes, kProfileBuckets, repeats);
  if (!probed.ok()) {
    std::fprintf(stderr, "planner_benchmark: %s\n", std::string(probed.status().message()).c_str());
    return 1;
  }
  const NodeProfile& profile = *probed;
  std::string error;
  std::vector<KernelTiming> truth;
  if (!TimeCudaW4A4Kernels(device, shapes, kLadder, repeats, &truth, &error)) {
    std::fprintf(stderr, "planner_benchmark: %s\n", error.c_str());
    return 1;
  }
  // Ground truth: per (n, k, m, granularity), each kernel's time.
  std::map<TruthKey, std::map<std::string, double>> measured;
  for (const KernelTiming& t : truth) measured[{t.n, t.k, t.m, t.granularity}][t.kernel] = t.seconds;

  std::vector<LayerToPlan> layers;
  for (const NamedShape& s : kShapes) {
    // No checkpoint here: equal sensitivity, so the granularity follows the node alone.
    layers.push_back({s.name, s.shape.n, s.shape.k, true, true, 1.0});
  }
  PlannerOptions options;
  options.m_buckets = kLadder;
  auto plan = PlanLayers(profile, layers, options);
  if (!plan.ok()) {
    std::fprintf(stderr, "planner_benchmark: %s\n", std::string(plan.status().message()).c_str());
    return 1;
  }

  std::printf("device %s, rho %.1f (int8 mma %.0f TOPS, int4 mma %.0f TOPS, fp32 %.1f TFLOPS)\n",
              profile.device.name.c_str(), plan->rho, profile.throughput.matrix_int8_ops / 1e12,
              profile.throughput.matrix_int4_ops / 1e12, profile.throughput.fp32_fma_flops / 1e12);
  std::printf("%-20s %-11s %6s  %-24s %10s %10s %7s\n", "layer", "granularity", "M", "planned",
              "planned_us", "best_us", "ratio");
  int cases = 0, within = 0;
  nlohmann::json report = nlohmann::json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerPlanDecision& decision = plan->layers[i];
    for (const BucketChoice& choice : decision.buckets) {
      const auto& times = measured.at({layers[i].n, layers[i].k, choice.m, decision.granularity});
      const auto best = std::min_element(times.begin(), times.end(),
                                         [](auto& a, auto& b) { return a.second < b.second; });
      const double planned = times.at(choice.kernel);
      const double ratio = planned / best->second;
      ++cases;
      within += ratio <= 1.05;
      std::printf("%-20s %-11s %6lld  %-24s %10.1f %10.1f %7.3f%s\n", decision.name.c_str(),
                  decision.granularity.c_str(), static_cast<long long>(choice.m),
                  choice.kernel.c_str(), planned * 1e6, best->second * 1e6, ratio,
                  ratio > 1.05 ? "  <-- over 5%" : "");
      report.push_back({{"layer", decision.name}, {"n", layers[i].n}, {"k", layers[i].k},
                        {"m", choice.m}, {"granularity", decision.granularity},
                        {"planned_kernel", choice.kernel}, {"planned_seconds", planned},
                        {"best_kernel", best->first}, {"best_seconds", best->second},
                        {"g128_slowdown", decision.g128_slowdown}, {"reason", decision.reason}});
    }
  }
  std::printf("within 5%% of the best variant: %d of %d cases (%.1f%%)\n", within, cases,
              100.0 * within / cases);
  for (const LayerPlanDecision& d : plan->layers) {
    std::printf("plan %-20s %-11s %s\n", d.name.c_str(), d.granularity.c_str(), d.reason.c_str());
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json doc = {{"device", profile.device.name}, {"rho", plan->rho},
                          {"date", absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone())},
                          {"profile_m_buckets", kProfileBuckets}, {"cases", report},
                          {"within_5_percent", within}, {"total", cases}};
    std::ofstream(path) << doc.dump(1) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apex4::Run();
}
