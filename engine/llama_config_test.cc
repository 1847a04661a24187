#include "engine/llama_config.h"

#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using ::testing::HasSubstr;

// SmolLM2-135M-Instruct's published config.json (the architecture fields).
constexpr char kSmolLmConfigJson[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "hidden_act": "silu",
  "hidden_size": 576,
  "intermediate_size": 1536,
  "max_position_embeddings": 8192,
  "model_type": "llama",
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 100000,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 49152
})";

void ExpectSmolLm2(const LlamaConfig& config) {
  EXPECT_EQ(config.num_layers, 30);
  EXPECT_EQ(config.hidden_size, 576);
  EXPECT_EQ(config.num_heads, 9);
  EXPECT_EQ(config.num_kv_heads, 3);
  EXPECT_EQ(config.head_dim, 64);
  EXPECT_EQ(config.intermediate_size, 1536);
  EXPECT_EQ(config.vocab_size, 49152);
  EXPECT_EQ(config.context_length, 8192);
  EXPECT_EQ(config.rope_theta, 100000.0f);
  EXPECT_EQ(config.rms_norm_eps, 1e-5f);
  EXPECT_TRUE(config.tied_embeddings);
}

TEST(LlamaConfigTest, ReadsTheDefaultModelsGgufMetadata) {
  auto gguf = GgufReader::Open(DefaultModelPath());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto config = LlamaConfigFromGguf(**gguf);
  ASSERT_TRUE(config.ok()) << config.status();
  ExpectSmolLm2(*config);
}

TEST(LlamaConfigTest, ReadsHuggingFaceConfigJson) {
  auto config = LlamaConfigFromHfJson(kSmolLmConfigJson);
  ASSERT_TRUE(config.ok()) << config.status();
  ExpectSmolLm2(*config);
}

TEST(LlamaConfigTest, RefusesBadConfigJsonNamingTheField) {
  EXPECT_THAT(std::string(LlamaConfigFromHfJson("{not json").status().message()),
              HasSubstr("not a JSON object"));
  EXPECT_EQ(LlamaConfigFromHfJson(R"({"model_type": "gpt2"})").status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(LlamaConfigFromHfJson(R"({"model_type": "llama"})").status().message()),
              HasSubstr("num_hidden_layers"));
  std::string odd_heads = kSmolLmConfigJson;
  odd_heads.replace(odd_heads.find("\"num_key_value_heads\": 3"), 24,
                    "\"num_key_value_heads\": 4");
  EXPECT_THAT(std::string(LlamaConfigFromHfJson(odd_heads).status().message()),
              HasSubstr("not a multiple of 4 KV heads"));
  std::string string_layers = kSmolLmConfigJson;
  string_layers.replace(string_layers.find("\"num_hidden_layers\": 30"), 23,
                        "\"num_hidden_layers\": \"30\"");
  EXPECT_THAT(std::string(LlamaConfigFromHfJson(string_layers).status().message()),
              HasSubstr("'num_hidden_layers' is not a non-negative 32-bit integer"));
}

}  // namespace
}  // namespace apex4
