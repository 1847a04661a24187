// Engine-level throughput of the CUDA engine in its three weight formats on synthetic weights
// (random, never zero) of published model shapes, in one run on one GPU, with ratios against
// the BF16 and FP8 baselines measured in the same run:
//   - decode: B sequences of --context prompt tokens each, then --decode_steps steps of one
//     token per sequence (CUDA graphs); output tokens per second and time per output token;
//   - prefill: one --prefill-token prompt in one step; prompt tokens per second.
// No gRPC: what the engine itself sustains (the load benchmark in tools/bench drives the server).
//
//   cuda_engine_benchmark --tokenizer=models/SmolLM2-135M-Instruct.Q4_1.gguf
//       --shapes=llama-2-7b,llama-2-70b --formats=w4a4,w4a4+kv4,bf16,fp8 --batches=1,16,64
//   (one line). A format FMT+kv4 runs FMT with a 4-bit KV cache (--kv_cache_bits=4); the others
//   keep the 16-bit cache of a synthetic model.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/status/status.h"
#include "engine/cuda/cuda_engine.h"

ABSL_FLAG(std::string, tokenizer, "", "GGUF file whose tokenizer (vocabulary) the models use");
ABSL_FLAG(std::string, shapes, "llama-2-7b", "synthetic shapes, comma-separated");
ABSL_FLAG(std::string, formats, "w4a4,w4a4+kv4,bf16,fp8",
          "weight formats, comma-separated; FMT+kv4: with a 4-bit KV cache");
ABSL_FLAG(std::string, batches, "1,16,64", "concurrent sequences for decode, comma-separated");
ABSL_FLAG(int, context, 512, "prompt tokens of each decoding sequence");
ABSL_FLAG(int, decode_steps, 64, "timed decode steps");
ABSL_FLAG(int, prefill, 2048, "prompt tokens of the prefill measurement (0: skip)");

namespace apex4 {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> RandomTokens(int count, int32_t vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(3, vocab - 1);
  std::vector<int32_t> tokens(count);
  for (int32_t& t : tokens) t = dist(rng);
  return tokens;
}

struct Result {
  std::map<int, double> decode_tokens_per_second;  // by batch; absent: did not fit
  std::map<int, double> decode_ms_per_step;
  std::map<int, std::string> decode_breakdown;     // kernel time per kind of one eager step
  double prefill_tokens_per_second = 0;
};

// Sums kernel time per kind over the steps it is attached to.
class SummingTimer : public KernelTimer {
 public:
  void Record(KernelKind kind, double seconds) override { seconds_[kind] += seconds; }
  // "gemm_w4a4 1.71, attention 0.12, ..." in ms per step.
  std::string Format(int steps) const {
    std::string text;
    double total = 0;
    for (const auto& [kind, seconds] : seconds_) {
      text += std::string(text.empty() ? "" : ", ") + KernelKindName(kind) + " " +
              std::to_string(seconds / steps * 1e3).substr(0, 5);
      total += seconds;
    }
    return text + "; total " + std::to_string(total / steps * 1e3).substr(0, 5) + " ms";
  }

