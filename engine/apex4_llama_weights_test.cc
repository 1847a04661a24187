// The served path of an apex4 checkpoint (LoadCpuEngine → W4A4 layers → LlamaModel) against the
// quantizer's numpy forward of the same checkpoint, per granularity plan.
#include "engine/apex4_llama_weights.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/apex4_test_checkpoint.h"
#include "engine/cpu_engine.h"
#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Both sides quantize the same activations with the same rule, so each W4A4 layer agrees to
// float rounding (measured: log-probs within 1e-6). But float summation order differs, and an
// activation within ~1e-6 of a rounding boundary then lands one INT4 step apart; this random
// model amplifies such a flip (measured: up to 0.4 at single positions, 0.02-0.04 on average,
// about one flip per forward). The plans differ from each other by ~0.4 on average.
constexpr double kMeanTolerance = 0.08;

std::vector<double> EngineLogProbs(InferenceEngine& engine, const std::vector<int32_t>& tokens) {
  auto sequence = engine.StartSequence(static_cast<int32_t>(tokens.size()));
  EXPECT_TRUE(sequence.ok()) << sequence.status();
  std::vector<float> logits;
  const absl::Status status = engine.StepAllLogits({*sequence, tokens}, &logits);
  EXPECT_TRUE(status.ok()) << status;
  engine.EndSequence(*sequence);
  const int64_t vocab = engine.info().vocab_size;
  std::vector<double> log_probs;
  for (size_t p = 0; p + 1 < tokens.size(); ++p) {
    const float* row = logits.data() + p * vocab;
    const double max_logit = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - max_logit);
    log_probs.push_back(row[tokens[p + 1]] - max_logit - std::log(sum));
  }
  return log_probs;
}

struct Difference {
  double mean = 0;
  double max = 0;
};

Difference Compare(const std::vector<double>& a, const std::vector<double>& b) {
  Difference d;
  for (size_t i = 0; i < a.size(); ++i) {
    d.mean += std::fabs(a[i] - b[i]) / a.size();
    d.max = std::max(d.max, std::fabs(a[i] - b[i]));
  }
  return d;
}

ExecutionPlan UniformPlan(const InferenceEngine& engine, const std::string& granularity) {
  ExecutionPlan plan;
  for (const LayerToPlan& layer : engine.PlannableLayers()) {
    plan.layers.push_back({layer.name, granularity});
  }
  return plan;
}

class Apex4ServedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tiny = GetTinyApex4Checkpoint();
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = *tiny;
    EngineOptions options;
    options.model_path = tiny_->directory;
    auto engine = LoadCpuEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    tokens_ = tiny_->reference["window_tokens"].get<std::vector<int32_t>>();
  }

  std::vector<double> Reference(const std::string& plan) const {
    return tiny_->reference[plan]["log_probs"].get<std::vector<double>>();
  }

  const TinyApex4Checkpoint* tiny_ = nullptr;
  std::unique_ptr<InferenceEngine> engine_;
  std::vector<int32_t> tokens_;
};

TEST_F(Apex4ServedTest, DescribesTheCheckpoint) {
  EXPECT_EQ(engine_->info().format, "apex4");
  EXPECT_EQ(engine_->info().quantization, "w4a4-mixed");
  EXPECT_EQ(engine_->info().hidden_size, 192);
  EXPECT_EQ(engine_->info().kv_cache_bits, 16);  // the checkpoint has no 4-bit cache
  const std::vector<LayerToPlan> layers = engine_->PlannableLayers();
  ASSERT_EQ(layers.size(), 14u);
  EXPECT_EQ(layers[0].name, "blk.0.attn_q");
  EXPECT_EQ(layers[0].k, 256);  // padded from 192
  EXPECT_TRUE(layers[0].has_per_channel && layers[0].has_g128);
  EXPECT_GT(layers[0].per_channel_over_g128, 0);
}

TEST_F(Apex4ServedTest, EveryPlanMatchesTheQuantizersForward) {
  // The plans must differ by more than the tolerance, or the comparison would prove nothing.
  EXPECT_GT(Compare(Reference("per_channel"), Reference("g128")).mean, 3 * kMeanTolerance);
  EXPECT_GT(Compare(Reference("configured"), Reference("g128")).mean, 3 * kMeanTolerance);

  // The engine starts at the checkpoint's configured (mixed) plan.
  for (const std::string plan : {"configured", "per_channel", "g128"}) {
    if (plan != "configured") {
      const absl::Status applied = engine_->ApplyPlan(UniformPlan(*engine_, plan));
      ASSERT_TRUE(applied.ok()) << applied;
    }
    const std::vector<double> served = EngineLogProbs(*engine_, tokens_);
    ASSERT_EQ(served.size(), tokens_.size() - 1);
    const Difference d = Compare(served, Reference(plan));
    EXPECT_LT(d.mean, kMeanTolerance) << plan << ", largest difference " << d.max;
  }
}

TEST_F(Apex4ServedTest, PlanWithAnUnknownGranularityChangesNothing) {
  const std::vector<double> before = EngineLogProbs(*engine_, tokens_);
  ExecutionPlan plan = UniformPlan(*engine_, "g128");
  plan.layers[5].granularity = "g64";
  EXPECT_THAT(engine_->ApplyPlan(plan).message(),
              HasSubstr("blk.0.ffn_up: unknown granularity 'g64'"));
  EXPECT_EQ(Compare(EngineLogProbs(*engine_, tokens_), before).max, 0.0);
}

