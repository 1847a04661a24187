// Checks sampling against distributions numpy computes from the default model's real logits
// (engine/testdata/sampler_reference.py, run through llama-cpp-python when the suite starts).
#include "engine/sampler.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/python_reference.h"
#include "engine/test_files.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using nlohmann::json;

class SamplerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string out = TestOutputDir() + "/sampler_reference.json";
    const absl::Status status =
        RunPythonReference("engine/testdata/sampler_reference.py", {DefaultModelPath(), out});
    ASSERT_TRUE(status.ok()) << status;
    absl::StatusOr<json> reference = ReadReferenceJson(out);
    ASSERT_TRUE(reference.ok()) << reference.status();
    reference_ = new json(*std::move(reference));
    logits_ = new std::vector<float>((*reference_)["logits"].get<std::vector<float>>());
  }

  static const json& reference() { return *reference_; }
  static const std::vector<float>& logits() { return *logits_; }

  static Sampler MakeSampler(float temperature, int32_t top_k, float top_p, uint64_t seed) {
    return Sampler({temperature, top_k, top_p, seed});
  }

 private:
  static json* reference_;
  static std::vector<float>* logits_;
};

json* SamplerTest::reference_ = nullptr;
std::vector<float>* SamplerTest::logits_ = nullptr;

TEST_F(SamplerTest, GreedyAndTopOneAreTheArgmax) {
  const int32_t argmax = reference()["argmax"];
  Sampler greedy = MakeSampler(0.0f, 0, 1.0f, 0);
  EXPECT_EQ(*greedy.Sample(logits()), argmax);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Sampler top_one = MakeSampler(1.5f, 1, 1.0f, seed);
    ASSERT_EQ(*top_one.Sample(logits()), argmax) << "seed " << seed;
  }
  // Temperatures too small to invert in float are greedy too.
  for (float tiny : {1e-30f, 1e-45f}) {
    Sampler cold = MakeSampler(tiny, 0, 1.0f, 5);
    EXPECT_EQ(*cold.Sample(logits()), argmax) << tiny;
  }
  // A nucleus smaller than the most likely token's probability is that token alone.
  Sampler tiny_nucleus = MakeSampler(1.0f, 0, 1e-6f, 7);
  EXPECT_EQ(*tiny_nucleus.Sample(logits()), argmax);
}

TEST_F(SamplerTest, FrequenciesMatchTheExpectedDistribution) {
  const std::vector<int32_t> slice_ids = reference()["slice_ids"];
  std::vector<float> slice;
  for (int32_t id : slice_ids) slice.push_back(logits()[id]);
  constexpr int kDraws = 100000;
  for (const json& setting : reference()["settings"]) {
    const std::vector<double> expected = setting["expected"];
    Sampler sampler = MakeSampler(setting["temperature"], setting["top_k"], setting["top_p"], 42);
    std::vector<int> counts(slice.size());
    for (int draw = 0; draw < kDraws; ++draw) ++counts[*sampler.Sample(slice)];
    for (size_t i = 0; i < slice.size(); ++i) {
      const double frequency = static_cast<double>(counts[i]) / kDraws;
      if (expected[i] == 0.0) {
        ASSERT_EQ(counts[i], 0) << setting.dump() << " drew excluded token " << slice_ids[i];
        continue;
      }
      // Five standard deviations of a binomial frequency: a fixed seed cannot flake, and a
      // wrong distribution (e.g. temperature applied twice) is off by far more.
      const double tolerance = 5.0 * std::sqrt(expected[i] * (1.0 - expected[i]) / kDraws) + 1e-4;
      EXPECT_NEAR(frequency, expected[i], tolerance) << setting.dump() << " token " << slice_ids[i];
    }
  }
}

TEST_F(SamplerTest, SameSeedSameTokensWhateverElseIsSampled) {
  const auto run = [&](uint64_t seed, bool interleave) {
    Sampler sampler = MakeSampler(1.0f, 50, 0.95f, seed);
    Sampler other = MakeSampler(1.0f, 0, 1.0f, seed + 1);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 64; ++i) {
      if (interleave) other.Sample(logits()).IgnoreError();
      tokens.push_back(*sampler.Sample(logits()));
    }
    return tokens;
  };
  EXPECT_EQ(run(1234, false), run(1234, true));
  EXPECT_NE(run(1234, false), run(4321, false));
}

TEST_F(SamplerTest, FullVocabularyTopPDrawsOnlyFromTheNucleus) {
  const std::vector<int32_t> nucleus = reference()["full_vocabulary_nucleus"];
  ASSERT_GT(nucleus.size(), 10u);
  std::vector<int> counts(logits().size());
  Sampler sampler = MakeSampler(1.0f, 0, 0.8f, 99);
  constexpr int kDraws = 5000;
  for (int draw = 0; draw < kDraws; ++draw) ++counts[*sampler.Sample(logits())];
  int in_nucleus = 0;
  for (int32_t id : nucleus) in_nucleus += counts[id];
  EXPECT_EQ(in_nucleus, kDraws);
}

