// Log-likelihood of token sequences under a loaded engine, through the same forward pass that
// serves requests (InferenceEngine::StepAllLogits). The base of perplexity and HellaSwag.
#ifndef APEX4_TOOLS_EVAL_SEQUENCE_SCORER_H_
#define APEX4_TOOLS_EVAL_SEQUENCE_SCORER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/inference_engine.h"

namespace apex4 {

// Not thread-safe (one engine sequence at a time).
class SequenceScorer {
 public:
  // Logits of at most `max_chunk_tokens` positions are held at once, which bounds memory
  // (a 2048-token window of a 49k vocabulary would otherwise take 400 MB).
  explicit SequenceScorer(InferenceEngine* engine, int32_t max_chunk_tokens = 256);

  // log p(tokens[i] | tokens[0..i-1]) for each i in [first_scored, tokens.size()), in order.
  // `first_scored` >= 1: the first token has no context to be predicted from.
  absl::StatusOr<std::vector<double>> TokenLogProbs(absl::Span<const int32_t> tokens,
                                                    int64_t first_scored = 1);

 private:
  InferenceEngine* engine_;  // not owned
  int32_t max_chunk_tokens_;
  std::vector<float> logits_;
};

}  // namespace apex4

#endif  // APEX4_TOOLS_EVAL_SEQUENCE_SCORER_H_
