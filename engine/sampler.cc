#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// Top-p first looks at this many of the most likely tokens and grows fourfold while their mass
// falls short: the nucleus is usually a few dozen tokens, and sorting the whole vocabulary per
// token would cost more than the rest of sampling.
constexpr size_t kFirstNucleusGuess = 64;

}  // namespace

int32_t GreedyToken(absl::Span<const float> logits) {
  int32_t best = -1;
  float best_logit = kMinusInfinity;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > best_logit) {
      best = static_cast<int32_t>(i);
      best_logit = logits[i];
    }
  }
  return best;
}

absl::Status NoTokenError() { return absl::InvalidArgumentError("logits hold no value above -inf"); }

absl::Status ValidateSamplerConfig(const SamplerConfig& config) {
  if (!std::isfinite(config.temperature) || config.temperature < 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat(
        "temperature must be a finite number >= 0 (0 is greedy), got ", config.temperature));
  }
  if (config.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be >= 0 (0 keeps all tokens), got ", config.top_k));
  }
  if (!(config.top_p > 0.0f && config.top_p <= 1.0f)) {  // also refuses NaN
    return absl::InvalidArgumentError(
        absl::StrCat("top_p must be in (0, 1] (1 keeps all tokens), got ", config.top_p));
  }
  return absl::OkStatus();
}

void TokenPicker::SelectMostLikely(absl::Span<const float> logits, size_t count) {
  // A min-heap of the best `count` so far: most logits fall below its top and cost one compare.
  const auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!(logits[i] > kMinusInfinity)) continue;  // -inf and NaN are never drawn
    const auto id = static_cast<int32_t>(i);
    if (candidates_.size() < count) {
      candidates_.push_back(id);
      std::push_heap(candidates_.begin(), candidates_.end(), more_likely);
    } else if (more_likely(id, candidates_.front())) {
      std::pop_heap(candidates_.begin(), candidates_.end(), more_likely);
      candidates_.back() = id;
      std::push_heap(candidates_.begin(), candidates_.end(), more_likely);
    }
  }
  std::sort_heap(candidates_.begin(), candidates_.end(), more_likely);
}

int32_t TokenPicker::Draw(size_t size, double total, double uniform) const {
  const double draw = uniform * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < size; ++i) {
    cumulative += weights_[i];
    if (draw < cumulative) return candidates_[i];
  }
  return candidates_[size - 1];  // rounding left the draw at the very top
}

absl::StatusOr<TokenPick> Sampler::NextPick() {
  if (!config_status_.ok()) return config_status_;
  TokenPick pick{config_.temperature, config_.top_k, config_.top_p, 0.0};
  // Uniform in [0, 1) from 53 random bits (the same on every platform, unlike
  // std::uniform_real_distribution).
  if (!greedy()) pick.uniform = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  return pick;
}

absl::StatusOr<int32_t> Sampler::Sample(absl::Span<const float> logits) {
  absl::StatusOr<TokenPick> pick = NextPick();
  if (!pick.ok()) return pick.status();
  return picker_.Pick(*pick, logits);
}

absl::StatusOr<int32_t> TokenPicker::Pick(const TokenPick& pick, absl::Span<const float> logits) {
  const int32_t best = GreedyToken(logits);
  if (best < 0) return NoTokenError();
  const float best_logit = logits[best];
  if (pick.temperature == 0.0f || std::isinf(best_logit)) return best;

  // Weights relative to the best token's (1), so that no exponential overflows.
  const float inverse_temperature = 1.0f / pick.temperature;
  if (std::isinf(inverse_temperature)) return best;  // a denormal temperature is greedy
  const auto weight = [&](float logit) {
    return logit > kMinusInfinity ? std::exp((logit - best_logit) * inverse_temperature) : 0.0f;
  };
  const auto k = static_cast<size_t>(pick.top_k);
  if (k == 0 && pick.top_p == 1.0f) {
    // Plain temperature sampling: every token, in vocabulary order.
    candidates_.resize(logits.size());
    weights_.resize(logits.size());
    double total = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      candidates_[i] = static_cast<int32_t>(i);
      weights_[i] = weight(logits[i]);
      total += weights_[i];
    }
    return Draw(logits.size(), total, pick.uniform);
  }

  // Top-k keeps the k most likely; top-p alone needs the mass of the whole vocabulary.
  double total = 0.0;
  if (k > 0) {
    SelectMostLikely(logits, k);
    for (int32_t id : candidates_) total += weight(logits[id]);
  } else {
    for (float logit : logits) total += weight(logit);
  }
  const double nucleus_mass = pick.top_p * total;
  for (size_t guess = k > 0 ? k : kFirstNucleusGuess;; guess *= 4) {
    if (k == 0) SelectMostLikely(logits, guess);
    weights_.resize(candidates_.size());
    double kept_mass = 0.0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      weights_[i] = weight(logits[candidates_[i]]);
      kept_mass += weights_[i];
      // The nucleus: the most likely tokens until their mass reaches top_p.
      if (kept_mass >= nucleus_mass) return Draw(i + 1, kept_mass, pick.uniform);
    }
    // Every candidate is in: top-k left less than the vocabulary, or rounding kept the nucleus
    // a hair short of top_p of the total.
    if (k > 0 || candidates_.size() < guess) return Draw(candidates_.size(), kept_mass, pick.uniform);
  }
}

}  // namespace apex4
