// apex4_eval: accuracy of a model as the server runs it (the CPU engine's forward pass, W4A4
// layers included): perplexity on a text file over non-overlapping windows and HellaSwag
// accuracy by length-normalised log-likelihood. Prints one JSON object (and writes --output).
//
//   apex4_eval --model models/x.apex4 --perplexity_file ../shared/data/moby_dick.txt \
//       --max_windows 4 --hellaswag_file ../shared/data/hellaswag_val_dev1000.txt --max_tasks 200
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/cpu_engine.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/eval/hellaswag.h"
#include "tools/eval/hellaswag_tasks.h"
#include "tools/eval/perplexity.h"
#include "tools/eval/sequence_scorer.h"

ABSL_FLAG(std::string, model, "", "a .gguf file or an apex4 checkpoint directory");
ABSL_FLAG(int, threads, 2, "compute threads");
ABSL_FLAG(std::string, granularity, "configured",
          "W4A4 layers run the checkpoint's configured granularity, all 'per_channel', all "
          "'g128', or 'mixed': g128 for the --mixed_g128_fraction of layers whose recorded error "
          "grows most from g128 to per-channel, per-channel for the rest (the quantizer's rule)");
ABSL_FLAG(double, mixed_g128_fraction, 0.5, "share of layers kept at g128 by --granularity mixed");
ABSL_FLAG(int, kv_cache_bits, 0,
          "KV cache: 0 the model's own (a checkpoint's kv_cache, else 16), 4 or 16 (as "
          "apex4_server's flag; 4-bit values are kept dequantized in FP32)");
ABSL_FLAG(std::string, perplexity_file, "", "text file for perplexity (empty: skip)");
ABSL_FLAG(int, context, 2048, "perplexity window length in tokens");
ABSL_FLAG(int64_t, max_windows, 0, "score the first N windows (0: all)");
ABSL_FLAG(std::string, hellaswag_file, "", "llama.cpp-format HellaSwag file (empty: skip)");
ABSL_FLAG(int64_t, max_tasks, 0, "score the first N HellaSwag tasks (0: all)");
ABSL_FLAG(std::string, output, "", "also write the JSON result to this file");

namespace apex4 {
namespace {

using Json = nlohmann::json;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Every W4A4 layer at one granularity, or the mixed split, through the same interface the
// node's planner uses.
absl::Status ApplyGranularity(InferenceEngine& engine, const std::string& granularity) {
  if (granularity == "configured") return absl::OkStatus();
  if (granularity != kPerChannel && granularity != kGroup128 && granularity != "mixed") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--granularity: '", granularity, "' is not configured, per_channel, g128 or mixed"));
  }
  std::vector<LayerToPlan> layers = engine.PlannableLayers();
  if (layers.empty()) {
    return absl::InvalidArgumentError("--granularity applies to apex4 checkpoints only");
  }
  ExecutionPlan plan;
  for (const LayerToPlan& layer : layers) plan.layers.push_back({layer.name, granularity});
  if (granularity == "mixed") {
    const double fraction = absl::GetFlag(FLAGS_mixed_g128_fraction);
    if (!(fraction >= 0.0 && fraction <= 1.0)) {
      return absl::InvalidArgumentError("--mixed_g128_fraction must be in [0, 1]");
    }
    std::vector<size_t> order(layers.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return layers[a].per_channel_over_g128 > layers[b].per_channel_over_g128;
    });
    const size_t g128_layers = static_cast<size_t>(std::lround(fraction * layers.size()));
    for (size_t rank = 0; rank < order.size(); ++rank) {
      const LayerToPlan& layer = layers[order[rank]];
      if (layer.per_channel_over_g128 <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--granularity mixed: ", layer.name, " has no recorded sensitivity"));
      }
      plan.layers[order[rank]].granularity = rank < g128_layers ? kGroup128 : kPerChannel;
    }
  }
  return engine.ApplyPlan(plan);
}

