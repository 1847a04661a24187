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
// SampleRows) follow the same rule.
int32_t GreedyToken(absl::Span<const float> logits);
// What a pick returns for logits with no value above -inf.
absl::Status NoTokenError();

// One token to pick: a sampler's settings and the uniform draw that decides it. A Sampler hands
// these out (NextPick) so that an engine can pick where the logits are (InferenceEngine::
// StepAndPick) and still give the tokens the request's seed gives.
struct TokenPick {
  float temperature = 0.0f;  // 0: greedy (top_k, top_p and uniform unused)
  int32_t top_k = 0;
  float top_p = 1.0f;
  double uniform = 0.0;      // in [0, 1)
};

// The host rule for a TokenPick; keeps scratch between calls, so one per thread. The order is
// that of Hugging Face's and vLLM's samplers: temperature scales the logits, top-k then top-p
// narrow the tempered distribution, and the uniform draws a token from what is left,
// renormalised (kernels/cuda/ops/sample_rows.h is the GPU's version of this rule).
class TokenPicker {
 public:
  // The picked id. Non-finite logits never win unless all are: NaN counts as -inf, and a +inf
  // logit is picked outright. NoTokenError() when `logits` is empty or all NaN/-inf.
  absl::StatusOr<int32_t> Pick(const TokenPick& pick, absl::Span<const float> logits);

 private:
  // Ids of the `count` largest logits, most likely first (ties: lower id first).
  void SelectMostLikely(absl::Span<const float> logits, size_t count);
  // Draws from candidates_[0, size) with weights_ (unnormalised probabilities) of the same size.
  int32_t Draw(size_t size, double total, double uniform) const;

  std::vector<int32_t> candidates_;
  std::vector<float> weights_;
};

// One per sequence; not thread-safe: the request's settings and its random generator, so that
// the same seed gives the same tokens whatever else shares the batch.
class Sampler {
 public:
  // `config` should have passed ValidateSamplerConfig; if not, NextPick() returns its error.
  explicit Sampler(const SamplerConfig& config)
      : config_(config), config_status_(ValidateSamplerConfig(config)), rng_(config.seed) {}

  // The next token's pick: the settings and, unless greedy, the next uniform draw (one per
  // sampled token, whatever the logits turn out to be).
  absl::StatusOr<TokenPick> NextPick();
  // NextPick, then TokenPicker::Pick on the host.
  absl::StatusOr<int32_t> Sample(absl::Span<const float> logits);

  const SamplerConfig& config() const { return config_; }
  // Whether picks are GreedyToken (temperature 0, a valid config).
  bool greedy() const { return config_status_.ok() && config_.temperature == 0.0f; }

 private:
  SamplerConfig config_;
  absl::Status config_status_;
  std::mt19937_64 rng_;
  TokenPicker picker_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_SAMPLER_H_
