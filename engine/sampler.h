// Picks the next token from a sequence's logits: greedy, or temperature sampling narrowed by
// top-k and top-p (nucleus), with a per-request random generator so that the same seed gives the
// same tokens whatever else shares the batch.
#ifndef APEX4_ENGINE_SAMPLER_H_
#define APEX4_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace apex4 {

struct SamplerConfig {
  float temperature = 0.0f;  // 0 selects greedy decoding (top_k and top_p are then unused)
  int32_t top_k = 0;         // keep the k most likely tokens; 0 keeps all
  float top_p = 1.0f;        // keep the smallest set of most likely tokens with this much mass
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the field: temperature must be finite and >= 0, top_k >= 0, top_p in
// (0, 1].
absl::Status ValidateSamplerConfig(const SamplerConfig& config);

// The greedy choice: the first of the largest logits (NaN never compares greater, a +inf wins);
// -1 when none is above -inf. Engines that pick next to the logits (the CUDA engine's
// ArgmaxRows) follow the same rule.
int32_t GreedyToken(absl::Span<const float> logits);
// What Sample() returns for logits with no value above -inf.
absl::Status NoTokenError();

// One per sequence; not thread-safe. The order is that of Hugging Face's and vLLM's samplers:
// temperature scales the logits, top-k then top-p narrow the tempered distribution, and a token
// is drawn from what is left, renormalised.
class Sampler {
 public:
  // `config` should have passed ValidateSamplerConfig; if not, Sample() returns its error.
  explicit Sampler(const SamplerConfig& config)
      : config_(config), config_status_(ValidateSamplerConfig(config)), rng_(config.seed) {}

  // The next token id. Non-finite logits never win unless all are: NaN counts as -inf, and a
  // +inf logit is picked outright. INVALID_ARGUMENT when `logits` is empty or all NaN/-inf.
  absl::StatusOr<int32_t> Sample(absl::Span<const float> logits);

  const SamplerConfig& config() const { return config_; }
  // Whether Sample() is GreedyToken (temperature 0, a valid config): the token can then be
  // picked wherever the logits are (InferenceEngine::StepWithGreedyPicks).
  bool greedy() const { return config_status_.ok() && config_.temperature == 0.0f; }

 private:
  // Uniform in [0, 1) from 53 random bits (the same on every platform, unlike
  // std::uniform_real_distribution).
  double NextUniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  // Ids of the `count` largest logits, most likely first (ties: lower id first).
  void SelectMostLikely(absl::Span<const float> logits, size_t count);
  // Draws from candidates_[0, size) with weights_ (unnormalised probabilities) of the same size.
  int32_t Draw(size_t size, double total);

  SamplerConfig config_;
  absl::Status config_status_;
  std::mt19937_64 rng_;
  // Scratch, kept to spare allocations per token.
  std::vector<int32_t> candidates_;
  std::vector<float> weights_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_SAMPLER_H_
