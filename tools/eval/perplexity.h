// Perplexity over non-overlapping windows, as the W4A4 papers (GPTQ, QuaRot, Atom) report it:
// the text is tokenized once, cut into consecutive windows of `context_length` tokens (the tail
// shorter than a window is dropped), and every token of a window but its first is scored given
// the tokens before it in the same window.
#ifndef APEX4_TOOLS_EVAL_PERPLEXITY_H_
#define APEX4_TOOLS_EVAL_PERPLEXITY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tools/eval/sequence_scorer.h"

namespace apex4 {

struct PerplexityResult {
  int64_t windows = 0;
  int64_t scored_tokens = 0;
  double mean_nll = 0.0;    // nats per scored token
  double perplexity = 0.0;  // exp(mean_nll)
};

// `max_windows` <= 0 evaluates every whole window; otherwise the first `max_windows`.
// INVALID_ARGUMENT when the text does not fill one window.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(SequenceScorer& scorer,
                                                    absl::Span<const int32_t> tokens,
                                                    int32_t context_length, int64_t max_windows);

}  // namespace apex4

#endif  // APEX4_TOOLS_EVAL_PERPLEXITY_H_
