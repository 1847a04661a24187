// Loads Hugging Face directories exported from the default GGUF by tools/gguf_export.py (the
// safetensors package writes the files) and checks that they give the GGUF model's logits.
#include "engine/hf_llama_loader.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/gguf_reader.h"
#include "engine/llama_model.h"
#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using ::testing::HasSubstr;

// "The capital of France is" and a few more tokens, as SmolLM2's tokenizer gives them.
const std::vector<int32_t> kPrompt = {504, 3575, 282, 4649, 314, 7042, 30, 198, 198, 504};

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

// All-position logits of kPrompt.
std::vector<float> PromptLogits(const LlamaConfig& config, LlamaWeights weights) {
  ThreadPool pool(2);
  LlamaModel model(config, std::move(weights), &pool);
  auto cache = *PagedKvCache::Create({config.num_layers, config.num_kv_heads, config.head_dim},
                                     int64_t{16} << 20);
  const ForwardEntry entry{*cache->AddSequence(kPrompt.size()), kPrompt, /*all_logits=*/true};
  std::vector<float> logits;
  EXPECT_TRUE(model.Forward({&entry, 1}, cache.get(), nullptr, &logits).ok());
  return logits;
}

class HfLlamaLoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const char* args : {"/f32'", "/f16_sharded' --dtype float16 --shards 3"}) {
      const std::string command = absl::StrCat("python3 tools/gguf_export.py hf '",
                                               DefaultModelPath(), "' '", TempDir(), args);
      ASSERT_EQ(std::system(command.c_str()), 0)
          << command << " failed (needs gguf, numpy and safetensors: "
          << "python3 -m pip install -r tools/requirements.txt)";
    }
    auto gguf = *GgufReader::Open(DefaultModelPath());
    const LlamaConfig config = *LlamaConfigFromGguf(*gguf);
    gguf_logits_ = new std::vector<float>(
        PromptLogits(config, *LoadLlamaWeightsFromGguf(*gguf, config, nullptr)));
  }
  static void TearDownTestSuite() { delete gguf_logits_; }

  static std::vector<float> LoadAndRun(const std::string& directory) {
    EXPECT_TRUE(IsHfModelDirectory(directory));
    auto config = LlamaConfigFromHfDirectory(directory);
    EXPECT_TRUE(config.ok()) << config.status();
    auto weights = LoadLlamaWeightsFromHfDirectory(directory, *config, nullptr);
    EXPECT_TRUE(weights.ok()) << weights.status();
    return weights.ok() ? PromptLogits(*config, std::move(*weights)) : std::vector<float>();
  }

  static std::vector<float>* gguf_logits_;
};

std::vector<float>* HfLlamaLoaderTest::gguf_logits_ = nullptr;

TEST_F(HfLlamaLoaderTest, Float32DirectoryGivesTheGgufModelsLogitsExactly) {
  EXPECT_EQ(LoadAndRun(TempDir() + "/f32"), *gguf_logits_);
}

TEST_F(HfLlamaLoaderTest, ShardedFloat16DirectoryGivesCloseLogits) {
  const std::vector<float> logits = LoadAndRun(TempDir() + "/f16_sharded");
  ASSERT_EQ(logits.size(), gguf_logits_->size());
  // Rounding the weights to half precision moves the logits by well under 1% of their norm.
  double diff_squares = 0, norm_squares = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    diff_squares += std::pow(double{logits[i]} - (*gguf_logits_)[i], 2);
    norm_squares += std::pow(double{(*gguf_logits_)[i]}, 2);
  }
  EXPECT_LT(std::sqrt(diff_squares / norm_squares), 0.01);
  EXPECT_GT(diff_squares, 0) << "float16 weights should not be bit-identical";
}

TEST_F(HfLlamaLoaderTest, RefusesIncompleteOrInconsistentDirectories) {
  namespace fs = std::filesystem;
  const fs::path bad = fs::path(TempDir()) / "bad";
  fs::create_directories(bad);
  EXPECT_FALSE(IsHfModelDirectory(bad.string()));
  EXPECT_EQ(LlamaConfigFromHfDirectory(bad.string()).status().code(),
            absl::StatusCode::kNotFound);

  // The f32 export's config with a different d_ff: the weights no longer fit it.
  fs::copy_file(fs::path(TempDir()) / "f32/config.json", bad / "config.json");
  auto config = *LlamaConfigFromHfDirectory(bad.string());
  EXPECT_THAT(std::string(LoadLlamaWeightsFromHfDirectory(bad.string(), config, nullptr)
                              .status()
                              .message()),
              HasSubstr("has neither model.safetensors nor model.safetensors.index.json"));
  fs::create_symlink(fs::path(TempDir()) / "f32/model.safetensors", bad / "model.safetensors");
  config.intermediate_size = 1024;
  EXPECT_THAT(std::string(LoadLlamaWeightsFromHfDirectory(bad.string(), config, nullptr)
                              .status()
                              .message()),
              HasSubstr("'model.layers.0.mlp.gate_proj.weight' has shape [1536, 576], "
                        "config.json needs [1024, 576]"));
}

}  // namespace
}  // namespace apex4