 private:
  std::map<KernelKind, double> seconds_;
};

bool Check(const absl::Status& status, const char* what) {
  if (status.ok()) return true;
  std::fprintf(stderr, "%s: %s\n", what, std::string(status.message()).c_str());
  return false;
}

bool Measure(InferenceEngine& engine, const std::vector<int>& batches, Result* result) {
  std::mt19937 rng(1);
  const int32_t vocab = engine.info().vocab_size;
  const int context = absl::GetFlag(FLAGS_context);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  std::vector<float> logits;
  for (int batch : batches) {
    std::vector<int64_t> ids;
    bool fits = true;
    for (int s = 0; s < batch && fits; ++s) {
      absl::StatusOr<int64_t> id = engine.StartSequence(context + steps + 16);
      if (absl::IsResourceExhausted(id.status())) {
        std::printf("  batch %d does not fit the KV cache: %s\n", batch,
                    std::string(id.status().message()).c_str());
        fits = false;
        break;
      }
      if (!Check(id.status(), "starting a sequence")) return false;
      ids.push_back(*id);
      const std::vector<int32_t> prompt = RandomTokens(context, vocab, rng);
      if (!Check(engine.Step({{*id, prompt}}, &logits), "prefilling")) return false;
    }
    if (!fits) {
      for (int64_t id : ids) engine.EndSequence(id);
      continue;
    }
    std::vector<std::vector<int32_t>> next(batch, std::vector<int32_t>{5});
    std::vector<SequenceStep> step(batch);
    for (int s = 0; s < batch; ++s) step[s] = {ids[s], next[s]};
    // Two warm-up steps capture the decode graph for this batch size.
    for (int w = 0; w < 2; ++w) {
      if (!Check(engine.Step(step, &logits), "warming up")) return false;
    }
    const auto start = Clock::now();
    for (int i = 0; i < steps; ++i) {
      if (!Check(engine.Step(step, &logits), "decoding")) return false;
    }
    const double seconds = Seconds(start);
    result->decode_tokens_per_second[batch] = batch * steps / seconds;
    result->decode_ms_per_step[batch] = seconds / steps * 1e3;
    // Where the time goes: a few eager steps with CUDA events between kernel kinds.
    SummingTimer timer;
    engine.set_kernel_timer(&timer);
    constexpr int kTimedSteps = 4;
    for (int i = 0; i < kTimedSteps; ++i) {
      if (!Check(engine.Step(step, &logits), "timing kernels")) return false;
    }
    engine.set_kernel_timer(nullptr);
    result->decode_breakdown[batch] = timer.Format(kTimedSteps);
    for (int64_t id : ids) engine.EndSequence(id);
  }
  const int prefill = absl::GetFlag(FLAGS_prefill);
  if (prefill > 0) {
    double best = 0;
    for (int repeat = 0; repeat < 3; ++repeat) {  // the first also warms cuBLAS up
      absl::StatusOr<int64_t> id = engine.StartSequence(prefill);
      if (!Check(id.status(), "starting the prefill sequence")) return false;
      const std::vector<int32_t> prompt = RandomTokens(prefill, vocab, rng);
      const auto start = Clock::now();
      if (!Check(engine.Step({{*id, prompt}}, &logits), "prefilling")) return false;
      if (repeat > 0) best = std::max(best, prefill / Seconds(start));
      engine.EndSequence(*id);
    }
    result->prefill_tokens_per_second = best;
  }
  return true;
}

int Run() {
  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int value = 0;
    if (!absl::SimpleAtoi(b, &value) || value < 1) {
      std::fprintf(stderr, "bad --batches entry '%s'\n", std::string(b).c_str());
      return 1;
    }
    batches.push_back(value);
  }
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const std::vector<std::string> formats = absl::StrSplit(absl::GetFlag(FLAGS_formats), ',');
  const std::vector<std::string> shapes = absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',');
  for (const std::string& shape : shapes) {
    std::map<std::string, Result> results;
    for (const std::string& format : formats) {
      const std::vector<std::string> parts = absl::StrSplit(format, '+');
      if (parts.size() > 2 || (parts.size() == 2 && parts[1] != "kv4")) {
        std::fprintf(stderr, "bad --formats entry '%s' (FMT or FMT+kv4)\n", format.c_str());
        return 1;
      }
      CudaEngineOptions options;
      options.model_path = kSyntheticModelPrefix + shape;
      options.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
      options.weight_format = parts[0];
      options.kv_cache_bits = parts.size() == 2 ? 4 : 0;
      options.max_batch_size = max_batch;
      options.max_step_tokens = std::max(absl::GetFlag(FLAGS_prefill), absl::GetFlag(FLAGS_context));
      options.timing_interval = 1;  // every step while a timer is attached (the breakdown)
      const auto load_start = Clock::now();
      absl::StatusOr<std::unique_ptr<InferenceEngine>> engine = LoadCudaEngine(options);
      if (!engine.ok()) {
        std::printf("%-12s %-8s does not load: %s\n", shape.c_str(), format.c_str(),
                    std::string(engine.status().message()).c_str());
        continue;
      }
      std::printf("%-12s %-8s loaded in %.1f s; KV cache %lld blocks\n", shape.c_str(),
                  format.c_str(), Seconds(load_start),
                  static_cast<long long>((*engine)->kv_usage().blocks_total));
      std::fflush(stdout);
      Result result;
      if (!Measure(**engine, batches, &result)) return 1;
      results[format] = result;
    }
    std::printf("\n%s (synthetic weights), decode: output tokens/s (ms per step)\n", shape.c_str());
    std::printf("%-14s", "format");
    for (int b : batches) std::printf(" %22s", ("batch " + std::to_string(b)).c_str());
    std::printf(" %16s\n", "prefill tok/s");
    for (const auto& [format, r] : results) {
      std::printf("%-14s", format.c_str());
      for (int b : batches) {
        if (r.decode_tokens_per_second.count(b)) {
          std::printf(" %13.1f (%5.2f)", r.decode_tokens_per_second.at(b), r.decode_ms_per_step.at(b));
        } else {
          std::printf(" %22s", "does not fit");
        }
      }
      std::printf(" %16.0f\n", r.prefill_tokens_per_second);
    }
    // Every other entry against the two baselines (16-bit cache) of the same run.
    for (const auto& [format, w] : results) {
      for (const std::string baseline : {"bf16", "fp8"}) {
        if (format == "bf16" || format == "fp8" || !results.count(baseline)) continue;
        const Result& base = results.at(baseline);
        std::printf("%-14s", (format + "/" + baseline).c_str());
        for (int b : batches) {
          if (w.decode_tokens_per_second.count(b) && base.decode_tokens_per_second.count(b)) {
            std::printf(" %20.2fx", w.decode_tokens_per_second.at(b) / base.decode_tokens_per_second.at(b));
          } else {
            std::printf(" %21s", "-");
          }
        }
        if (base.prefill_tokens_per_second > 0) {
          std::printf(" %15.2fx", w.prefill_tokens_per_second / base.prefill_tokens_per_second);
        }
        std::printf("\n");
      }
    }
    std::printf("kernel time per decode step (eager, CUDA events), ms:\n");
    for (const auto& [format, r] : results) {
      for (const auto& [b, text] : r.decode_breakdown) {
        std::printf("  %-8s batch %-3d %s\n", format.c_str(), b, text.c_str());
      }
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apex4::Run();
}
