#include "tools/eval/perplexity.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace apex4 {

absl::StatusOr<PerplexityResult> EvaluatePerplexity(SequenceScorer& scorer,
                                                    absl::Span<const int32_t> tokens,
                                                    int32_t context_length, int64_t max_windows) {
  if (context_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("context length ", context_length, " scores no token"));
  }
  int64_t windows = static_cast<int64_t>(tokens.size()) / context_length;
  if (windows == 0) {
    return absl::InvalidArgumentError(absl::StrCat("text of ", tokens.size(),
                                                   " tokens does not fill one window of ",
                                                   context_length));
  }
  if (max_windows > 0 && max_windows < windows) windows = max_windows;

  PerplexityResult result;
  double total_nll = 0.0;
  for (int64_t w = 0; w < windows; ++w) {
    absl::StatusOr<std::vector<double>> log_probs =
        scorer.TokenLogProbs(tokens.subspan(w * context_length, context_length));
    if (!log_probs.ok()) {
      return absl::Status(log_probs.status().code(),
                          absl::StrCat("window ", w, ": ", log_probs.status().message()));
    }
    for (double log_prob : *log_probs) total_nll -= log_prob;
    result.scored_tokens += static_cast<int64_t>(log_probs->size());
  }
  result.windows = windows;
  result.mean_nll = total_nll / static_cast<double>(result.scored_tokens);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace apex4
