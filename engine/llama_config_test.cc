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

TEST(ResolveKvCacheQuantizationTest, ZeroKeepsTheModelsCacheAndFourOrSixteenOverrideIt) {
  KvCacheQuantization checkpoint;  // a checkpoint's own 4-bit cache
  checkpoint.bits = 4;
  checkpoint.key_clip_ratio = 0.9f;
  checkpoint.value_clip_ratio = 0.8f;
  checkpoint.key_hadamard = true;
  const KvCacheQuantization float_cache;  // GGUF, Hugging Face, a 16-bit checkpoint

  for (const KvCacheQuantization& model : {checkpoint, float_cache}) {
    auto kept = ResolveKvCacheQuantization(model, 0);
    ASSERT_TRUE(kept.ok()) << kept.status();
    EXPECT_EQ(kept->bits, model.bits);
    EXPECT_EQ(kept->key_clip_ratio, model.key_clip_ratio);
    EXPECT_EQ(kept->value_clip_ratio, model.value_clip_ratio);
    EXPECT_EQ(kept->key_hadamard, model.key_hadamard);

    auto off = ResolveKvCacheQuantization(model, 16);
    ASSERT_TRUE(off.ok()) << off.status();
    EXPECT_EQ(off->bits, 16);
    EXPECT_FALSE(off->key_hadamard);
  }
  // 4 keeps a checkpoint's measured clip ratios and rotation ...
  auto own = ResolveKvCacheQuantization(checkpoint, 4);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->bits, 4);
  EXPECT_EQ(own->key_clip_ratio, 0.9f);
  EXPECT_EQ(own->value_clip_ratio, 0.8f);
  EXPECT_TRUE(own->key_hadamard);
  // ... and on a model without one, quantizes without clipping, rotating keys only where the
  // model says so (a rotated checkpoint's 16-bit cache)
  KvCacheQuantization rotated_checkpoint;
  rotated_checkpoint.key_hadamard = true;
  auto rotated = ResolveKvCacheQuantization(rotated_checkpoint, 4);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->bits, 4);
  EXPECT_EQ(rotated->key_clip_ratio, 1.0f);
  EXPECT_TRUE(rotated->key_hadamard);
  EXPECT_FALSE(ResolveKvCacheQuantization(rotated_checkpoint, 0)->key_hadamard);
  EXPECT_FALSE(ResolveKvCacheQuantization(rotated_checkpoint, 16)->key_hadamard);
  // A model without a rotation (GGUF, Hugging Face): plain INT4.
  auto plain = ResolveKvCacheQuantization(float_cache, 4);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->bits, 4);
  EXPECT_EQ(plain->key_clip_ratio, 1.0f);
  EXPECT_EQ(plain->value_clip_ratio, 1.0f);
  EXPECT_FALSE(plain->key_hadamard);

  for (int bad : {8, 1, -4, 32}) {
    const absl::Status status = ResolveKvCacheQuantization(float_cache, bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(status.message()), HasSubstr("kv_cache_bits")) << bad;
  }
}

TEST(LlamaConfigTest, ValidateChecksTheKvCache) {
  auto valid = LlamaConfigFromHfJson(kSmolLmConfigJson);
  ASSERT_TRUE(valid.ok()) << valid.status();
  LlamaConfig config = *valid;
  EXPECT_EQ(config.kv_cache.bits, 16);  // a model without a cache of its own
  config.kv_cache.bits = 4;
  config.kv_cache.key_hadamard = true;
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();

  LlamaConfig bad = config;
  bad.kv_cache.bits = 8;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("kv_cache.bits is 8"));
  bad = config;
  bad.kv_cache.value_clip_ratio = 0.0f;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("kv_cache.value_clip_ratio"));
  bad = config;
  bad.kv_cache.key_clip_ratio = 1.5f;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("kv_cache.key_clip_ratio"));
  bad = config;
  bad.head_dim = 48;  // even, so RoPE is fine, but no Hadamard transform of 48
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("kv_cache.key_hadamard"));
  bad.kv_cache.key_hadamard = false;
  EXPECT_TRUE(bad.Validate().ok()) << bad.Validate();
}

}  // namespace
}  // namespace apex4
