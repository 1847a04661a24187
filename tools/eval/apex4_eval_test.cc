// The apex4_eval binary end to end: on a quantizer-written checkpoint its numbers agree with the
// quantizer's own numpy evaluation of the same checkpoint, and on the real FP32 model they are
// plausible.
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

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

TEST(Apex4Eval, Fp32PerplexityOfTheRealModelIsPlausible) {
  const EvalRun run = RunEval(absl::StrCat("--model ", DefaultModelPath(), DataArgs(512, 2, 4)));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json result = nlohmann::json::parse(run.output);
  EXPECT_EQ(result["quantization"], "fp32");
  EXPECT_EQ(result["hellaswag"]["tasks"], 4);
  // SmolLM2-135M on Moby Dick: 44.9 over the first two 2048-token windows (the quantizer's
  // numpy forward gives the same to 1e-6); shorter windows give the model less context.
  const double perplexity = result["perplexity"]["perplexity"];
  EXPECT_GT(perplexity, 15.0);
  EXPECT_LT(perplexity, 120.0);
}

TEST(Apex4Eval, BadInvocationsExitNonZeroWithAMessage) {
  EvalRun run = RunEval("--perplexity_file x");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("--model is required"));

  run = RunEval(absl::StrCat("--model ", DefaultModelPath(), " --granularity g128",
                             DataArgs(512, 1, 1)));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("--granularity applies to apex4 checkpoints only"));

  run = RunEval("--model /nonexistent.gguf --hellaswag_file x");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("/nonexistent.gguf"));
}

}  // namespace
}  // namespace apex4
