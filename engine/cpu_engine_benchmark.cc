// CPU decode throughput of the CpuEngine on the default model at 1 and 8 concurrent sequences,
// beside llama.cpp's (llama-cpp-python, same GGUF, same thread count) when python3 can load it.
// Each sequence prefills the same prompt from Moby Dick, then all decode greedily together,
// one token per sequence per step, as the server's continuous batching runs them. Also prints
// apex4's prefill throughput, and where each phase's time goes by kernel kind.
//   bazel build //engine:cpu_engine_benchmark && bazel-bin/engine/cpu_engine_benchmark
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/cpu_engine.h"
#include "engine/test_files.h"

ABSL_FLAG(std::string, model, "", "GGUF file (default: the default model)");
ABSL_FLAG(int, threads, 2, "compute threads");
ABSL_FLAG(int, prompt_tokens, 64, "prompt length of every sequence");
ABSL_FLAG(int, decode_tokens, 64, "tokens each sequence decodes (timed)");
ABSL_FLAG(int, prefill_tokens, 512, "prompt length of the prefill measurement");
ABSL_FLAG(std::vector<std::string>, concurrency, std::vector<std::string>({"1", "8"}),
          "concurrent sequences, one run each");
ABSL_FLAG(int, repeats, 3, "runs of each configuration; the fastest is reported");
ABSL_FLAG(bool, llama_cpp, true, "also run llama.cpp (engine/llama_cpp_decode_benchmark.py)");

namespace apex4 {
namespace {

struct DecodeResult {
  double seconds = 0;
  int64_t tokens = 0;
};

// Sums the engine's kernel times per kind, to show where a phase's time goes.
class SummingKernelTimer : public KernelTimer {
 public:
  void Record(KernelKind kind, double seconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    seconds_[static_cast<int>(kind)] += seconds;
  }
  // "gemm_fp32 71%, attention 9%, ..." over `total_seconds`, then resets.
  std::string TakeBreakdown(double total_seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> parts;
    for (KernelKind kind : kAllKernelKinds) {
      double& seconds = seconds_[static_cast<int>(kind)];
      if (seconds > 0) {
        parts.push_back(absl::StrFormat("%s %.0f%%", KernelKindName(kind),
                                        100 * seconds / total_seconds));
      }
      seconds = 0;
    }
    return absl::StrJoin(parts, ", ");
  }