TEST(Apex4Served, AtomOutlierChannelsMatchTheQuantizersForward) {
  auto tiny = GetTinyApex4Checkpoint();
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  auto checkpoint = Apex4Checkpoint::Open((*tiny)->atom_directory);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  for (const Apex4Linear& layer : checkpoint->metadata().layers) {
    EXPECT_TRUE(layer.outliers.has_value()) << layer.name;
  }
  EngineOptions options;
  options.model_path = (*tiny)->atom_directory;
  auto engine = LoadCpuEngine(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto tokens = (*tiny)->reference["window_tokens"].get<std::vector<int32_t>>();
  const auto expected = (*tiny)->reference["atom"]["log_probs"].get<std::vector<double>>();
  const Difference d = Compare(EngineLogProbs(**engine, tokens), expected);
  EXPECT_LT(d.mean, kMeanTolerance) << "largest difference " << d.max;
}

// tiny_kv4.apex4 is tiny.apex4 with a 4-bit KV cache (keys rotated by H_64, clip ratios 0.9 and
// 0.95): the engine runs it as the quantizer's forward does, and --kv_cache_bits=16 turns it off.
TEST(Apex4Served, Int4KvCacheMatchesTheQuantizersForward) {
  auto tiny = GetTinyApex4Checkpoint();
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  const nlohmann::json& reference = (*tiny)->reference;
  const auto tokens = reference["window_tokens"].get<std::vector<int32_t>>();
  const auto kv4 = reference["kv4"]["log_probs"].get<std::vector<double>>();
  const auto float_cache = reference["configured"]["log_probs"].get<std::vector<double>>();
  // The 4-bit cache must move the log-probs by more than the tolerance (measured: 0.31 mean).
  EXPECT_GT(Compare(kv4, float_cache).mean, 3 * kMeanTolerance);

  EngineOptions options;
  options.model_path = (*tiny)->kv4_directory;
  for (const int requested_bits : {0, 4, 16}) {
    options.kv_cache_bits = requested_bits;
    auto engine = LoadCpuEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    const bool int4 = requested_bits != 16;
    EXPECT_EQ((*engine)->info().kv_cache_bits, int4 ? 4 : 16) << requested_bits;
    const Difference d = Compare(EngineLogProbs(**engine, tokens), int4 ? kv4 : float_cache);
    std::printf("kv_cache_bits %d: mean difference %.4f, largest %.4f\n", requested_bits, d.mean,
                d.max);
    EXPECT_LT(d.mean, kMeanTolerance)
        << "kv_cache_bits " << requested_bits << ", largest difference " << d.max;
  }
  options.kv_cache_bits = 8;
  const absl::Status bad = LoadCpuEngine(options).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("kv_cache_bits"));
}

TEST(Apex4Served, SourceGgufMustBeTheRecordedOne) {
  auto tiny = GetTinyApex4Checkpoint();
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  const fs::path dir = fs::path(std::getenv("TEST_TMPDIR")) / "wrong_source";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_directory_symlink(fs::absolute((*tiny)->directory), dir / "tiny.apex4");
  EngineOptions options;
  options.model_path = (dir / "tiny.apex4").string();
  EXPECT_EQ(LoadCpuEngine(options).status().code(), absl::StatusCode::kNotFound);

  fs::create_symlink(fs::absolute(SharedDataPath("moby_dick.txt")),
                     dir / fs::path(DefaultModelPath()).filename());
  const absl::Status mismatch = LoadCpuEngine(options).status();
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(mismatch.message(), HasSubstr("hashes to"));
}

// The metadata of a 2-block model (head_dim 64), as a checkpoint's apex4.json gives it.
Apex4Metadata SmallMetadata() {
  Apex4Metadata metadata;
  Apex4ModelConfig& model = metadata.model;
  model.architecture = "llama";
  model.vocab_size = 1000;
  model.hidden_size = 192;
  model.intermediate_size = 384;
  model.num_layers = 2;
  model.num_heads = 3;
  model.num_kv_heads = 1;
  model.head_dim = 64;
  model.rope_theta = 10000;
  model.rope_style = "adjacent_pairs";
  model.rms_norm_eps = 1e-5;
  model.context_length = 512;
  return metadata;
}

TEST(LlamaConfigFromApex4, ReadsTheKvCache) {
  Apex4Metadata metadata = SmallMetadata();
  auto float_cache = LlamaConfigFromApex4(metadata);  // no kv_cache, or bits 16
  ASSERT_TRUE(float_cache.ok()) << float_cache.status();
  EXPECT_EQ(float_cache->kv_cache.bits, 16);

  metadata.kv_cache.bits = 4;
  metadata.kv_cache.key_clip_ratio = 0.9f;
  metadata.kv_cache.value_clip_ratio = 0.95f;
  metadata.kv_cache.key_online_hadamard_block = 64;  // = head_dim
  auto rotated = LlamaConfigFromApex4(metadata);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->kv_cache.bits, 4);
  EXPECT_EQ(rotated->kv_cache.key_clip_ratio, 0.9f);
  EXPECT_EQ(rotated->kv_cache.value_clip_ratio, 0.95f);
  EXPECT_TRUE(rotated->kv_cache.key_hadamard);

  metadata.kv_cache.key_online_hadamard_block = 0;  // "key_online_hadamard": null
  auto plain = LlamaConfigFromApex4(metadata);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->kv_cache.bits, 4);
  EXPECT_FALSE(plain->kv_cache.key_hadamard);

  for (int block : {32, 128}) {
    metadata.kv_cache.key_online_hadamard_block = block;
    const absl::Status status = LlamaConfigFromApex4(metadata).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << block;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("quantization.kv_cache.key_online_hadamard.block is " +
                          std::to_string(block)));
    EXPECT_THAT(std::string(status.message()), HasSubstr("head_dim 64"));
  }
}

}  // namespace
}  // namespace apex4