TEST(SamplerConfigTest, RefusesBadParameters) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const SamplerConfig& config : std::vector<SamplerConfig>{{-0.5f, 0, 1.0f, 0},
                                                                {nan, 0, 1.0f, 0},
                                                                {inf, 0, 1.0f, 0},
                                                                {1.0f, -1, 1.0f, 0},
                                                                {1.0f, 0, 0.0f, 0},
                                                                {1.0f, 0, 1.5f, 0},
                                                                {1.0f, 0, -0.1f, 0},
                                                                {1.0f, 0, nan, 0}}) {
    const absl::Status status = ValidateSamplerConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << config.temperature << " " << config.top_k << " " << config.top_p;
    Sampler sampler(config);
    EXPECT_EQ(sampler.Sample({1.0f, 2.0f}).status(), status);
  }
  EXPECT_TRUE(ValidateSamplerConfig({0.0f, 0, 1.0f, 0}).ok());
  EXPECT_TRUE(ValidateSamplerConfig({2.0f, 100, 0.5f, 0}).ok());
}

TEST(SamplerLogitsTest, HandlesNonFiniteLogits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  Sampler sampler({1.0f, 0, 1.0f, 3});
  EXPECT_EQ(sampler.Sample({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampler.Sample({nan, -inf, nan}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*sampler.Sample({0.0f, inf, 5.0f}), 1);
  for (int i = 0; i < 100; ++i) {
    const int32_t id = *sampler.Sample({nan, 0.0f, -inf, 0.0f, nan});
    ASSERT_TRUE(id == 1 || id == 3) << id;
  }
}

TEST(GreedyTokenTest, FirstOfTheLargestNanNeverWinsInfinityDoes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(GreedyToken({}), -1);
  EXPECT_EQ(GreedyToken({nan, -inf, nan}), -1);
  EXPECT_EQ(GreedyToken({1.0f, 3.0f, nan, 3.0f}), 1);  // ties: the lower id
  EXPECT_EQ(GreedyToken({nan, -inf, -7.0f}), 2);
  EXPECT_EQ(GreedyToken({0.0f, inf, 5.0f, inf}), 1);
  // What greedy Sample() picks, and which samplers say they are greedy.
  Sampler greedy({0.0f, 0, 1.0f, 1});
  EXPECT_TRUE(greedy.greedy());
  EXPECT_EQ(*greedy.Sample({1.0f, 3.0f, nan, 3.0f}), 1);
  EXPECT_EQ(greedy.Sample({nan, -inf}).status(), NoTokenError());
  EXPECT_FALSE(Sampler({0.5f, 0, 1.0f, 1}).greedy());
  EXPECT_FALSE(Sampler({-1.0f, 0, 1.0f, 1}).greedy());  // invalid: Sample() returns the error
}

// Engines pick from a Sampler's NextPick (InferenceEngine::StepAndPick): the pick carries the
// settings and the draw, one uniform per sampled token (none when greedy), so picking it gives
// what Sample() gives from an identically seeded sampler.
TEST_F(SamplerTest, NextPickThenTokenPickerIsSample) {
  for (const SamplerConfig& config : {SamplerConfig{0.9f, 40, 0.95f, 11}, SamplerConfig{1.0f, 0, 1.0f, 12},
                                      SamplerConfig{0.0f, 0, 1.0f, 13}}) {
    Sampler sampling(config), picking(config);
    TokenPicker picker;
    for (int step = 0; step < 50; ++step) {
      absl::StatusOr<TokenPick> pick = picking.NextPick();
      ASSERT_TRUE(pick.ok());
      EXPECT_EQ(pick->temperature, config.temperature);
      EXPECT_EQ(pick->top_k, config.top_k);
      EXPECT_EQ(pick->top_p, config.top_p);
      EXPECT_TRUE(pick->uniform >= 0.0 && pick->uniform < 1.0);
      if (config.temperature == 0.0f) EXPECT_EQ(pick->uniform, 0.0);
      EXPECT_EQ(*picker.Pick(*pick, logits()), *sampling.Sample(logits())) << step;
    }
  }
  // A sampled pick draws even where the logits leave one choice (a +inf), so later draws do not
  // depend on what the logits were.
  Sampler a({1.0f, 0, 1.0f, 5}), b({1.0f, 0, 1.0f, 5});
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(*a.Sample({0.0f, inf}), 1);
  b.NextPick().IgnoreError();
  EXPECT_EQ(a.NextPick()->uniform, b.NextPick()->uniform);
  EXPECT_EQ(Sampler({-1.0f, 0, 1.0f, 1}).NextPick().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace apex4