absl::StatusOr<Json> EvaluatePerplexityFile(InferenceEngine& engine, SequenceScorer& scorer,
                                            const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open --perplexity_file ", path));
  std::stringstream text;
  text << file.rdbuf();
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(const std::vector<int32_t> tokens,
                   engine.tokenizer().Encode(text.str(), engine.tokenizer().add_bos(),
                                             /*parse_special=*/false));
  ASSIGN_OR_RETURN(const PerplexityResult result,
                   EvaluatePerplexity(scorer, tokens, absl::GetFlag(FLAGS_context),
                                      absl::GetFlag(FLAGS_max_windows)));
  return Json{{"file", path},
              {"text_tokens", tokens.size()},
              {"context", absl::GetFlag(FLAGS_context)},
              {"windows", result.windows},
              {"scored_tokens", result.scored_tokens},
              {"mean_nll", result.mean_nll},
              {"perplexity", result.perplexity},
              {"seconds", SecondsSince(start)}};
}

absl::StatusOr<Json> EvaluateHellaswagFile(InferenceEngine& engine, SequenceScorer& scorer,
                                           const std::string& path) {
  ASSIGN_OR_RETURN(const std::vector<HellaswagTask> tasks, ReadHellaswagTasks(path));
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(const HellaswagResult result,
                   EvaluateHellaswag(scorer, engine.tokenizer(), tasks,
                                     absl::GetFlag(FLAGS_max_tasks)));
  return Json{{"file", path},
              {"tasks", result.tasks},
              {"correct", result.correct},
              {"accuracy", result.accuracy_percent},
              {"seconds", SecondsSince(start)}};
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("--model is required");
  const std::string perplexity_file = absl::GetFlag(FLAGS_perplexity_file);
  const std::string hellaswag_file = absl::GetFlag(FLAGS_hellaswag_file);
  if (perplexity_file.empty() && hellaswag_file.empty()) {
    return absl::InvalidArgumentError(
        "nothing to do: give --perplexity_file and/or --hellaswag_file");
  }
  EngineOptions options;
  options.model_path = absl::GetFlag(FLAGS_model);
  options.threads = absl::GetFlag(FLAGS_threads);
  // One sequence at a time, at most one perplexity window long (plus block rounding).
  options.kv_cache_mb = 256;
  options.kv_cache_bits = absl::GetFlag(FLAGS_kv_cache_bits);
  ASSIGN_OR_RETURN(std::unique_ptr<InferenceEngine> engine, LoadCpuEngine(options));
  RETURN_IF_ERROR(ApplyGranularity(*engine, absl::GetFlag(FLAGS_granularity)));

  const EngineInfo& info = engine->info();
  Json result{{"model", options.model_path},
              {"format", info.format},
              {"quantization", info.quantization},
              {"granularity", absl::GetFlag(FLAGS_granularity)},
              {"kv_cache_bits", info.kv_cache_bits},
              {"threads", options.threads}};
  SequenceScorer scorer(engine.get());
  if (!perplexity_file.empty()) {
    ASSIGN_OR_RETURN(result["perplexity"],
                     EvaluatePerplexityFile(*engine, scorer, perplexity_file));
  }
  if (!hellaswag_file.empty()) {
    ASSIGN_OR_RETURN(result["hellaswag"], EvaluateHellaswagFile(*engine, scorer, hellaswag_file));
  }
  const std::string text = result.dump(1);
  std::cout << text << std::endl;
  if (const std::string output = absl::GetFlag(FLAGS_output); !output.empty()) {
    std::ofstream file(output);
    file << text << "\n";
    if (!file) return absl::InternalError(absl::StrCat("cannot write --output ", output));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Perplexity and HellaSwag accuracy of a GGUF model or an apex4 W4A4 checkpoint, run by the "
      "CPU engine. Prints JSON.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = apex4::Run();
  if (!status.ok()) {
    std::cerr << "apex4_eval: " << status << std::endl;
    return 1;
  }
  return 0;
}
