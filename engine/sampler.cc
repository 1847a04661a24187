#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

// Partial sorts for top-p start with this many candidates and grow fourfold: the nucleus is
// usually a few dozen tokens, and sorting the whole vocabulary per token would cost more than
// the rest of sampling.
constexpr size_t kFirstSortedChunk = 64;

}  // namespace

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

absl::StatusOr<int32_t> Sampler::Sample(absl::Span<const float> logits) {
  if (!config_status_.ok()) return config_status_;
  // Greedy pick: the first of the largest logits; NaN never compares greater.
  int32_t best = -1;
  float best_logit = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > best_logit) {
      best = static_cast<int32_t>(i);
      best_logit = logits[i];
    }
  }
  if (best < 0) return absl::InvalidArgumentError("logits hold no value above -inf");
  if (config_.temperature == 0.0f || std::isinf(best_logit)) return best;

  candidates_.clear();
  const double inverse_temperature = 1.0 / config_.temperature;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!(logits[i] > -std::numeric_limits<float>::infinity())) continue;  // -inf and NaN
    const double weight =
        std::exp((static_cast<double>(logits[i]) - best_logit) * inverse_temperature);
    if (weight > 0.0) candidates_.push_back({weight, static_cast<int32_t>(i)});
  }
  const auto more_likely = [](const Candidate& a, const Candidate& b) {
    return a.weight > b.weight || (a.weight == b.weight && a.id < b.id);
  };
  const auto k = static_cast<size_t>(config_.top_k);
  if (k > 0 && k < candidates_.size()) {
    std::nth_element(candidates_.begin(), candidates_.begin() + (k - 1), candidates_.end(),
                     more_likely);
    candidates_.resize(k);
  }
  double total = 0.0;
  for (const Candidate& candidate : candidates_) total += candidate.weight;

  if (config_.top_p < 1.0f) {
    // Keep the most likely candidates until their mass reaches top_p of the total.
    const double target = config_.top_p * total;
    double kept_mass = 0.0;
    size_t sorted_end = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      if (i == sorted_end) {
        sorted_end = std::min(candidates_.size(), std::max(kFirstSortedChunk, 4 * sorted_end));
        std::partial_sort(candidates_.begin() + i, candidates_.begin() + sorted_end,
                          candidates_.end(), more_likely);
      }
      kept_mass += candidates_[i].weight;
      if (kept_mass >= target) {
        candidates_.resize(i + 1);
        break;
      }
    }
    total = kept_mass;
  }

  const double draw = NextUniform() * total;
  double cumulative = 0.0;
  for (const Candidate& candidate : candidates_) {
    cumulative += candidate.weight;
    if (draw < cumulative) return candidate.id;
  }
  return candidates_.back().id;  // rounding left the draw at the very top
}

}  // namespace apex4
