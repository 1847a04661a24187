// The apex4_eval binary end to end: on a quantizer-written checkpoint its numbers agree with the
// quantizer's own numpy evaluation of the same checkpoint, and on the real FP32 model they are
// plausible.
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/apex4_test_checkpoint.h"
#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace apex4 {
namespace {

using ::testing::HasSubstr;

struct EvalRun {
  int exit_code = 0;
  std::string output;  // stdout and stderr
};

EvalRun RunEval(const std::string& args) {
  const std::string command = absl::StrCat("tools/eval/apex4_eval ", args, " 2>&1");
  EvalRun run;
  FILE* pipe = popen(command.c_str(), "r");
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) {
    run.output.append(buffer.data(), n);
  }
  run.exit_code = pclose(pipe);
  return run;
}

std::string DataArgs(int context, int windows, int tasks) {
  return absl::StrCat(" --perplexity_file ", SharedDataPath("moby_dick.txt"),
                      " --context ", context, " --max_windows ", windows, " --hellaswag_file ",
                      SharedDataPath("hellaswag_val_dev1000.txt"), " --max_tasks ", tasks);
}

TEST(Apex4Eval, AgreesWithTheQuantizersNumpyEvaluation) {
  auto tiny = GetTinyApex4Checkpoint();
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  const nlohmann::json& reference = (*tiny)->reference;
  // The checkpoint was quantized "mixed": its configured plan is the quantizer's rule over the
  // recorded sensitivities, which --granularity mixed applies again from the engine's side.
  const std::map<std::string, std::string> reference_of = {
      {"configured", "configured"}, {"per_channel", "per_channel"}, {"mixed", "configured"}};
  for (const auto& [granularity, plan] : reference_of) {
    const EvalRun run = RunEval(absl::StrCat(
        "--model ", (*tiny)->directory, " --granularity ", granularity,
        DataArgs(reference["context"], reference["windows"], reference["tasks"])));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const nlohmann::json result = nlohmann::json::parse(run.output);
    EXPECT_EQ(result["format"], "apex4");
    EXPECT_EQ(result["perplexity"]["windows"], reference["windows"]);
    EXPECT_EQ(result["perplexity"]["scored_tokens"],
              reference["windows"].get<int>() * (reference["context"].get<int>() - 1));
    // Same checkpoint, same tokens (the engine's tokenizer against llama.cpp's), same windows:
    // the perplexities differ only by float rounding and the rare INT4 rounding flip it causes
    // (see engine/apex4_llama_weights_test.cc). 2% in perplexity is 0.02 nats per token.
    const double perplexity = result["perplexity"]["perplexity"];
    const double expected = reference[plan]["perplexity"];
    EXPECT_NEAR(perplexity / expected, 1.0, 0.02) << granularity;
    // A flip may change one task's choice.
    const double one_task = 100.0 / reference["tasks"].get<int>();
    EXPECT_NEAR(result["hellaswag"]["accuracy"].get<double>(),
                reference[plan]["hellaswag_accuracy"].get<double>(), one_task + 1e-9)
        << granularity;
  }
}