 private:
  std::mutex mu_;
  double seconds_[std::size(kAllKernelKinds)] = {};
};

int32_t Argmax(const float* row, int32_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

absl::StatusOr<DecodeResult> DecodeWithApex4(InferenceEngine& engine,
                                             const std::vector<int32_t>& prompt,
                                             int concurrency, int decode_tokens,
                                             SummingKernelTimer* timer) {
  const int32_t vocab = engine.info().vocab_size;
  std::vector<int64_t> ids;
  std::vector<int32_t> next(concurrency);
  std::vector<float> logits;
  for (int s = 0; s < concurrency; ++s) {
    auto id = engine.StartSequence(static_cast<int32_t>(prompt.size()) + decode_tokens);
    if (!id.ok()) return id.status();
    ids.push_back(*id);
    if (absl::Status status = engine.Step({{*id, prompt}}, &logits); !status.ok()) return status;
    next[s] = Argmax(logits.data(), vocab);
  }
  timer->TakeBreakdown(1);  // the prefills are not part of the decode breakdown
  std::vector<SequenceStep> batch(concurrency);
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < decode_tokens; ++step) {
    for (int s = 0; s < concurrency; ++s) batch[s] = {ids[s], {&next[s], 1}};
    if (absl::Status status = engine.Step(batch, &logits); !status.ok()) return status;
    for (int s = 0; s < concurrency; ++s) next[s] = Argmax(&logits[int64_t{s} * vocab], vocab);
  }
  DecodeResult result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.tokens = int64_t{concurrency} * decode_tokens;
  for (int64_t id : ids) engine.EndSequence(id);
  return result;
}

// Seconds to prefill the first `count` tokens of `text_tokens` in one step.
absl::StatusOr<double> PrefillSeconds(InferenceEngine& engine,
                                      const std::vector<int32_t>& text_tokens, int count) {
  if (count > static_cast<int>(text_tokens.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the text has only ", text_tokens.size(),
                                                   " tokens, ", count, " requested"));
  }
  auto id = engine.StartSequence(count);
  if (!id.ok()) return id.status();
  std::vector<float> logits;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = engine.Step({{*id, {text_tokens.data(), size_t(count)}}}, &logits);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  engine.EndSequence(*id);
  if (!status.ok()) return status;
  return seconds;
}

// Runs the Python benchmark and parses its "<concurrency> <seconds> <tokens>" line.
bool DecodeWithLlamaCpp(const std::string& model, const std::vector<int32_t>& prompt,
                        int concurrency, DecodeResult* result) {
  const std::string command = absl::StrCat(
      "python3 engine/llama_cpp_decode_benchmark.py '", model, "' ",
      absl::GetFlag(FLAGS_threads), " ", absl::GetFlag(FLAGS_decode_tokens), " ", concurrency,
      " ", absl::StrJoin(prompt, " "), " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  int reported_concurrency = 0;
  long long tokens = 0;
  const bool parsed = std::fscanf(pipe, "%d %lf %lld", &reported_concurrency, &result->seconds,
                                  &tokens) == 3;
  result->tokens = tokens;
  return pclose(pipe) == 0 && parsed && reported_concurrency == concurrency;
}

std::string LoadAverage() {
  std::ifstream file("/proc/loadavg");
  std::string one, five;
  file >> one >> five;
  return absl::StrCat(one, " ", five);
}

int Run() {
  const std::string model =
      absl::GetFlag(FLAGS_model).empty() ? DefaultModelPath() : absl::GetFlag(FLAGS_model);
  EngineOptions options;
  options.model_path = model;
  options.threads = absl::GetFlag(FLAGS_threads);
  auto engine = LoadCpuEngine(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::ifstream text_file(SharedDataPath("moby_dick.txt"));
  std::stringstream text;
  text << text_file.rdbuf();
  auto tokens = (*engine)->tokenizer().Encode(text.str().substr(0, 20000), false, false);
  if (!tokens.ok() || tokens->size() < static_cast<size_t>(absl::GetFlag(FLAGS_prompt_tokens))) {
    std::fprintf(stderr, "cannot build the prompt from %s\n",
                 SharedDataPath("moby_dick.txt").c_str());
    return 1;
  }
  const std::vector<int32_t> prompt(tokens->begin(),
                                    tokens->begin() + absl::GetFlag(FLAGS_prompt_tokens));
  std::printf("model %s, %d threads, %d-token prompt, %d decoded tokens per sequence\n",
              model.c_str(), options.threads, absl::GetFlag(FLAGS_prompt_tokens),
              absl::GetFlag(FLAGS_decode_tokens));
  SummingKernelTimer timer;
  (*engine)->set_kernel_timer(&timer);
  const auto prefill = PrefillSeconds(**engine, *tokens, absl::GetFlag(FLAGS_prefill_tokens));
  if (!prefill.ok()) {
    std::fprintf(stderr, "%s\n", prefill.status().ToString().c_str());
    return 1;
  }
  std::printf("apex4-fp32 prefill of %d tokens: %.1f tokens/s (%s)\n",
              absl::GetFlag(FLAGS_prefill_tokens), absl::GetFlag(FLAGS_prefill_tokens) / *prefill,
              timer.TakeBreakdown(*prefill).c_str());
  std::printf("%-11s %-12s %12s %12s   load average (1, 5 min)\n", "engine", "concurrency",
              "tokens/s", "ms/step");
  const int steps = absl::GetFlag(FLAGS_decode_tokens);
  for (const std::string& c : absl::GetFlag(FLAGS_concurrency)) {
    const int concurrency = std::stoi(c);
    // Best of the repeats, alternating the engines, so that both see the same neighbours.
    DecodeResult best_apex4, best_llama;
    std::string breakdown;
    for (int repeat = 0; repeat < absl::GetFlag(FLAGS_repeats); ++repeat) {
      auto apex4 = DecodeWithApex4(**engine, prompt, concurrency, steps, &timer);
      if (!apex4.ok()) {
        std::fprintf(stderr, "%s\n", apex4.status().ToString().c_str());
        return 1;
      }
      const std::string apex4_breakdown = timer.TakeBreakdown(apex4->seconds);
      if (best_apex4.tokens == 0 || apex4->seconds < best_apex4.seconds) {
        best_apex4 = *apex4;
        breakdown = apex4_breakdown;
      }
      DecodeResult llama;
      if (absl::GetFlag(FLAGS_llama_cpp) &&
          DecodeWithLlamaCpp(model, prompt, concurrency, &llama) &&
          (best_llama.tokens == 0 || llama.seconds < best_llama.seconds)) {
        best_llama = llama;
      }
    }
    std::printf("%-11s %-12d %12.1f %12.2f   %s   (%s)\n", "apex4-fp32", concurrency,
                best_apex4.tokens / best_apex4.seconds, 1e3 * best_apex4.seconds / steps,
                LoadAverage().c_str(), breakdown.c_str());
    if (best_llama.tokens > 0) {
      std::printf("%-11s %-12d %12.1f %12.2f   %s\n", "llama.cpp", concurrency,
                  best_llama.tokens / best_llama.seconds, 1e3 * best_llama.seconds / steps,
                  LoadAverage().c_str());
    }
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
