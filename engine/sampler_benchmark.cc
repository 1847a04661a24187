// Time per sampled token over a vocabulary-sized row of logits, for the sampler settings the API
// offers. The logits are the default model's real next-token logits from llama.cpp when python3
// can produce them (engine/testdata/sampler_reference.py), else a fixed random row.
//   bazel run -c opt //engine:sampler_benchmark
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/python_reference.h"
#include "engine/sampler.h"
#include "engine/test_files.h"

namespace apex4 {
namespace {

std::vector<float> BenchmarkLogits() {
  const std::string out = TestOutputDir() + "/apex4_sampler_benchmark_logits.json";
  if (RunPythonReference("engine/testdata/sampler_reference.py", {DefaultModelPath(), out}).ok()) {
    absl::StatusOr<nlohmann::json> reference = ReadReferenceJson(out);
    if (reference.ok()) {
      std::printf("logits: llama.cpp, default model\n");
      return (*reference)["logits"].get<std::vector<float>>();
    }
  }
  std::printf("logits: random normal(0, 3) over 49152 entries (python3 could not run llama.cpp)\n");
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(49152);
  for (float& logit : logits) logit = normal(rng);
  return logits;
}

void Run() {
  const std::vector<float> logits = BenchmarkLogits();
  struct Setting {
    const char* name;
    SamplerConfig config;
  };
  const Setting settings[] = {
      {"greedy", {0.0f, 0, 1.0f, 1}},
      {"temperature 1", {1.0f, 0, 1.0f, 1}},
      {"top_k 40", {1.0f, 40, 1.0f, 1}},
      {"top_p 0.9", {1.0f, 0, 0.9f, 1}},
      {"top_k 40 + top_p 0.9", {0.8f, 40, 0.9f, 1}},
  };
  constexpr int kDraws = 2000;
  for (const Setting& setting : settings) {
    Sampler sampler(setting.config);
    int64_t checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int draw = 0; draw < kDraws; ++draw) checksum += *sampler.Sample(logits);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-22s %8.1f us/token (vocabulary %zu, checksum %lld)\n", setting.name,
                seconds / kDraws * 1e6, logits.size(), static_cast<long long>(checksum));
  }
}

}  // namespace
}  // namespace apex4

int main() {
  apex4::Run();
  return 0;
}