// The 4-bit KV cache checkpoint (keys rotated, clipped): the cache it asks for, the quantizer's
// perplexity; --kv_cache_bits 16 turns the cache off and gives the float-cache checkpoint's.
TEST(Apex4Eval, Int4KvCacheAgreesWithTheQuantizersNumpyEvaluation) {
  auto tiny = GetTinyApex4Checkpoint();
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  const nlohmann::json& reference = (*tiny)->reference;
  const double kv4 = reference["kv4"]["perplexity"];
  const double float_cache = reference["configured"]["perplexity"];
  // The random model's perplexity is near its vocabulary size, and the 4-bit cache moves it by
  // only 3.9% (measured); the engine agrees with numpy to 0.01% (measured), and a rounding flip
  // moves the perplexity of these 254 tokens by about 0.2%: hence 0.5% here, not 2% as above.
  constexpr double kTolerance = 0.005;
  EXPECT_GT(std::fabs(kv4 / float_cache - 1), 4 * kTolerance) << kv4 << " vs " << float_cache;
  for (const auto& [flag, bits, expected] :
       {std::tuple{"", 4, kv4}, std::tuple{" --kv_cache_bits 16", 16, float_cache}}) {
    const EvalRun run = RunEval(absl::StrCat(
        "--model ", (*tiny)->kv4_directory, flag, " --perplexity_file ",
        SharedDataPath("moby_dick.txt"), " --context ", reference["context"].get<int>(),
        " --max_windows ", reference["windows"].get<int>()));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const nlohmann::json result = nlohmann::json::parse(run.output);
    EXPECT_EQ(result["kv_cache_bits"], bits);
    const double perplexity = result["perplexity"]["perplexity"];
    EXPECT_NEAR(perplexity / expected, 1.0, kTolerance) << "kv_cache_bits " << bits;
  }
}

TEST(Apex4Eval, Fp32PerplexityOfTheRealModelIsPlausible) {
  const EvalRun run = RunEval(absl::StrCat("--model ", DefaultModelPath(), DataArgs(512, 2, 4)));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json result = nlohmann::json::parse(run.output);
  EXPECT_EQ(result["quantization"], "fp32");
  EXPECT_EQ(result["kv_cache_bits"], 16);
  EXPECT_EQ(result["hellaswag"]["tasks"], 4);
  // SmolLM2-135M on Moby Dick: 44.9 over the first two 2048-token windows (the quantizer's
  // numpy forward gives the same to 1e-6); shorter windows give the model less context.
  const double perplexity = result["perplexity"]["perplexity"];
  EXPECT_GT(perplexity, 15.0);
  EXPECT_LT(perplexity, 120.0);

  // --kv_cache_bits 4 on a GGUF model: a plain 4-bit cache (no key rotation: the weights were
  // not rotated for one). The quantizer's numpy forward with the same cache
  // (KvCacheQuant(1.0, 1.0, key_hadamard=False)) on these windows: 90.63, against 66.21 with
  // the float cache (x1.369; measured 2026-11-27). SmolLM2's keys have outlier channels that a
  // per-head INT4 scale without the rotation handles badly: a real loss, not a bug.
  const EvalRun int4 = RunEval(absl::StrCat(
      "--model ", DefaultModelPath(), " --kv_cache_bits 4 --perplexity_file ",
      SharedDataPath("moby_dick.txt"), " --context 512 --max_windows 2"));
  ASSERT_EQ(int4.exit_code, 0) << int4.output;
  const nlohmann::json int4_result = nlohmann::json::parse(int4.output);
  EXPECT_EQ(int4_result["kv_cache_bits"], 4);
  const double int4_perplexity = int4_result["perplexity"]["perplexity"];
  std::printf("SmolLM2 perplexity, 2 x 512 tokens: %.3f FP32 cache, %.3f 4-bit cache (x%.4f)\n",
              perplexity, int4_perplexity, int4_perplexity / perplexity);
  EXPECT_NEAR(int4_perplexity / 90.63, 1.0, 0.02);  // measured here: 91.03
  EXPECT_GT(int4_perplexity / perplexity, 1.25);
  EXPECT_LT(int4_perplexity / perplexity, 1.5);
}

TEST(Apex4Eval, BadInvocationsExitNonZeroWithAMessage) {
  EvalRun run = RunEval("--perplexity_file x");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("--model is required"));

  run = RunEval(absl::StrCat("--model ", DefaultModelPath(), " --granularity g128",
                             DataArgs(512, 1, 1)));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("--granularity applies to apex4 checkpoints only"));

  run = RunEval(absl::StrCat("--model ", DefaultModelPath(), " --kv_cache_bits 8",
                             DataArgs(512, 1, 1)));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("kv_cache_bits must be 0"));

  run = RunEval("--model /nonexistent.gguf --hellaswag_file x");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("/nonexistent.gguf"));
}

}  // namespace
}  // namespace apex4
